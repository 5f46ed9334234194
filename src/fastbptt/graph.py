"""One forward and one backward pass, shared by every call that runs the model.

RNN.loss_and_grad, RNN.forward / predict, RNN.evaluate, fit's truncated BPTT and validation all run
through a `Pass`: forward one segment of steps (or several, chained by their states), take the loss
over some of the steps seen, and backpropagate through the segments, latest first. A `Plan` says
who does the output layer's work: the top layer's kernels (the logits in the forward loop, the
head's weight gradient dV in the backward loop, while each step's states are in cache) or the head
(heads.Head, from the states). Full BPTT is one segment; see docs/architecture.md.
"""

from typing import NamedTuple

import numpy as np

from .heads import HeadGrad


class Plan(NamedTuple):
    """Who does what in one call. The first two depend only on the model's layers and head, so a
    model works them out once (`plan_for`); `training` is the call's."""

    logits_in_loop: bool  # the top layer's forward kernels form the logits h_t V^T + c
    dV_in_loop: bool      # the top layer's backward kernels fill the head's dV beside dW
    training: bool        # dropout between stacked layers


def plans_for(layers, head, dropout):
    """A model's two Plans, indexed by training (False, True). The output layer's work goes into
    the loops only with an output layer and target="all" (with "last" the head reads one step,
    less than the loops would do), dV only where every top cell fills it."""
    if head.output is None or head.target != "all":
        logits = dV = False
    else:
        logits = True
        dV = all(c.takes_head_grad and c.fills_head_weight_grad for c in layers.cells[-1])
    return Plan(logits, dV, False), Plan(logits, dV, dropout > 0)


class Segment:
    """The forward pass over steps [start, stop): inputs X, states H (stop - start + 1, B, H * D)
    with H[0] the state before `start`, and the layers' Trace (caches, logits when formed)."""

    __slots__ = ("start", "stop", "X", "H", "trace")

    def __init__(self, start, stop, X, H, trace):
        self.start, self.stop, self.X, self.H, self.trace = start, stop, X, H, trace


class Loss(NamedTuple):
    """The loss over steps [start, stop) of a call: `value` (scaled), `grad` at the seen states
    (a HeadGrad, or an ndarray without an output layer), the head's `head_grads`, the `seen`
    states, their `logits` (or None) and `targets`, `items` (the steps x sequences counted),
    `mask` (T', B) of the steps that count (None: all) and `picks`: with target="last", the rows
    whose last step lies in [start, stop) (None: all)."""

    start: int
    stop: int
    value: float
    grad: object
    head_grads: dict
    seen: np.ndarray
    logits: object
    targets: np.ndarray
    items: int
    mask: object
    picks: object


def _local(lengths, batch_sizes, a, b):
    """The lengths and batch_sizes of steps [a, b) (None where every row runs through all)."""
    if lengths is None or batch_sizes[b - 1] == len(lengths):
        return None, None
    return np.clip(lengths - a, 0, b - a), batch_sizes[a:b]


def whole_ok(layers, head, backward=True):
    """Whether a model's calls without lengths may take `Pass.whole`: one cell (one layer, one
    direction) under an output layer on every step; for the backward pass as well, a cell that
    takes the head's gradient unformed and fills its dV."""
    return (layers.single and head.output is not None and head.target == "all"
            and (layers._fills[0] or not backward))


class Pass:
    """One call's forward and backward through a model, with the parameters as they are now."""

    __slots__ = ("model", "plan", "kern", "p")

    def __init__(self, model, training=False, plan=None):
        """`plan` (a Plan) overrides the model's own, to check one way against the other."""
        self.model = model
        self.p = model.params
        self.p.check_finite()
        self.plan = plan or model._plans[bool(training)]
        self.kern = model.layers.kernels(model.backend)

    # -- forward ---------------------------------------------------------------------------------------

    def forward(self, X, state0, start=0, lengths=None, batch_sizes=None, logits=True):
        """Forward X (the steps [start, start + len(X)) of a call with these sorted `lengths` and
        `batch_sizes`) from state0; the logits in the loop when the plan and `logits` say so."""
        m, stop = self.model, start + X.shape[0]
        lengths, batch_sizes = _local(lengths, batch_sizes, start, stop)
        head = (self.p["V"], self.p["c"]) if logits and self.plan.logits_in_loop else None
        H, trace = m.layers.forward(self.kern, self.p, X, state0, m.n_threads, lengths=lengths,
                                    batch_sizes=batch_sizes, training=self.plan.training,
                                    rng=m._dropout_rng, head=head)
        return Segment(start, stop, X, H, trace)

    # -- a whole call through one cell -------------------------------------------------------------

    def takes_whole(self, call):
        """Whether a (sorted) Call goes through `whole_loss` and `whole_backward`: a model
        `whole_ok` accepts, and no lengths."""
        return self.model._whole and call.lengths is None

    def whole(self, X, state0):
        """A whole call (all T steps, no lengths) of a model `whole_ok` accepts: (cell, H, cache,
        logits or None). The same cell and kernel calls as `forward` makes through Stack.forward,
        without the Segment and Trace that chained segments and stacked layers need: a short call
        (one step, the 8-bit adder) pays for that bookkeeping as much as for its arithmetic."""
        m, p = self.model, self.p
        cell = m.layers.cells[0][0]
        if self.plan.logits_in_loop and cell.logits_ok(self.kern, X):
            V = p["V"]
            logits = m.layers._scratch.empty((X.shape[0], X.shape[1], V.shape[0]), V.dtype)
            H, cache = cell.forward(self.kern, p, X, state0, m.n_threads,
                                    logits=(V, p["c"], logits))
            return cell, H, cache, logits
        H, cache = cell.forward(self.kern, p, X, state0, m.n_threads)
        return cell, H, cache, None

    def whole_loss(self, X, Y, state0, for_grad=True):
        """`whole`, then the loss over every step as `loss` takes it: (value, its gradient, the
        head's grads, cell, H, cache, logits or None)."""
        cell, H, cache, logits = self.whole(X, state0)
        value, grad, head_grads = self.model.head.loss_and_grad(
            self.p, H[1:], Y, unformed=True, defer_weight_grad=self.plan.dV_in_loop or not for_grad,
            logits=logits)
        return value, grad, head_grads, cell, H, cache, logits

    def whole_backward(self, X, cell, H, cache, grad, head_grads):
        """The backward pass after `whole_loss`, as `backward` runs it for one segment: every
        parameter's gradient and the gradient at the initial state."""
        m = self.model
        # one cell: each state is (B, H), as the states H hold it at every step
        dstate = tuple([np.zeros(H.shape[1:], H.dtype) for _ in cell.state_names])
        grads, dstate0, _ = cell.backward(self.kern, self.p, X, H, cache, grad, dstate,
                                          m.n_threads, False, None)
        grads.update(head_grads)
        return grads, dstate0

    def final_state(self, seg):
        """The state after seg's last step (each sequence's own last step, if it ended before)."""
        return self.model.layers.final_state(seg.H, seg.trace)

    # -- the steps the loss sees ---------------------------------------------------------------------

    def seen(self, segs, s, e, T, lengths=None):
        """(seen states, their logits or None, mask, picks) over steps [s, e) of a call of T
        steps, from segments that end at e; None when no step there counts."""
        if self.model.target == "last":
            return _last_seen(segs, s, e, T, lengths)
        mask = None
        if lengths is not None:
            if lengths[0] <= s:  # sorted: every sequence ended before s
                return None
            mask = np.arange(s, e)[:, None] < lengths[None, :]
            mask = None if mask.all() else mask
        if len(segs) == 1 and segs[0].start == s:
            return segs[0].H[1:], segs[0].trace.logits, mask, None
        parts = [g for g in segs if g.stop > s]
        seen = np.concatenate([g.H[1 + max(g.start, s) - g.start:] for g in parts])
        formed = [g.trace.logits for g in parts]
        logits = None
        if all(f is not None for f in formed):
            logits = np.concatenate([f[max(g.start, s) - g.start:] for g, f in zip(
                parts, formed, strict=True)])
        return seen, logits, mask, None

    def outputs(self, seg, lengths=None):
        """The head's outputs over a whole call's single segment; zero at padded steps."""
        seen, logits, mask, _ = self.seen([seg], 0, seg.stop, seg.stop, lengths)
        Y_hat = self.model.head.forward(self.p, seen, logits)
        if mask is not None:
            Y_hat[~mask] = 0
        return Y_hat

    # -- loss and backward -----------------------------------------------------------------------------

    def loss(self, segs, Y, s, e, T, lengths=None, scale=None, for_grad=True):
        """The Loss over steps [s, e) of a call of T steps from segments that end at e, or None
        when no step there counts. Y holds the call's targets; `scale` overrides the reduction's
        divisor."""
        sel = self.seen(segs, s, e, T, lengths)
        if sel is None:
            return None
        seen, logits, mask, picks = sel
        head = self.model.head
        if head.target == "last":
            targets = Y if picks is None else Y[:, picks]
        else:
            targets = Y if (s == 0 and e == Y.shape[0]) else Y[s:e]
        # the loss alone (for_grad False) defers dV too: an unformed gradient costs nothing
        value, grad, head_grads = head.loss_and_grad(
            self.p, seen, targets, scale=scale, mask=mask, unformed=True,
            defer_weight_grad=self.plan.dV_in_loop or not for_grad, logits=logits)
        items = int(mask.sum()) if mask is not None else seen.shape[0] * seen.shape[1]
        return Loss(s, e, value, grad, head_grads, seen, logits, targets, items, mask, picks)

    def backward(self, segs, loss, lengths=None, dstate=None, need_dX=False):
        """Gradients of every parameter (summed over the segments), the gradient at the first
        segment's initial state, and dX of the first segment (or None); dstate is the gradient
        arriving at the last segment's final state (None: zero)."""
        m = self.model
        if not m.layers.differentiable:
            raise ValueError(f"the {m.cell_name!r} cell is forward only: it has no useful gradient")
        dV = loss.grad.dV if isinstance(loss.grad, HeadGrad) else None
        grads = dX = None
        for seg in reversed(segs):  # latest first, chaining the state gradient
            if m.target == "all" and (seg.start, seg.stop) == (loss.start, loss.stop):
                dH = loss.grad  # the loss is over exactly this segment's steps
            else:
                dseg, counts = _spread(loss, seg, m.target, lengths)
                # the latest segment fills the head's dV itself, earlier ones with loss add theirs
                part = None if dV is None or not counts else dV if seg is segs[-1] else \
                    np.empty_like(dV)
                dH = HeadGrad(dseg, loss.grad.V, part) if isinstance(loss.grad, HeadGrad) else dseg
            if dstate is None:
                shape = m.state_shape(seg.X.shape[1])
                dstate = tuple(np.zeros(shape, m.dtype) for _ in m.layers.state_names)
            g, dstate, dX = m.layers.backward(self.kern, self.p, seg.X, seg.H, seg.trace, dH,
                                              dstate, m.n_threads, need_dX)
            if isinstance(dH, HeadGrad) and dH.dV is not None and dH.dV is not dV:
                dV += dH.dV
            grads = g if grads is None else {k: grads[k] + v for k, v in g.items()}
        grads.update(loss.head_grads)
        return grads, dstate, dX


def _last_seen(segs, s, e, T, lengths):
    """target="last": each sequence's last state, for the sequences whose last step is in [s, e)
    (all of them at the end of a call without lengths)."""
    if lengths is None:
        if e != T:
            return None
        return segs[-1].H[-1:], None, None, None
    picks, rows = [], []
    for g in segs:
        hit = np.flatnonzero((lengths > max(g.start, s)) & (lengths <= g.stop))
        if hit.size:
            picks.append(hit)
            rows.append(g.H[lengths[hit] - g.start, hit])
    if not picks:
        return None
    picks = np.concatenate(picks)
    order = np.argsort(picks, kind="stable")
    seen = np.concatenate(rows)[order][None]
    picks = picks[order]
    return seen, None, None, (None if picks.size == len(lengths) else picks)


def _spread(loss, seg, target, lengths):
    """The loss gradient at seg's steps (zero where no loss is seen), as kernels take it (dO or,
    without an output layer, dH), and whether any of seg's steps carries loss."""
    g = loss.grad.dO if isinstance(loss.grad, HeadGrad) else loss.grad
    a, b, s = seg.start, seg.stop, loss.start
    if target == "all":
        lo = max(a, s)
        if lo == a:
            return g[a - s:b - s], True
        part = np.zeros((b - a,) + g.shape[1:], dtype=g.dtype)
        if lo < b:
            part[lo - a:] = g[lo - s:b - s]
        return part, lo < b
    B = g.shape[1] if lengths is None else len(lengths)  # g covers the picked rows only
    part = np.zeros((b - a, B, g.shape[-1]), dtype=g.dtype)
    if lengths is None:
        if b != loss.stop:
            return part, False
        part[-1] = g[0]
        return part, True
    rows = np.arange(len(lengths)) if loss.picks is None else loss.picks
    hit = (lengths[rows] > a) & (lengths[rows] <= b)
    part[lengths[rows][hit] - 1 - a, rows[hit]] = g[0, hit]
    return part, bool(hit.any())

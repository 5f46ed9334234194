"""Truncated backpropagation through time, and evaluation a chunk of steps at a time.

`tbptt=(k1, k2)` (Williams & Peng 1990): every k1 time steps the parameters are updated with the
gradient of the losses at those k1 new steps, backpropagated through the last k2 steps (k2 >= k1).
The state is carried forward across chunks, detached: the window's first state is a constant. Each
window is forwarded again from its first state with the current parameters (k2 / k1 forward work),
so memory is O(k2 * B * H) for any length T. `tbptt=k` means (k, k); k1 = k2 = T (or None) is full
BPTT, bitwise: one window, one segment, the very pass RNN.loss_and_grad runs (fastbptt.graph).

Every chunk's loss is divided by the divisor of the whole batch (T * B, or with lengths the number
of valid steps, for reduction="mean"), so the chunk losses of one pass add up to the batch's loss.
A chunk with no step that counts (target="last" before the last step, or steps past every
sequence's end) only carries the state: it has no update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ._checks import positive_int
from .calls import check_call
from .graph import Pass
from .metrics import Metric

if TYPE_CHECKING:
    from .model import RNN


class Chunk:
    """One update's worth of truncated BPTT, as `truncated_bptt` yields it.

    Attributes
    ----------
    start, stop : int
        The new steps [start, stop) whose losses this update carries.
    window_start : int
        The step the gradient is backpropagated from (``stop - k2``, at least 0).
    loss : float
        The chunk's loss, scaled by the whole batch's divisor, so that one pass's chunk losses add
        up to the sequence's loss.
    grads : dict of str to numpy.ndarray
        The gradient for every parameter, keyed like ``model.params``.
    seen, logits, targets, mask, picks
        The states the head saw, their logits when the recurrent kernel formed them (else None),
        their targets, which of them count (None: all) and, for target="last", which sequences end
        in the chunk.
    items : int
        Steps x sequences counted.
    divisor : float
        The batch's loss divisor (see the module docstring).
    state : tuple of numpy.ndarray
        The state at `stop`, in the caller's batch order.
    """

    __slots__ = ("start", "stop", "window_start", "loss", "grads", "seen", "logits", "targets",
                 "mask", "picks", "items", "divisor", "state")

    def __init__(self, **kw):
        for key, value in kw.items():
            setattr(self, key, value)

    def __repr__(self):
        return (f"Chunk(steps [{self.start}, {self.stop}), backprop from {self.window_start}, "
                f"loss={self.loss:.6g})")


def parse_tbptt(tbptt: int | tuple[int, int] | None, T: int) -> tuple[int, int]:
    """fit's `tbptt` setting as (k1, k2).

    Parameters
    ----------
    tbptt : int, (int, int) or None
        None (full BPTT), k (the same as (k, k)), or (k1, k2) with k2 >= k1.
    T : int
        The sequence length; both are capped at it.

    Returns
    -------
    (int, int)
        k1, the steps per update, and k2, the steps backpropagated through.
    """
    if tbptt is None:
        return T, T
    if isinstance(tbptt, (int, np.integer)) and not isinstance(tbptt, bool):
        k1 = k2 = positive_int("tbptt", tbptt)
    else:
        try:
            k1, k2 = tbptt
        except (TypeError, ValueError) as exc:
            raise ValueError(f"tbptt must be None, a positive int k, or a pair (k1, k2); "
                             f"got {tbptt!r}") from exc
        k1 = positive_int("tbptt k1", k1)
        k2 = positive_int("tbptt k2", k2)
        if k2 < k1:
            raise ValueError(f"tbptt=(k1, k2) needs k2 >= k1 (every k1 steps, backpropagate the "
                             f"last k2 steps); got k1={k1}, k2={k2}")
    return min(k1, T), min(k2, T)


def loss_divisor(model, call):
    """What reduction="mean" divides a (sorted) call's summed loss by: its valid steps x
    sequences, or its sequences for target="last"."""
    if model.target == "last":
        return call.B
    return call.T * call.B if call.lengths is None else int(call.lengths.sum())


def windows(m, call, k1, k2, keep_empty=False):
    """Yield a Chunk per update of one TBPTT pass over a sorted Call; reads m.params afresh for
    every window, so a caller that updates the parameters between chunks trains as fit does."""
    T = call.T
    L, bs = call.lengths, call.batch_sizes
    divisor = loss_divisor(m, call)
    if k1 >= T:
        run = Pass(m, m.training)
        if run.takes_whole(call):
            # one window over the whole call, by the route RNN.loss_and_grad takes: fit's updates
            # on short sequences (the 8-bit adder) feel the segments' bookkeeping
            yield _whole_chunk(run, call, divisor)
            return
    scale = 1.0 if m.reduction == "sum" else 1.0 / divisor
    state, w = call.state0, 0  # the detached state at the window's first step w
    for s in range(0, T, k1):
        e = min(s + k1, T)
        nxt = max(0, min(e + k1, T) - k2) if e < T else e  # where the next window starts
        cuts = [w] + ([nxt] if w < nxt < e else []) + [e]
        run = Pass(m, m.training)
        # forward the window in segments so the next window's first state is at a segment end
        segs, st = [], state
        carry = state if nxt == w else None
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            # logits only where the head looks: the segment holds steps of [s, e)
            segs.append(run.forward(call.X[a:b], st, a, L, bs, logits=b > s))
            st = run.final_state(segs[-1])
            if b == nxt:
                carry = st
        loss = run.loss(segs, call.Y, s, e, T, L, scale)
        if loss is not None:
            grads, _, _ = run.backward(segs, loss, L)
            segs = None  # free the window before the caller runs the next one
            yield Chunk(start=s, stop=e, window_start=w, loss=loss.value, grads=grads,
                        seen=loss.seen, logits=loss.logits, targets=loss.targets, mask=loss.mask,
                        picks=loss.picks, items=loss.items, divisor=divisor,
                        state=tuple(call.unsort(x) for x in st))
        elif keep_empty:  # another process's rows may have steps that count: this one takes part
            yield Chunk(start=s, stop=e, window_start=w, loss=0.0,
                        grads={k: np.zeros_like(v) for k, v in m.params.items()}, seen=None,
                        logits=None, targets=None, mask=None, picks=None, items=0,
                        divisor=divisor, state=tuple(call.unsort(x) for x in st))
        state, w = carry, nxt


def _whole_chunk(run, call, divisor):
    """The one Chunk of a call that Pass.takes_whole: every step counts, so the head's own divisor
    is `divisor`."""
    value, grad, head_grads, cell, H, cache, logits = run.whole_loss(call.X, call.Y, call.state0)
    grads, _ = run.whole_backward(call.X, cell, H, cache, grad, head_grads)
    return Chunk(start=0, stop=call.T, window_start=0, loss=value, grads=grads, seen=H[1:],
                 logits=logits, targets=call.Y, mask=None, picks=None, items=call.T * call.B,
                 divisor=divisor, state=cell.final_state(H, cache))


def truncated_bptt(model: RNN, X: ArrayLike, Y: ArrayLike, tbptt: int | tuple[int, int] | None,
                   h0: ArrayLike | None = None, c0: ArrayLike | None = None,
                   lengths: ArrayLike | None = None) -> Iterator[Chunk]:
    """The Chunks of one truncated-BPTT pass over (X, Y) from (h0, c0), updating nothing.

    Update ``model.params`` between chunks to train as fit does; leave them to get, per chunk,
    the gradient truncated BPTT would use.

    Parameters
    ----------
    model : RNN
        A trainable model (not the "step" cell).
    X, Y, h0, c0, lengths
        As for `RNN.loss_and_grad`.
    tbptt : int, (int, int) or None
        k, (k1, k2), or None (one chunk: full BPTT); see `parse_tbptt`.

    Yields
    ------
    Chunk
        One update's worth: its steps, loss, gradients and the state at its end. With `lengths`
        the batch is sorted by decreasing length inside, and the chunks' arrays are in that order.
    """
    check_trainable(model)
    call = check_call(model, X, Y, h0, c0, lengths).sort()
    k1, k2 = parse_tbptt(tbptt, call.T)
    return windows(model, call, k1, k2)


def check_trainable(model):
    if not model.layers.differentiable:
        raise ValueError(f"the {model.cell_name!r} cell is forward only: it cannot be trained by "
                         "gradient descent (set its weights by hand)")


def evaluate(model: RNN, X: ArrayLike, Y: ArrayLike, metric: str | Callable | None = None,
             chunk: int | None = None, h0: ArrayLike | None = None, c0: ArrayLike | None = None,
             lengths: ArrayLike | None = None) -> tuple[float, float | None]:
    """The loss (and a metric) over (X, Y), forwarding `chunk` steps at a time.

    Parameters
    ----------
    model : RNN
        The model (no dropout is applied).
    X, Y, h0, c0, lengths
        As for `RNN.loss_and_grad`; with `lengths`, over the valid steps.
    metric : str or callable, optional
        As for `fit`.
    chunk : int, optional
        Steps forwarded at a time (memory O(chunk)); None forwards the whole sequence at once.

    Returns
    -------
    loss : float
    metric : float or None
    """
    call = check_call(model, X, Y, h0, c0, lengths).sort()
    tally = None if metric is None else Metric(metric, model)
    chunk = call.T if chunk is None else positive_int("chunk", chunk)
    loss = evaluate_call(model, call, chunk, tally)
    return loss, None if tally is None else tally.value()


def evaluate_call(m, call, chunk, tally=None):
    """The loss of a sorted Call (and its count in `tally`), forwarded `chunk` steps at a time."""
    T = call.T
    scale = 1.0 if m.reduction == "sum" else 1.0 / loss_divisor(m, call)
    run = Pass(m)
    total, state = 0.0, call.state0
    for s in range(0, T, chunk):
        e = min(s + chunk, T)
        seg = run.forward(call.X[s:e], state, s, call.lengths, call.batch_sizes)
        state = run.final_state(seg)
        loss = run.loss([seg], call.Y, s, e, T, call.lengths, scale, for_grad=False)
        if loss is None:
            continue
        total += loss.value
        if tally is not None:
            tally.add_loss(m.head.forward(m.params, loss.seen, loss.logits), loss, call.B)
    if tally is not None:
        tally.end_batch()
    return total

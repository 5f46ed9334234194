"""The recurrent part of a model: `num_layers` layers of one cell type, each one or two directions.

Layer l > 0 reads the outputs of layer l - 1 (both directions concatenated), so dX of the kernel contract
flows down the stack in the backward pass. The reverse direction runs the same kernel over each sequence
reversed within its own length. Dropout (training only) is applied to the outputs of every layer but the
last.

Parameters of layer 0's forward direction keep the cell's contract names (U, W, b / Wx, Wh, b / ...);
the others are suffixed like PyTorch's: `_l{k}` for layer k, `_reverse` for the reverse direction
(`W_l1`, `Wh_l0_reverse`). Initial and final states are (B, H) for one layer and direction, else
(num_layers * num_directions, B, H), indexed l * num_directions + d as in PyTorch.

Variable lengths: the model sorts the batch by decreasing length, and the kernels advance only the
first `batch_sizes[t]` sequences at step t (the active batch shrinks as sequences end), so padded steps
cost nothing and contribute nothing.
"""

import numpy as np

from .cells import _Scratch, make_cell
from .heads import HeadGrad


def param_suffix(layer, direction):
    if layer == 0 and direction == 0:
        return ""
    return f"_l{layer}" + ("_reverse" if direction else "")


class Trace:
    """What the backward pass needs from one forward pass of the stack."""

    __slots__ = ("layers", "masks", "lengths", "batch_sizes", "reverse_index", "logits")

    def __init__(self, lengths, batch_sizes, reverse_index):
        self.layers = []   # per (layer, direction): (X fed to it, its H, its cell cache)
        self.masks = []    # per layer below the top: dropout mask (scaled) or None
        self.lengths = lengths
        self.batch_sizes = batch_sizes
        self.reverse_index = reverse_index
        self.logits = None  # (T, B, O) from the top layer's kernel when asked and it could


class Stack:
    """num_layers x num_directions cells; quacks like a single Cell for the model and training loop."""

    def __init__(self, cell, input_size, hidden_size, num_layers=1, bidirectional=False, dropout=0.0):
        self.cell_name = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.dropout = dropout
        self.cells = []
        # the logits arrays handed out again once nobody holds them (as the cells' states are)
        self._scratch = _Scratch(keep=4)
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else hidden_size * self.num_directions
            self.cells.append([make_cell(cell, n_in, hidden_size)
                               for _ in range(self.num_directions)])
        self._kernels = {}  # backend -> kernel module
        # per layer: whether its cells take the head's gradient unformed, and fill its dV too
        self._takes = [all(c.takes_head_grad for c in row) for row in self.cells]
        self._fills = [all(c.takes_head_grad and c.fills_head_weight_grad for c in row)
                       for row in self.cells]
        first = self.cells[0][0]
        self.family = first.family
        self.state_names = first.state_names
        self.differentiable = first.differentiable
        self.gates = first.gates

    def __getstate__(self):  # kernel modules do not pickle: looked up again after a copy
        return {**self.__dict__, "_kernels": {}}

    @property
    def single(self):
        """One layer, one direction: the stack is exactly its cell (states (B, H))."""
        return self.num_layers * self.num_directions == 1

    @property
    def output_size(self):
        return self.hidden_size * self.num_directions

    def kernels(self, backend):
        kern = self._kernels.get(backend)
        if kern is None:
            kern = self._kernels[backend] = self.cells[0][0].kernels(backend)
        return kern

    def param_shapes(self):
        shapes = {}
        for layer, row in enumerate(self.cells):
            for direction, cell in enumerate(row):
                suffix = param_suffix(layer, direction)
                shapes.update({name + suffix: shape for name, shape in cell.param_shapes().items()})
        return shapes

    def _view(self, p, layer, direction):
        """The parameters of one cell under the cell's own names."""
        if layer == 0 and direction == 0:
            return p  # its names carry no suffix
        suffix = param_suffix(layer, direction)
        return {name: p[name + suffix] for name in self.cells[layer][direction].param_shapes()}

    def _state(self, states, k):
        return states if self.single else tuple(s[k] for s in states)

    # -- time reversal within each sequence's length ---------------------------------------------------

    @staticmethod
    def reverse_index(T, lengths):
        """idx[t, b]: the step that lands at t when sequence b is reversed within its length."""
        t = np.arange(T)[:, None]
        return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)

    @staticmethod
    def _reverse(a, idx):
        if idx is None:
            return np.ascontiguousarray(a[::-1])
        # token ids (T, B) have no feature axis
        return np.ascontiguousarray(np.take_along_axis(a, idx if a.ndim == 2 else idx[:, :, None],
                                                       axis=0))

    # -- forward / backward ------------------------------------------------------------------------------

    def forward(self, kern, p, X, state0, n_threads, lengths=None, batch_sizes=None, training=False,
                rng=None, head=None):
        """Run every layer; return (Hout (T+1, B, H * D) with the top layer's outputs, Trace).

        head=(V, c), a linear output layer: a one-direction top layer whose cell forms the logits
        in its kernel's loop (Cell.logits_ok) leaves H[t + 1] V^T + c in trace.logits (zero at
        padded steps); otherwise trace.logits stays None."""
        T, B = X.shape[:2]
        dtype = p["V"].dtype if "V" in p else next(iter(p.values())).dtype
        needs_reverse = self.num_directions == 2
        rev = self.reverse_index(T, lengths) if needs_reverse and lengths is not None else None
        trace = Trace(lengths, batch_sizes, rev)
        inp = X
        top = self.num_layers - 1
        for layer, row in enumerate(self.cells):
            for direction, cell in enumerate(row):
                k = layer * self.num_directions + direction
                Xd = inp if direction == 0 else self._reverse(inp, rev)
                kw = {} if batch_sizes is None else {"batch_sizes": batch_sizes}
                if (head is not None and layer == top and self.num_directions == 1
                        and cell.logits_ok(kern, Xd)):
                    V, c = head
                    # padded steps are never written by the kernels: zero pages cost nothing
                    alloc = self._scratch.empty if batch_sizes is None else np.zeros
                    trace.logits = alloc((T, B, V.shape[0]), dtype=dtype)
                    kw["logits"] = (V, c, trace.logits)
                H, cache = cell.forward(kern, self._view(p, layer, direction), Xd,
                                        self._state(state0, k), n_threads, **kw)
                trace.layers.append((Xd, H, cache))
            if self.single:
                return H, trace
            if layer == top and self.num_directions == 1:
                # the top layer's states are the output as they are (row 0 its initial state)
                return H, trace
            out = self._layer_output(trace, layer)
            if layer < self.num_layers - 1:
                mask = None
                if training and self.dropout > 0:
                    keep = 1.0 - self.dropout
                    mask = (rng.random(out.shape) < keep).astype(out.dtype) / out.dtype.type(keep)
                    out = out * mask
                trace.masks.append(mask)
                inp = out
        Hout = np.empty((T + 1, B, self.output_size), dtype=dtype)
        Hout[1:] = out
        # row 0 stands for the top layer's initial state, never seen by the head
        Hout[0] = np.concatenate([trace.layers[-self.num_directions + d][1][0]
                                  for d in range(self.num_directions)], axis=-1)
        return Hout, trace

    def _layer_output(self, trace, layer):
        """Outputs (T, B, H * D) of one layer, both directions back in forward time."""
        D = self.num_directions
        parts = []
        for direction in range(D):
            H = trace.layers[layer * D + direction][1][1:]
            parts.append(H if direction == 0 else self._reverse(H, trace.reverse_index))
        return parts[0] if D == 1 else np.concatenate(parts, axis=-1)

    def final_state(self, Hout, trace):
        """The state after each sequence's last valid step, in the user's layout."""
        if self.single:
            _, H, cache = trace.layers[0]
            return _final(self.cells[0][0], H, cache, trace.lengths)
        finals = []
        for (_, H, cache), (layer, direction) in zip(trace.layers, self._order(), strict=True):
            cell = self.cells[layer][direction]
            finals.append(_final(cell, H, cache, trace.lengths))
        return tuple(np.stack([f[i] for f in finals]) for i in range(len(self.state_names)))

    def _order(self):
        return [(layer, d) for layer in range(self.num_layers) for d in range(self.num_directions)]

    def backward(self, kern, p, X, Hout, trace, dHout, dstate_T, n_threads, need_dX=False):
        """Gradients of every cell's parameters, of the initial states, and dX (or None).

        dHout is an ndarray (T, B, H * D) or a HeadGrad: the top layer's cells get it as it is
        (each direction its columns of V) when they take one, the array otherwise; the layers below
        get arrays. A HeadGrad's dV, when given, is filled: by the top layer's cells (each direction
        its columns) when they fill one, here from the layer's outputs otherwise."""
        if self.single and (not isinstance(dHout, HeadGrad) or self._fills[0]):
            # the loop below for one cell handed the gradient as it is (the lean path of short
            # calls): its parameters and states carry no suffix and no layer index
            Xd, H, cache = trace.layers[0]
            if not isinstance(dHout, HeadGrad):
                dHout = np.ascontiguousarray(dHout)
            return self.cells[0][0].backward(kern, p, Xd, H, cache, dHout, dstate_T, n_threads,
                                             need_dX, trace.batch_sizes)
        D = self.num_directions
        grads, dstate0 = {}, [[None] * (self.num_layers * D) for _ in self.state_names]
        dOut = dHout
        dX = None
        for layer in range(self.num_layers - 1, -1, -1):
            dInp = None
            row = self.cells[layer]
            if isinstance(dOut, HeadGrad) and dOut.dV is not None and not self._fills[layer]:
                dOut.weight_grad_from(self._layer_output(trace, layer))
                dOut = HeadGrad(dOut.dO, dOut.V)
            if isinstance(dOut, HeadGrad) and not self._takes[layer]:
                dOut = row[0].dense_grad(dOut)
            for direction in range(D):
                k = layer * D + direction
                g, ds0, dXd = self._backward_cell(kern, p, trace, layer, direction, dOut,
                                                  self._state(dstate_T, k), n_threads,
                                                  layer > 0 or need_dX)
                suffix = param_suffix(layer, direction)
                grads.update({name + suffix: v for name, v in g.items()})
                for i, v in enumerate(ds0):
                    dstate0[i][k] = v
                if dXd is not None:
                    dInp = dXd if dInp is None else dInp + dXd
            if layer > 0:
                mask = trace.masks[layer - 1]
                dOut = dInp if mask is None else dInp * mask
            else:
                dX = dInp
        if self.single:
            return grads, tuple(d[0] for d in dstate0), dX
        return grads, tuple(np.stack(d) for d in dstate0), dX


    def _backward_cell(self, kern, p, trace, layer, direction, dOut, dstate_T, n_threads, below):
        """One cell's backward pass given the gradient dOut at its layer's outputs (an array, or
        a HeadGrad if the cell takes one): its grads, dstate0 and dX in forward time (or None).
        A HeadGrad's dV gets this direction's columns."""
        D, n = self.num_directions, self.hidden_size
        Xd, H, cache = trace.layers[layer * D + direction]
        rev = trace.reverse_index
        cols = slice(direction * n, (direction + 1) * n)
        if isinstance(dOut, HeadGrad):
            dH = dOut
            if D == 2:
                part = dOut.columns(cols.start, cols.stop)
                dO = part.dO if direction == 0 else self._reverse(part.dO, rev)
                # this direction's columns of dV, filled in place below
                dH = HeadGrad(dO, part.V, None if dOut.dV is None else np.empty_like(part.V))
        else:
            dH = dOut if D == 1 else dOut[..., cols]
            dH = np.ascontiguousarray(dH) if direction == 0 else self._reverse(dH, rev)
        g, ds0, dX = self.cells[layer][direction].backward(
            kern, self._view(p, layer, direction), Xd, H, cache, dH, dstate_T, n_threads, below,
            trace.batch_sizes)
        if isinstance(dH, HeadGrad) and dH.dV is not None and dH.dV is not dOut.dV:
            dOut.dV[:, cols] = dH.dV
        if dX is not None and direction == 1:
            dX = self._reverse(dX, rev)
        return g, ds0, dX

def _final(cell, H, cache, lengths):
    """One cell's state after each sequence's last valid step."""
    if lengths is None:
        return cell.final_state(H, cache)
    rows = np.arange(H.shape[1])
    out = [H[lengths, rows]]
    if "c" in cell.state_names:
        out.append(cache[0][lengths, rows])
    return tuple(out)

"""Output layers and losses, applied to every time step at once (time-parallel NumPy).

The losses, per step, summed over the step's output units o (y the target, p the output):

- "mse": 0.5 * sum_o (p_o - y_o)^2, on any output (with O outputs, O/2 times PyTorch's
  ``nn.MSELoss()``);
- "bce": sum_o -[y_o log p_o + (1 - y_o) log(1 - p_o)], on a sigmoid output, from the logits;
- "ce": -log p_class, on a softmax output; targets are class ids or one-hot rows.

reduction="mean" divides the sum over steps and sequences by the number of steps that count (T * B,
the sum of the lengths of a padded batch, or B with target="last"); "sum" does not divide.

A head maps the states Hs (T', B, H) the loss looks at (all steps, or the last one) to outputs, and
returns the loss with its gradient at Hs and at its own parameters V (O, H) and c (O,). The gradient
at Hs can be handed over unformed, as a HeadGrad (dO, V): the recurrent kernels that take it form
dO_t V inside their time loop instead of reading a (T', B, H) array back.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from scipy.special import expit, log_softmax, softmax

from ._checks import all_finite, all_within

try:  # the bce head's loss and gradients in one compiled pass, when the extension is built: the
    # same operations as the NumPy below, so the same bits
    from ._build import bce_loss_grad as _compiled_bce
except ImportError:
    _compiled_bce = None

_sum = np.add.reduce

OUTPUTS = ("linear", "sigmoid", "softmax", None)
LOSSES = ("mse", "bce", "ce")
REDUCTIONS = ("mean", "sum")
TARGETS = ("all", "last")

# loss -> outputs it is defined on (bce and ce are computed from the logits, stably)
_VALID = {
    "mse": ("linear", "sigmoid", "softmax", None),
    "bce": ("sigmoid",),
    "ce": ("softmax",),
}


class HeadGrad(NamedTuple):
    """The loss gradient reaching the states, dH = dO @ V, not yet formed.

    Every output layer here is o = V h + c followed by an activation and a loss, so the gradient at
    the states is the gradient at the logits o times V: dO (T, B, O), scaled by the reduction and
    zero where a step does not count, and V (O, H). O is small, so dO costs little to build and to
    pass on; `dense()` forms the (T, B, H) array for whoever needs it.

    dV, when not None, is an (O, H) array the consumer fills with the head's weight gradient
    sum_t dO_t^T h_t, h_t being the states the head read: the backward pass has them in cache
    anyway (see Stack.backward and Cell.fill_head_weight_grad).
    """

    dO: np.ndarray
    V: np.ndarray
    dV: np.ndarray | None = None

    def dense(self) -> np.ndarray:
        """dH (T, B, H) = dO @ V."""
        T, B, O = self.dO.shape
        dO2 = self.dO.reshape(T * B, O)
        # one output unit: a broadcast product writes dH in one pass, a K=1 matmul is slower
        dH = dO2 * self.V if O == 1 else dO2 @ self.V
        return dH.reshape(T, B, self.V.shape[1])

    def rows(self, t0: int, t1: int, b: int) -> HeadGrad:
        """Steps t0..t1-1, batch rows [0, b), C-contiguous (dV is left to the caller)."""
        return HeadGrad(np.ascontiguousarray(self.dO[t0:t1, :b]), self.V)

    def columns(self, j0: int, j1: int) -> HeadGrad:
        """The gradient reaching units j0..j1-1 of the states (one direction of a bidirectional
        layer): the same dO with the columns of V (dV is left to the caller)."""
        return HeadGrad(self.dO, np.ascontiguousarray(self.V[:, j0:j1]))

    def weight_grad_from(self, H: np.ndarray) -> None:
        """dV = sum_t dO_t^T H[t] over (T, B, H) states H, written into self.dV."""
        T, B, O = self.dO.shape
        np.matmul(self.dO.reshape(T * B, O).T, H.reshape(T * B, -1), out=self.dV)


def dense_grad(dH: np.ndarray | HeadGrad) -> np.ndarray:
    """dH as a (T, B, H) ndarray, formed from a HeadGrad when it is one."""
    return dH.dense() if isinstance(dH, HeadGrad) else dH


_WARNED = set()  # the warnings given once per process


def _choice(kind, value, valid):
    if value not in valid:
        names = ", ".join(repr(v) for v in valid)
        raise ValueError(f"unknown {kind} {value!r}; expected one of {names}")
    return value


class Head:
    """Output layer + loss + reduction over the states the loss sees.

    Parameters
    ----------
    output : {"linear", "sigmoid", "softmax", None}
        The activation after o = V h + c; None: no layer, the hidden state is the output.
    loss : {"mse", "bce", "ce"}
        "bce" needs a sigmoid output, "ce" a softmax one.
    reduction : {"mean", "sum"}
    target : {"all", "last"}
        The loss on every step, or on the last step only.
    hidden_size : int
        Width of the states the head reads (H times the directions).
    output_size : int or None
        O (ignored without an output layer).
    """

    def __init__(self, output: str | None, loss: str, reduction: str, target: str,
                 hidden_size: int, output_size: int | None):
        self.output = _choice("output", output, OUTPUTS)
        self.loss = _choice("loss", loss, LOSSES)
        self.reduction = _choice("reduction", reduction, REDUCTIONS)
        self.target = _choice("target", target, TARGETS)
        if output not in _VALID[loss]:
            ok = ", ".join(repr(o) for o in _VALID[loss])
            raise ValueError(f"loss={loss!r} needs output in ({ok}), got output={output!r}")
        self.hidden_size = hidden_size
        self.output_size = hidden_size if output is None else output_size

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """{"V": (O, H), "c": (O,)}, or {} without an output layer."""
        if self.output is None:
            return {}
        return {"V": (self.output_size, self.hidden_size), "c": (self.output_size,)}

    # -- targets ---------------------------------------------------------------------------------------

    def prepare_targets(self, Y, T: int, B: int, single: bool, dtype) -> np.ndarray:
        """Validate Y and return it as (T', B, O) floats, or (T', B) int64 class ids for ce."""
        steps = T if self.target == "all" else 1
        O = self.output_size
        if Y is None:
            raise TypeError("Y is None; the loss needs targets")
        if (not single and type(Y) is np.ndarray and Y.dtype == dtype
                and Y.shape == (steps, B, O) and Y.flags.c_contiguous):
            # already what the loss reads: only its values are left to check
            return self._checked_values(Y)
        try:
            Y = np.asarray(Y)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"Y could not be read as an array: {exc}") from exc
        if Y.dtype == object or Y.dtype.kind not in "fiub":
            raise TypeError(f"Y has dtype {Y.dtype}; expected real numbers")
        # the shapes a user passes, before the batch axis of a single sequence is added back
        full = (T, B) if not single else (T,)
        if self.target == "last":
            full = (B,) if not single else ()
        if self.loss == "ce" and Y.shape == full:
            return self._class_ids(Y, steps, B)
        expected = full + (O,)
        shape = Y.shape
        if self.target == "last" and shape == (1,) + expected:
            shape = expected
        if shape != expected:
            hint = f" or class ids of shape {full}" if self.loss == "ce" else ""
            raise ValueError(f"Y has shape {Y.shape}; expected {expected}{hint} "
                             f"(target={self.target!r}, output size {O})")
        return self._checked_values(np.ascontiguousarray(Y, dtype=dtype).reshape((steps, B, O)))

    def _checked_values(self, Yf):
        """Yf (T', B, O) after its values are checked: finite, and in range for the loss."""
        if self.loss == "bce" and all_within(Yf, 0, 1):
            return Yf  # targets within [0, 1] are finite too
        if not all_finite(Yf):
            raise ValueError("Y contains NaN or Inf")
        self._check_target_values(Yf)
        return Yf

    def _class_ids(self, Y, steps, B):
        """Class ids (T', B) int64 from integers, or from floats that are whole numbers (as
        np.genfromtxt and pandas give them); the range is checked before any cast, so an
        out-of-range id is shown as given."""
        O = self.output_size
        if Y.dtype.kind == "f":
            if not np.isfinite(Y).all() or np.any(Y != np.round(Y)):
                raise TypeError(f"Y has the shape of class ids {Y.shape} but dtype {Y.dtype} with "
                                f"values that are not whole numbers; class ids must be integers "
                                f"in [0, {O})")
        elif Y.dtype.kind == "b":
            raise TypeError(f"Y has the shape of class ids {Y.shape} but dtype bool; class ids "
                            f"must be integers in [0, {O})")
        if Y.size and (Y.min() < 0 or Y.max() >= O):
            lo, hi = (int(v) if Y.dtype.kind in "iu" else float(v) for v in (Y.min(), Y.max()))
            raise ValueError(f"class ids in Y must lie in [0, {O}); got range [{lo}, {hi}]")
        return Y.astype(np.int64).reshape((steps, B))

    def _check_target_values(self, Yf):
        """bce targets are probabilities; ce's per-class targets are non-negative weights, warned
        about (once) when a step's do not sum to 1 (all-zero steps, as padding, are let through)."""
        if self.loss == "bce" and Yf.size and (Yf.min() < 0 or Yf.max() > 1):
            raise ValueError(f"bce targets in Y must lie in [0, 1]; got range "
                             f"[{Yf.min():g}, {Yf.max():g}]")
        if self.loss == "ce" and Yf.size:
            if Yf.min() < 0:
                raise ValueError(f"ce targets in Y (one value per class) must be non-negative; got "
                                 f"a minimum of {Yf.min():g}")
            sums = Yf.sum(axis=-1, dtype=np.float64)
            tol = 1e-6 if Yf.dtype == np.float64 else 1e-4
            off = (np.abs(sums - 1) > tol) & (sums != 0)
            if off.any() and "ce sums" not in _WARNED:
                _WARNED.add("ce sums")
                warnings.warn(f"ce targets in Y do not sum to 1 over the classes at {int(off.sum())} "
                              f"steps (e.g. {sums[off].flat[0]:g}); each step's loss is weighted "
                              f"by its sum (warned once)", RuntimeWarning, stacklevel=4)

    # -- forward / loss --------------------------------------------------------------------------------

    def logits(self, p, Hs: np.ndarray) -> np.ndarray:
        """o = Hs V^T + c, (T', B, O)."""
        T, B, n = Hs.shape
        return (Hs.reshape(T * B, n) @ p["V"].T + p["c"]).reshape(T, B, -1)

    def forward(self, p, Hs: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """Outputs for the states Hs (T', B, H); `logits` (T', B, O), when given, are the states'
        Hs V^T + c already formed (by the recurrent kernel), and Hs is not read."""
        if self.output is None:
            return Hs.copy()
        o = self.logits(p, Hs) if logits is None else logits
        if self.output == "sigmoid":
            return expit(o)
        if self.output == "softmax":
            return softmax(o, axis=-1)
        return o

    def loss_and_grad(self, p, Hs, Y, scale=None, mask=None, unformed=False,
                      defer_weight_grad=False, logits=None):
        """Return (loss, dHs, grads of V and c). `scale` overrides the reduction's divisor.

        `mask` (T', B) marks the steps that count (variable lengths): the others add nothing, get a
        zero gradient, and the mean divides by the number of steps that count. With `unformed`,
        dHs is a HeadGrad (dO, V) when the head has an output layer (an ndarray without one); with
        `defer_weight_grad` as well, grads["V"] is the HeadGrad's dV, zero until the backward pass
        that takes the HeadGrad fills it (beside dW, while the states are in cache). `logits`
        (T', B, O), when given, are Hs V^T + c already formed; with them and a deferred dV the
        states Hs are not read at all (they may be None).
        """
        if mask is not None:
            return self._masked(p, Hs, Y, scale, mask, unformed, defer_weight_grad, logits)
        if self.output is None:
            T, B, n = Hs.shape
            if scale is None:
                scale = 1.0 / (T * B) if self.reduction == "mean" else 1.0
            diff = Hs - Y
            loss = 0.5 * _sum(np.square(diff), None, np.float64)
            return loss * scale, diff * Hs.dtype.type(scale), {}
        o = self.logits(p, Hs) if logits is None else logits
        T, B, O = o.shape
        if scale is None:
            scale = 1.0 / (T * B) if self.reduction == "mean" else 1.0
        loss = None
        if self.loss == "bce" and _compiled_bce is not None:
            # one pass for what follows (short calls, the 8-bit adder, feel every ufunc call)
            dO, dc = np.empty(o.shape, o.dtype), np.empty(O, o.dtype)
            loss = _compiled_bce(o, Y, scale, dO, dc)
        if loss is None:
            loss, dO = self._loss_at_logits(o, Y)
            if scale != 1:
                dO *= o.dtype.type(scale)  # _loss_at_logits made dO a fresh array
            # over time first (rows of B * O contiguous values), then the batch: summing the
            # (T * B, O) rows directly runs a strided loop of O values, ten times slower
            # one sequence: the batch sum of one row is that row
            dc = _sum(dO, 0)[0] if B == 1 else _sum(_sum(dO, 0), 0)
        if unformed and defer_weight_grad:
            grads = {"V": np.zeros(p["V"].shape, p["V"].dtype), "c": dc}
            return float(loss) * scale, HeadGrad(dO, p["V"], grads["V"]), grads
        grads = {"V": dO.reshape(T * B, -1).T @ Hs.reshape(T * B, -1), "c": dc}
        dHs = HeadGrad(dO, p["V"])
        return float(loss) * scale, dHs if unformed else dHs.dense(), grads

    def _masked(self, p, Hs, Y, scale, mask, unformed, defer_weight_grad, logits):
        """loss_and_grad over the steps `mask` marks, as one step of a batch of those steps."""
        idx = np.nonzero(mask)
        reads_states = self.output is None or logits is None or not (unformed and defer_weight_grad)
        loss, dvalid, grads = self.loss_and_grad(
            p, Hs[idx][None] if reads_states else None, Y[idx][None], scale,
            unformed=unformed, defer_weight_grad=defer_weight_grad,
            logits=None if logits is None else logits[idx][None])
        if isinstance(dvalid, HeadGrad):
            dO = np.zeros(mask.shape + (dvalid.dO.shape[-1],), dtype=dvalid.dO.dtype)
            dO[idx] = dvalid.dO[0]
            return loss, HeadGrad(dO, dvalid.V, dvalid.dV), grads
        dHs = np.zeros_like(Hs)
        dHs[idx] = dvalid[0]
        return loss, dHs, grads

    def _loss_at_logits(self, o, Y):
        """The summed loss (float64) and its gradient dO (a fresh array) at the logits o."""
        if self.output == "linear":
            diff = o - Y
            return 0.5 * _sum(np.square(diff), None, np.float64), diff
        if self.output == "sigmoid":
            if self.loss == "bce":
                # log(1 + e^o) - y o, written with logaddexp so large |o| neither overflows nor cancels
                if Y.dtype != o.dtype or Y.shape != o.shape:
                    return _sum(np.logaddexp(0, o) - Y * o, None, np.float64), expit(o) - Y
                # in place, dO's buffer holding y o first (cython/_build.pyx's bce_loss_grad
                # makes these operations, and the sums after, in one pass)
                terms = np.logaddexp(0.0, o)
                dO = np.multiply(Y, o)
                terms -= dO
                expit(o, out=dO)
                dO -= Y
                return _sum(terms, None, np.float64), dO
            s = expit(o)
            diff = s - Y
            return 0.5 * _sum(np.square(diff), None, np.float64), diff * s * (1 - s)
        logp = log_softmax(o, axis=-1)
        s = np.exp(logp)
        if self.loss != "ce":
            g = s - Y
            return 0.5 * _sum(np.square(g), None, np.float64), s * (g - np.sum(g * s, axis=-1,
                                                                              keepdims=True))
        if Y.ndim == 2:  # class ids
            picked = np.take_along_axis(logp, Y[..., None], axis=-1)
            np.put_along_axis(s, Y[..., None], np.take_along_axis(s, Y[..., None], -1) - 1, axis=-1)
            return -_sum(picked, None, np.float64), s
        return -_sum(Y * logp, None, np.float64), s * Y.sum(axis=-1, keepdims=True) - Y

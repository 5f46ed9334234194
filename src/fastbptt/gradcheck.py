"""Gradients against central finite differences."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .model import RNN


class GradcheckResult(dict):
    """Worst relative error per parameter (a dict), and in `kinks` how many entries of each were
    left out because their finite difference straddled a kink of the relu (NaN for a parameter
    whose every checked entry was left out)."""

    def __init__(self, errors, kinks):
        super().__init__(errors)
        self.kinks = kinks


def gradcheck(model: RNN, X, Y, h0=None, c0=None, lengths=None, eps: float = 1e-4,
              max_entries: int | None = None, seed: int = 0) -> dict[str, float]:
    """Worst relative error of ``model.loss_and_grad`` against central differences, per parameter.

    Runs in float64 on a copy of the model (the model itself is not touched), in evaluation mode so
    that dropout does not redraw its masks between evaluations. For each parameter (and h0 / c0
    when given) the error is ``max_i |a_i - n_i| / max(max_i |a_i|, max_i |n_i|)`` (a: analytic,
    n: numeric), the worst entry measured against the scale of that parameter's gradient (at least
    1e-3 of the largest parameter's gradient scale, so a vanishing gradient is not judged by its
    rounding noise).

    The difference is the fourth-order central stencil
    ``(f(x-2e) - 8 f(x-e) + 8 f(x+e) - f(x+2e)) / 12e``: with e = 1e-4 its truncation (~e^4) and
    rounding (~1e-16 / e) errors both stay near 1e-12, where the plain two-point stencil cannot get
    below ~1e-8 at any e.

    relu has a kink at 0, where no difference stencil measures the derivative: an entry whose
    stencil puts a pre-activation across 0 is an artefact of the check, not an error of the
    gradient. For relu models such entries are detected (the one-sided slopes left and right of x
    disagree) and left out.

    Parameters
    ----------
    model : RNN
        The model whose gradients are checked.
    X, Y : array_like
        Inputs and targets, as ``model.loss_and_grad`` takes them. Keep them small: each entry of
        every parameter costs four evaluations of the loss.
    h0, c0 : array_like, optional
        Initial states; when given, their gradients are checked too.
    lengths : array_like of int, optional
        Sequence lengths of a right-padded batch.
    eps : float, default 1e-4
        The finite-difference step.
    max_entries : int, optional
        Check a seeded random subset of at most this many entries of each parameter.
    seed : int, default 0
        Seed of that subset.

    Returns
    -------
    dict of str to float
        The worst relative error per parameter name (and "h0", "c0"); below about 1e-7 the
        gradient is right. Its ``kinks`` attribute counts, per name, the entries left out at a
        relu kink (the error is NaN where every checked entry was).
    """
    m = model.copy(dtype=np.float64).eval()
    # token ids stay ids; dense inputs are checked in float64
    X = np.asarray(X) if m.input == "tokens" else np.asarray(X, dtype=np.float64)
    states = {k: None if v is None else np.array(v, dtype=np.float64) for k, v in
              (("h0", h0), ("c0", c0))}
    states["lengths"] = lengths
    _, grads = m.loss_and_grad(X, Y, **states)
    rng = np.random.default_rng(seed)
    errors, found, kinks = {}, {}, {}
    # relu: the loss at x too, to tell the kinks (see _differences)
    f0 = m.evaluate(X, Y, **states) if m.cell_name == "relu" else None
    targets = dict(m.params)
    targets.update({k: v for k, v in states.items() if v is not None and k != "lengths"})
    for name, value in targets.items():
        flat = value.reshape(-1)
        idx = np.arange(flat.size)
        if max_entries is not None and flat.size > max_entries:
            idx = rng.choice(flat.size, size=max_entries, replace=False)
        analytic = np.asarray(grads[name]).reshape(-1)[idx]
        numeric, kinked = _differences(m, X, Y, states, flat, idx, eps, f0)
        kinks[name] = int(kinked.sum())
        if kinked.all() and len(idx):
            found[name] = (np.nan, 0.0)
            continue
        analytic, numeric = analytic[~kinked], numeric[~kinked]
        found[name] = (np.abs(analytic - numeric).max(initial=0.0),
                       max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0)))
    # a parameter whose gradient all but vanishes (a dead ReLU unit) is measured against a floor of
    # 1e-3 of the largest gradient, not against its own rounding noise
    floor = 1e-3 * max((scale for _, scale in found.values()), default=0.0)
    for name, (err, scale) in found.items():
        denom = max(scale, floor)
        errors[name] = float(err) if np.isnan(err) else 0.0 if denom == 0 else float(err / denom)
    return GradcheckResult(errors, kinks)


def _differences(m, X, Y, states, flat, idx, eps, f0):
    """The fourth-order central difference of the loss for entries `idx` of the parameter array
    `flat` (restored after each), and, when the loss at x, f0, is given (relu), which entries sit
    at a kink."""
    numeric = np.empty(len(idx))
    kinked = np.zeros(len(idx), dtype=bool)
    for k, i in enumerate(idx):
        old = flat[i]
        f = {}
        for step in (-2, -1, 1, 2):
            flat[i] = old + step * eps
            f[step] = m.evaluate(X, Y, **states)
        flat[i] = old
        numeric[k] = (f[-2] - 8 * f[-1] + 8 * f[1] - f[2]) / (12 * eps)
        if f0 is not None:
            # second-order one-sided slopes: equal to ~e^2 on a smooth stretch
            left = (3 * f0 - 4 * f[-1] + f[-2]) / (2 * eps)
            right = (-3 * f0 + 4 * f[1] - f[2]) / (2 * eps)
            kinked[k] = abs(left - right) > 1e-6 * max(abs(left), abs(right), 1e-3)
    return numeric, kinked

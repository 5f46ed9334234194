"""Generation from a trained next-symbol model, one step at a time, carrying the state.

A model trained to predict the next symbol of a sequence (softmax output over a vocabulary of V
symbols, inputs that are token ids (input="tokens") or one-hot rows of width V, loss on every step)
generates by feeding each drawn symbol back as the next input. Each step is one call ``y, state =
model.forward(x_t, h0=h, c0=c)`` on a single time step: the state it returns is the state the next
call starts from, so the whole text is never run again.
"""

from __future__ import annotations

import numpy as np

from ._checks import nonneg_float

__all__ = ["sample"]


def _check_model(model) -> None:
    if model.output != "softmax":
        raise ValueError(f"sample needs a model with output='softmax' (a distribution over the next "
                         f"symbol); this model's output is {model.output!r}")
    if model.target != "all":
        raise ValueError("sample needs a model trained with target='all' (a prediction at every "
                         f"step); this model's target is {model.target!r}")
    if model.bidirectional:
        raise ValueError("sample cannot run a bidirectional model step by step: its backward "
                         "direction needs the whole sequence")
    if model.input_size != model.output_size:
        raise ValueError(f"sample feeds each drawn symbol back as the next input, so input_size "
                         f"({model.input_size}) must equal output_size ({model.output_size})")


def _symbols(prime, vocabulary: int) -> np.ndarray:
    ids = np.asarray(prime)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"prime must be a non-empty 1-D sequence of symbol ids, got shape "
                         f"{ids.shape}")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"prime must hold integer symbol ids, got dtype {ids.dtype}")
    bad = np.flatnonzero((ids < 0) | (ids >= vocabulary))
    if bad.size:
        raise ValueError(f"prime[{bad[0]}] = {ids[bad[0]]} is not a symbol id: ids must lie in "
                         f"[0, {vocabulary})")
    return ids.astype(np.int64)


def sample(model, prime, steps: int, *, temperature: float = 1.0, seed=None, h0=None, c0=None,
           return_state: bool = False):
    """Draw `steps` symbols from a next-symbol model, after reading `prime`.

    Parameters
    ----------
    model : RNN
        Trained with ``output="softmax"``, ``target="all"``, token inputs (``input="tokens"``) or
        one-hot inputs, with ``input_size == output_size`` (the vocabulary); not bidirectional.
    prime : array_like of int, shape (P,)
        Symbol ids read first (P >= 1); the prediction after the last of them gives the first
        symbol drawn.
    steps : int
        How many symbols to draw (>= 0).
    temperature : float, default 1.0
        The distribution is ``p ** (1 / temperature)``, renormalised: below 1 it is sharper, above
        1 flatter; 0 takes the most likely symbol every time.
    seed : int or numpy.random.Generator, optional
        Source of the draws.
    h0, c0 : ndarray, optional
        State to start from, shaped as ``model.forward`` returns it for one sequence: (H,), or
        (num_layers, H) for a stacked model. Default zeros.
    return_state : bool, default False
        Also return the state after the last symbol drawn, to continue later.

    Returns
    -------
    ids : ndarray of int64, shape (steps,)
        The symbols drawn.
    state : tuple of ndarray
        Only with ``return_state=True``: ``(h,)``, or ``(h, c)`` for the lstm cell.

    Examples
    --------
    >>> import numpy as np, fastbptt as fb
    >>> m = fb.RNN(4, 8, 4, output="softmax", loss="ce", seed=0)
    >>> fb.sample(m, [0, 1], 5, temperature=0.5, seed=0).shape
    (5,)
    """
    _check_model(model)
    V = model.input_size
    ids = _symbols(prime, V)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    temperature = nonneg_float("temperature", temperature)
    rng = np.random.default_rng(seed)
    # a token model reads the ids themselves, a dense one their one-hot rows
    encode = (lambda x: x) if model.input == "tokens" else np.eye(V, dtype=model.dtype).__getitem__

    probs, state = model.forward(encode(ids), h0=h0, c0=c0)  # one sequence: (P, V)
    p = probs[-1]
    out = np.empty(int(steps), dtype=np.int64)
    for t in range(int(steps)):
        out[t] = _draw(p, temperature, rng)
        # one step, from the state the previous call left: (1, V) in, (1, V) and the state out
        probs, state = model.forward(encode(out[t : t + 1]), h0=state[0],
                                     c0=state[1] if len(state) > 1 else None)
        p = probs[0]
    return (out, state) if return_state else out


def _draw(p: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One id from probabilities p, sharpened or flattened by the temperature."""
    if temperature == 0:
        return int(np.argmax(p))
    with np.errstate(divide="ignore"):  # a zero probability stays zero: log 0 = -inf
        logits = np.log(p.astype(np.float64)) / temperature
    logits -= logits.max()
    q = np.exp(logits)
    q /= q.sum()
    return int(rng.choice(q.size, p=q))

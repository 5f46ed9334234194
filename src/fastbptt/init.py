"""Parameter initialisers, chosen by name, by callable, or per parameter with a dict.

Every initialiser is ``f(name, shape, rng, hidden_size) -> ndarray``: `name` is the parameter's
name in its cell ("U", "W", "b" for tanh and relu; "Wx", "Wh", "b" for lstm; "Wx", "Wh", "bx",
"bh" for gru; "V", "c" for the head; a stacked or reverse layer's parameters get their cell's
name), `shape` its shape, `rng` a numpy.random.Generator, `hidden_size` the model's H. It returns
an array of that shape and draws only from `rng`, so a model is reproducible from its seed.

Names (INITIALIZERS):

- "default": U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as PyTorch's RNN/LSTM/GRU.
- "fan_in", "uniform", "uniform_positive": seed 001's three schemes (U(+-1/sqrt(fan-in)), U(-1, 1),
  U(0, 1)) for weight matrices; biases zero.
- "xavier" (alias "glorot"): U(-a, a), a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010); a
  gated cell's stacked matrix (4H or 3H rows) counts each gate's H x n block on its own, so fan_out
  = H; biases zero.
- "orthogonal": each H x H gate block of the recurrent matrix (W, or Wh) is a random orthogonal
  matrix (Saxe et al. 2014); every other parameter as "default".
- "identity": the recurrent matrix (each H x H block) is the identity and every bias zero (Le,
  Jaitly & Hinton 2015, for ReLU nets); other weight matrices as "default". `identity(gain)` scales
  it.

Any name followed by "+forget_bias" (e.g. "xavier+forget_bias") also sets the LSTM forget-gate bias
b[H:2H] to 1 (gate order i, f, g, o; Gers et al. 2000, Jozefowicz et al. 2015);
`with_forget_bias(base, value)` does the same for a callable or another value.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from ._checks import real_array

Shape = tuple[int, ...]
Initializer = Callable[[str, Shape, np.random.Generator, int], np.ndarray]

RECURRENT = ("W", "Wh")  # the cell's recurrent matrices: rows are gate blocks of H, columns H
HEAD = ("V", "c")  # the output layer's parameters
FORGET_SUFFIX = "+forget_bias"
_LAYER_SUFFIX = re.compile(r"_l\d+(_reverse)?$")


def _fan_in(shape):
    return shape[1] if len(shape) == 2 else shape[0]


def _is_recurrent(name, shape, hidden_size):
    return (name in RECURRENT and len(shape) == 2 and shape[1] == hidden_size
            and shape[0] % hidden_size == 0)


def pytorch_default(name: str, shape: Shape, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
    """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch.nn.RNN/LSTM/GRU do."""
    k = 1.0 / np.sqrt(hidden_size)
    return rng.uniform(-k, k, size=shape)


def fan_in_uniform(name: str, shape: Shape, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
    """U(-1/sqrt(n), 1/sqrt(n)), n the fan-in of each matrix (seed 001's first scheme); biases 0."""
    if len(shape) == 1:
        return np.zeros(shape)
    k = 1.0 / np.sqrt(_fan_in(shape))
    return rng.uniform(-k, k, size=shape)


def uniform_symmetric(name: str, shape: Shape, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
    """U(-1, 1) for weights (seed 001's second scheme); biases zero."""
    if len(shape) == 1:
        return np.zeros(shape)
    return rng.uniform(-1.0, 1.0, size=shape)


def uniform_positive(name: str, shape: Shape, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
    """U(0, 1) for weights (seed 001's third scheme, the one that fails); biases zero."""
    if len(shape) == 1:
        return np.zeros(shape)
    return rng.uniform(0.0, 1.0, size=shape)


def xavier_uniform(name: str, shape: Shape, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
    """U(-a, a), a = sqrt(6 / (fan_in + fan_out)); fan_out = H per gate block of a cell matrix."""
    if len(shape) == 1:
        return np.zeros(shape)
    fan_out = shape[0] if name in HEAD else hidden_size
    a = np.sqrt(6.0 / (shape[1] + fan_out))
    return rng.uniform(-a, a, size=shape)


def random_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """An n x n orthogonal matrix drawn uniformly (Haar): QR of a Gaussian, R's signs fixed.

    Parameters
    ----------
    n : int
        Size of the matrix.
    rng : numpy.random.Generator
        Source of the draw.

    Returns
    -------
    ndarray, shape (n, n)
    """
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    # QR alone is not uniform: flipping columns by sign(diag R) makes it so (Mezzadri 2007)
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def orthogonal(name: str, shape: Shape, rng: np.random.Generator, hidden_size: int) -> np.ndarray:
    """Each H x H gate block of the recurrent matrix orthogonal; the rest as "default"."""
    if not _is_recurrent(name, shape, hidden_size):
        return pytorch_default(name, shape, rng, hidden_size)
    blocks = [random_orthogonal(hidden_size, rng) for _ in range(shape[0] // hidden_size)]
    return np.concatenate(blocks, axis=0)


def identity(gain: float = 1.0) -> Initializer:
    """An initialiser: recurrent matrix gain * I (per gate block), biases 0, the rest "default".

    Parameters
    ----------
    gain : float, default 1.0
        The diagonal's value ("identity" by name is gain 1; Le, Jaitly & Hinton 2015).

    Returns
    -------
    callable
        ``f(name, shape, rng, hidden_size) -> ndarray``.
    """
    gain = float(gain)

    def scaled_identity(name, shape, rng, hidden_size):
        if len(shape) == 1:
            return np.zeros(shape)
        if _is_recurrent(name, shape, hidden_size):
            return np.tile(gain * np.eye(hidden_size), (shape[0] // hidden_size, 1))
        return pytorch_default(name, shape, rng, hidden_size)

    scaled_identity.__doc__ = f"Recurrent matrix {gain:g} * I (Le et al. 2015), biases zero."
    return scaled_identity


class with_forget_bias:  # noqa: N801 (used like a function: with_forget_bias("xavier"))
    """An initialiser: `base` for everything, then the LSTM forget-gate bias b[H:2H] = value.

    Parameters
    ----------
    base : str or callable, default "default"
        An initialiser's name in INITIALIZERS, or an initialiser.
    value : float, default 1.0
        The forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015).
    """

    def __init__(self, base: str | Initializer = "default", value: float = 1.0):
        self.base = base
        self.value = float(value)

    def __call__(self, name: str, shape: Shape, rng: np.random.Generator,
                 hidden_size: int) -> np.ndarray:
        out = np.array(_resolve(self.base)(name, shape, rng, hidden_size), dtype=np.float64)
        if _is_lstm_bias(name, shape, hidden_size):
            out[hidden_size:2 * hidden_size] = self.value
        return out

    def __repr__(self):
        return f"with_forget_bias({self.base!r}, {self.value!r})"


def _is_lstm_bias(name, shape, hidden_size):
    return name == "b" and tuple(shape) == (4 * hidden_size,)


INITIALIZERS = {
    "default": pytorch_default,
    "fan_in": fan_in_uniform,
    "uniform": uniform_symmetric,
    "uniform_positive": uniform_positive,
    "xavier": xavier_uniform,
    "glorot": xavier_uniform,
    "orthogonal": orthogonal,
    "identity": identity(1.0),
}


def _resolve(spec):
    if callable(spec):
        return spec
    if isinstance(spec, str) and spec in INITIALIZERS:
        return INITIALIZERS[spec]
    if isinstance(spec, str) and spec.endswith(FORGET_SUFFIX):
        base = spec[: -len(FORGET_SUFFIX)]
        if base in INITIALIZERS:
            return with_forget_bias(base)
    names = ", ".join(repr(n) for n in INITIALIZERS)
    raise ValueError(f"unknown initialiser {spec!r}; expected one of {names} (optionally "
                     f"followed by {FORGET_SUFFIX!r}), a callable, or a dict of those per "
                     "parameter name")


def base_name(name: str) -> str:
    """The cell's own name of a parameter of any layer or direction: W_l1_reverse -> W."""
    return _LAYER_SUFFIX.sub("", name)


def init_params(shapes: dict[str, Shape], scheme, rng: np.random.Generator, dtype,
                hidden_size: int) -> dict[str, np.ndarray]:
    """Draw every parameter of `shapes`, in the order given, from `rng`.

    Parameters
    ----------
    shapes : dict of str to tuple of int
        Parameter name to shape, as ``RNN.param_shapes`` gives them.
    scheme : str, callable, dict or None
        An initialiser's name (optionally with "+forget_bias"), an initialiser, or a dict from
        parameter name to either (or to an array, used as it is); names left out of the dict, and
        None, get "default".
    rng : numpy.random.Generator
        Source of every draw.
    dtype : numpy dtype
        The arrays' dtype.
    hidden_size : int
        The model's H.

    Returns
    -------
    dict of str to ndarray
        C-contiguous arrays, one per name of `shapes`.
    """
    if scheme is None:
        scheme = "default"
    if isinstance(scheme, dict):
        unknown = set(scheme) - set(shapes)
        if unknown:
            raise ValueError(f"init names unknown parameters {sorted(unknown)}; "
                             f"the model has {list(shapes)}")
        per_name = {name: scheme.get(name, "default") for name in shapes}
    else:
        per_name = dict.fromkeys(shapes, scheme)
    has_lstm_bias = any(_is_lstm_bias(base_name(n), s, hidden_size) for n, s in shapes.items())
    out = {}
    for name, shape in shapes.items():
        spec = per_name[name]
        if isinstance(spec, np.ndarray):
            value = spec
        else:
            init = _resolve(spec)
            if isinstance(init, with_forget_bias) and not has_lstm_bias:
                raise ValueError(f"initialiser {spec!r} sets the LSTM forget-gate bias, but this "
                                 f"model has no lstm bias 'b' of shape ({4 * hidden_size},)")
            # stacked and reverse layers (W_l1, Wh_l0_reverse) are initialised as their cell's W, Wh
            value = init(base_name(name), shape, rng, hidden_size)
        # complex, object or non-finite values are refused here, not silently cast
        value = real_array(f"the initial value of {name!r}", value, dtype)
        if value.shape != tuple(shape):
            raise ValueError(f"initialiser for {name!r} gave shape {value.shape}, expected {shape}")
        out[name] = np.ascontiguousarray(value)
    return out

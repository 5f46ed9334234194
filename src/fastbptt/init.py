"""Parameter initialisers, chosen by name, by callable, or per parameter with a dict.

Every initialiser is `f(name, shape, rng, hidden_size) -> ndarray` and draws only from `rng`, so a model is
reproducible from its seed.
"""

import numpy as np


def _fan_in(shape):
    return shape[1] if len(shape) == 2 else shape[0]


def pytorch_default(name, shape, rng, hidden_size):
    """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch.nn.RNN/LSTM/GRU do."""
    k = 1.0 / np.sqrt(hidden_size)
    return rng.uniform(-k, k, size=shape)


def fan_in_uniform(name, shape, rng, hidden_size):
    """U(-1/sqrt(n), 1/sqrt(n)) with n the fan-in of each matrix (seed 001's first scheme); biases zero."""
    if len(shape) == 1:
        return np.zeros(shape)
    k = 1.0 / np.sqrt(_fan_in(shape))
    return rng.uniform(-k, k, size=shape)


def uniform_symmetric(name, shape, rng, hidden_size):
    """U(-1, 1) for weights (seed 001's second scheme); biases zero."""
    if len(shape) == 1:
        return np.zeros(shape)
    return rng.uniform(-1.0, 1.0, size=shape)


def uniform_positive(name, shape, rng, hidden_size):
    """U(0, 1) for weights (seed 001's third scheme, the one that fails); biases zero."""
    if len(shape) == 1:
        return np.zeros(shape)
    return rng.uniform(0.0, 1.0, size=shape)


INITIALIZERS = {
    "default": pytorch_default,
    "fan_in": fan_in_uniform,
    "uniform": uniform_symmetric,
    "uniform_positive": uniform_positive,
}


def _resolve(spec):
    if callable(spec):
        return spec
    if isinstance(spec, str) and spec in INITIALIZERS:
        return INITIALIZERS[spec]
    names = ", ".join(repr(n) for n in INITIALIZERS)
    raise ValueError(f"unknown initialiser {spec!r}; expected one of {names}, a callable, "
                     "or a dict of those per parameter name")


def init_params(shapes, scheme, rng, dtype, hidden_size):
    """Draw every parameter of `shapes` (name -> shape), in the order given, from `rng`."""
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
    out = {}
    for name, shape in shapes.items():
        spec = per_name[name]
        if isinstance(spec, np.ndarray):
            value = spec
        else:
            value = _resolve(spec)(name, shape, rng, hidden_size)
        value = np.asarray(value, dtype=dtype)
        if value.shape != tuple(shape):
            raise ValueError(f"initialiser for {name!r} gave shape {value.shape}, expected {shape}")
        out[name] = np.ascontiguousarray(value)
    return out

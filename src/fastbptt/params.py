"""The model's parameters: a dict from name to ndarray whose every change is checked."""

from __future__ import annotations

import math

import numpy as np

from ._checks import all_finite, compiled_finite, real_array, sum_finite


class Params(dict):
    """The model's parameters: a dict from name to ndarray whose every change is checked.

    Assigning a value (``params[name] = value``, ``params[name] -= step``, ``update``, ``|=``,
    ``setdefault``) checks its name, shape and finiteness and stores a C-contiguous copy in the
    model's dtype, so a bad assignment leaves the model as it was. Parameters cannot be removed
    (``del``, ``pop``, ``popitem`` and ``clear`` raise TypeError). The arrays are plain and writable;
    writing into one element by element is not checked.

    Parameters
    ----------
    shapes : dict of str to tuple of int
        Every parameter's name and shape (``RNN.param_shapes()``).
    dtype : numpy.dtype
        The model's dtype, float32 or float64.
    values : dict of str to array_like
        The initial values, checked as an assignment is.

    Examples
    --------
    >>> import fastbptt as fb
    >>> m = fb.RNN(2, 4, 1)
    >>> sorted(m.params)
    ['U', 'V', 'W', 'b', 'c']
    """

    def __init__(self, shapes, dtype, values):
        super().__init__()
        self._shapes = dict(shapes)
        self._dtype = dtype
        # few values: one copy and one reduction cost less than a reduction per array
        self._sum_joined = sum(math.prod(s) for s in self._shapes.values()) <= 4096
        for name, value in values.items():
            self[name] = value

    def __setitem__(self, name, value):
        if name not in self._shapes:
            raise KeyError(f"unknown parameter {name!r}; the model has {list(self._shapes)}")
        arr = real_array(f"parameter {name!r}", value, self._dtype)
        if arr.shape != self._shapes[name]:
            raise ValueError(f"parameter {name!r} must have shape {self._shapes[name]}, "
                             f"got {arr.shape}")
        if arr is value or np.shares_memory(arr, np.asarray(value)):
            arr = arr.copy()
        super().__setitem__(name, arr)

    def __delitem__(self, name):
        raise TypeError("parameters cannot be deleted")

    def __reduce__(self):  # rebuilt through the checks, which need the shapes first
        return (Params, (self._shapes, self._dtype, dict(self)))

    def _no_deleting(self, *args):
        raise TypeError("parameters cannot be removed; assign new values instead")

    pop = popitem = clear = _no_deleting

    def setdefault(self, name, value=None):
        if name not in self:
            self[name] = value  # every name is always present: this refuses unknown ones
        return self[name]

    @classmethod
    def replacing_all(cls, shapes, dtype, values):
        """New Params from a mapping that names exactly every parameter, checked as one assignment
        (on any error nothing is replaced)."""
        if not hasattr(values, "keys"):
            raise TypeError(f"params must be a mapping of parameter names to arrays, got "
                            f"{type(values).__name__}")
        missing, unknown = set(shapes) - set(values.keys()), set(values.keys()) - set(shapes)
        if missing or unknown:
            raise ValueError(f"params must name every parameter of the model, {list(shapes)}; "
                             f"missing {sorted(missing)}, unknown {sorted(map(str, unknown))}")
        return cls(shapes, dtype, {name: values[name] for name in shapes})

    def __ior__(self, other):
        self.update(other)
        return self

    def update(self, other=(), **kw):
        staged = dict(other, **kw)
        checked = Params(self._shapes, self._dtype, {})
        for name, value in staged.items():
            checked[name] = value
        for name, value in checked.items():
            super().__setitem__(name, value)

    def _commit(self, values):
        """Store new values the caller has already checked (names, shapes, finiteness): the
        optimizer's step, which must not pay for the checks twice."""
        for name, value in values.items():
            super().__setitem__(name, np.ascontiguousarray(value, dtype=self._dtype))

    def check_finite(self):
        values = list(self.values())
        if compiled_finite():
            if sum_finite(values):
                return
        elif self._sum_joined and values:
            if all_finite(np.concatenate(values, axis=None)):
                return
        elif sum_finite(values):
            return
        for name, value in self.items():
            if not np.isfinite(value).all():
                raise ValueError(f"parameter {name!r} contains NaN or Inf")

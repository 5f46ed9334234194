"""Optimizers, learning-rate schedules and gradient clipping.

An optimizer turns gradients into a parameter update: ``opt.step(params, grads)``. The step is
computed aside (new arrays, new optimizer state) and committed only when every new value is finite,
so a diverging step leaves both the parameters and the optimizer as they were and raises
FloatingPointError.

Conventions (each one written out so a step can be checked by hand)::

    SGD:        p <- p - lr g                                 (the experiments' update)
    Momentum:   v <- mu v + g;  p <- p - lr v                  (PyTorch's form, no dampening)
    Nesterov:   v <- mu v + g;  p <- p - lr (g + mu v)
    Adagrad:    m <- m + g^2;   p <- p - lr g / sqrt(m + eps)  (min-char-rnn's: eps inside the root)
    RMSprop:    v <- a v + (1 - a) g^2;  p <- p - lr g / (sqrt(v) + eps)   (PyTorch's, a = alpha)
    Adam:       m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
                p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),  t = 1, 2, ...

Weight decay `wd` (every optimizer takes ``weight_decay=wd``, default 0):

- SGD, momentum, Nesterov, Adagrad, RMSprop: L2 added to the gradient, g <- g + wd p, before the
  rule above (PyTorch's `weight_decay` of these optimizers).
- Adam: decoupled, as AdamW: p <- p - lr wd p - lr (Adam's step), both taken at the old p.
  `AdamW` ("adamw") is Adam with `weight_decay=0.01` by default.

A schedule is ``schedule(step, lr) -> lr``: `step` counts the updates this optimizer has applied (0
for the first) and `lr` is the optimizer's base rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from ._checks import nonneg_float, sum_finite

try:  # global_norm's reductions and the SGD and Adam updates compiled, when the extension is
    # built: the same operations, so the same bits; every update feels each NumPy call on small
    # models (the 8-bit adder trains one pair at a time)
    from ._build import adam_step as _compiled_adam
    from ._build import norm_parts as _compiled_norm_parts
    from ._build import sgd_step as _compiled_sgd
except ImportError:
    _compiled_adam = _compiled_norm_parts = _compiled_sgd = None

Schedule = Callable[[int, float], float]


def _unit_float(name, value):
    out = nonneg_float(name, value)
    if out >= 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return out


class Optimizer:
    """Base class of the optimizers: the step, weight decay, state and configuration.

    Subclasses name their state `slots` and define `_update` for one parameter.

    Parameters
    ----------
    lr : float, optional
        Base learning rate, >= 0 (default: the subclass's `default_lr`).
    schedule : callable, optional
        ``schedule(step, lr) -> lr``, the rate of each step.
    weight_decay : float, default 0
        L2 added to the gradient (``g + weight_decay * p``), or, for Adam, decoupled as in AdamW.
    """

    name = None
    slots = ()
    default_lr = 0.1
    decoupled_decay = False  # True: p <- p - lr wd p beside the step, not through the gradient

    def __init__(self, lr: float | None = None, schedule: Schedule | None = None,
                 weight_decay: float = 0.0):
        self.lr = nonneg_float("lr", self.default_lr if lr is None else lr)
        self.weight_decay = nonneg_float("weight_decay", weight_decay)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be a callable schedule(step, lr) -> lr, "
                            f"got {schedule!r}")
        self.schedule = schedule
        self.t = 0
        self.state = {}

    # -- the update --------------------------------------------------------------------------------

    def current_lr(self) -> float:
        """The learning rate of the next step (after the schedule)."""
        if self.schedule is None:
            return self.lr
        return nonneg_float(f"schedule({self.t}, {self.lr})", self.schedule(self.t, self.lr))

    def propose(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]):
        """One step computed aside: nothing is changed.

        Returns
        -------
        tuple of (dict, dict, float)
            The new parameters, the new optimizer state, and the learning rate used.
        """
        lr = self.current_lr()
        new_params, new_state = {}, {}
        for name, p in params.items():
            if name not in grads:
                raise ValueError(f"no gradient for parameter {name!r}; grads has {sorted(grads)}")
            p = np.asarray(p)
            g = np.asarray(grads[name])
            if g.shape != p.shape:
                raise ValueError(f"gradient for {name!r} has shape {g.shape}, parameter {p.shape}")
            slots = self.state.get(name)
            if slots is None:
                slots = {s: np.zeros_like(p) for s in self.slots}
            g = g.astype(p.dtype, copy=False)
            # the decay as a scalar of p's dtype only when there is one (a NumPy scalar costs)
            wd = p.dtype.type(self.weight_decay) if self.weight_decay else 0
            if wd and not self.decoupled_decay:
                g = g + wd * p
            new_p, new_state[name] = self._update(p, g, slots, lr, self.t + 1)
            if wd and self.decoupled_decay:
                new_p = new_p - p.dtype.type(lr) * wd * p
            new_params[name] = new_p
        return new_params, new_state, lr

    def step(self, params, grads: Mapping[str, np.ndarray]) -> float:
        """Update the parameters in place from their gradients.

        Parameters
        ----------
        params : dict of str to ndarray
            A model's ``params`` or any dict of arrays.
        grads : dict of str to ndarray
            A gradient for every name of `params`, same shapes; other names (such as "h0") are
            ignored.

        Returns
        -------
        float
            The learning rate used.

        Raises
        ------
        FloatingPointError
            When any new value would be NaN or Inf; then nothing changes (neither the parameters
            nor the optimizer's state), and the error names the parameter.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are reported below
            new_params, new_state, lr = self.propose(params, grads)
        if new_params and not sum_finite(list(new_params.values())):
            name = next(k for k, v in new_params.items() if not np.isfinite(v).all())
            raise FloatingPointError(f"the {self.name} step would make parameter {name!r} "
                                     f"non-finite (lr={lr:g}); parameters left unchanged")
        if hasattr(params, "_commit"):  # the model's dict: shapes and finiteness checked above
            params._commit(new_params)
        else:
            for name, value in new_params.items():
                params[name] = value
        self.state = new_state
        self.t += 1
        return lr

    def _update(self, p, g, slots, lr, t):
        raise NotImplementedError

    # -- description and resuming ------------------------------------------------------------------

    def hyperparameters(self):
        """The subclass's own settings, by keyword (weight_decay is added by get_config)."""
        return {}

    def get_config(self) -> dict:
        """JSON-able: name, lr, hyperparameters, weight decay and the step count (not the schedule)."""
        return {"name": self.name, "lr": self.lr, "t": self.t, **self.hyperparameters(),
                "weight_decay": self.weight_decay}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The optimizer state as {"<param>/<slot>": ndarray} (for checkpoints)."""
        return {f"{name}/{slot}": arr for name, slots in self.state.items()
                for slot, arr in slots.items()}

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray], t: int) -> None:
        """Restore what `state_arrays` returned, and the step count `t`."""
        state = {}
        for key, arr in arrays.items():
            name, _, slot = key.rpartition("/")
            if slot not in self.slots or not name:
                raise ValueError(f"optimizer state entry {key!r} is not a slot of {self.name} "
                                 f"(slots {self.slots})")
            state.setdefault(name, {})[slot] = np.array(arr)
        for name, slots in state.items():
            missing = set(self.slots) - set(slots)
            if missing:
                raise ValueError(f"optimizer state for {name!r} lacks slots {sorted(missing)}")
        self.state = state
        self.t = int(t)

    def __repr__(self):
        hp = "".join(f", {k}={v!r}" for k, v in self.hyperparameters().items())
        if self.weight_decay:
            hp += f", weight_decay={self.weight_decay!r}"
        return f"{type(self).__name__}(lr={self.lr!r}{hp})"


class SGD(Optimizer):
    """Plain gradient descent, p <- p - lr g (lr 0.1 by default).

    Parameters
    ----------
    lr, schedule, weight_decay
        As for `Optimizer`.
    """

    name = "sgd"
    default_lr = 0.1

    def _update(self, p, g, slots, lr, t):
        if _compiled_sgd is not None:
            out = np.empty(p.shape, p.dtype)
            if _compiled_sgd(p, g, out, lr):
                return out, {}
        return p - lr * g, {}


class Momentum(Optimizer):
    """Heavy-ball momentum (v <- mu v + g; p <- p - lr v) or, with nesterov=True, Nesterov's.

    Parameters
    ----------
    lr : float, optional
        Default 0.01.
    momentum : float, default 0.9
        mu, in [0, 1).
    nesterov : bool, default False
        Step along g + mu v instead of v.
    schedule, weight_decay
        As for `Optimizer`.
    """

    name = "momentum"
    slots = ("velocity",)
    default_lr = 0.01

    def __init__(self, lr: float | None = None, momentum: float = 0.9, nesterov: bool = False,
                 schedule: Schedule | None = None, weight_decay: float = 0.0):
        super().__init__(lr, schedule, weight_decay)
        self.momentum = _unit_float("momentum", momentum)
        self.nesterov = bool(nesterov)
        if self.nesterov:
            self.name = "nesterov"

    def hyperparameters(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov}

    def _update(self, p, g, slots, lr, t):
        v = self.momentum * slots["velocity"] + g
        direction = g + self.momentum * v if self.nesterov else v
        return p - lr * direction, {"velocity": v}


class Adagrad(Optimizer):
    """Adagrad as min-char-rnn writes it: m <- m + g^2; p <- p - lr g / sqrt(m + eps).

    Parameters
    ----------
    lr : float, optional
        Default 0.1.
    eps : float, default 1e-8
        Added inside the square root.
    schedule, weight_decay
        As for `Optimizer`.
    """

    name = "adagrad"
    slots = ("sum_sq",)
    default_lr = 0.1

    def __init__(self, lr: float | None = None, eps: float = 1e-8,
                 schedule: Schedule | None = None, weight_decay: float = 0.0):
        super().__init__(lr, schedule, weight_decay)
        self.eps = nonneg_float("eps", eps)

    def hyperparameters(self):
        return {"eps": self.eps}

    def _update(self, p, g, slots, lr, t):
        m = slots["sum_sq"] + g * g
        return p - lr * g / np.sqrt(m + self.eps), {"sum_sq": m}


class RMSprop(Optimizer):
    """RMSprop as PyTorch writes it: v <- alpha v + (1 - alpha) g^2; p <- p - lr g / (sqrt(v) + eps).

    Parameters
    ----------
    lr : float, optional
        Default 0.01.
    alpha : float, default 0.99
        Decay of the running mean of g^2, in [0, 1).
    eps : float, default 1e-8
        Added to the root.
    schedule, weight_decay
        As for `Optimizer`.
    """

    name = "rmsprop"
    slots = ("sq_avg",)
    default_lr = 0.01

    def __init__(self, lr: float | None = None, alpha: float = 0.99, eps: float = 1e-8,
                 schedule: Schedule | None = None, weight_decay: float = 0.0):
        super().__init__(lr, schedule, weight_decay)
        self.alpha = _unit_float("alpha", alpha)
        self.eps = nonneg_float("eps", eps)

    def hyperparameters(self):
        return {"alpha": self.alpha, "eps": self.eps}

    def _update(self, p, g, slots, lr, t):
        v = self.alpha * slots["sq_avg"] + (1 - self.alpha) * (g * g)
        return p - lr * g / (np.sqrt(v) + self.eps), {"sq_avg": v}


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction; weight decay is decoupled, as in AdamW.

    Parameters
    ----------
    lr : float, optional
        Default 1e-3.
    beta1, beta2 : float, default 0.9, 0.999
        Decays of the first and second moments, in [0, 1).
    eps : float, default 1e-8
        Added to the root of the second moment.
    schedule : callable, optional
        As for `Optimizer`.
    weight_decay : float, default 0
        p <- p - lr wd p beside the Adam step (decoupled: not through the moments).
    """

    name = "adam"
    slots = ("m", "v")
    default_lr = 1e-3
    decoupled_decay = True

    def __init__(self, lr: float | None = None, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, schedule: Schedule | None = None, weight_decay: float = 0.0):
        super().__init__(lr, schedule, weight_decay)
        self.beta1 = _unit_float("beta1", beta1)
        self.beta2 = _unit_float("beta2", beta2)
        self.eps = nonneg_float("eps", eps)

    def hyperparameters(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update(self, p, g, slots, lr, t):
        if _compiled_adam is not None:
            out = [np.empty(p.shape, p.dtype) for _ in range(3)]
            if _compiled_adam(p, g, slots["m"], slots["v"], *out, lr, self.beta1, self.beta2,
                              1 - self.beta1 ** t, 1 - self.beta2 ** t, self.eps):
                return out[0], {"m": out[1], "v": out[2]}
        m = self.beta1 * slots["m"] + (1 - self.beta1) * g
        v = self.beta2 * slots["v"] + (1 - self.beta2) * (g * g)
        m_hat = m / (1 - self.beta1 ** t)
        v_hat = v / (1 - self.beta2 ** t)
        return p - lr * m_hat / (np.sqrt(v_hat) + self.eps), {"m": m, "v": v}


class AdamW(Adam):
    """Adam with decoupled weight decay, 0.01 unless given (PyTorch's AdamW default).

    Parameters
    ----------
    lr, beta1, beta2, eps, schedule
        As for `Adam`.
    weight_decay : float, default 0.01
        p <- p - lr wd p beside the Adam step.
    """

    name = "adamw"

    def __init__(self, lr: float | None = None, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, schedule: Schedule | None = None, weight_decay: float = 0.01):
        super().__init__(lr, beta1, beta2, eps, schedule, weight_decay)


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": lambda **kw: Momentum(nesterov=True, **kw),
    "adagrad": Adagrad,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
}


def make_optimizer(spec: str | Optimizer = "sgd", lr: float | None = None,
                   schedule: Schedule | None = None, weight_decay: float | None = None,
                   **options) -> Optimizer:
    """An optimizer from a name or an instance.

    Parameters
    ----------
    spec : str or Optimizer
        A name in `OPTIMIZERS` ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam",
        "adamw"), or an instance, returned as it is.
    lr, schedule, weight_decay : optional
        For a name: the optimizer's settings (None: its defaults). With an instance they must be
        None, since the instance carries its own.
    **options
        The named optimizer's other keywords (``momentum``, ``beta1``, ``alpha``, ``eps``, ...).

    Returns
    -------
    Optimizer
    """
    if weight_decay is not None:
        options["weight_decay"] = weight_decay
    if isinstance(spec, Optimizer):
        if lr is not None or schedule is not None or options:
            raise ValueError("lr, schedule, weight_decay and options belong to the optimizer "
                             f"instance when one is given; got an instance {spec!r} and also "
                             "lr/schedule/weight_decay/options")
        return spec
    if not isinstance(spec, str) or spec.lower() not in OPTIMIZERS:
        names = ", ".join(repr(n) for n in OPTIMIZERS)
        raise ValueError(f"unknown optimizer {spec!r}; expected one of {names} or an Optimizer")
    return OPTIMIZERS[spec.lower()](lr=lr, schedule=schedule, **options)


def optimizer_from_config(config: Mapping) -> Optimizer:
    """Rebuild an optimizer (without its state) from what its `get_config` returned."""
    cfg = dict(config)
    name = cfg.pop("name")
    t = cfg.pop("t", 0)
    if name == "nesterov":
        cfg.pop("nesterov", None)
    opt = make_optimizer(name, **cfg)
    opt.t = int(t)
    return opt


# -- schedules -------------------------------------------------------------------------------------

def step_decay(gamma: float, every: int) -> Schedule:
    """A schedule that multiplies the rate by `gamma` every `every` updates.

    Parameters
    ----------
    gamma : float
        The factor, >= 0.
    every : int
        Updates between two multiplications, >= 1.

    Returns
    -------
    callable
        ``schedule(step, lr) = lr * gamma ** (step // every)``.
    """
    gamma = nonneg_float("gamma", gamma)
    if not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    return lambda step, lr: lr * gamma ** (step // every)


def inverse_time_decay(rate: float) -> Schedule:
    """A schedule ``schedule(step, lr) = lr / (1 + rate * step)``.

    Parameters
    ----------
    rate : float
        How fast the rate falls, >= 0.

    Returns
    -------
    callable
    """
    rate = nonneg_float("rate", rate)
    return lambda step, lr: lr / (1.0 + rate * step)


# -- clipping --------------------------------------------------------------------------------------

def global_norm(grads: Mapping[str, np.ndarray]) -> float:
    """The norm of all gradients taken as one vector: the root of the sum of every squared entry.

    Computed in float64, without overflow for large finite entries; NaN or Inf when an entry is.
    """
    if not grads:
        return 0.0
    parts = None if _compiled_norm_parts is None else _compiled_norm_parts(grads.values())
    if parts is not None:
        amax, ssq = parts
        return amax if amax == 0.0 or not math.isfinite(amax) else amax * math.sqrt(ssq)
    # one flat vector: a handful of NumPy calls whatever the number of parameters
    flat = np.concatenate([np.ravel(g) for g in grads.values()]).astype(np.float64, copy=False)
    if flat.size == 0:
        return 0.0
    amax = float(np.max(np.abs(flat)))
    if amax == 0.0 or not math.isfinite(amax):  # NaN propagates through max, Inf is itself
        return amax
    scaled = flat / amax  # entries <= 1: the squares cannot overflow
    return amax * math.sqrt(float(np.add.reduce(scaled * scaled)))  # not np.dot: BLAS wake-up


def clip_by_value(grads: Mapping[str, np.ndarray], value: float) -> dict[str, np.ndarray]:
    """New gradients with every entry clipped to [-value, value]."""
    value = nonneg_float("clip_value", value)
    return {k: np.clip(g, -value, value) for k, g in grads.items()}


def clip_by_norm(grads: Mapping[str, np.ndarray], max_norm: float,
                 norm: float | None = None) -> dict[str, np.ndarray]:
    """Gradients scaled by ``max_norm / norm`` when their global norm exceeds `max_norm`.

    Parameters
    ----------
    grads : dict of str to ndarray
        The gradients (not changed).
    max_norm : float
        The largest global norm let through.
    norm : float, optional
        Their global norm, when already computed (`global_norm`).

    Returns
    -------
    dict of str to ndarray
    """
    max_norm = nonneg_float("clip_norm", max_norm)
    if norm is None:
        norm = global_norm(grads)
    if norm <= max_norm:
        return dict(grads)
    factor = max_norm / norm
    return {k: g * g.dtype.type(factor) for k, g in grads.items()}

"""Optimizers, learning-rate schedules and gradient clipping.

An optimizer turns gradients into a parameter update: `opt.step(params, grads)`. The step is
computed aside (new arrays, new optimizer state) and committed only when every new value is finite,
so a diverging step leaves both the parameters and the optimizer as they were and raises
FloatingPointError.

Conventions (each one written out so a step can be checked by hand):

- SGD:        p <- p - lr g                                 (the seeds' update)
- Momentum:   v <- mu v + g;  p <- p - lr v                  (PyTorch's form, no dampening)
- Nesterov:   v <- mu v + g;  p <- p - lr (g + mu v)
- Adagrad:    m <- m + g^2;   p <- p - lr g / sqrt(m + eps)  (min-char-rnn's: eps inside the root)
- Adam:       m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
              p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),  t = 1, 2, ...

A schedule is `schedule(step, lr) -> lr`: `step` counts the updates this optimizer has applied (0
for the first) and `lr` is the optimizer's base rate.
"""

import math

import numpy as np


def _nonneg_float(name, value):
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return out


def _unit_float(name, value):
    out = _nonneg_float(name, value)
    if out >= 1:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return out


class Optimizer:
    """Base class. Subclasses name their state `slots` and define `_update` for one parameter."""

    name = None
    slots = ()
    default_lr = 0.1

    def __init__(self, lr=None, schedule=None):
        self.lr = _nonneg_float("lr", self.default_lr if lr is None else lr)
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be a callable schedule(step, lr) -> lr, "
                            f"got {schedule!r}")
        self.schedule = schedule
        self.t = 0
        self.state = {}

    # -- the update --------------------------------------------------------------------------------

    def current_lr(self):
        """The learning rate of the next step (after the schedule)."""
        if self.schedule is None:
            return self.lr
        return _nonneg_float(f"schedule({self.t}, {self.lr})", self.schedule(self.t, self.lr))

    def propose(self, params, grads):
        """(new params, new state, lr) for one step, computed aside: nothing is changed."""
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
            new_params[name], new_state[name] = self._update(p, g.astype(p.dtype, copy=False),
                                                             slots, lr, self.t + 1)
        return new_params, new_state, lr

    def step(self, params, grads):
        """Update `params` (a model's params or a dict of arrays) from `grads`; return the lr used.

        Gradients for names that are not parameters (e.g. "h0") are ignored. If any new value would
        be NaN or Inf, nothing changes and FloatingPointError names the parameter.
        """
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite results are reported below
            new_params, new_state, lr = self.propose(params, grads)
        if new_params and not np.isfinite(np.concatenate([v.ravel() for v in
                                                          new_params.values()])).all():
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
        return {}

    def get_config(self):
        """JSON-able: name, lr, hyperparameters and the step count (not the schedule)."""
        return {"name": self.name, "lr": self.lr, "t": self.t, **self.hyperparameters()}

    def state_arrays(self):
        """The optimizer state as {"<param>/<slot>": ndarray} (for checkpoints)."""
        return {f"{name}/{slot}": arr for name, slots in self.state.items()
                for slot, arr in slots.items()}

    def load_state_arrays(self, arrays, t):
        """Restore what state_arrays returned (and the step count)."""
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
        return f"{type(self).__name__}(lr={self.lr!r}{hp})"


class SGD(Optimizer):
    """Plain gradient descent, p <- p - lr g."""

    name = "sgd"
    default_lr = 0.1

    def _update(self, p, g, slots, lr, t):
        return p - lr * g, {}


class Momentum(Optimizer):
    """Heavy-ball momentum (v <- mu v + g; p <- p - lr v) or, with nesterov=True, Nesterov's."""

    name = "momentum"
    slots = ("velocity",)
    default_lr = 0.01

    def __init__(self, lr=None, momentum=0.9, nesterov=False, schedule=None):
        super().__init__(lr, schedule)
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
    """min-char-rnn's Adagrad: m <- m + g^2; p <- p - lr g / sqrt(m + eps)."""

    name = "adagrad"
    slots = ("sum_sq",)
    default_lr = 0.1

    def __init__(self, lr=None, eps=1e-8, schedule=None):
        super().__init__(lr, schedule)
        self.eps = _nonneg_float("eps", eps)

    def hyperparameters(self):
        return {"eps": self.eps}

    def _update(self, p, g, slots, lr, t):
        m = slots["sum_sq"] + g * g
        return p - lr * g / np.sqrt(m + self.eps), {"sum_sq": m}


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction."""

    name = "adam"
    slots = ("m", "v")
    default_lr = 1e-3

    def __init__(self, lr=None, beta1=0.9, beta2=0.999, eps=1e-8, schedule=None):
        super().__init__(lr, schedule)
        self.beta1 = _unit_float("beta1", beta1)
        self.beta2 = _unit_float("beta2", beta2)
        self.eps = _nonneg_float("eps", eps)

    def hyperparameters(self):
        return {"beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    def _update(self, p, g, slots, lr, t):
        m = self.beta1 * slots["m"] + (1 - self.beta1) * g
        v = self.beta2 * slots["v"] + (1 - self.beta2) * (g * g)
        m_hat = m / (1 - self.beta1 ** t)
        v_hat = v / (1 - self.beta2 ** t)
        return p - lr * m_hat / (np.sqrt(v_hat) + self.eps), {"m": m, "v": v}


OPTIMIZERS = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": lambda **kw: Momentum(nesterov=True, **kw),
    "adagrad": Adagrad,
    "adam": Adam,
}


def make_optimizer(spec="sgd", lr=None, schedule=None, **options):
    """An Optimizer from a name in OPTIMIZERS (with lr, schedule and its options) or an instance."""
    if isinstance(spec, Optimizer):
        if lr is not None or schedule is not None or options:
            raise ValueError("lr, schedule and options belong to the optimizer instance when "
                             f"one is given; got an instance {spec!r} and also lr/schedule/options")
        return spec
    if not isinstance(spec, str) or spec.lower() not in OPTIMIZERS:
        names = ", ".join(repr(n) for n in OPTIMIZERS)
        raise ValueError(f"unknown optimizer {spec!r}; expected one of {names} or an Optimizer")
    return OPTIMIZERS[spec.lower()](lr=lr, schedule=schedule, **options)


def optimizer_from_config(config):
    """Rebuild an optimizer (without its state) from get_config()."""
    cfg = dict(config)
    name = cfg.pop("name")
    t = cfg.pop("t", 0)
    if name == "nesterov":
        cfg.pop("nesterov", None)
    opt = make_optimizer(name, **cfg)
    opt.t = int(t)
    return opt


# -- schedules -------------------------------------------------------------------------------------

def step_decay(gamma, every):
    """lr * gamma ** (step // every): multiply the rate by gamma every `every` updates."""
    gamma = _nonneg_float("gamma", gamma)
    if not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    return lambda step, lr: lr * gamma ** (step // every)


def inverse_time_decay(rate):
    """lr / (1 + rate * step)."""
    rate = _nonneg_float("rate", rate)
    return lambda step, lr: lr / (1.0 + rate * step)


# -- clipping --------------------------------------------------------------------------------------

def global_norm(grads):
    """sqrt(sum of every squared entry), in float64, without overflow for large finite entries;
    NaN or Inf when an entry is."""
    if not grads:
        return 0.0
    # one flat vector: a handful of NumPy calls whatever the number of parameters
    flat = np.concatenate([np.ravel(g) for g in grads.values()]).astype(np.float64, copy=False)
    if flat.size == 0:
        return 0.0
    amax = float(np.max(np.abs(flat)))
    if amax == 0.0 or not math.isfinite(amax):  # NaN propagates through max, Inf is itself
        return amax
    scaled = flat / amax  # entries <= 1: the squares cannot overflow
    return amax * math.sqrt(float(np.add.reduce(scaled * scaled)))  # not np.dot: BLAS wake-up


def clip_by_value(grads, value):
    """Every entry clipped to [-value, value]."""
    value = _nonneg_float("clip_value", value)
    return {k: np.clip(g, -value, value) for k, g in grads.items()}


def clip_by_norm(grads, max_norm, norm=None):
    """All gradients scaled by max_norm / norm when their global norm exceeds max_norm."""
    max_norm = _nonneg_float("clip_norm", max_norm)
    if norm is None:
        norm = global_norm(grads)
    if norm <= max_norm:
        return dict(grads)
    factor = max_norm / norm
    return {k: g * g.dtype.type(factor) for k, g in grads.items()}

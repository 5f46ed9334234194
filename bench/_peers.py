"""PyTorch (CPU) and JAX (jit + lax.scan) computing the same loss as fastbptt, for the benches.

Both are optional: `available()` lists the ones installed. Each runner is built from a fastbptt
model's parameters, so the three compute the same thing: a tanh/relu or LSTM layer from h0 = 0, a
linear head, 0.5 * squared error summed over every step, output unit and sequence; `check` compares
the loss and every gradient with fastbptt's before anything is timed.
"""

import importlib.util
import os

import numpy as np

PEERS = ("torch", "jax")
TOLERANCE = {"float64": 1e-7, "float32": 2e-3}


def available():
    return [name for name in PEERS if importlib.util.find_spec(name) is not None]


def configure_threads(n):
    """Thread settings needed before the peers are imported (JAX reads XLA_FLAGS once)."""
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                       "intra_op_parallelism_threads=1").strip()


def _names(cell):
    return {"lstm": ("Wx", "Wh", "b"), "gru": ("Wx", "Wh", "bx")}.get(cell, ("U", "W", "b"))


def torch_runner(cell, params, X, Y, threads):
    """fn() runs forward + backward once; returns (fn, loss, NumPy grads keyed like fastbptt's)."""
    import torch

    torch.set_num_threads(threads)
    dtype = torch.float64 if X.dtype == np.float64 else torch.float32
    I, H, O = X.shape[2], params["V"].shape[1], params["V"].shape[0]
    if cell == "lstm":
        rnn = torch.nn.LSTM(I, H)
    elif cell == "gru":
        rnn = torch.nn.GRU(I, H)
    else:
        rnn = torch.nn.RNN(I, H, nonlinearity=cell)
    head = torch.nn.Linear(H, O)
    rnn.to(dtype)
    head.to(dtype)
    wx, wh, b = _names(cell)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(params[wx]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(params[wh]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(params[b]))
        if cell == "gru":  # the recurrent bias of n sits inside r * (...): a parameter of its own
            rnn.bias_hh_l0.copy_(torch.from_numpy(params["bh"]))
        else:
            rnn.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(params["V"]))
        head.bias.copy_(torch.from_numpy(params["c"]))
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    tensors = {wx: rnn.weight_ih_l0, wh: rnn.weight_hh_l0, b: rnn.bias_ih_l0,
               "V": head.weight, "c": head.bias}
    if cell == "gru":
        tensors["bh"] = rnn.bias_hh_l0

    def fn():
        for t in tensors.values():
            t.grad = None
        out, _ = rnn(Xt)
        loss = 0.5 * ((head(out) - Yt) ** 2).sum()
        loss.backward()
        return loss

    loss = fn().item()
    return fn, loss, {k: t.grad.numpy().copy() for k, t in tensors.items()}


def jax_runner(cell, params, X, Y, threads):
    """As torch_runner, with jax.jit(jax.value_and_grad(loss)) and lax.scan over time."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from jax import lax

    p = {k: jnp.asarray(v) for k, v in params.items()}
    wx, wh, b = _names(cell)

    def loss_fn(p, X, Y):
        T, B, _ = X.shape
        H = p[wh].shape[1]
        A = X @ p[wx].T + p[b]
        if cell == "lstm":
            def step(carry, a):
                h, c = carry
                g = a + h @ p[wh].T
                i, f, gg, o = jnp.split(g, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(gg)
                h = jax.nn.sigmoid(o) * jnp.tanh(c)
                return (h, c), h

            zero = jnp.zeros((B, H), X.dtype)
            _, Hs = lax.scan(step, (zero, zero), A)
        else:
            act = jnp.tanh if cell == "tanh" else jax.nn.relu

            def step(h, a):
                h = act(a + h @ p[wh].T)
                return h, h

            _, Hs = lax.scan(step, jnp.zeros((B, H), X.dtype), A)
        out = Hs @ p["V"].T + p["c"]
        return 0.5 * jnp.sum((out - Y) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss_fn))
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

    def fn():
        loss, grads = value_and_grad(p, Xj, Yj)
        jax.block_until_ready(grads)
        return loss

    loss, grads = value_and_grad(p, Xj, Yj)
    return fn, float(loss), {k: np.asarray(v) for k, v in grads.items()}


RUNNERS = {"torch": torch_runner, "jax": jax_runner}


def check(name, loss, grads, ref_loss, ref_grads, dtype):
    """Largest relative disagreement with fastbptt over the loss and every gradient; raise when it
    is beyond the dtype's tolerance (a peer that computes something else must not be timed)."""
    worst = abs(loss - ref_loss) / max(1.0, abs(ref_loss))
    for key, ref in ref_grads.items():
        if key not in grads:
            continue
        scale = max(1.0, float(np.abs(ref).max()))
        worst = max(worst, float(np.abs(grads[key] - ref).max()) / scale)
    if worst > TOLERANCE[np.dtype(dtype).name]:
        raise AssertionError(f"{name} disagrees with fastbptt: max relative difference {worst:.3g}")
    return worst

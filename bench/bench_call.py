"""The fixed cost of one call: microseconds per `loss_and_grad` of the 8-bit adder (T=8 B=1 H=16
float64, tanh, sigmoid output with bce, as in the addition experiment), where it goes (checking the
call, setting up the pass, forward, loss, backward; the kernels alone), one update of `fit` on it
(one pair a minibatch, SGD and Adam: the call, the gradient's norm, the step), and one forward step
(T=1, B=1, I=32, O=10) of each cell as a generation loop takes it (the state fed back), beside the
same step on the NumPy backend and in PyTorch's module under torch.no_grad() (when installed).
Times are CPU time of this process (less disturbed by other processes than wall time), the median
of --repeats runs of --calls calls each; the steps' three take turns.

    python bench/bench_call.py                       # float32 steps at H = 128 and 256
    python bench/bench_call.py --hidden 128 --dtype float64
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402


def per_call_us(fn, calls, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        times.append((time.process_time() - t0) / calls * 1e6)
    return float(np.median(times))


def adder(calls, repeats):
    """The adder's loss_and_grad, its stages (each timed alone, so they add up to less than a
    call, which runs them cold) and its two kernel calls."""
    import fastbptt as fb
    from fastbptt.calls import check_call
    from fastbptt.graph import Pass

    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(8, 1, 2)).astype(np.float64)
    Y = rng.integers(0, 2, size=(8, 1, 1)).astype(np.float64)
    m = fb.RNN(2, 16, 1, cell="tanh", output="sigmoid", loss="bce", seed=0)
    call = check_call(m, X, Y).sort()
    run = Pass(m, True)
    cell, H, cache, logits = run.whole(call.X, call.state0)
    _, grad, head_grads = m.head.loss_and_grad(m.params, H[1:], call.Y, unformed=True,
                                               defer_weight_grad=True, logits=logits)
    rows = {
        "loss_and_grad": lambda: m.loss_and_grad(X, Y),
        "evaluate": lambda: m.evaluate(X, Y),
        "stage: check the call": lambda: check_call(m, X, Y).sort(),
        "stage: set up the pass": lambda: Pass(m, True),
        "stage: forward": lambda: run.whole(call.X, call.state0),
        "stage: loss": lambda: m.head.loss_and_grad(m.params, H[1:], call.Y, unformed=True,
                                                    defer_weight_grad=True, logits=logits),
        "stage: backward": lambda: run.whole_backward(call.X, cell, H, cache, grad, head_grads),
    }
    if m.backend == "cython":
        from fastbptt import _elman

        p = m.params
        Hk = np.empty((9, 1, 16))
        h0 = np.zeros((1, 16))
        out = np.empty((8, 1, 1))
        grads = [np.empty((16, 2)), np.empty((16, 16)), np.empty(16), np.empty((1, 16))]
        rows["kernel: forward_fused"] = lambda: _elman.forward_fused(
            0, p["U"], p["b"], p["W"], X, h0, Hk, 1, None, p["V"], p["c"], out)
        rows["kernel: backward_fused"] = lambda: _elman.backward_fused(
            0, p["W"], X, Hk, None, h0, np.empty((1, 16)), *grads[:3], 1, None, None,
            grad.dO, p["V"], grads[3])
    return {name: per_call_us(fn, calls, repeats) for name, fn in rows.items()}


def fit_updates(calls, repeats):
    """One update of fit on the adder, one pair a minibatch (as the addition experiment trains):
    microseconds per update over an epoch of `calls` pairs, per optimizer."""
    import fastbptt as fb

    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(8, calls, 2)).astype(np.float64)
    Y = rng.integers(0, 2, size=(8, calls, 1)).astype(np.float64)
    rows = {}
    for optimizer in ("sgd", "adam"):
        m = fb.RNN(2, 16, 1, cell="tanh", output="sigmoid", loss="bce", seed=0)

        def epoch(m=m, optimizer=optimizer):
            m.fit(X, Y, epochs=1, batch_size=1, optimizer=optimizer, progress=False)

        rows[f"fit update, {optimizer}"] = per_call_us(epoch, 1, repeats) / calls
    return rows


def _torch_step(cell, m, threads):
    """PyTorch's module for one step under torch.no_grad(), the head a Linear, from the fastbptt
    model's weights: step(x, state) -> (y, state), as a generation loop calls it."""
    import torch

    torch.set_num_threads(threads)
    p = m.params
    I, H = m.input_size, m.hidden_size
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)(I, H)
    head = torch.nn.Linear(H, m.output_size)
    dtype = torch.float32 if m.dtype == np.float32 else torch.float64
    rnn.to(dtype)
    head.to(dtype)
    wx, wh, b = {"lstm": ("Wx", "Wh", "b"), "gru": ("Wx", "Wh", "bx")}.get(cell, ("U", "W", "b"))
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(p[wx]))
        rnn.weight_hh_l0.copy_(torch.from_numpy(p[wh]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p[b]))
        if cell == "gru":
            rnn.bias_hh_l0.copy_(torch.from_numpy(p["bh"]))
        else:
            rnn.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(p["V"]))
        head.bias.copy_(torch.from_numpy(p["c"]))

    def step(x, state):
        with torch.no_grad():
            out, state = rnn(x, state)
            return head(out), state

    return step


def steps(hidden, dtype, calls, repeats, input_size=32, output_size=10):
    """One forward step (T=1, B=1) as a generation loop takes it, the state fed back each call:
    fastbptt's RNN.forward(x_t, h0, c0) on the compiled kernels and on the NumPy backend, and
    PyTorch's module (plus a Linear head) under torch.no_grad() when installed; the three take
    turns within each repeat. Returns rows name -> us per call and the ratios."""
    import fastbptt as fb

    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    out = {}
    for cell in ("tanh", "lstm", "gru"):
        for H in hidden:
            x = rng.standard_normal((1, 1, input_size)).astype(dtype)
            fns = {}
            for backend in ("cython", "numpy"):
                m = fb.RNN(input_size, H, output_size, cell=cell, dtype=dtype, seed=0,
                           backend=backend)
                state = [np.zeros((1, H), dtype) for _ in m.layers.state_names]

                def call(m=m, state=state, x=x):
                    _, new = m.forward(x, *state)
                    state[:] = new

                fns[backend] = call
            if torch is not None:
                step = _torch_step(cell, m, 1)
                xt = torch.from_numpy(x)
                zero = torch.zeros((1, 1, H), dtype=xt.dtype)
                tstate = [(zero, zero.clone()) if cell == "lstm" else zero]

                def tcall(step=step, xt=xt, tstate=tstate):
                    _, tstate[0] = step(xt, tstate[0])

                fns["torch"] = tcall
            timed = per_call_turns(fns, calls, repeats)
            name = f"forward step {cell} H={H}"
            out[name] = timed["cython"]
            out[name + " numpy"] = timed["numpy"]
            if "torch" in timed:
                out[name + " torch no_grad"] = timed["torch"]
    return out


def per_call_turns(fns, calls, repeats):
    """per_call_us for several callables taking turns repeat by repeat (fair ratios under load)."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.process_time()
            for _ in range(calls):
                fn()
            times[name].append((time.process_time() - t0) / calls * 1e6)
    return {name: float(np.median(t)) for name, t in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 256])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", help="JSON path (default bench/results/call.json)")
    args = p.parse_args(argv)
    rows = adder(args.calls, args.repeats)
    rows.update(fit_updates(max(1, args.calls // 2), args.repeats))
    rows.update(steps(args.hidden, np.dtype(args.dtype), max(1, args.calls // 4), args.repeats))
    for name, us in rows.items():
        print(f"{name:32s} {us:9.2f} us")
    payload = {"machine": machine(), "unit": "us per call (CPU time)", "rows": rows}
    path = Path(args.out) if args.out else Path(__file__).resolve().parent / "results" / "call.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()

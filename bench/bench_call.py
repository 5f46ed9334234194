"""The fixed cost of one call: microseconds per `loss_and_grad` of the 8-bit adder (T=8 B=1 H=16
float64, tanh, sigmoid output with bce, as in the addition experiment), where it goes (checking the
call, setting up the pass, forward, loss, backward; the kernels alone), and one forward step
(T=1, B=1) of each cell, beside the same step on the NumPy backend. Times are CPU time of this
process (less disturbed by other processes than wall time), the median of --repeats runs of
--calls calls each.

    python bench/bench_call.py
    python bench/bench_call.py --hidden 128 256 --dtype float32
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
    seg = run.forward(call.X, call.state0)
    loss = run.loss([seg], call.Y, 0, 8, 8)
    rows = {
        "loss_and_grad": lambda: m.loss_and_grad(X, Y),
        "evaluate": lambda: m.evaluate(X, Y),
        "stage: check the call": lambda: check_call(m, X, Y).sort(),
        "stage: set up the pass": lambda: Pass(m, True),
        "stage: forward": lambda: run.forward(call.X, call.state0),
        "stage: loss": lambda: run.loss([seg], call.Y, 0, 8, 8),
        "stage: backward": lambda: run.backward([seg], loss),
    }
    if m.backend == "cython":
        from fastbptt import _elman

        p = m.params
        H = np.empty((9, 1, 16))
        h0 = np.zeros((1, 16))
        out = np.empty((8, 1, 1))
        grads = [np.empty((16, 2)), np.empty((16, 16)), np.empty(16), np.empty((1, 16))]
        rows["kernel: forward_fused"] = lambda: _elman.forward_fused(
            0, p["U"], p["b"], p["W"], X, h0, H, 1, None, p["V"], p["c"], out)
        rows["kernel: backward_fused"] = lambda: _elman.backward_fused(
            0, p["W"], X, H, None, h0, np.empty((1, 16)), *grads[:3], 1, None, None,
            loss.grad.dO, p["V"], grads[3])
    return {name: per_call_us(fn, calls, repeats) for name, fn in rows.items()}


def steps(hidden, dtype, calls, repeats):
    import fastbptt as fb

    rng = np.random.default_rng(0)
    out = {}
    for cell in ("tanh", "lstm", "gru"):
        for H in hidden:
            x = rng.standard_normal((1, 1, 32)).astype(dtype)
            for backend in ("cython", "numpy"):
                m = fb.RNN(32, H, 10, cell=cell, dtype=dtype, seed=0, backend=backend)
                name = f"forward step {cell} H={H}" + ("" if backend == "cython" else " numpy")
                out[name] = per_call_us(lambda m=m, x=x: m.forward(x), calls, repeats)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, nargs="+", default=[128])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", help="JSON path (default bench/results/call.json)")
    args = p.parse_args(argv)
    rows = adder(args.calls, args.repeats)
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

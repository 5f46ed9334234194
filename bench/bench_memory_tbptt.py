"""Peak memory of one training pass with truncated BPTT: O(k2 * B * H), not O(T).

Runs one epoch of fit(tbptt=(k, k2)) over a single long sequence in a fresh child process and
reports that process's peak resident set size (getrusage ru_maxrss), next to the RSS before training
(interpreter, NumPy, the data) and the bytes full BPTT would hold for the same T (states,
pre-activations and their gradients: 4 arrays of T x B x H). --full runs full BPTT instead, for
contrast at smaller T.

    python bench/bench_memory_tbptt.py                        # T=1,000,000 H=128 B=1 k=1000 float64
    python bench/bench_memory_tbptt.py -T 100000 --full       # full BPTT, to see O(T)
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_json  # noqa: E402

MB = 1024 * 1024


def _peak_rss_bytes():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB, macOS bytes


def _child(args):
    """The measured run; prints one JSON line."""
    import numpy as np

    import fastbptt as fb

    rss_imports = _peak_rss_bytes()
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.T, args.batch, args.input)).astype(dtype)
    Y = rng.standard_normal((args.T, args.batch, args.output)).astype(dtype)
    model = fb.RNN(args.input, args.hidden, args.output, cell=args.cell, dtype=dtype,
                   backend=args.backend, seed=args.seed)
    rss_before = _peak_rss_bytes()
    tbptt = None if args.full else (args.k, args.k2 or args.k)
    started = time.perf_counter()
    history = model.fit(X, Y, tbptt=tbptt, epochs=1, optimizer="sgd", lr=args.lr, progress=False)
    seconds = time.perf_counter() - started
    rss_peak = _peak_rss_bytes()
    print(json.dumps({
        "rss_after_imports_bytes": rss_imports,
        "rss_before_training_bytes": rss_before,
        "peak_rss_bytes": rss_peak,
        "training_overhead_bytes": rss_peak - rss_before,
        "seconds": seconds,
        "updates": len(history.steps["step"]),
        "final_loss": history.epochs["loss"][-1],
        "backend": model.backend,
    }))


def full_bptt_bytes(T, B, H, itemsize, gates=1):
    """What full BPTT holds at once: states H (T+1), pre-activations A and dA (T x G), dH (T)."""
    return itemsize * B * ((T + 1) * H + 2 * T * gates * H + T * H)


def run(args):
    """Measure in a child process (or in this one with --in-process); return the result dict."""
    if args.in_process:
        from io import StringIO

        buf, old = StringIO(), sys.stdout
        sys.stdout = buf
        try:
            _child(args)
        finally:
            sys.stdout = old
        measured = json.loads(buf.getvalue())
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child"] + _forward_args(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(),
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"the measured child failed ({proc.returncode}):\n{proc.stderr}")
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
    import numpy as np

    gates = {"tanh": 1, "relu": 1, "lstm": 4, "gru": 3}[args.cell]
    itemsize = np.dtype(args.dtype).itemsize
    measured["full_bptt_estimate_bytes"] = full_bptt_bytes(args.T, args.batch, args.hidden,
                                                           itemsize, gates)
    measured["full_bptt_states_bytes"] = itemsize * args.batch * (args.T + 1) * args.hidden
    return measured


def _forward_args(args):
    out = ["-T", str(args.T), "--hidden", str(args.hidden), "--k", str(args.k), "--batch",
           str(args.batch), "--input", str(args.input), "--output", str(args.output), "--cell",
           args.cell, "--dtype", args.dtype, "--seed", str(args.seed), "--lr", str(args.lr)]
    if args.k2:
        out += ["--k2", str(args.k2)]
    if args.backend:
        out += ["--backend", args.backend]
    if args.full:
        out.append("--full")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-T", "--T", type=int, default=1_000_000, help="sequence length")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--k", type=int, default=1000, help="k1: steps per update (and k2 unless given)")
    p.add_argument("--k2", type=int, default=None, help="steps backpropagated (default k)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input", type=int, default=1)
    p.add_argument("--output", type=int, default=1)
    p.add_argument("--cell", default="tanh", choices=["tanh", "relu", "lstm", "gru"])
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--backend", default=None, help="cython | numpy | python (default: auto)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full", action="store_true", help="full BPTT instead of truncated")
    p.add_argument("--in-process", action="store_true", help="measure this process, not a child")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help="JSON path (default bench/results/memory_tbptt_<workload>.json)")
    args = p.parse_args(argv)
    if args.child:
        _child(args)
        return None
    result = run(args)
    mode = "full" if args.full else f"k{args.k}" + (f"_{args.k2}" if args.k2 else "")
    print(f"{'full BPTT' if args.full else f'TBPTT k1={args.k} k2={args.k2 or args.k}'} over "
          f"T={args.T:,}, H={args.hidden}, B={args.batch}, {args.dtype}, {args.cell}: "
          f"peak RSS {result['peak_rss_bytes'] / MB:.1f} MB (before training "
          f"{result['rss_before_training_bytes'] / MB:.1f} MB, training adds "
          f"{result['training_overhead_bytes'] / MB:.1f} MB) in {result['seconds']:.1f} s; "
          f"full BPTT would hold {result['full_bptt_estimate_bytes'] / MB:,.0f} MB "
          f"({result['full_bptt_states_bytes'] / MB:,.0f} MB of states)")
    name = (f"memory_tbptt_{args.cell}_T{args.T}_H{args.hidden}_B{args.batch}_{mode}_{args.dtype}")
    workload = {k: v for k, v in vars(args).items() if k not in ("child", "out")}
    path = write_json(name, {"workload": workload, "result": result, "machine": machine()},
                      args.out)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()

"""Forward + full BPTT per time step, Elman network: Cython vs NumPy vs pure-Python backends.

The workload is the whole training step: input projection, recurrence, linear head, mse loss
(reduction sum), backward through time and every weight gradient. Cost is linear in T, so the slow
backends run on a prefix of the sequence (--t-numpy, --t-python) and are compared per step.

    python bench/bench_elman.py                   # W1: I=2 H=16 O=1 B=1 T=100,000, float64
    python bench/bench_elman.py --dtype float32 --hidden 128 --batch 32 --input 32 --output 10 \
        -T 1000
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_json  # noqa: E402

from fastbptt.speed import compare_backends  # noqa: E402


def _print_row(backend, row):
    print(f"{backend:>7}: {row['us_per_step']:10.3f} us/step (median of {row['repeats']}, "
          f"T={row['T']})", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-T", type=int, default=100_000, help="sequence length for the Cython backend")
    p.add_argument("--t-numpy", type=int, default=20_000, help="steps timed for the NumPy backend")
    p.add_argument("--t-python", type=int, default=2_000,
                   help="steps timed for the pure-Python backend")
    p.add_argument("--input", type=int, default=2)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--output", type=int, default=1)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--cell", default="tanh", choices=["tanh", "relu", "lstm", "gru"])
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=1, help="n_threads passed to the kernels")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--backends", nargs="+", default=["cython", "numpy", "python"],
                   choices=["cython", "numpy", "python"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON path (default bench/results/<workload>.json)")
    args = p.parse_args(argv)
    rows = compare_backends(args.cell, args.input, args.hidden, args.output, args.batch, args.T,
                            np.dtype(args.dtype), args.backends,
                            {"numpy": args.t_numpy, "python": args.t_python}, args.repeats,
                            args.threads, args.seed, report=_print_row)
    for key, value in rows.get("cython", {}).items():
        if key.startswith("speedup_vs_"):
            print(f"cython is {value:8.1f}x {key[len('speedup_vs_'):]}")
    name = (f"{args.cell}_I{args.input}_H{args.hidden}_B{args.batch}_T{args.T}_{args.dtype}"
            f"_t{args.threads}")
    payload = {"workload": vars(args), "results": rows, "machine": machine()}
    path = write_json(name, payload, args.out)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()

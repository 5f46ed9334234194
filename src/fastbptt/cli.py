"""The `fastbptt` command: train the seeds' tasks, time the backends, check gradients.

    fastbptt demo                       train 8-bit addition, then time Cython vs NumPy vs pure Python
    fastbptt train addition --help      one seed experiment (addition, counting, digits)
    fastbptt adder --check              seed 002's hand-set adder on every pair of 8-bit numbers
    fastbptt bench --cell lstm          time the backends on one workload
    fastbptt gradcheck --cell gru       gradients against finite differences on a small random problem
    fastbptt config                     how fastbptt was built and which kernels run
"""

import argparse
import json
import sys

import numpy as np


def _add_workload_args(p, T=100_000):
    p.add_argument("--cell", default="tanh", help="tanh | relu | lstm | gru (default tanh)")
    p.add_argument("--input", type=int, default=2, help="input size I (default 2)")
    p.add_argument("--hidden", type=int, default=16, help="hidden size H (default 16)")
    p.add_argument("--output", type=int, default=1, help="output size O (default 1)")
    p.add_argument("--batch", type=int, default=1, help="batch size B (default 1)")
    p.add_argument("-T", "--steps", type=int, default=T, help=f"sequence length (default {T:,})")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=1, help="n_threads for the kernels (default 1)")


def _print_speed(rows):
    base = rows.get("cython")
    print(f"{'backend':>8} {'us/step':>10} {'steps timed':>12}  speed-up of cython")
    for name, row in rows.items():
        ratio = "" if name == "cython" or base is None else f"{row['us_per_step'] / base['us_per_step']:.0f}x"
        print(f"{name:>8} {row['us_per_step']:10.3f} {row['T']:12,}  {ratio}")


def cmd_bench(args):
    from .speed import compare_backends

    backends = args.backends or ["cython", "numpy", "python"]
    rows = compare_backends(args.cell, args.input, args.hidden, args.output, args.batch, args.steps,
                            np.dtype(args.dtype), backends, repeats=args.repeats,
                            n_threads=args.threads)
    _print_speed(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def cmd_gradcheck(args):
    from . import RNN, gradcheck

    rng = np.random.default_rng(args.seed)
    T, B = args.steps, args.batch
    m = RNN(args.input, args.hidden, None if args.head == "none" else args.output, cell=args.cell,
            output=None if args.head == "none" else args.head, loss=args.loss, seed=args.seed)
    X = rng.normal(size=(T, B, args.input))
    if args.loss == "ce":
        Y = rng.integers(0, args.output, size=(T, B))
    elif args.loss == "bce":
        Y = rng.integers(0, 2, size=(T, B, args.output)).astype(float)
    else:
        Y = rng.normal(size=(T, B, m.output_size))
    errors = gradcheck(m, X, Y)
    worst = max(errors.values())
    for name, err in errors.items():
        print(f"{name:>4}: {err:.2e}")
    ok = worst < args.tol
    print(f"worst relative error {worst:.2e} ({'ok' if ok else 'FAILED'}, tolerance {args.tol:g})")
    return 0 if ok else 1


def cmd_config(args):
    from . import show_config

    show_config()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastbptt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("bench", help="time the backends on one workload (forward + full BPTT)")
    _add_workload_args(p)
    p.add_argument("--backends", nargs="+", choices=["cython", "numpy", "python"])
    p.add_argument("--repeats", type=int, default=5, help="median of this many runs (default 5)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("gradcheck", help="check gradients against finite differences")
    _add_workload_args(p, T=6)
    p.set_defaults(hidden=5, batch=2, output=3)
    p.add_argument("--head", default="linear", choices=["linear", "sigmoid", "softmax", "none"])
    p.add_argument("--loss", default="mse", choices=["mse", "bce", "ce"])
    p.add_argument("--tol", type=float, default=1e-7)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("config", help="how fastbptt was built and which kernels run")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError, FloatingPointError, OSError) as exc:
        print(f"fastbptt {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

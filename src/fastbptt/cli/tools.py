"""The `fastbptt` commands that time, check and describe the build: `demo`, `bench`, `gradcheck`
and `config`."""

import json
import sys

import numpy as np

from .training import final_line, progress_log


def _add_workload_args(p, T=100_000, hidden=16, output=1, batch=1):
    p.add_argument("--cell", default="tanh", choices=["tanh", "relu", "lstm", "gru"],
                   help="tanh | relu | lstm | gru (default tanh)")
    p.add_argument("--input", type=int, default=2, help="input size I (default 2)")
    p.add_argument("--hidden", type=int, default=hidden, help=f"hidden size H (default {hidden})")
    p.add_argument("--output", type=int, default=output, help=f"output size O (default {output})")
    p.add_argument("--batch", type=int, default=batch, help=f"batch size B (default {batch})")
    p.add_argument("-T", "--steps", type=int, default=T, help=f"sequence length (default {T:,})")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                   help="float32 | float64 (default float64)")
    p.add_argument("--threads", type=int, default=1, help="n_threads for the kernels (default 1)")


def _print_speed(rows):
    base = rows.get("cython")
    print(f"{'backend':>8} {'us/step':>10} {'steps timed':>12}  speed-up of cython")
    for name, row in rows.items():
        ratio = ("" if name == "cython" or base is None
                 else f"{row['us_per_step'] / base['us_per_step']:.0f}x")
        print(f"{name:>8} {row['us_per_step']:10.3f} {row['T']:12,}  {ratio}")


def cmd_bench(args):
    from ..speed import compare_backends

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
    from .. import RNN, gradcheck

    if args.dtype != "float64":
        raise ValueError(f"--dtype {args.dtype}: finite differences need float64 (rounding in "
                         f"{args.dtype} swamps them); gradcheck runs in float64 only")
    rng = np.random.default_rng(args.seed)
    T, B = args.steps, args.batch
    m = RNN(args.input, args.hidden, None if args.head == "none" else args.output, cell=args.cell,
            output=None if args.head == "none" else args.head, loss=args.loss, seed=args.seed,
            backend=args.backend, n_threads=args.threads)
    X = rng.normal(size=(T, B, args.input))
    if args.loss == "ce":
        Y = rng.integers(0, args.output, size=(T, B))
    elif args.loss == "bce":
        Y = rng.integers(0, 2, size=(T, B, args.output)).astype(float)
    else:
        Y = rng.normal(size=(T, B, m.output_size))
    errors = gradcheck(m, X, Y)
    # NaN: every checked entry of that parameter sat at a relu kink (none measured)
    worst = max((e for e in errors.values() if not np.isnan(e)), default=0.0)
    print(f"{args.cell} RNN({args.input}, {args.hidden}, {m.output_size}), T={T}, B={B}, "
          f"{m.backend} backend, {m.n_threads} thread(s), float64:")
    for name, err in errors.items():
        kinks = errors.kinks.get(name, 0)
        print(f"{name:>4}: {err:.2e}" + (f" ({kinks} entries at a relu kink left out)" if kinks else ""))
    ok = worst < args.tol
    print(f"worst relative error {worst:.2e} ({'ok' if ok else 'FAILED'}, tolerance {args.tol:g})")
    return 0 if ok else 1


def cmd_config(args):
    from .. import show_config

    show_config()
    return 0



def cmd_demo(args):
    from .. import HAVE_CYTHON
    from .. import experiments as ex
    from ..speed import compare_backends

    print(f"1/2  Train {args.bits}-bit binary addition: the classic network (tanh RNN, 16 hidden "
          f"units, sigmoid output, squared error), plain SGD lr 0.1, one fresh random pair per "
          f"iteration, until every held-out pair is added exactly.", flush=True)
    r = ex.addition(n_bits=args.bits, iterations=args.iterations, stop_at=1.0, seed=args.seed,
                    log=progress_log(args))
    print(final_line(r))
    if r["iterations_to_perfect"] is None:
        print("demo: addition did not reach 100 % within the budget", file=sys.stderr)
        return 1
    backends = ["cython", "numpy", "python"] if HAVE_CYTHON else ["numpy", "python"]
    print(f"\n2/2  Time forward + full BPTT per time step on the addition network (tanh, I=2, H=16, "
          f"O=1, B=1, float64), T = {args.steps:,} for Cython, fewer for the slow backends:",
          flush=True)
    if not HAVE_CYTHON:
        print("     (the compiled kernels are not built: python setup.py build_ext --inplace)")
    rows = compare_backends("tanh", 2, 16, 1, 1, args.steps, np.float64, backends,
                            repeats=args.repeats)
    _print_speed(rows)
    if "cython" in rows:
        c = rows["cython"]
        print(f"\nCython is {c['speedup_vs_numpy']:.0f}x faster than NumPy and "
              f"{c['speedup_vs_python']:.0f}x faster than pure Python per step "
              f"({c['us_per_step']:.3f} us per step).")
    return 0



def add_parsers(sub):
    """The parsers of `demo`, `bench`, `gradcheck` and `config`."""
    p = sub.add_parser("demo", help="train 8-bit addition to 100 %%, then time the backends")
    p.add_argument("--bits", type=int, default=8, help="operand width (default 8)")
    p.add_argument("--iterations", type=int, default=5000, help="training budget (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=100_000, help="time steps timed (default 100,000)")
    p.add_argument("--repeats", type=int, default=3, help="median of this many runs (default 3)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines while training")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="time the backends on one workload (forward + full BPTT)")
    _add_workload_args(p)
    p.add_argument("--backends", nargs="+", choices=["cython", "numpy", "python"])
    p.add_argument("--repeats", type=int, default=5, help="median of this many runs (default 5)")
    p.add_argument("--json", help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("gradcheck", help="check gradients against finite differences",
                       description="Every gradient of a small random model against central finite "
                       "differences; exit 1 if the worst relative error exceeds --tol. Runs in "
                       "float64 (--dtype float32 is refused).")
    _add_workload_args(p, T=6, hidden=5, output=3, batch=2)
    p.add_argument("--head", default="linear", choices=["linear", "sigmoid", "softmax", "none"],
                   help="output layer (default linear; none: the hidden state is the output)")
    p.add_argument("--loss", default="mse", choices=["mse", "bce", "ce"], help="(default mse)")
    p.add_argument("--backend", choices=["auto", "cython", "numpy", "python"], default=None,
                   help="kernels checked (default: auto)")
    p.add_argument("--tol", type=float, default=1e-7,
                   help="largest relative error accepted (default 1e-7)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and weights (default 0)")
    p.set_defaults(func=cmd_gradcheck)

    p = sub.add_parser("config", help="how fastbptt was built and which kernels run")
    p.set_defaults(func=cmd_config)

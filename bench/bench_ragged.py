"""A ragged batch (variable lengths) against a full batch of the same number of valid steps.

The workload is the whole training step, `RNN.loss_and_grad` (projection, recurrence, linear head,
mse loss with reduction sum, backward through time, every gradient), on three batches of B
sequences:

  ragged  lengths drawn uniformly in [--min-length, --max-length], padded to the longest, `lengths=`
  dense   B sequences all of the mean length (about the same number of valid steps, no padding)
  padded  the ragged batch without `lengths=`: every padded step computed (what lengths save)

Figures are per valid step, so the ratio ragged / dense is what the variable lengths cost beyond
the work itself (issue 7's bound: at most 1.2). Each figure is the median of --repeats runs; ragged
and dense take turns within each repeat, padded is timed after them (run in the same turns, it
slowed whichever call came next by a few per cent).

    python bench/bench_ragged.py                  # LSTM float32, I=32 H=128 B=32, lengths 10..1000
    python bench/bench_ragged.py --cell gru --threads 2
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    blas_threads,
    machine,
    pin_to_cores,
    time_call,
    time_interleaved,
    write_json,
)

BOUND = 1.2  # issue 7: ragged at most 1.2x the full batch of the same valid steps


def batches(args):
    """(X, Y, lengths) of the ragged batch and (X, Y) of the dense one, from one seeded stream."""
    rng = np.random.default_rng(args.seed)
    B, dtype = args.batch, np.dtype(args.dtype)
    lengths = rng.integers(args.min_length, args.max_length + 1, size=B)
    T = int(lengths.max())
    X = rng.normal(size=(T, B, args.input)).astype(dtype)
    Y = rng.normal(size=(T, B, args.output)).astype(dtype)
    T_dense = max(1, int(round(lengths.sum() / B)))
    Xd = rng.normal(size=(T_dense, B, args.input)).astype(dtype)
    Yd = rng.normal(size=(T_dense, B, args.output)).astype(dtype)
    return (X, Y, lengths), (Xd, Yd)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "tanh", "relu"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--output", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--min-length", type=int, default=10)
    p.add_argument("--max-length", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1, help="n_threads of the kernels")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="BLAS threads (default --threads): with two kernel threads on two cores, "
                        "one BLAS thread keeps the two pools from fighting")
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--pin", action="store_true",
                   help="pin the process to its first --threads cores (no peers here to keep in "
                        "check, and on a shared machine those cores may be the busy ones)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON path (default bench/results/<name>.json)")
    args = p.parse_args(argv)
    if not 1 <= args.min_length <= args.max_length:
        p.error("need 1 <= --min-length <= --max-length")
    if args.pin:
        args.cores = pin_to_cores(args.threads)
    if args.blas_threads is None:
        args.blas_threads = args.threads

    import fastbptt as fb

    (X, Y, lengths), (Xd, Yd) = batches(args)
    model = fb.RNN(args.input, args.hidden, args.output, cell=args.cell, output="linear",
                   loss="mse", reduction="sum", dtype=args.dtype, n_threads=args.threads,
                   seed=args.seed)
    steps = {"ragged": int(lengths.sum()), "dense": Xd.shape[0] * args.batch,
             "padded": int(lengths.sum())}
    compared = {
        "ragged": lambda: model.loss_and_grad(X, Y, lengths=lengths),
        "dense": lambda: model.loss_and_grad(Xd, Yd),
    }
    print(f"{args.cell} {args.dtype} I={args.input} H={args.hidden} B={args.batch}, lengths "
          f"{args.min_length}..{args.max_length}: longest {lengths.max()}, {steps['ragged']} valid "
          f"steps; dense batch of {Xd.shape[0]} steps ({steps['dense']})", flush=True)
    with blas_threads(args.blas_threads):
        times = time_interleaved(compared, args.repeats)
        # on its own: whichever call follows the padded one in a turn runs a few % slower
        times["padded"] = time_call(lambda: model.loss_and_grad(X, Y), args.repeats)
        where = machine()  # inside the limits, so the BLAS thread counts are the ones used
    results = {}
    for name, t in times.items():
        results[name] = dict(t, valid_steps=steps[name],
                             us_per_valid_step=t["median"] / steps[name] * 1e6)
        print(f"{name:>7}: {t['median'] * 1e3:9.2f} ms (median of {t['repeats']}), "
              f"{results[name]['us_per_valid_step']:8.3f} us per valid step", flush=True)
    ratio = results["ragged"]["us_per_valid_step"] / results["dense"]["us_per_valid_step"]
    saved = results["padded"]["median"] / results["ragged"]["median"]
    print(f"ragged / dense per valid step: {ratio:.3f} (bound {BOUND}: "
          f"{'within' if ratio <= BOUND else 'OVER'}); padding computed would cost {saved:.2f}x")
    name = (f"ragged_{args.cell}_I{args.input}_H{args.hidden}_B{args.batch}_L{args.min_length}-"
            f"{args.max_length}_{args.dtype}_t{args.threads}")
    if args.blas_threads != args.threads:
        name += f"_blas{args.blas_threads}"
    payload = {
        "workload": vars(args),
        "lengths": {"longest": int(lengths.max()), "mean": float(lengths.mean()),
                    "valid_steps": steps["ragged"], "values": lengths.tolist()},
        "results": results,
        "ratio_ragged_vs_dense": ratio,
        "bound": BOUND,
        "within_bound": bool(ratio <= BOUND),
        "speedup_vs_padded": saved,
        "backend": model.backend,
        "machine": where,
    }
    path = write_json(name, payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()

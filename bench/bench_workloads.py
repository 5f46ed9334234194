"""The issue's named workloads: microseconds per time step of forward + full BPTT with every
gradient (linear head, mse, reduction sum), fastbptt against its NumPy and pure-Python backends and,
when they are installed, PyTorch (CPU) and JAX (jit + lax.scan), first checked to agree with it.

    W1 tanh I=2 H=16 O=1 B=1 T=100,000          float64, float32
    W2 tanh I=32 H=128 O=10 B=32 T=1,000        float32
    W3 tanh I=256 H=512 O=10 B=64 T=200         float32, float64 (as % of the machine's GEMM peak)
    L1 lstm I=2 H=16 O=1 B=1 T=20,000           float64, float32
    L2 lstm I=32 H=128 O=10 B=32 T=1,000        float32, float64 (as % of the GEMM peak)

Times are medians of --repeats runs, the backends and peers taking turns within each repeat (so a
change in the machine's load touches them alike); the slow backends and the peers run on a prefix of
the sequence (cost is linear in T) and are compared per step. --threads sets fastbptt's n_threads,
the BLAS pools and the peers' threads together; run with 1 and with 2 for both columns of the table.

    python bench/bench_workloads.py                      # everything, 1 thread
    python bench/bench_workloads.py --threads 2 --rows W2 W3
    python bench/bench_workloads.py --tiny --out /tmp/b  # seconds: what the tests run
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers  # noqa: E402
from _common import (  # noqa: E402
    BASELINE_STEPS,
    PEER_STEPS,
    WORKLOADS,
    blas_threads,
    data,
    flops_per_step,
    gemm_call,
    machine,
    model,
    pin_to_cores,
    pyplot,
    time_interleaved,
    write_json,
)

# which baselines each row is compared with (the issues ask for the ratios on W1, W2 and the LSTM rows)
BASELINES = {"W1": ("numpy", "python"), "W2": ("numpy",), "L1": ("numpy", "python"), "L2": ("numpy",)}
TINY_T = 40
# the rows whose target is a share of the machine's GEMM peak
PEAK_ROWS = ("W3", "L2")


def _us(seconds, steps):
    return seconds / steps * 1e6


def run_row(name, dtype, args, peers):
    spec = dict(WORKLOADS[name])
    T = min(spec["T"], TINY_T) if args.tiny else spec["T"]
    X, Y = data(spec, dtype, args.seed, T)
    row = {"row": name, "dtype": dtype, "T": T,
           **{k: spec[k] for k in ("cell", "I", "H", "O", "B")},
           "target_us": spec["dtypes"][dtype], "threads": args.threads}
    m = model(spec, dtype, "cython", args.threads, args.seed)
    # name -> (callable, steps it covers); timed together, taking turns
    runs = {"fastbptt": (lambda: m.loss_and_grad(X, Y), T)}
    ref_cache = {}

    def reference(steps):
        """fastbptt's loss and grads on the first `steps` steps (what the others must reproduce)."""
        if steps not in ref_cache:
            ref_cache[steps] = m.loss_and_grad(X[:steps], Y[:steps])
        return ref_cache[steps]

    for backend in BASELINES.get(name, ()) if args.baselines else ():
        steps = min(T, BASELINE_STEPS[backend] if not args.tiny else TINY_T)
        other = model(spec, dtype, backend, 1, args.seed)
        loss, _ = other.loss_and_grad(X[:steps], Y[:steps])
        ref_loss, _ = reference(steps)
        if not np.isclose(loss, ref_loss, rtol=1e-3 if dtype == "float32" else 1e-9):
            raise AssertionError(f"{backend} backend loss {loss} != fastbptt {ref_loss}")
        runs[backend] = (lambda o=other, s=steps: o.loss_and_grad(X[:s], Y[:s]), steps)
    for peer in peers:
        steps = min(T, PEER_STEPS if not args.tiny else TINY_T)
        check_steps = min(steps, 200)
        runner = _peers.RUNNERS[peer]
        try:
            _, loss, grads = runner(spec["cell"], dict(m.params), X[:check_steps], Y[:check_steps],
                                    args.threads)
            ref_loss, ref_grads = reference(check_steps)
            row[f"{peer}_max_rel_diff"] = _peers.check(peer, loss, grads, ref_loss, ref_grads,
                                                       dtype)
            fn = runner(spec["cell"], dict(m.params), X[:steps], Y[:steps], args.threads)[0]
        except AssertionError as exc:
            row[f"{peer}_error"] = str(exc)
            print(f"  {peer}: {exc}", flush=True)
            continue
        runs[peer] = (fn, steps)
    if name in PEAK_ROWS:
        # the GEMM peak is timed in the same turns, so a change in load touches it alike, with BLAS
        # on --threads threads whatever --blas-threads says: the peak of the cores fastbptt may use
        gemm_inner, gemm_flops = gemm_call(dtype, 256 if args.tiny else 1536)

        def gemm_fn():
            with blas_threads(args.threads):
                gemm_inner()
    fns = {k: fn for k, (fn, _) in runs.items()}
    if name in PEAK_ROWS:
        fns["gemm"] = gemm_fn
    timed = time_interleaved(fns, args.repeats, settle=0.0 if args.tiny else args.settle,
                             rewarm_below=args.rewarm_below)
    for key, (_, steps) in runs.items():
        row[f"{key}_us"] = _us(timed[key]["median"], steps)
        row[f"{key}_us_min"] = _us(timed[key]["min"], steps)
        if key != "fastbptt":
            row[f"{key}_steps"] = steps
            row[f"ratio_{key}"] = row[f"{key}_us"] / row["fastbptt_us"]
    if name in PEAK_ROWS:
        row["gflop_per_step"] = flops_per_step(spec["cell"], spec["I"], spec["H"], spec["O"],
                                               spec["B"]) / 1e9
        # the peak is the GEMM's best repeat; fastbptt is taken at its median (conservative)
        row["gemm_peak_gflops"] = gemm_flops / timed["gemm"]["min"] / 1e9
        row["gemm_median_gflops"] = gemm_flops / timed["gemm"]["median"] / 1e9
        row["gflops"] = row["gflop_per_step"] / (row["fastbptt_us"] * 1e-6)
        row["pct_of_peak"] = 100 * row["gflops"] / row["gemm_peak_gflops"]
    return row


def describe(row):
    parts = [f"{row['row']} {row['dtype']:<7} {row['fastbptt_us']:10.3f} us/step"]
    if row["target_us"] is not None:
        parts.append(f"(target <= {row['target_us']:g})")
    for key in ("numpy", "python", "torch", "jax"):
        if f"{key}_us" in row:
            parts.append(f"{key} {row[f'{key}_us']:.3f} ({row[f'ratio_{key}']:.1f}x)")
    if "pct_of_peak" in row:
        parts.append(f"{row['gflops']:.1f} GFLOP/s = {row['pct_of_peak']:.0f}% of GEMM peak "
                     f"{row['gemm_peak_gflops']:.1f}")
    return "  ".join(parts)


def plot(rows, path, threads):
    plt = pyplot()
    if plt is None:
        return None
    keys = [k for k in ("fastbptt", "numpy", "python", "torch", "jax")
            if any(f"{k}_us" in r for r in rows)]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 1.2 + 0.16 * len(rows) * len(keys))))
    height = 0.8 / len(keys)
    for j, key in enumerate(keys):
        ys = [i + j * height for i in range(len(rows))]
        xs = [r.get(f"{key}_us", np.nan) for r in rows]
        ax.barh(ys, xs, height=height, label=key)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))])
    ax.set_yticklabels([f"{r['row']} {r['dtype']}" for r in rows])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per time step (forward + full BPTT), log scale")
    ax.set_title(f"fastbptt workloads, {threads} thread(s)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"],
                   choices=["float64", "float32"], help="restrict the rows' dtypes")
    p.add_argument("--threads", type=int, default=1,
                   help="fastbptt n_threads, BLAS threads and the peers' threads")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="BLAS threads (NumPy/SciPy's OpenBLAS, so fastbptt's head and the NumPy "
                        "backend) when not --threads: with two kernel threads, one BLAS thread "
                        "keeps the two pools from fighting over two cores")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--settle", type=float, default=0.2,
                   help="seconds of sleep before each timed call, so that the previous library's "
                        "worker threads are idle (XLA's stay busy for up to 0.1 s)")
    p.add_argument("--rewarm-below", type=float, default=1.0,
                   help="seconds: a callable faster than this is called once more, untimed, before "
                        "each timed call (steady state of back-to-back calls); 0 to time cold turns")
    p.add_argument("--no-baselines", dest="baselines", action="store_false",
                   help="skip the NumPy and pure-Python backends")
    p.add_argument("--peers", nargs="*", default=None, choices=list(_peers.PEERS),
                   help="peers to time (default: every one installed; none with an empty list)")
    p.add_argument("--tiny", action="store_true", help=f"T <= {TINY_T}: a smoke run in seconds")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin the process to --threads cores (pinning keeps peers that size "
                        "their own thread pools, such as XLA's, to the same cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="directory for the JSON and PNG (default bench/results)")
    args = p.parse_args(argv)
    if args.pin:
        args.cores = pin_to_cores(args.threads)
    _peers.configure_threads(args.threads)
    peers = _peers.available() if args.peers is None else args.peers
    rows = []
    if args.blas_threads is None:
        args.blas_threads = args.threads
    with blas_threads(args.blas_threads):
        for name in args.rows:
            for dtype in WORKLOADS[name]["dtypes"]:
                if dtype in args.dtypes:
                    rows.append(run_row(name, dtype, args, peers))
                    print(describe(rows[-1]), flush=True)
        where = machine()  # inside the limits, so the BLAS thread counts are the ones used
    out = Path(args.out) if args.out else None
    stem = f"workloads_t{args.threads}" + ("_tiny" if args.tiny else "")
    if args.blas_threads != args.threads:
        stem += f"_blas{args.blas_threads}"
    payload = {"settings": vars(args), "peers": peers, "rows": rows, "machine": where}
    path = write_json(stem, payload, out / f"{stem}.json" if out else None)
    png = plot(rows, (out or path.parent) / f"{stem}.png", args.threads)
    print(f"wrote {path}" + (f" and {png}" if png else ""))
    return payload


if __name__ == "__main__":
    main()

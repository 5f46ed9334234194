"""Time per step against the sequence length T, from 100 to 1,000,000, for every backend (log-log).

One workload (default W1: tanh I=2 H=16 O=1 B=1, float64), forward + full BPTT with every gradient.
Cost must be linear in T: the time per step stays flat, and the fitted slope of log(time) against
log(T) over T >= 1,000 is reported (1.0 = linear). The slow backends stop at smaller T (--max-numpy,
--max-python, --max-peer); PyTorch and JAX are included when installed and agree with fastbptt.

    python bench/bench_scaling.py                        # W1 float64, T = 100 .. 1,000,000
    python bench/bench_scaling.py --row W2 --dtype float32 --max-T 100000
    python bench/bench_scaling.py --tiny --out /tmp/b    # seconds: what the tests run
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers  # noqa: E402
from _common import (  # noqa: E402
    WORKLOADS,
    blas_threads,
    data,
    machine,
    model,
    pin_to_cores,
    pyplot,
    time_call,
    write_json,
)


def grid(lo, hi):
    """1, 3, 10, 30, ... between lo and hi."""
    out, t = [], 1
    while t <= hi:
        for m in (1, 3):
            if lo <= t * m <= hi:
                out.append(t * m)
        t *= 10
    return out


def slope(Ts, seconds, from_T=1000):
    """Least-squares slope of log(seconds) against log(T) for T >= from_T (None with < 2 points)."""
    pts = [(np.log(T), np.log(s)) for T, s in zip(Ts, seconds, strict=True) if T >= from_T]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def repeats_for(T, base):
    """Fewer repeats at large T: the spread shrinks with the run's length."""
    return max(1, base if T <= 10_000 else base // 2 if T <= 100_000 else 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--row", default="W1", choices=list(WORKLOADS))
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--min-T", type=int, default=100)
    p.add_argument("--max-T", type=int, default=1_000_000)
    p.add_argument("--max-numpy", type=int, default=30_000)
    p.add_argument("--max-python", type=int, default=3_000)
    p.add_argument("--max-peer", type=int, default=100_000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--peers", nargs="*", default=None, choices=list(_peers.PEERS),
                   help="peers to time (default: every one installed; none with an empty list)")
    p.add_argument("--tiny", action="store_true", help="T from 10 to 300: a smoke run in seconds")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin the process to --threads cores (pinning keeps peers that size "
                        "their own thread pools, such as XLA's, to the same cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="directory for the JSON and PNG (default bench/results)")
    args = p.parse_args(argv)
    if args.tiny:
        args.min_T, args.max_T, args.max_numpy = 10, 300, 300
        args.max_python = args.max_peer = 30
        args.repeats = 1
    if args.pin:
        args.cores = pin_to_cores(args.threads)
    _peers.configure_threads(args.threads)
    peers = _peers.available() if args.peers is None else args.peers
    spec = WORKLOADS[args.row]
    X, Y = data(spec, args.dtype, args.seed, args.max_T)
    limits = {"cython": args.max_T, "numpy": args.max_numpy, "python": args.max_python}
    limits.update({peer: args.max_peer for peer in peers})
    series = {}
    with blas_threads(args.threads):
        fast = model(spec, args.dtype, "cython", args.threads, args.seed)
        for backend, top in limits.items():
            Ts, secs = [], []
            if backend in _peers.PEERS:
                T0 = min(top, 200)
                _, loss, grads = _peers.RUNNERS[backend](spec["cell"], dict(fast.params), X[:T0],
                                                         Y[:T0], args.threads)
                ref_loss, ref_grads = fast.loss_and_grad(X[:T0], Y[:T0])
                try:
                    _peers.check(backend, loss, grads, ref_loss, ref_grads, args.dtype)
                except AssertionError as exc:
                    print(f"{backend}: {exc}; not timed")
                    continue
            else:
                m = fast if backend == "cython" else model(spec, args.dtype, backend, 1, args.seed)
            for T in grid(args.min_T, top):
                if backend in _peers.PEERS:
                    fn = _peers.RUNNERS[backend](spec["cell"], dict(fast.params), X[:T], Y[:T],
                                                 args.threads)[0]
                else:
                    def fn(m=m, T=T):
                        return m.loss_and_grad(X[:T], Y[:T])
                t = time_call(fn, repeats_for(T, args.repeats))
                Ts.append(T)
                secs.append(t["median"])
                print(f"{backend:>7} T={T:>9,}: {t['median'] / T * 1e6:10.3f} us/step", flush=True)
            series[backend] = {"T": Ts, "seconds": secs,
                               "us_per_step": [s / T * 1e6 for T, s in zip(Ts, secs, strict=True)],
                               "slope": slope(Ts, secs)}
            if series[backend]["slope"] is not None:
                print(f"{backend:>7} slope of log(time) on log(T), T >= 1,000: "
                      f"{series[backend]['slope']:.3f}")
        where = machine()  # inside the limits, so the BLAS thread counts are the ones used
    out = Path(args.out) if args.out else None
    stem = f"scaling_{args.row}_{args.dtype}_t{args.threads}" + ("_tiny" if args.tiny else "")
    payload = {"settings": vars(args), "workload": spec, "peers": peers, "series": series,
               "machine": where}
    path = write_json(stem, payload, out / f"{stem}.json" if out else None)
    png = plot(series, (out or path.parent) / f"{stem}.png", args)
    print(f"wrote {path}" + (f" and {png}" if png else ""))
    return payload


def plot(series, path, args):
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for backend, s in series.items():
        label = backend if s["slope"] is None else f"{backend} (slope {s['slope']:.2f})"
        ax.loglog(s["T"], s["us_per_step"], marker="o", label=label)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("microseconds per time step")
    ax.set_title(f"{args.row} {args.dtype}, forward + full BPTT, {args.threads} thread(s): "
                 "flat = linear in T", fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()

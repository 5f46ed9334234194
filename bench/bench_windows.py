"""Training windows: one forward + full BPTT with every gradient over a short window (T = 16, 64,
256), the size users train LSTMs and GRUs at (I=32 H=128 O=10 B=32, float32, linear head, mse, sum),
for the tanh, LSTM and GRU cells: fastbptt against its NumPy backend and, when installed, PyTorch
(checked first to compute the same loss and gradients). Microseconds per step, medians of the
turns; the callables take turns within each repeat, so the machine's load touches them alike.

    python bench/bench_windows.py                    # 1 and 2 threads
    python bench/bench_windows.py --threads 1 --cells lstm --windows 16
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _peers  # noqa: E402
from _common import blas_threads, data, machine, model, time_interleaved, write_json  # noqa: E402

SHAPE = dict(I=32, H=128, O=10, B=32)


def run(cells, windows, threads_list, repeats, peers, dtype="float32"):
    rows = []
    for threads in threads_list:
        for cell in cells:
            for T in windows:
                spec = dict(SHAPE, cell=cell, T=T)
                X, Y = data(spec, dtype, 0, T)
                m = model(spec, dtype, "cython", threads)
                ref_loss, ref_grads = m.loss_and_grad(X, Y)
                fns = {"fastbptt": lambda m=m, X=X, Y=Y: m.loss_and_grad(X, Y)}
                other = model(spec, dtype, "numpy", threads)
                fns["numpy"] = lambda o=other, X=X, Y=Y: o.loss_and_grad(X, Y)
                for peer in peers:
                    fn, loss, grads = _peers.RUNNERS[peer](cell, m.params, X, Y, threads)
                    _peers.check(peer, loss, grads, ref_loss, ref_grads, dtype)
                    fns[peer] = fn
                with blas_threads(threads):
                    timed = time_interleaved(fns, repeats, rewarm_below=1.0)
                row = {"cell": cell, "T": T, "threads": threads, "dtype": dtype, **SHAPE}
                for name, t in timed.items():
                    row[f"{name}_us"] = t["median"] / T * 1e6
                for name in fns:
                    if name != "fastbptt":
                        row[f"speedup_vs_{name}"] = row[f"{name}_us"] / row["fastbptt_us"]
                rows.append(row)
                print(f"{cell:>4} T={T:<4} {threads} thread(s): " + ", ".join(
                    f"{n} {row[f'{n}_us']:.1f}" for n in fns) + " us/step", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["tanh", "lstm", "gru"], choices=["tanh", "lstm", "gru"])
    p.add_argument("--windows", nargs="+", type=int, default=[16, 64, 256])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--peers", nargs="*", default=None, choices=["torch"],
                   help="default: PyTorch when installed")
    p.add_argument("--out", help="JSON path (default bench/results/windows.json)")
    args = p.parse_args(argv)
    peers = [x for x in _peers.available() if x == "torch"] if args.peers is None else args.peers
    rows = run(args.cells, args.windows, args.threads, args.repeats, peers)
    info = machine()
    payload = {"machine": info, "simd": info["fastbptt"].get("simd"), "threads": args.threads,
               "peers": peers, "rows": rows}
    path = write_json("windows", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()

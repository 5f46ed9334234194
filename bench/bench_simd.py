"""The named workloads under each SIMD set this CPU runs, timed in turns in one run (so the machine's
load touches every set alike), beside one large NumPy GEMM, the machine's peak: microseconds per step
of forward + full BPTT and, for the GEMM-shaped work, % of that peak.

    python bench/bench_simd.py                              # W3 and L2, float32 and float64, 1 thread
    python bench/bench_simd.py --rows W3 --dtypes float32 --threads 2
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    WORKLOADS,
    blas_threads,
    data,
    flops_per_step,
    gemm_call,
    machine,
    model,
    time_interleaved,
    write_json,
)


def run(rows, dtypes, threads, repeats, tiny=False):
    from fastbptt import _simd

    sets = _simd.supported()
    out = []
    for name in rows:
        spec = dict(WORKLOADS[name])
        for dtype in dtypes:
            T = min(spec["T"], 20) if tiny else spec["T"]
            X, Y = data(spec, dtype, 0, T)
            m = model(spec, dtype, "cython", threads)
            fns = {}
            for s in sets:
                def call(s=s, m=m, X=X, Y=Y):
                    _simd.use(s)
                    m.loss_and_grad(X, Y)
                fns[s] = call
            gemm, gemm_flops = gemm_call(dtype, 256 if tiny else 1536)
            with blas_threads(threads):
                fns["gemm"] = gemm
                timed = time_interleaved(fns, repeats, rewarm_below=1.0)
            _simd.use()
            peak = gemm_flops / timed["gemm"]["min"] / 1e9
            flops = flops_per_step(spec["cell"], spec["I"], spec["H"], spec["O"], spec["B"])
            row = {"row": name, "dtype": dtype, "T": T, "threads": threads,
                   "gemm_peak_gflops": peak, "sets": {}}
            for s in sets:
                us = timed[s]["median"] / T * 1e6
                gflops = flops / (us * 1e-6) / 1e9
                row["sets"][s] = {"us_per_step": us, "gflops": gflops, "pct_of_peak": 100 * gflops / peak}
            out.append(row)
            print(f"{name} {dtype} {threads} thread(s), GEMM peak {peak:.1f} GFLOP/s: " + ", ".join(
                f"{s} {v['us_per_step']:.1f} us/step ({v['pct_of_peak']:.0f} %)"
                for s, v in row["sets"].items()), flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="+", default=["W3", "L2"], choices=list(WORKLOADS))
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="T <= 20 and a small GEMM: a smoke run")
    p.add_argument("--out", help="directory for the JSON (default bench/results)")
    args = p.parse_args(argv)
    import fastbptt

    rows = run(args.rows, args.dtypes, args.threads, args.repeats, args.tiny)
    info = {"machine": machine(), "simd_supported": fastbptt.config()["simd_supported"],
            "threads": args.threads, "rows": rows}
    path = write_json(f"simd_{args.threads}t", info, Path(args.out) / f"simd_{args.threads}t.json"
                      if args.out else None)
    print(f"wrote {path}")
    return info


if __name__ == "__main__":
    main()

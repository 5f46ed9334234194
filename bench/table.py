"""The results table of bench/README.md, in Markdown, from bench_workloads.py's JSON files.

    python bench/table.py              # bench/results/workloads_t1.json and workloads_t2_blas1.json
    python bench/table.py results/workloads_t1.json other.json
"""

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PEERS = ("torch", "jax")


def _fmt(us):
    if us is None:
        return "-"
    return f"{us:.3g}" if us < 10 else f"{us:,.0f}"


def _cell(row, key):
    """'median (min)' microseconds per step, or '-'."""
    if row is None or f"{key}_us" not in row:
        return "-"
    return f"{_fmt(row[f'{key}_us'])} ({_fmt(row.get(f'{key}_us_min'))})"


def table(runs):
    """Markdown table: one line per (row, dtype), a fastbptt column per thread setting, the ratios
    and the peers of the first run, and W3's share of the GEMM peak per run."""
    threads = [str(run["settings"]["threads"]) + (
        f" (BLAS {run['settings']['blas_threads']})"
        if run["settings"].get("blas_threads", run["settings"]["threads"])
        != run["settings"]["threads"] else "") for run in runs]
    index = [{(r["row"], r["dtype"]): r for r in run["rows"]} for run in runs]
    keys = list(index[0])
    for other in index[1:]:
        keys += [k for k in other if k not in keys]
    head = ["workload", "dtype", "target us/step"]
    head += [f"fastbptt {t} thr, us/step median (min)" for t in threads]
    head += ["vs NumPy", "vs pure Python"]
    head += [f"{p} {threads[0]} thr (x slower)" for p in PEERS]
    head += [f"% GEMM peak, {t} thr" for t in threads]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        first = index[0].get(key)
        any_row = next(ix[key] for ix in index if key in ix)
        cells = [key[0], key[1], _fmt(any_row["target_us"]) if any_row["target_us"] else "-"]
        cells += [_cell(ix.get(key), "fastbptt") for ix in index]
        for base in ("numpy", "python"):
            ratio = first.get(f"ratio_{base}") if first else None
            text = "-" if ratio is None else f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"
            cells.append(text)
        for peer in PEERS:
            if first and f"{peer}_us" in first:
                cells.append(f"{_fmt(first[f'{peer}_us'])} ({first[f'ratio_{peer}']:.1f}x)")
            else:
                cells.append("-")
        for ix in index:
            row = ix.get(key)
            cells.append(f"{row['pct_of_peak']:.0f}% of {row['gemm_peak_gflops']:.0f} GFLOP/s"
                         if row and "pct_of_peak" in row else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="*", help="bench_workloads.py JSON files, one per thread setting")
    args = p.parse_args(argv)
    files = args.files or [f for f in (RESULTS / "workloads_t1.json",
                                       RESULTS / "workloads_t2_blas1.json") if f.exists()]
    if not files:
        sys.exit("no results: run bench/bench_workloads.py first")
    runs = [json.loads(Path(f).read_text()) for f in files]
    text = table(runs)
    print(text)
    return text


if __name__ == "__main__":
    main()

"""Token inputs against one-hot inputs: a word-level vocabulary (V=10,000) into H=256 units, B=32
sequences of T=64 steps, float32. Per cell: the median wall time of one training step's gradient
(`loss_and_grad`, the same call fit makes per update) for token ids (input="tokens") and for their
one-hot rows (input="dense"), taken in turns so load on the machine touches both alike; the bytes of
the input itself and the peak memory NumPy allocates during the step (tracemalloc).

    python bench/bench_tokens.py
    python bench/bench_tokens.py --cells lstm --vocab 50000 --threads 2
"""

import argparse
import sys
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import blas_threads, machine, time_interleaved, write_json  # noqa: E402


def peak_bytes(fn):
    """The peak of NumPy's allocations (traced by tracemalloc) during one call of fn."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def row(cell, V, H, O, B, T, dtype, threads, repeats):
    import fastbptt as fb

    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, size=(T, B))
    one_hot = np.zeros((T, B, V), dtype=dtype)
    np.put_along_axis(one_hot, ids[:, :, None], 1, axis=2)
    Y = rng.integers(0, O, size=(T, B))
    kw = dict(cell=cell, output="softmax", loss="ce", dtype=dtype, n_threads=threads, seed=0)
    tokens, dense = fb.RNN(V, H, O, input="tokens", **kw), fb.RNN(V, H, O, **kw)
    calls = {"tokens": lambda: tokens.loss_and_grad(ids, Y),
             "one_hot": lambda: dense.loss_and_grad(one_hot, Y)}
    (loss_t, g_t), (loss_d, g_d) = calls["tokens"](), calls["one_hot"]()
    diff = max(float(np.abs(g_t[k] - g_d[k]).max() / max(np.abs(g_d[k]).max(), 1e-30))
               for k in g_d)
    with blas_threads(threads):
        times = time_interleaved(calls, repeats)
    out = {"cell": cell, "V": V, "H": H, "O": O, "B": B, "T": T, "dtype": np.dtype(dtype).name,
           "threads": threads, "max_rel_grad_diff": diff, "loss_diff": abs(loss_t - loss_d)}
    for name, x in (("tokens", ids), ("one_hot", one_hot)):
        out[f"{name}_ms"] = times[name]["median"] * 1e3
        out[f"{name}_input_bytes"] = int(x.nbytes)
        out[f"{name}_peak_bytes"] = int(peak_bytes(calls[name]))
    out["speedup"] = out["one_hot_ms"] / out["tokens_ms"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", nargs="+", default=["lstm", "tanh"])
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--outputs", type=int, default=16, help="classes of the softmax head")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--tiny", action="store_true", help="a smoke test: small sizes, 2 repeats")
    p.add_argument("--out", help="JSON path (default bench/results/tokens.json)")
    args = p.parse_args(argv)
    if args.tiny:
        args.vocab, args.hidden, args.batch, args.steps, args.repeats = 50, 8, 3, 5, 2
    rows = [row(c, args.vocab, args.hidden, args.outputs, args.batch, args.steps,
                np.dtype(args.dtype), args.threads, args.repeats) for c in args.cells]
    mib = 1 << 20
    print(f"V={args.vocab} H={args.hidden} O={args.outputs} B={args.batch} T={args.steps} "
          f"{args.dtype}, {args.threads} thread(s); loss_and_grad, median of {args.repeats}")
    for r in rows:
        print(f"{r['cell']:5s} tokens {r['tokens_ms']:9.2f} ms  one-hot {r['one_hot_ms']:9.2f} ms"
              f"  x{r['speedup']:.1f};  input {r['tokens_input_bytes'] / mib:.3f} vs "
              f"{r['one_hot_input_bytes'] / mib:.1f} MiB, peak {r['tokens_peak_bytes'] / mib:.1f}"
              f" vs {r['one_hot_peak_bytes'] / mib:.1f} MiB; grads agree to "
              f"{r['max_rel_grad_diff']:.1e}")
    payload = {"machine": machine(), "rows": rows}
    path = write_json("tokens" + ("_tiny" if args.tiny else ""), payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()

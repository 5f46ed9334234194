"""A character language model: train on a text file, then write new text with `fastbptt.sample`.

    python examples/char_lm.py                       # the text shipped beside this script
    python examples/char_lm.py --text my.txt --epochs 60 --hidden 256 --temperature 0.6

The text is cut into windows of --seq-len characters; the model reads each window one character at
a time (token ids over the text's alphabet, input="tokens": the same model as one-hot inputs,
without building them) and is trained to predict the next character at
every step (softmax output, cross-entropy). Sampling then runs the model one step at a time,
carrying its state from call to call, and feeds every drawn character back in.
"""

import argparse
import time
from pathlib import Path

import numpy as np

import fastbptt as fb

TEXT = Path(__file__).resolve().parent / "data" / "about_fastbptt.txt"


def windows(ids, seq_len):
    """Inputs (T, N) and next-character targets (T, N) from non-overlapping windows of the text."""
    n = (len(ids) - 1) // seq_len
    starts = np.arange(n) * seq_len
    X = np.stack([ids[s : s + seq_len] for s in starts], axis=1)
    Y = np.stack([ids[s + 1 : s + seq_len + 1] for s in starts], axis=1)
    return X, Y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", default=str(TEXT), help="a UTF-8 text file (default: the shipped one)")
    p.add_argument("--cell", default="lstm", choices=["tanh", "relu", "lstm", "gru"])
    p.add_argument("--hidden", type=int, default=128, help="hidden units (default 128)")
    p.add_argument("--seq-len", type=int, default=50, help="characters per window (default 50)")
    p.add_argument("--epochs", type=int, default=100, help="passes over the text (default 100)")
    p.add_argument("--batch", type=int, default=16, help="windows per update (default 16)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate (default 0.01)")
    p.add_argument("--prime", default="The ", help="text the sample starts from (default 'The ')")
    p.add_argument("--length", type=int, default=400, help="characters to write (default 400)")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    text = Path(args.text).read_text(encoding="utf-8")
    alphabet = sorted(set(text))
    index = {ch: i for i, ch in enumerate(alphabet)}
    ids = np.array([index[ch] for ch in text], dtype=np.int64)
    V = len(alphabet)
    X, Y = windows(ids, args.seq_len)  # (T, N) ids in, (T, N) ids of the next character out
    print(f"{len(text):,} characters, alphabet of {V}, {X.shape[1]} windows of {args.seq_len}")

    model = fb.RNN(V, args.hidden, V, cell=args.cell, output="softmax", loss="ce", input="tokens",
                   seed=args.seed)
    before = model.evaluate(X, Y)
    started = time.perf_counter()
    model.fit(X, Y, epochs=args.epochs, batch_size=args.batch, optimizer="adam", lr=args.lr,
              clip_norm=5.0, seed=args.seed, progress=False)
    after = model.evaluate(X, Y)
    print(f"cross-entropy per character {before:.3f} -> {after:.3f} (uniform: {np.log(V):.3f}) "
          f"in {time.perf_counter() - started:.1f} s")

    unknown = sorted(set(args.prime) - set(index))
    if unknown:
        raise SystemExit(f"--prime uses characters the text does not: {unknown}")
    drawn = fb.sample(model, [index[ch] for ch in args.prime], args.length,
                      temperature=args.temperature, seed=args.seed)
    print(f"--- sample, temperature {args.temperature:g} ---")
    print(args.prime + "".join(alphabet[i] for i in drawn))
    return after


if __name__ == "__main__":
    main()

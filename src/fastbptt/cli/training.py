"""The `fastbptt` commands of the seed experiments: `train TASK` (addition, counting, digits, mnist),
`adder` and `plot`, with their options and how their results are printed."""

import json

import numpy as np

from ..init import INITIALIZERS
from ..optim import OPTIMIZERS


def progress_log(args):
    """Progress lines to stdout, unless --quiet."""
    return None if args.quiet else (lambda line: print(line, flush=True))


def _seeds(args):
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}")
    return range(args.seed, args.seed + args.seeds)


def _print_summary(results):
    """One row per label: runs, final accuracy, how many reached 100 % and the median iterations."""
    from ..experiments import summarize

    summary = summarize(results)
    has_its = any("reached" in row for row in summary.values())
    head = f"{'':<24}{'runs':>5}  {'final accuracy: median (min-max)':<34}"
    if has_its:
        head += f"{'reached 100 %':>14}{'median iterations':>19}"
    print(head + f"{'s/run':>8}")
    for label, row in summary.items():
        acc = (f"{100 * row['accuracy_median']:.2f} % ({100 * row['accuracy_min']:.2f}-"
               f"{100 * row['accuracy_max']:.2f})")
        line = f"{label:<24}{row['runs']:>5}  {acc:<34}"
        if has_its:
            med = row["iterations_to_perfect_median"]
            shown = f"{med:,.0f}" if med is not None else f"> {row['budget']:,}"
            line += f"{str(row['reached']) + '/' + str(row['runs']):>14}{shown:>19}"
        print(line + f"{row['seconds_median']:>8.2f}")


def _finish(args, results, title):
    """Print the final figures, then write the plot and the JSON when asked."""
    from .. import experiments as ex

    if len(results) == 1:
        print(final_line(results[0]))
    else:
        _print_summary(results)
    if args.plot:
        ex.plot(results, args.plot, title=args.title or title)
        print(f"curves plotted to {args.plot}")
    if args.json:
        doc = {"command": f"train {args.task}", "title": args.title or title,
               "results": [ex.to_json(r) for r in results],
               "summary": ex.to_json(ex.summarize(results))}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"results written to {args.json}")
    return 0


def final_line(r):
    if r["task"] == "addition":
        its = r["iterations_to_perfect"]
        return (f"final held-out accuracy {100 * r['accuracy']:.2f} % of {r['test_pairs']:,} "
                f"pairs (bits {100 * r['bit_accuracy']:.2f} %); 100 % first at iteration "
                + (f"{its:,}" if its is not None else "- (never)")
                + f"; {r['iterations']:,} iterations in {r['seconds']:.2f} s"
                + (f"; DIVERGED: {r['diverged']}" if r["diverged"] else ""))
    if r["task"] == "counting":
        its = r["iterations_to_perfect"]
        w = r["weights"]
        return (f"final test accuracy {100 * r['accuracy']:.2f} % of steps (T = "
                f"{r['config']['T']}, largest error {r['max_error']:.3g}); 100 % first at "
                f"iteration " + (f"{its:,}" if its is not None else "- (never)")
                + f"; U = {w['U'][0]:.6g}, W = {w['W'][0]:.6g}, b = {w['b'][0]:.3g}"
                + f"; {r['iterations']:,} iterations in {r['seconds']:.2f} s"
                + (f"; DIVERGED: {r['diverged']}" if r["diverged"] else ""))
    by_step = " ".join(f"{100 * a:.0f}" for a in r["accuracy_by_step"])
    return (f"{r['label']}: final test accuracy {100 * r['accuracy']:.2f} % of {r['n_test']} "
            f"images (train {100 * r['train_accuracy']:.2f} %); by rows read (%): {by_step}; "
            f"{r['epochs']} epochs in {r['seconds']:.2f} s")


def _check_outputs(args):
    """Fail before training, not after, when --plot cannot be drawn."""
    if args.plot:
        from ..experiments import require_matplotlib

        require_matplotlib()


def _run_all(args, runs):
    """Run every (function, kwargs): one run in this process, logging its progress; several on
    --workers processes or the --dask scheduler (else one after another), a line each."""
    from ..experiments import call, dask_executor, iter_results, run_line

    if args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if len(runs) == 1:
        fn, kwargs = runs[0]
        return [fn(log=progress_log(args), **kwargs)]
    if args.dask:
        executor = dask_executor(args.dask)
    elif args.workers > 1:
        executor = None  # iter_results starts a local pool of --workers processes
    else:
        executor = False
    results = []
    try:
        if executor is False:
            done = (fn(**kwargs) for fn, kwargs in runs)
        else:
            done = iter_results(call, runs, executor, args.workers)
        for result in done:
            if not args.quiet:
                print(run_line(result), flush=True)
            results.append(result)
    finally:
        if executor:
            executor.shutdown()
    return results


def cmd_train_addition(args):
    from .. import experiments as ex

    _check_outputs(args)
    common = dict(n_bits=args.bits, hidden_size=args.hidden, iterations=args.iterations,
                  batch_size=args.batch, optimizer=args.optimizer, lr=args.lr, loss=args.loss,
                  reduction=args.reduction, n_test=args.test_pairs, eval_every=args.eval_every,
                  stop_at=1.0 if args.stop_at_perfect else None, backend=args.backend,
                  dtype=args.dtype)
    runs = [(ex.addition, dict(common, init=init, seed=seed, label=f"init={init}"))
            for init in args.init for seed in _seeds(args)]
    results = _run_all(args, runs)
    return _finish(args, results, f"{args.bits}-bit binary addition, tanh RNN H={args.hidden}, "
                                  f"{args.optimizer} lr={args.lr:g}")


_COUNTING_FLAGS = ("T", "init", "iterations", "optimizer", "lr", "lr_decay", "clip_norm", "tbptt",
                   "n_train", "n_test", "reduction", "eval_every")


def cmd_train_counting(args):
    from .. import experiments as ex

    _check_outputs(args)
    given = {k: getattr(args, k) for k in _COUNTING_FLAGS if getattr(args, k) is not None}
    if args.free_bias:
        given["fix_bias"] = False
    common = dict(given, backend=args.backend, dtype=args.dtype)
    runs = []
    for recipe in args.recipe or [None]:
        for seed in _seeds(args):
            if recipe is None:
                runs.append((ex.counting, dict(common, seed=seed)))
            else:
                runs.append((ex.counting_recipe, dict(common, name=recipe, seed=seed)))
    results = _run_all(args, runs)
    return _finish(args, results, "counting the ones seen so far: one ReLU unit, no output layer")


def cmd_train_digits(args):
    from .. import experiments as ex

    _check_outputs(args)
    targets = ["all", "last"] if args.target == "both" else [args.target]
    runs = [(ex.digits, dict(target=target, hidden_size=args.hidden, epochs=args.epochs,
                             batch_size=args.batch, optimizer=args.optimizer, lr=args.lr,
                             clip_norm=args.clip_norm, test_fraction=args.test_fraction,
                             seed=seed, backend=args.backend, dtype=args.dtype))
            for target in targets for seed in _seeds(args)]
    results = _run_all(args, runs)
    return _finish(args, results, f"8x8 digits read row by row, tanh RNN H={args.hidden}")


def cmd_train_mnist(args):
    from .. import experiments as ex

    _check_outputs(args)
    targets = ["all", "last"] if args.target == "both" else [args.target]
    runs = [(ex.mnist, dict(idx_dir=args.idx_dir, target=target, hidden_size=args.hidden,
                            epochs=args.epochs, batch_size=args.batch, optimizer=args.optimizer,
                            lr=args.lr, clip_norm=args.clip_norm, max_train=args.max_train,
                            max_test=args.max_test, seed=seed, backend=args.backend,
                            dtype=args.dtype))
            for target in targets for seed in _seeds(args)]
    results = _run_all(args, runs)
    return _finish(args, results, f"MNIST row by row, tanh RNN H={args.hidden}")


def cmd_adder(args):
    from .. import experiments as ex
    from ..tasks import (
        binary_addition,
        decode_bits,
        hand_set_adder,
        hand_set_adder_weights,
        sample_pairs,
    )

    corrected = not args.as_written
    if not args.check:
        for name, value in hand_set_adder_weights(corrected).items():
            print(f"{name} = {np.array2string(value, separator=', ')}")
        model = hand_set_adder(corrected, backend=args.backend)
        pairs = sample_pairs(args.examples, args.bits, seed=args.seed)
        X, _, a, b = binary_addition(None, args.bits, pairs=pairs)
        got = decode_bits(model.predict(X) > 0)
        for x, y, s in zip(a, b, got, strict=True):
            print(f"{x} + {y} = {s}" + ("" if s == x + y else f"   (wrong: {x + y})"))
        return 0
    r = ex.adder_check(args.bits, corrected=corrected, backend=args.backend)
    print(f"{r['label']}: {r['correct']:,} of {r['pairs']:,} pairs of {args.bits}-bit numbers "
          f"added exactly ({args.bits + 1}-bit sums; bits right {100 * r['bit_accuracy']:.2f} %) "
          f"in {r['seconds']:.2f} s")
    for a, b, got, want in r["wrong_examples"]:
        print(f"  wrong: {a} + {b} gave {got}, not {want}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(ex.to_json(r), f, indent=1)
    return 0 if r["exact"] else 1


def cmd_plot(args):
    from ..experiments import plot

    with open(args.results) as f:
        doc = json.load(f)
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise ValueError(f"{args.results} is not a results file of `fastbptt train ... --json`")
    plot(doc["results"], args.output, title=args.title or doc.get("title"))
    print(f"curves plotted to {args.output}")
    return 0



def _add_run_args(p):
    """Options every `train` task shares."""
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data, the weights and the order (default 0)")
    p.add_argument("--seeds", type=int, default=1,
                   help="run seeds SEED, SEED+1, ... (this many; default 1)")
    p.add_argument("--backend", choices=["auto", "cython", "numpy", "python"], default=None)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                   help="float32 | float64 (default %(default)s)")
    p.add_argument("--plot", metavar="PATH.png", help="save the curves as a PNG (needs matplotlib)")
    p.add_argument("--json", metavar="PATH", help="save the curves and figures as JSON")
    p.add_argument("--title", help="the plot's title")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("--workers", type=int, default=1,
                   help="run the seeds on this many local processes (default 1, one after another)")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run the seeds on the Dask scheduler at ADDRESS (needs the dask extra)")


def _add_rowwise_args(p, target, hidden, epochs, batch, lr, clip_norm):
    """The training options of the row-by-row image experiments, with each one's defaults."""
    p.add_argument("--target", default=target, choices=["all", "last", "both"],
                   help=f"loss on every step, the last, or both runs (default {target})")
    p.add_argument("--hidden", type=int, default=hidden, help=f"hidden units (default {hidden})")
    p.add_argument("--epochs", type=int, default=epochs,
                   help=f"passes over the data (default {epochs})")
    p.add_argument("--batch", type=int, default=batch, help=f"minibatch size (default {batch})")
    p.add_argument("--optimizer", default="adam", choices=list(OPTIMIZERS))
    p.add_argument("--lr", type=float, default=lr, help=f"learning rate (default {lr})")
    p.add_argument("--clip-norm", type=float, default=clip_norm,
                   help="clip the gradient's global norm"
                   + ("" if clip_norm is None else f" (default {clip_norm})"))



def add_parsers(sub):
    """The parsers of `train TASK`, `adder` and `plot`."""
    train = sub.add_parser("train",
                           help="train one of the bundled experiments (addition, counting, digits, mnist)")
    tasks = train.add_subparsers(dest="task", metavar="TASK", required=True)
    _add_addition_parser(tasks)
    _add_counting_parser(tasks)
    _add_row_by_row_parsers(tasks)
    _add_adder_parser(sub)
    _add_plot_parser(sub)


def _add_addition_parser(tasks):
    """`train addition`."""
    p = tasks.add_parser("addition",
                         help="binary addition, accuracy on held-out pairs",
                         description="The classic network: tanh RNN(2, H, 1), sigmoid output, mse "
                         "summed over steps, a fresh random pair per iteration; accuracy = whole "
                         "sums right on held-out pairs. Several --init (and --seeds) are compared "
                         "on one plot.")
    p.add_argument("--bits", type=int, default=8,
                   help="operand width n; sums have n+1 bits (default 8)")
    p.add_argument("--hidden", type=int, default=16, help="hidden units (default 16)")
    p.add_argument("--init", nargs="+", default=["fan_in"], choices=sorted(INITIALIZERS),
                   metavar="NAME", help="initialiser(s) among " + ", ".join(sorted(INITIALIZERS))
                   + "; the three compared for addition: fan_in uniform uniform_positive (default fan_in)")
    p.add_argument("--iterations", type=int, default=3000, help="parameter updates (default 3000)")
    p.add_argument("--batch", type=int, default=1, help="fresh pairs per update (default 1)")
    p.add_argument("--optimizer", default="sgd",
                   choices=list(OPTIMIZERS))
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    p.add_argument("--loss", default="mse", choices=["mse", "bce"])
    p.add_argument("--reduction", default="sum", choices=["sum", "mean"])
    p.add_argument("--test-pairs", type=int, help="held-out pairs (default min(4096, 4^n/4))")
    p.add_argument("--eval-every", type=int, default=100, help="iterations between evaluations")
    p.add_argument("--stop-at-perfect", action="store_true",
                   help="stop once every held-out pair is right")
    _add_run_args(p)
    p.set_defaults(func=cmd_train_addition)


def _add_counting_parser(tasks):
    """`train counting`."""
    from ..experiments import COUNTING_RECIPES

    p = tasks.add_parser("counting",
                         help="count the ones seen so far with one ReLU unit",
                         description="One ReLU unit: h_t = relu(W h_{t-1} + U x_t), no output layer, "
                         "loss 0.5 (h_t - count_t)^2 summed; the defaults are the original set-up "
                         "(T 5, U and W from U(0, 2), SGD lr 0.001, 1000 iterations, 4 training "
                         "sequences). A --recipe sets several options at once; flags override it.")
    p.add_argument("--recipe", nargs="+", choices=list(COUNTING_RECIPES), metavar="NAME",
                   help="named set-up(s): " + "; ".join(
                       f"{k}: " + ", ".join(f"{a}={b}" for a, b in v.items())
                       for k, v in COUNTING_RECIPES.items()))
    p.add_argument("-T", type=int, help="sequence length (default 5)")
    p.add_argument("--init", help="report (U, W from U(0, 2); default) | identity (W = 1) | any "
                                  "fastbptt initialiser")
    p.add_argument("--iterations", type=int, help="parameter updates (default 1000)")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS))
    p.add_argument("--lr", type=float, help="learning rate (default 0.001)")
    p.add_argument("--lr-decay", type=float, help="divide the rate by 1 + r * step")
    p.add_argument("--clip-norm", type=float, help="clip the gradient's global norm")
    p.add_argument("--tbptt", type=int, help="truncated BPTT every K steps (default: full BPTT)")
    p.add_argument("--train-seqs", dest="n_train", type=int, help="training sequences (default 4)")
    p.add_argument("--test-seqs", dest="n_test", type=int, help="test sequences (default 500)")
    p.add_argument("--reduction", choices=["sum", "mean"], help="loss over steps (default sum)")
    p.add_argument("--eval-every", type=int, help="iterations between evaluations")
    p.add_argument("--free-bias", action="store_true",
                   help="train the bias too (the original unit has none: held at 0 by default)")
    _add_run_args(p)
    p.set_defaults(func=cmd_train_counting)


def _add_row_by_row_parsers(tasks):
    """`train digits` and `train mnist`: one set-up, each with its defaults and its data's options."""
    digits = tasks.add_parser("digits", help="8x8 digits read row by row (needs scikit-learn)",
                              description="A tanh RNN reads an 8x8 digit one row per step, "
                              "softmax + cross-entropy; the loss on every step (the label "
                              "repeated) or on the last step. Accuracy is the last step's on a "
                              "held-out split.")
    _add_rowwise_args(digits, target="both", hidden=64, epochs=80, batch=32, lr=0.01,
                      clip_norm=None)
    digits.add_argument("--test-fraction", type=float, default=0.25,
                        help="held out (default 0.25)")
    _add_run_args(digits)
    digits.set_defaults(func=cmd_train_digits)

    mnist = tasks.add_parser("mnist", help="MNIST read row by row, from IDX files you have",
                             description="The digits set-up on MNIST: a tanh RNN reads a 28x28 "
                             "image one row per step, softmax + cross-entropy. The four IDX files "
                             "(train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                             "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz) are "
                             "read from --idx-dir; nothing is downloaded. Accuracy is the last "
                             "step's on the t10k files.")
    mnist.add_argument("--idx-dir", required=True, metavar="DIR",
                       help="folder of the four IDX files")
    _add_rowwise_args(mnist, target="last", hidden=128, epochs=2, batch=64, lr=0.002,
                      clip_norm=1.0)
    mnist.add_argument("--max-train", type=int, help="use only the first N training images")
    mnist.add_argument("--max-test", type=int, help="use only the first N test images")
    _add_run_args(mnist)
    mnist.set_defaults(func=cmd_train_mnist, dtype="float32")


def _add_adder_parser(sub):
    """`adder`."""
    p = sub.add_parser("adder", help="the hand-set threshold adder: show it, or --check every pair")
    p.add_argument("--check", action="store_true",
                   help="add every pair of --bits numbers, count exact sums (exit 1 if any wrong)")
    p.add_argument("--bits", type=int, default=8, help="operand width (default 8; --check: <= 12)")
    p.add_argument("--as-written", action="store_true",
                   help="the weights as first written (W all ones), which fail")
    p.add_argument("--examples", type=int, default=5, help="example sums without --check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", choices=["auto", "cython", "numpy", "python"], default=None)
    p.add_argument("--json", metavar="PATH", help="write the check's figures as JSON")
    p.set_defaults(func=cmd_adder)


def _add_plot_parser(sub):
    """`plot`."""
    p = sub.add_parser("plot", help="draw the curves of a `train ... --json` file again")
    p.add_argument("results", metavar="RESULTS.json", help="written by fastbptt train ... --json")
    p.add_argument("output", metavar="PATH.png", help="where to save the figure")
    p.add_argument("--title", help="the plot's title (default: the one stored with the results)")
    p.set_defaults(func=cmd_plot)

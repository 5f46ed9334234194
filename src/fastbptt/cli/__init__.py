"""The `fastbptt` command: train the bundled experiments, time the backends, check gradients.

    fastbptt demo                   train 8-bit addition, then time Cython vs NumPy vs pure Python
    fastbptt train addition --help  one experiment (addition, counting, digits, mnist)
    fastbptt adder --check          the hand-set threshold adder on every pair of 8-bit numbers
    fastbptt plot RESULTS.json X.png  draw the curves of a `train ... --json` file again
    fastbptt bench --cell lstm      time the backends on one workload
    fastbptt gradcheck --cell gru   gradients against finite differences on a small problem
    fastbptt config                 how fastbptt was built and which kernels run
"""

import argparse
import sys

from . import tools, training


def build_parser():
    from .._version import __version__

    parser = argparse.ArgumentParser(
        prog="fastbptt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastbptt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    training.add_parsers(sub)
    tools.add_parsers(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, ImportError, FloatingPointError, OSError) as exc:
        print(f"fastbptt {args.command}: error: {exc}", file=sys.stderr)
        return 1


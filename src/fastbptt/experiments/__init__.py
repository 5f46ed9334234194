"""The bundled experiments, runnable from Python and from the command line (`fastbptt train ...`).

- `addition`: an Elman network learning binary addition bit by bit, fresh random pairs every
  iteration, accuracy on held-out pairs the training never sees; `INITS_001` are the three weight
  initialisations it compares (fan-in uniform, uniform(-1, 1), uniform(0, 1)).
- `counting`: a one-neuron ReLU network (no output layer) counting the ones seen so far;
  `COUNTING_RECIPES` name the original set-up and what makes long sequences work.
- `digits`: a tanh RNN + softmax reading the 8x8 digits row by row, loss over every step or only
  the last one; `mnist`: the same on MNIST IDX files you have.
- `adder_check`: the hand-set threshold adder on every pair of n-bit numbers.
- `run_many(fn, configs, executor)`: many runs (seeds, sweeps) on a local process pool, a Dask
  cluster or any concurrent.futures.Executor, results in the order of the configs.

Every training function is reproducible from `seed` (data, initial weights and minibatch order
all derive from it) and returns a result dict: "task", "label", "config" (its arguments), "curves"
(lists against the iteration or epoch), the final figures ("accuracy", ...), "seconds", and the
trained "model" and fit's "history". `to_json(result)` keeps the JSON-able part,
`summarize(results)` groups runs by label, and `plot(results, path)` draws the curves (needs
matplotlib, the `plot` extra).

One module per seed task (`binary_addition`, `inits`, `threshold_adder`, `counting_ones`,
`row_by_row`), what their training shares (`tracking`), the runner (`runner`), and the results'
summaries and plots (`summary`, `plots`). Everything public is imported here: use
``fastbptt.experiments.NAME``.
"""

from .binary_addition import addition
from .counting_ones import COUNTING_RECIPES, counting, counting_recipe
from .inits import INITS_001, compare_inits
from .plots import plot, require_matplotlib
from .row_by_row import digits, mnist
from .runner import call, dask_executor, iter_results, run_many
from .summary import run_line, summarize, to_json
from .threshold_adder import adder_check

__all__ = [
    "COUNTING_RECIPES",
    "INITS_001",
    "adder_check",
    "addition",
    "call",
    "compare_inits",
    "counting",
    "counting_recipe",
    "dask_executor",
    "digits",
    "iter_results",
    "mnist",
    "plot",
    "require_matplotlib",
    "run_line",
    "run_many",
    "summarize",
    "to_json",
]

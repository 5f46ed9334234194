"""The curves of the experiments' results, drawn with matplotlib (the `plot` extra)."""

from __future__ import annotations

import io
import os

import numpy as np

from .summary import median_reached


def require_matplotlib() -> type:
    """Import matplotlib's Figure, or fail with an error that names the `plot` extra."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'fastbptt[plot]' "
                          "(or pip install matplotlib)") from exc
    return Figure


def _by_label(results):
    groups = {}
    for result in results:
        groups.setdefault(result["label"], []).append(result)
    return groups


def _draw_runs(ax, groups, x_key, y_key, legend=None):
    """One colour per label; every run of a label as its own line."""
    for index, (label, runs) in enumerate(groups.items()):
        alpha = 1.0 if len(runs) == 1 else 0.55
        for k, run in enumerate(runs):
            ys = [np.nan if v is None else v for v in run["curves"][y_key]]
            ax.plot(run["curves"][x_key], ys, color=f"C{index % 10}", lw=1.2, alpha=alpha,
                    label=(legend(label, runs) if legend else label) if k == 0 else None)


def _reached_legend(label, runs):
    its = [r["iterations_to_perfect"] for r in runs]
    med = median_reached(its)
    reached = sum(v is not None for v in its)
    if med is None:
        return f"{label}: 100 % in {reached}/{len(runs)} runs"
    tail = "" if len(runs) == 1 else f" (median; {reached}/{len(runs)} runs)"
    return f"{label}: 100 % at {med:,.0f} it.{tail}"


def plot(results: dict | list[dict], path: str | os.PathLike | None = None,
         title: str | None = None, dpi: int = 90):
    """Draw the curves of results of one task on one figure; save it to `path` if given.

    addition: held-out accuracy and training loss against the iteration; counting: test accuracy,
    loss and the recurrent weight W; digits and mnist: test accuracy against the epoch and against
    the number of rows read. Needs matplotlib (the `plot` extra).

    Parameters
    ----------
    results : dict or list of dict
        Results of one training function (each run a line, one colour per label).
    path : str or path-like, optional
        Where to save the figure (PNG through a 256-colour palette when Pillow is there).
    title : str, optional
        The figure's title.
    dpi : int, default 90

    Returns
    -------
    matplotlib.figure.Figure
    """
    Figure = require_matplotlib()
    if isinstance(results, dict):
        results = [results]
    kinds = {r["task"] for r in results}
    if len(kinds) != 1 or kinds & {"adder"}:
        raise ValueError(f"plot takes training results of one task, got tasks {sorted(kinds)}")
    task = kinds.pop()
    groups = _by_label(results)
    n_panels = 3 if task == "counting" else 2
    fig = Figure(figsize=(4.2 * n_panels, 3.4), layout="constrained")
    axes = fig.subplots(1, n_panels)
    if task in ("addition", "counting"):
        _draw_iteration_panels(axes, groups, task)
    else:
        _draw_epoch_panels(axes, groups)
    _legend_below(fig, axes[0])
    for ax in axes:
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    if path is not None:
        _save(fig, path, dpi)
    return fig


def _draw_iteration_panels(axes, groups, task):
    """addition and counting: accuracy and loss against the iteration; counting adds W."""
    what = "held-out" if task == "addition" else "test"
    _draw_runs(axes[0], groups, "step", "accuracy", _reached_legend)
    axes[0].set_ylabel(f"{what} accuracy" + (" (whole sum right)" if task == "addition"
                                              else " (rounded count right)"))
    _draw_runs(axes[1], groups, "step", "loss")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("training loss (mean between points)")
    for ax in axes:
        ax.set_xlabel("iteration (parameter update)")
    if task == "counting":
        _draw_runs(axes[2], groups, "step", "W")
        largest = max(abs(w) for runs in groups.values() for r in runs for w in r["curves"]["W"])
        if largest > 10:  # weights that blew up: log scale both ways, linear within +-1
            axes[2].set_yscale("symlog", linthresh=1.0)
        axes[2].axhline(1.0, color="0.5", lw=0.8, ls=":")
        axes[2].set_ylabel("recurrent weight W (exact: 1)")


def _draw_epoch_panels(axes, groups):
    """digits and mnist: accuracy against the epoch, and against the number of rows read."""
    _draw_runs(axes[0], groups, "epoch", "accuracy")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("test accuracy (last step)")
    for index, runs in enumerate(groups.values()):
        for run in runs:
            rows = np.arange(1, len(run["accuracy_by_step"]) + 1)
            axes[1].plot(rows, run["accuracy_by_step"], "o-", ms=3, color=f"C{index % 10}",
                         alpha=1.0 if len(runs) == 1 else 0.55)
    axes[1].set_xlabel("rows read")
    axes[1].set_ylabel("test accuracy of the prediction")


def _legend_below(fig, ax):
    """The first panel's legend below the panels: inside them it would hide the curves of the
    runs that fail."""
    handles, labels = ax.get_legend_handles_labels()
    # about 15 small characters per inch: as many columns as fit the figure's width
    ncols = int(fig.get_figwidth() * 15 // (max(len(text) for text in labels) + 6))
    fig.legend(handles, labels, loc="outside lower center", ncols=max(1, min(ncols, len(labels))),
               fontsize="small", frameon=False)


def _save(fig, path, dpi):
    """Save the figure; a PNG goes through a 256-colour palette (curves need no more), which makes
    it several times smaller, when Pillow (a matplotlib dependency) is there."""
    if not os.fspath(path).lower().endswith(".png"):
        fig.savefig(path, dpi=dpi)
        return
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    try:
        from PIL import Image
    except ImportError:
        with open(path, "wb") as f:
            f.write(buffer.getvalue())
        return
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=256).save(path, optimize=True)

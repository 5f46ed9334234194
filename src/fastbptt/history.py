"""What fit records (History) and shows while it runs (a progress bar or plain lines)."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np


class History:
    """What fit recorded; ``history["loss"]`` is the per-epoch series (any epoch key, else a
    step key).

    Attributes
    ----------
    steps : dict of str to list
        Per update: "step", "epoch", "loss" (the loss of the data that update saw, reduced as the
        model reduces), "lr", "grad_norm" (before clipping) and "metric".
    epochs : dict of str to list
        Per epoch: "epoch", "step" (the last step of the epoch), "loss" (over the epoch's data as
        trained), "metric", "val_loss", "val_metric", "seconds".
    stopped_early : bool
        Whether a callback stopped training.
    stop_reason : str or None
        Why it stopped.
    optimizer : Optimizer
        The optimizer fit used (pass it to the next fit to keep its state).
    """

    def __init__(self, metric=None, validation=False, config=None):
        self.metric = metric
        self.config = dict(config or {})
        self.steps = {"step": [], "epoch": [], "loss": [], "lr": [], "grad_norm": []}
        self.epochs = {"epoch": [], "step": [], "loss": [], "seconds": []}
        if metric is not None:
            self.steps["metric"] = []
            self.epochs["metric"] = []
        if validation:
            self.epochs["val_loss"] = []
            if metric is not None:
                self.epochs["val_metric"] = []
        self.stopped_early = False
        self.stop_reason = None
        self.optimizer = None

    def _append(self, table, logs):
        for key, column in table.items():
            column.append(logs.get(key))

    def __getitem__(self, key):
        if key in self.epochs:
            return self.epochs[key]
        return self.steps[key]

    def __len__(self):
        return len(self.epochs["epoch"])

    def as_dict(self) -> dict[str, Any]:
        """Everything recorded, as plain lists and dicts (JSON-able)."""
        return {"steps": {k: list(v) for k, v in self.steps.items()},
                "epochs": {k: list(v) for k, v in self.epochs.items()},
                "metric": self.metric, "config": self.config,
                "stopped_early": self.stopped_early, "stop_reason": self.stop_reason}

    def __repr__(self):
        last = {k: v[-1] for k, v in self.epochs.items() if v}
        return (f"History({len(self.steps['step'])} steps, {len(self)} epochs, last epoch {last}"
                f"{', stopped early' if self.stopped_early else ''})")

    def plot(self, path: str | os.PathLike | None = None, axes: Any = None,
             per_step: bool = True, logy: bool = False) -> Any:
        """Loss (and metric) against the step: per step (thin), per epoch and validation (marks).

        Parameters
        ----------
        path : str or path-like, optional
            Also save the figure there.
        axes : matplotlib Axes or array of them, optional
            Draw into these (one per panel: loss, then the metric) instead of a new figure.
        per_step : bool, default True
            Draw the per-step series too.
        logy : bool, default False
            A log scale for the loss.

        Returns
        -------
        matplotlib.figure.Figure
            Needs matplotlib (the `plot` extra).
        """
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib: "
                              "pip install 'fastbptt[plot]'") from exc
        panels = ["loss"] + (["metric"] if self.metric is not None else [])
        if axes is None:
            fig = Figure(figsize=(5.0 * len(panels), 3.6), layout="constrained")
            axes = fig.subplots(1, len(panels), squeeze=False)[0]
        else:
            axes = np.atleast_1d(axes)
            fig = axes[0].figure
        if len(axes) < len(panels):
            raise ValueError(f"plot needs {len(panels)} axes ({', '.join(panels)}), "
                             f"got {len(axes)}")
        for ax, key in zip(axes, panels, strict=False):  # spare axes stay empty
            label = key if key == "loss" else str(self.metric)
            if per_step and self.steps[key]:
                ax.plot(self.steps["step"], _floats(self.steps[key]), lw=0.8, alpha=0.45,
                        label=f"{label} per step")
            if self.epochs[key]:
                ax.plot(self.epochs["step"], _floats(self.epochs[key]), "o-", ms=3,
                        label=f"{label} per epoch")
            val = self.epochs.get("val_" + key)
            if val:
                ax.plot(self.epochs["step"], _floats(val), "s--", ms=3, label=f"validation {label}")
            ax.set_xlabel("step")
            ax.set_ylabel(label)
            if logy and key == "loss":
                ax.set_yscale("log")
            ax.legend(fontsize="small")
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig


def _floats(values):
    return [np.nan if v is None else v for v in values]


def _fmt(logs, keys):
    parts = []
    for key in keys:
        value = logs.get(key)
        if value is not None:
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return " ".join(parts)


class Progress:
    """A tqdm bar when tqdm is installed, else a plain line every log_every steps; never fails."""

    KEYS = ("loss", "metric", "val_loss", "val_metric")

    def __init__(self, enabled, total, log_every):
        self.bar = None
        self.plain = False
        self.total = total
        self.every = log_every
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is the optional `progress` extra
            tqdm = None
        if tqdm is None:
            self.plain = True
            self.every = log_every or max(1, total // 10)
            return
        self.every = log_every or max(1, total // 100)
        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr)

    def step(self, step, epoch_logs_so_far):
        if self.bar is not None:
            self.bar.update(1)
            if step % self.every == 0:
                self.bar.set_postfix_str(_fmt(epoch_logs_so_far, self.KEYS), refresh=False)
        elif self.plain and (step % self.every == 0 or step == self.total):
            print(f"step {step}/{self.total} " + _fmt(epoch_logs_so_far, ("epoch",) + self.KEYS),
                  file=sys.stderr, flush=True)

    def epoch(self, logs):
        if self.bar is not None:
            self.bar.set_postfix_str(_fmt(logs, ("epoch",) + self.KEYS), refresh=True)

    def close(self, logs):
        if self.bar is not None:
            self.bar.close()
        elif self.plain and logs:
            print("done: " + _fmt(logs, ("epoch", "step") + self.KEYS), file=sys.stderr, flush=True)

"""Results grouped by label, one line per run, and their JSON-able part."""

from __future__ import annotations

import math
import statistics

import numpy as np

from .tracking import pct


def median_reached(values):
    """Median iterations to 100 %, a run that never got there counting as infinitely many."""
    finite = [math.inf if v is None else v for v in values]
    med = statistics.median(finite)
    return None if math.isinf(med) else med


def summarize(results: list[dict]) -> dict[str, dict]:
    """Runs grouped by label (in order), with their figures.

    Parameters
    ----------
    results : list of dict
        Results of the training functions.

    Returns
    -------
    dict of str to dict
        Per label: "runs", the final accuracy's "accuracy_median", "accuracy_min",
        "accuracy_max", "seconds_median", and for the tasks that record it how many "reached"
        100 % and the "iterations_to_perfect_median".
    """
    groups = {}
    for result in results:
        groups.setdefault(result["label"], []).append(result)
    out = {}
    for label, runs in groups.items():
        accs = [r["accuracy"] for r in runs]
        row = {"runs": len(runs), "accuracy_median": statistics.median(accs),
               "accuracy_min": min(accs), "accuracy_max": max(accs),
               "seconds_median": statistics.median(r["seconds"] for r in runs)}
        if "iterations_to_perfect" in runs[0]:
            its = [r["iterations_to_perfect"] for r in runs]
            row["reached"] = sum(v is not None for v in its)
            row["iterations_to_perfect"] = its
            row["iterations_to_perfect_median"] = median_reached(its)
            row["budget"] = runs[0]["config"]["iterations"]
        out[label] = row
    return out


def run_line(result: dict) -> str:
    """One line for a finished run: label, seed, final accuracy, iterations to 100 %, seconds."""
    parts = [f"{result['label']:<24}"]
    if "seed" in result.get("config", {}):
        parts.append(f"seed {result['config']['seed']:<3d}")
    parts.append(f"accuracy {pct(result['accuracy'])}")
    if "iterations_to_perfect" in result:
        its = result["iterations_to_perfect"]
        parts.append("100 % at iteration " + (f"{its:,}" if its is not None else
                                              f"- (not within {result['iterations']:,})"))
    parts.append(f"{result['seconds']:.2f} s")
    if result.get("diverged"):
        parts.append("DIVERGED")
    return "  ".join(parts)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(result: dict) -> dict:
    """The JSON-able part of a result (everything but the model and fit's History object)."""
    return _jsonable({k: v for k, v in result.items() if k not in ("model", "history")})

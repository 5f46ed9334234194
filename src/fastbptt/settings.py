"""The RNN constructor's settings: checked once, before anything is built, and given back by
`RNN.get_config` (which rebuilds the model) and `repr`. A new setting is added here and in
`RNN.__init__`."""

from __future__ import annotations

import numpy as np

from ._checks import as_dtype, check_fits, param_bytes, positive_int
from .cells import CELLS

INPUTS = ("dense", "tokens")


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_settings(input_size, hidden_size, output_size, cell, output, dtype, num_layers,
                   bidirectional, dropout, input, batch_first) -> dict:
    """The settings the layers and the head are built from, checked (a ValueError naming the first
    bad one), as a dict of the model's attribute names: input_size, hidden_size, output_size (H
    when output is None), cell_name, dtype, num_layers, bidirectional, dropout, input and
    batch_first. Refuses parameters that would not fit in memory."""
    input_size = positive_int("input_size", input_size)
    if input not in INPUTS:
        raise ValueError(f"input must be one of {', '.join(map(repr, INPUTS))}, got {input!r}")
    batch_first = _flag("batch_first", batch_first)
    hidden_size = positive_int("hidden_size", hidden_size)
    if output is None:
        if output_size not in (None, hidden_size):
            raise ValueError(f"output=None makes the hidden state the output, so output_size must "
                             f"be None or {hidden_size}, got {output_size!r}")
        output_size = hidden_size
    else:
        output_size = positive_int("output_size", output_size)
    dtype = as_dtype(dtype)
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; expected one of "
                         f"{', '.join(repr(c) for c in CELLS)}")
    num_layers = positive_int("num_layers", num_layers)
    bidirectional = _flag("bidirectional", bidirectional)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)) or not (
            0.0 <= dropout < 1.0):
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    check_fits(param_bytes(cell, input_size, hidden_size, None if output is None else output_size,
                           num_layers, 2 if bidirectional else 1, dtype),
               f"the parameters of a {cell} model of hidden_size={hidden_size}, "
               f"num_layers={num_layers}")
    if output is None and bidirectional:
        raise ValueError("output=None (the hidden state is the output) needs one direction; "
                         "use an output layer with bidirectional=True")
    return {"input_size": input_size, "hidden_size": hidden_size, "output_size": output_size,
            "cell_name": cell, "dtype": dtype, "num_layers": num_layers,
            "bidirectional": bidirectional, "dropout": float(dropout), "input": input,
            "batch_first": batch_first}


def config_of(model) -> dict:
    """The constructor's arguments of `model` as plain JSON-able values."""
    return {
        "input_size": model.input_size,
        "hidden_size": model.hidden_size,
        "output_size": None if model.output is None else model.output_size,
        "cell": model.cell_name,
        "output": model.output,
        "loss": model.loss,
        "reduction": model.reduction,
        "target": model.target,
        "dtype": model.dtype.name,
        "n_threads": model.n_threads,
        "num_layers": model.num_layers,
        "bidirectional": model.bidirectional,
        "dropout": model.dropout,
        "input": model.input,
        "batch_first": model.batch_first,
    }


def describe(model) -> str:
    """repr(model): the settings that define it, the defaults of the optional ones left out."""
    return (f"RNN(input_size={model.input_size}, hidden_size={model.hidden_size}, "
            f"output_size={model.output_size}, cell={model.cell_name!r}, "
            f"output={model.output!r}, loss={model.loss!r}, reduction={model.reduction!r}, "
            f"target={model.target!r}, dtype={model.dtype.name}, backend={model.backend!r}"
            + (f", num_layers={model.num_layers}" if model.num_layers > 1 else "")
            + (", bidirectional=True" if model.bidirectional else "")
            + (f", dropout={model.dropout}" if model.dropout else "")
            + (", input='tokens'" if model.input == "tokens" else "")
            + (", batch_first=True" if model.batch_first else "") + ")")

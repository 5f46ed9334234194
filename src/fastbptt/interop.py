"""Move weights between fastbptt and PyTorch's nn.RNN / nn.LSTM / nn.GRU, as NumPy arrays.

PyTorch keys a layer's weights ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``, with ``_reverse`` for the backward direction. The layouts are the same (gate
order i, f, g, o and r, z, n); the Elman and LSTM cells keep one bias where PyTorch has two, so the
two are summed on the way in and split as (b, 0) on the way out. The GRU keeps both, since r
multiplies the recurrent bias of n.
"""

import re

import numpy as np

from .model import RNN
from .stack import param_suffix

_KEY = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")
_GATES = {1: None, 3: "gru", 4: "lstm"}
_NAMES = {  # cell family -> (input weights, recurrent weights, input bias, recurrent bias)
    "elman": ("U", "W", "b", None),
    "lstm": ("Wx", "Wh", "b", None),
    "gru": ("Wx", "Wh", "bx", "bh"),
}


def _array(value):
    """A NumPy array from an array, a list, or a tensor (through .detach().cpu().numpy())."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _parse(state_dict):
    layers = {}
    for key, value in state_dict.items():
        m = _KEY.match(key)
        if m is None:
            if key.startswith("weight_hr"):
                raise ValueError("LSTM projections (proj_size > 0) are not supported")
            raise ValueError(f"unexpected key {key!r} in the state dict; expected weight_ih_l0, "
                             "weight_hh_l0, bias_ih_l0, bias_hh_l0 (and _l1.., _reverse)")
        kind, which, layer, reverse = m.groups()
        layers.setdefault((int(layer), 1 if reverse else 0), {})[f"{kind}_{which}"] = _array(value)
    if not layers:
        raise ValueError("the state dict has no weight_ih_l0 / weight_hh_l0")
    return layers


def from_torch_state_dict(state_dict, cell: str | None = None, nonlinearity: str = "tanh",
                          output_size: int | None = None, output: str | None = "linear", head=None,
                          **kwargs):
    """An RNN with the recurrent weights of a PyTorch RNN / LSTM / GRU state dict.

    Called as ``RNN.from_torch_state_dict(state_dict, ...)``.

    Parameters
    ----------
    state_dict : mapping of str to array_like
        ``module.state_dict()`` of an ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` (tensors or arrays),
        any number of layers, either direction.
    cell : str, optional
        Inferred from the gate count unless given: 4 gates "lstm", 3 "gru", 1 `nonlinearity`.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The Elman cell's, as given to ``nn.RNN``.
    output_size : int, optional
        Size of a new head; taken from `head` when that is given.
    output : {"linear", "sigmoid", "softmax", None}, default "linear"
        The head's activation; None makes the hidden state the output.
    head : tuple of (weight, bias), optional
        The head's weights, e.g. an ``nn.Linear``'s ``(weight, bias)``; a new head initialised
        from `seed` otherwise.
    **kwargs
        Passed on to RNN (dtype, loss, target, backend, seed, ...).

    Returns
    -------
    RNN
    """
    layers = _parse(state_dict)
    try:
        first = layers[(0, 0)]
        w_ih, w_hh = first["weight_ih"], first["weight_hh"]
    except KeyError as exc:
        raise ValueError(f"the state dict lacks {exc.args[0]}_l0") from None
    cell, gates = _cell_of(w_hh, cell, nonlinearity)
    num_layers = 1 + max(layer for layer, _ in layers)
    bidirectional = any(d == 1 for _, d in layers)
    if head is None and output is not None and output_size is None:
        raise ValueError("output_size is needed for a new output head (or output=None, or head=(V, c))")
    if head is not None:
        output_size = _array(head[0]).shape[0]
    model = RNN(w_ih.shape[1], w_hh.shape[1], None if output is None else output_size, cell=cell,
                output=output, num_layers=num_layers, bidirectional=bidirectional, **kwargs)
    values = _recurrent_values(layers, _NAMES[model.layers.family], gates * w_hh.shape[1],
                               num_layers, 2 if bidirectional else 1)
    if head is not None:
        values["V"], values["c"] = _array(head[0]), _array(head[1])
    model.params.update(values)  # checks every shape; all or nothing
    return model


def _cell_of(w_hh, cell, nonlinearity):
    """The cell a first layer's recurrent weights (G * H, H) make (checked against `cell` when
    given), and its gate count G."""
    hidden = w_hh.shape[1]
    if w_hh.ndim != 2 or w_hh.shape[0] % hidden:
        raise ValueError(f"weight_hh_l0 has shape {w_hh.shape}; expected (G * H, H)")
    gates = w_hh.shape[0] // hidden
    if gates not in _GATES:
        raise ValueError(f"weight_hh_l0 has {gates} gate blocks; expected 1 (RNN), 3 (GRU) or 4 (LSTM)")
    inferred = _GATES[gates] or nonlinearity
    if cell is None:
        cell = inferred
    elif (cell in ("tanh", "relu")) != (gates == 1) or (gates > 1 and cell != inferred):
        raise ValueError(f"cell={cell!r} does not match a state dict with {gates} gate blocks")
    return cell, gates


def _recurrent_values(layers, names, rows, num_layers, D):
    """fastbptt's recurrent parameters from PyTorch's per-layer, per-direction entries; the two
    biases summed for cells with one (rows: gates x hidden, the missing biases' size)."""
    values = {}
    for layer in range(num_layers):
        for d in range(D):
            entry = layers.get((layer, d))
            label = f"l{layer}" + ("_reverse" if d else "")
            if entry is None or "weight_ih" not in entry or "weight_hh" not in entry:
                raise ValueError(f"the state dict lacks weight_ih_{label} or weight_hh_{label}")
            suffix = param_suffix(layer, d)
            zeros = np.zeros(rows)
            b_ih, b_hh = entry.get("bias_ih", zeros), entry.get("bias_hh", zeros)
            values[names[0] + suffix] = entry["weight_ih"]
            values[names[1] + suffix] = entry["weight_hh"]
            if names[3] is None:
                values[names[2] + suffix] = np.asarray(b_ih, dtype=np.float64) + b_hh
            else:
                values[names[2] + suffix] = b_ih
                values[names[3] + suffix] = b_hh
    return values


def to_torch_state_dict(model) -> dict[str, np.ndarray]:
    """The recurrent weights as NumPy arrays keyed like PyTorch's RNN / LSTM / GRU state dict.

    Parameters
    ----------
    model : RNN
        The model whose recurrent layers are exported.

    Returns
    -------
    dict of str to ndarray
        ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ... (copies). Load it
        with ``module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})``. The head,
        when there is one, is ``model.params["V"]`` and ``["c"]`` (an ``nn.Linear``'s weight and
        bias).
    """
    names = _NAMES[model.layers.family]
    out = {}
    D = 2 if model.bidirectional else 1
    for layer in range(model.num_layers):
        for d in range(D):
            suffix = param_suffix(layer, d)
            key = f"_l{layer}" + ("_reverse" if d else "")
            p = model.params
            out["weight_ih" + key] = p[names[0] + suffix].copy()
            out["weight_hh" + key] = p[names[1] + suffix].copy()
            out["bias_ih" + key] = p[names[2] + suffix].copy()
            out["bias_hh" + key] = (np.zeros_like(p[names[2] + suffix]) if names[3] is None
                                    else p[names[3] + suffix].copy())
    return out

"""Checkpoints: a model (and optionally its optimizer's state) in one .npz file, without pickle.

Layout (every entry a plain numeric or unicode array, so np.load(allow_pickle=False) reads it):

- "format": "fastbptt.rnn"; "version": FORMAT_VERSION (int64)
- "config": the model's get_config() as UTF-8 JSON bytes (uint8)
- "param/<name>": every parameter, in the model's dtype
- optionally "optim/config" (JSON bytes: name, lr, hyperparameters, step count) and
  "optim/state/<param>/<slot>" arrays, to resume training.

The write is atomic: a temporary file in the same directory, flushed and fsynced, then renamed over
the target, so a crash leaves either the old file or the new one, never half of one. Reading checks
the format name, the version, every key, dtype and shape against the stored config, and turns any
failure to read (truncated zip, pickle payload, object arrays, bad JSON) into a ValueError that
names the file.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from typing import TYPE_CHECKING

import numpy as np

from .model import RNN
from .optim import optimizer_from_config

if TYPE_CHECKING:
    from .optim import Optimizer

FORMAT = "fastbptt.rnn"
FORMAT_VERSION = 1
# a stored config must name these; any other key must be an RNN constructor argument
_REQUIRED_KEYS = ("input_size", "hidden_size", "cell", "dtype")
_NOT_STORED = ("self", "backend")  # chosen when loading, not by the file


def _json_bytes(obj):
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def save(model: RNN, path: str | os.PathLike, optimizer: Optimizer | None = None) -> str:
    """Write a model (and an optimizer's state) to one .npz file, atomically.

    Parameters
    ----------
    model : RNN
        The model: its configuration and every parameter.
    path : str or path-like
        Where to write; exactly this name (no suffix is added; .npz is the convention). An existing
        file is replaced only once the new one is complete.
    optimizer : Optimizer, optional
        Its configuration, step count and state (moments, velocities) are stored too, so that
        ``load(path, with_optimizer=True)`` resumes training where it stopped.

    Returns
    -------
    str
        The path written.
    """
    path = os.fspath(path)
    arrays = {
        "format": np.array(FORMAT),
        "version": np.array(FORMAT_VERSION, dtype=np.int64),
        "config": _json_bytes(model.get_config()),
    }
    for name, value in model.params.items():
        arrays[f"param/{name}"] = np.ascontiguousarray(value)
    if optimizer is not None:
        arrays["optim/config"] = _json_bytes(optimizer.get_config())
        for key, value in optimizer.state_arrays().items():
            arrays[f"optim/state/{key}"] = np.ascontiguousarray(value)
    for key, value in arrays.items():  # plain numbers and text only, so nothing is ever pickled
        if value.dtype.kind not in "fiuU":
            raise TypeError(f"checkpoint entry {key!r} has dtype {value.dtype}; not saving it")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    return path


def _fsync_directory(directory):
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:  # some filesystems refuse fsync on a directory; the data itself is synced
        pass
    finally:
        os.close(dfd)


def _read_all(path):
    """Every entry of the .npz as a dict of arrays; any failure to read becomes a ValueError."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive")
        with data:
            return {key: data[key] for key in data.files}
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # BadZipFile, zlib.error, EOFError, pickle refusal, bad headers
        raise ValueError(f"{path!s} is not a readable fastbptt checkpoint: "
                         f"{type(exc).__name__}: {exc}") from exc


def _json(path, arrays, key):
    arr = arrays[key]
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise ValueError(f"{path!s}: entry {key!r} must be JSON bytes (uint8), got {arr.dtype} "
                         f"{arr.shape}")
    try:
        return json.loads(arr.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path!s}: entry {key!r} is not valid JSON: {exc}") from exc


def _check_header(path, arrays):
    for key in ("format", "version", "config"):
        if key not in arrays:
            raise ValueError(f"{path!s} is not a fastbptt checkpoint: it has no {key!r} entry "
                             f"(entries: {sorted(arrays)})")
    fmt = arrays["format"]
    if fmt.dtype.kind != "U" or fmt.shape != () or str(fmt) != FORMAT:
        raise ValueError(f"{path!s} is not a fastbptt model checkpoint (format {fmt!r}, "
                         f"expected {FORMAT!r})")
    version = arrays["version"]
    if version.dtype.kind not in "iu" or version.shape != ():
        raise ValueError(f"{path!s}: the format version must be an integer, got {version!r}")
    if int(version) != FORMAT_VERSION:
        newer = " (written by a newer fastbptt)" if int(version) > FORMAT_VERSION else ""
        raise ValueError(f"{path!s} has checkpoint format version {int(version)}{newer}; this "
                         f"fastbptt reads version {FORMAT_VERSION}")


def load(path: str | os.PathLike, backend: str | None = None, with_optimizer: bool = False):
    """Read a model written by `save` (no pickle; a corrupt or mismatched file is refused).

    Parameters
    ----------
    path : str or path-like
        A file written by `save` (or ``RNN.save``).
    backend : str, optional
        The kernels the loaded model runs on ("auto", "cython", "numpy", "python"); not stored.
    with_optimizer : bool, default False
        Also rebuild the optimizer stored with the model.

    Returns
    -------
    RNN or tuple of (RNN, Optimizer or None)
        The model; with ``with_optimizer=True``, the model and the stored optimizer (None when the
        file has none).

    Raises
    ------
    ValueError
        Naming the file, when it is not a fastbptt checkpoint, is truncated or corrupt, holds
        pickled or object data, or its arrays do not match its stored configuration.
    """
    path = os.fspath(path)
    arrays = _read_all(path)
    _check_header(path, arrays)
    config = _json(path, arrays, "config")
    allowed = set(inspect.signature(RNN.__init__).parameters) - set(_NOT_STORED)
    if not isinstance(config, dict):
        raise ValueError(f"{path!s}: the stored config is a {type(config).__name__}, not a dict")
    missing = set(_REQUIRED_KEYS) - set(config)
    unknown = set(config) - allowed
    if missing or unknown:
        raise ValueError(f"{path!s}: the stored config lacks keys {sorted(missing)} or has keys "
                         f"{sorted(unknown)} that RNN does not take")
    try:
        model = RNN(**config, backend=backend)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path!s}: the stored config does not describe a valid model: "
                         f"{exc}") from exc
    shapes = model.param_shapes()
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    optim = {k: v for k, v in arrays.items() if k.startswith("optim/")}
    known = {"format", "version", "config"} | {f"param/{n}" for n in params} | set(optim)
    extra = set(arrays) - known
    if extra:
        raise ValueError(f"{path!s}: unexpected entries {sorted(extra)}")
    if set(params) != set(shapes):
        raise ValueError(f"{path!s}: stored parameters {sorted(params)} do not match the model's "
                         f"{sorted(shapes)}")
    for name, value in params.items():
        if value.dtype != model.dtype or value.shape != shapes[name]:
            raise ValueError(f"{path!s}: parameter {name!r} is {value.dtype} {value.shape}; the "
                             f"config says {model.dtype} {shapes[name]}")
        if not np.isfinite(value).all():
            raise ValueError(f"{path!s}: parameter {name!r} contains NaN or Inf")
    model.params.update(params)
    if not with_optimizer:
        return model
    if not optim:
        return model, None
    if "optim/config" not in optim:
        raise ValueError(f"{path!s}: optimizer state without 'optim/config'")
    try:
        opt = optimizer_from_config(_json(path, arrays, "optim/config"))
        prefix = "optim/state/"
        state = {k[len(prefix):]: v for k, v in optim.items() if k.startswith(prefix)}
        stray = set(optim) - {"optim/config"} - {f"optim/state/{k}" for k in state}
        if stray:
            raise ValueError(f"unexpected optimizer entries {sorted(stray)}")
        for key, value in state.items():
            pname = key.rpartition("/")[0]
            if pname not in shapes or value.shape != shapes[pname] or value.dtype != model.dtype:
                raise ValueError(f"optimizer state {key!r} ({value.dtype} {value.shape}) does not "
                                 f"fit the model's parameters")
        opt.load_state_arrays(state, opt.t)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path!s}: the stored optimizer cannot be restored: {exc}") from exc
    return model, opt

"""Checkpoints: a model (and optionally its optimizer's state) in one .npz file, without pickle.

Layout (every entry a plain numeric or unicode array, so np.load(allow_pickle=False) reads it):

- "format": "fastbptt.rnn"; "version": FORMAT_VERSION (int64)
- "config": the model's get_config() as UTF-8 JSON bytes (uint8)
- "param/<name>": every parameter, in the model's dtype
- optionally "optim/config" (JSON bytes: name, lr, hyperparameters, step count) and
  "optim/state/<param>/<slot>" arrays, to resume training.

The write is atomic: a temporary file in the same directory, flushed and fsynced, then renamed over
the target, so a crash leaves either the old file or the new one, never half of one; the temporary
a killed save leaves behind is removed by a later save to the same path. A model with a non-finite
parameter is not saved (load would refuse it). Reading checks each member's header before its
data (so nothing larger than the file is allocated and nothing is unpickled), then the format
name, the version, the config's keys and values, and every parameter's name, dtype and shape,
all before the model is built; any failure (truncated zip, bad CRC, pickle payload, object arrays,
bad JSON, a config that does not match the arrays) is a ValueError that names the file.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
import zipfile
from typing import TYPE_CHECKING

import numpy as np

from ._checks import MAX_THREADS
from .model import RNN
from .optim import optimizer_from_config

try:
    import fcntl
except ImportError:  # not POSIX: stale temporaries are recognised by age alone
    fcntl = None

if TYPE_CHECKING:
    from .optim import Optimizer

FORMAT = "fastbptt.rnn"
FORMAT_VERSION = 1
# a stored config must name these; any other key must be one get_config writes (_CONFIG_CHECKS)
_REQUIRED_KEYS = ("input_size", "hidden_size", "cell", "dtype")


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
    for name, value in model.params.items():  # load refuses them: keep the old file instead
        if not np.isfinite(value).all():
            raise ValueError(f"parameter {name!r} contains NaN or Inf; not saving it (the file at "
                             f"{path!s} is left as it was)")
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
            _lock(f)  # marks the temporary as in use until it is renamed or its writer dies
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)
    _remove_stale_temporaries(directory, os.path.basename(path))
    return path


# a temporary is stale once no writer holds its lock and it is older than this: the age covers the
# instant between another writer's mkstemp and its lock
_STALE_SECONDS = 10.0


def _lock(f):
    """An exclusive advisory lock on an open temporary, held until it is closed (POSIX only)."""
    if fcntl is not None:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a filesystem without locks: the cleaner cannot lock it either
            pass


def _temporary_name(base):
    """The names save's mkstemp gives the temporaries of `base`: ".<base>.<8 characters>.tmp"."""
    return re.compile(r"\." + re.escape(base) + r"\.[A-Za-z0-9_]{8}\.tmp\Z")


def _remove_stale_temporaries(directory, base):
    """Delete the temporaries of `base` that a killed save left behind: named as save names them,
    older than _STALE_SECONDS, and not locked by a save still running (where locks are not
    available, only those older than a day)."""
    pattern = _temporary_name(base)
    min_age = _STALE_SECONDS if fcntl is not None else 86400.0
    try:
        names = [n for n in os.listdir(directory) if pattern.match(n)]
    except OSError:
        return
    for name in names:
        tmp = os.path.join(directory, name)
        try:
            if time.time() - os.lstat(tmp).st_mtime < min_age or os.path.islink(tmp):
                continue
            with open(tmp, "rb") as f:
                if fcntl is not None:
                    try:
                        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:  # a save in progress holds it
                        continue
                os.unlink(tmp)
        except OSError:  # gone already, or not ours to remove
            continue


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


def _read_members(path):
    """Every member of the archive as an array, each checked before its data is read: an
    uncompressed .npy of plain numbers or text whose header's shape fits in the member's bytes,
    so reading allocates no more than the file holds (and nothing is ever unpickled)."""
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise ValueError("it holds a single array, not an .npz archive")
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in arrays:
                raise ValueError(f"member {name!r} is not an .npy array, or a second one")
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                raise ValueError(f"member {name!r} is compressed; save writes them stored")
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"member {name!r} has .npy version {version}")
                read_header = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
                shape, fortran, dtype = read_header(f, max_header_size=1024)
                if dtype.hasobject or dtype.kind not in "biufU" or dtype.fields is not None:
                    raise ValueError(f"member {name!r} has dtype {dtype}")
                nbytes = math.prod(shape) * dtype.itemsize
                if nbytes > info.file_size:
                    raise ValueError(f"member {name!r} says shape {shape} of {dtype}, more than "
                                     f"its {info.file_size} bytes hold")
                raw = f.read(nbytes)
                # reading to the member's end also checks its CRC
                if len(raw) != nbytes or f.read(1):
                    raise ValueError(f"member {name!r} holds other than {nbytes} bytes of data")
            arrays[name[:-4]] = np.frombuffer(raw, dtype=dtype).reshape(
                shape, order="F" if fortran else "C")
    return arrays


def _read_all(path):
    """Every entry of the .npz as a dict of arrays; any failure to read becomes a ValueError."""
    try:
        return _read_members(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # BadZipFile (truncated, bad CRC), bad headers, wrong dtypes
        raise ValueError(f"{path!s} is not a readable fastbptt checkpoint: "
                         f"{type(exc).__name__}: {exc}") from exc


def _json(path, arrays, key):
    arr = arrays[key]
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise ValueError(f"{path!s}: entry {key!r} must be JSON bytes (uint8), got {arr.dtype} "
                         f"{arr.shape}")
    try:
        return json.loads(arr.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
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


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


# what each stored config value may be (the constructor checks how the values fit together)
_CONFIG_CHECKS = {
    "input_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "hidden_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "output_size": (lambda v: v is None or (_is_int(v) and v >= 1), "a positive integer or null"),
    "cell": (lambda v: isinstance(v, str), "a cell name"),
    "output": (lambda v: v is None or isinstance(v, str), "an output name or null"),
    "loss": (lambda v: isinstance(v, str), "a loss name"),
    "reduction": (lambda v: isinstance(v, str), "a reduction name"),
    "target": (lambda v: isinstance(v, str), "a target name"),
    "dtype": (lambda v: v in ("float32", "float64"), '"float32" or "float64"'),
    "n_threads": (lambda v: _is_int(v) and 1 <= v <= MAX_THREADS,
                  f"an integer in [1, {MAX_THREADS}]"),
    "num_layers": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "bidirectional": (lambda v: isinstance(v, bool), "true or false"),
    "dropout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                and 0 <= v < 1, "a number in [0, 1)"),
    "input": (lambda v: v in ("dense", "tokens"), '"dense" or "tokens"'),
    "batch_first": (lambda v: isinstance(v, bool), "true or false"),
}


def _check_config(path, config):
    if not isinstance(config, dict):
        raise ValueError(f"{path!s}: the stored config is a {type(config).__name__}, not a dict")
    missing = set(_REQUIRED_KEYS) - set(config)
    unknown = set(config) - set(_CONFIG_CHECKS)
    if missing or unknown:
        raise ValueError(f"{path!s}: the stored config lacks keys {sorted(missing)} or has keys "
                         f"{sorted(unknown)} that a saved model does not have")
    for key, value in config.items():
        ok, expected = _CONFIG_CHECKS[key]
        if not ok(value):
            raise ValueError(f"{path!s}: the stored config's {key!r} is {value!r:.80}; expected "
                             f"{expected}")


def _stored_shapes(path, config, n_params):
    """The parameter shapes the config describes, found without allocating any parameter: the
    layers are counted against the stored arrays first (each layer and direction has at least
    three), so a config cannot make this build more than the file's arrays justify."""
    from .heads import Head
    from .stack import Stack

    directions = 2 if config.get("bidirectional", False) else 1
    if config.get("num_layers", 1) * directions * 3 > n_params:
        raise ValueError(f"{path!s}: the config describes {config.get('num_layers', 1)} layers x "
                         f"{directions} directions, more than the file's {n_params} parameter "
                         f"arrays can hold")
    try:
        stack = Stack(config["cell"], config["input_size"], config["hidden_size"],
                      config.get("num_layers", 1), directions == 2)
        output = config.get("output", "linear")
        head = Head(output, config.get("loss", "mse"), config.get("reduction", "mean"),
                    config.get("target", "all"), stack.output_size,
                    config.get("output_size") if output is not None else stack.output_size)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path!s}: the stored config does not describe a valid model: "
                         f"{exc}") from exc
    return {**stack.param_shapes(), **head.param_shapes()}


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
        pickled or object data, or its arrays do not match its stored configuration. Every
        check runs before the model is built, so a crafted file allocates nothing beyond its own
        arrays.
    """
    path = os.fspath(path)
    arrays = _read_all(path)
    _check_header(path, arrays)
    config = _json(path, arrays, "config")
    _check_config(path, config)
    params, optim, shapes = _checked_params(path, arrays, config)
    try:
        # the stored arrays are the initial values: nothing is drawn only to be overwritten
        model = RNN(**config, backend=backend, init=params)
        model.init = None  # no scheme made these values, and the file's arrays need not be kept
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path!s}: the stored config does not describe a valid model: "
                         f"{exc}") from exc
    if not with_optimizer:
        return model
    if not optim:
        return model, None
    return model, _stored_optimizer(path, arrays, optim, shapes, model.dtype)


def _checked_params(path, arrays, config):
    """The stored parameters, the optimizer's entries and the parameters' shapes, once every
    entry is known and every parameter has the dtype and shape the config gives it."""
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    optim = {k: v for k, v in arrays.items() if k.startswith("optim/")}
    known = {"format", "version", "config"} | {f"param/{n}" for n in params} | set(optim)
    extra = set(arrays) - known
    if extra:
        raise ValueError(f"{path!s}: unexpected entries {sorted(extra)}")
    shapes = _stored_shapes(path, config, len(params))
    if set(params) != set(shapes):
        raise ValueError(f"{path!s}: stored parameters {sorted(params)} do not match the model's "
                         f"{sorted(shapes)}")
    dtype = np.dtype(config["dtype"])
    for name, value in params.items():
        if value.dtype != dtype or value.shape != shapes[name]:
            raise ValueError(f"{path!s}: parameter {name!r} is {value.dtype} {value.shape}; the "
                             f"config says {dtype} {shapes[name]}")
        if not np.isfinite(value).all():
            raise ValueError(f"{path!s}: parameter {name!r} contains NaN or Inf")
    return params, optim, shapes


def _stored_optimizer(path, arrays, optim, shapes, dtype):
    """The optimizer rebuilt from its stored config and state, each state array checked against
    the parameter it belongs to."""
    if "optim/config" not in optim:
        raise ValueError(f"{path!s}: optimizer state without 'optim/config'")
    try:
        ocfg = _json(path, arrays, "optim/config")
        if not isinstance(ocfg, dict) or not _is_int(ocfg.get("t", 0)) or ocfg.get("t", 0) < 0:
            raise ValueError("the config must be a dict whose step count t is an integer >= 0")
        opt = optimizer_from_config(ocfg)
        prefix = "optim/state/"
        state = {k[len(prefix):]: v for k, v in optim.items() if k.startswith(prefix)}
        stray = set(optim) - {"optim/config"} - {f"optim/state/{k}" for k in state}
        if stray:
            raise ValueError(f"unexpected optimizer entries {sorted(stray)}")
        for key, value in state.items():
            pname = key.rpartition("/")[0]
            if pname not in shapes or value.shape != shapes[pname] or value.dtype != dtype:
                raise ValueError(f"optimizer state {key!r} ({value.dtype} {value.shape}) does not "
                                 f"fit the model's parameters")
        opt.load_state_arrays(state, opt.t)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{path!s}: the stored optimizer cannot be restored: {exc}") from exc
    return opt

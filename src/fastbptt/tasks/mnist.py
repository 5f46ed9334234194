"""Reading and writing IDX files (the MNIST format), and MNIST as row-by-row sequences (seed 004).

IDX layout: a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values, big-endian, in C order. Files may be
gzip-compressed; that is recognised from the first two bytes, not from the name. Nothing is
downloaded and nothing is unpickled: the values are decoded with np.frombuffer from the checked byte
count.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Mapping
from math import prod
from pathlib import Path

import numpy as np

from ._common import positive_int
from .digits import LAYOUTS, SequenceData, images_to_sequences

__all__ = ["IDX_DTYPES", "MNIST_FILES", "load_mnist", "read_idx", "write_idx"]

# Type code -> big-endian dtype, as the IDX format defines them.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}

_GZIP_MAGIC = b"\x1f\x8b"

# Standard file stems; the ".idx" spelling is how some mirrors rename them.
MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: gzip data is truncated or corrupt ({exc})") from exc


def read_idx(path) -> np.ndarray:
    """Read an IDX file (plain or gzip) into an array with the header's dtype and shape.

    The result is in native byte order and writable. Raises ValueError, naming the file, if the
    magic number, type code or dimension count is invalid or the data is not exactly the size the
    header says.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(
            f"{path}: too short for an IDX header ({len(data)} bytes, need at least 4)"
        )
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file: magic number {data[:4].hex()} must start with two zero bytes"
        )
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{path}: truncated header: {ndim} dimensions need {header_size} bytes, "
            f"file has {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = prod(shape) * dtype.itemsize
    payload = len(data) - header_size
    if payload != expected:
        what = "truncated" if payload < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: data {what}: shape {shape} of {dtype.newbyteorder('=').name} needs "
            f"{expected} bytes after the header, found {payload}"
        )
    values = np.frombuffer(data, dtype=dtype, count=prod(shape), offset=header_size)
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path, array, *, compress: bool = False) -> Path:
    """Write an array as an IDX file; gzip-compressed if `compress` (bytes fixed: no timestamp).

    Supported dtypes: uint8, int8, int16, int32, float32, float64 (any byte order); anything else is
    a ValueError rather than a silent cast. Returns the path written.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODE_OF.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}: "
            "use uint8, int8, int16, int32, float32 or float64"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"IDX dimensions must be below 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    content = header + body
    if compress:
        content = gzip.compress(content, mtime=0)
    path.write_bytes(content)
    return path


def _find_file(directory: Path, part: str) -> Path:
    tried = []
    for suffix in ("", ".gz"):
        for stem in MNIST_FILES[part]:
            candidate = directory / (stem + suffix)
            if candidate.is_file():
                return candidate
            tried.append(candidate.name)
    raise FileNotFoundError(f"no {part.replace('_', ' ')} file in {directory} (looked for {tried})")


def _locate(source) -> dict[str, Path]:
    if isinstance(source, Mapping):
        missing = set(MNIST_FILES) - set(source)
        if missing:
            raise ValueError(f"paths mapping lacks {sorted(missing)}; needs {sorted(MNIST_FILES)}")
        return {part: Path(source[part]) for part in MNIST_FILES}
    directory = Path(os.fspath(source))
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    return {part: _find_file(directory, part) for part in MNIST_FILES}


def _check_pair(images: np.ndarray, labels: np.ndarray, paths: tuple[Path, Path]) -> None:
    if images.ndim != 3:
        raise ValueError(
            f"{paths[0]}: images must be 3-D (N, rows, cols), got shape {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"{paths[1]}: labels must be 1-D integers, got {labels.dtype} {labels.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{paths[0]} has {len(images)} images but {paths[1]} has {len(labels)} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(
            f"{paths[1]}: labels must lie in 0..9, found {labels.min()}..{labels.max()}"
        )


def load_mnist(
    source,
    *,
    dtype=np.float64,
    scale: bool = True,
    layout: str = "rows",
    max_train: int | None = None,
    max_test: int | None = None,
) -> SequenceData:
    """MNIST (or any data set in its four-file IDX layout, e.g. Fashion-MNIST) as sequences.

    Parameters
    ----------
    source : a directory holding train-images-idx3-ubyte, train-labels-idx1-ubyte,
        t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz, or spelled
        "train-images.idx3-ubyte"), or a mapping with keys train_images, train_labels, test_images,
        test_labels to file paths.
    dtype : float32 or float64.
    scale : if True, uint8 pixels are divided by 255 into [0, 1].
    layout : "rows" -> X (28, N, 28), one image row per step; "pixels" -> X (784, N, 1).
    max_train, max_test : keep only the first so many examples of each file (quick experiments).

    Returns
    -------
    SequenceData
        Labels int64, n_classes=10; the split is the files' own train/test split.
"""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    paths = _locate(source)
    parts = {}
    for split, limit in (("train", max_train), ("test", max_test)):
        image_path, label_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        images, labels = read_idx(image_path), read_idx(label_path)
        _check_pair(images, labels, (image_path, label_path))
        if scale and images.dtype != np.uint8:
            raise ValueError(f"{image_path}: scale=True expects uint8 pixels, found {images.dtype}")
        if limit is not None:
            limit = positive_int(f"max_{split}", limit)
            images, labels = images[:limit], labels[:limit]
        X = images_to_sequences(images, layout, dtype=dtype, scale=255.0 if scale else None)
        parts[split] = (X, labels.astype(np.int64))
    return SequenceData(
        X_train=parts["train"][0],
        y_train=parts["train"][1],
        X_test=parts["test"][0],
        y_test=parts["test"][1],
        n_classes=10,
    )

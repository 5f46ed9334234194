"""Handwritten digits read row by row as sequences (seed 004).

Seed 004 classifies MNIST with a tanh RNN and a softmax at every step, its loss averaged over all N
examples and T steps (E = 1/(NT) sum_n sum_t E_t^(n)), to watch accuracy as the number of steps
grows. Here each image becomes a sequence: with layout "rows" an h x w image is h steps of w pixels;
with "pixels" it is h*w steps of one pixel (the long-dependency version of the same task).

scikit-learn's bundled 8x8 digits (1,797 images, no download) stand in for MNIST; real MNIST files
are read by `fastbptt.tasks.mnist`. The targets for "loss at every step" are the label repeated over
time (`sequence_targets(y, T, "all")`, (T, N)); for "loss at the last step only" they are the labels
(N,). Note that seed 004's equation (5) feeds the same x^(n) at every step; `repeat_over_time`
builds that input from flattened images if one wants to reproduce it literally.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import SeedLike, as_rng, float_dtype, positive_int

__all__ = [
    "LAYOUTS",
    "SequenceData",
    "classification_accuracy",
    "images_to_sequences",
    "load_digits_sequences",
    "one_hot",
    "repeat_over_time",
    "sequence_targets",
    "stratified_split",
]

LAYOUTS = ("rows", "pixels")


@dataclass(frozen=True)
class SequenceData:
    """A train/test split of sequences: X (T, N, I) time-major, labels (N,) int64."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    def __repr__(self) -> str:
        return (
            f"SequenceData(X_train={self.X_train.shape} {self.X_train.dtype}, "
            f"X_test={self.X_test.shape}, n_classes={self.n_classes})"
        )


def images_to_sequences(images, layout: str = "rows", *, dtype=np.float64, scale=None):
    """(N, h, w) images -> time-major sequences.

    layout "rows": X (h, N, w), step t is row t. layout "pixels": X (h*w, N, 1), pixels in reading
    order. If `scale` is given, pixel values are divided by it (16 for the 8x8 digits, 255 for
    MNIST).
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, h, w), got {images.shape}")
    dt = float_dtype(dtype)
    n, h, w = images.shape
    if layout == "rows":
        X = np.transpose(images, (1, 0, 2))
    elif layout == "pixels":
        X = images.reshape(n, h * w).T[:, :, None]
    else:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    # Always copy: a view of the caller's images must not be scaled in place.
    X = np.array(X, dtype=dt, order="C", copy=True)
    if scale is not None:
        X /= dt.type(scale)
    return X


def stratified_split(labels, test_fraction: float = 0.25, seed: SeedLike = 0, *, stratify=True):
    """Seeded split of indices 0..N-1 into (train_idx, test_idx), both shuffled, int64.

    With `stratify`, each class contributes round(test_fraction * its count) examples to the test
    set, so class proportions match in both parts; otherwise round(test_fraction * N) examples are
    drawn.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    rng = as_rng(seed)
    n = labels.shape[0]
    is_test = np.zeros(n, dtype=bool)
    if stratify:
        for cls in np.unique(labels):
            members = np.flatnonzero(labels == cls)
            n_test = int(round(test_fraction * members.size))
            is_test[rng.choice(members, size=n_test, replace=False)] = True
    else:
        is_test[rng.choice(n, size=int(round(test_fraction * n)), replace=False)] = True
    train_idx = rng.permutation(np.flatnonzero(~is_test))
    test_idx = rng.permutation(np.flatnonzero(is_test))
    return train_idx.astype(np.int64), test_idx.astype(np.int64)


def _load_sklearn_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "load_digits_sequences needs scikit-learn (its bundled 8x8 digits): "
            "pip install fastbptt[data]  (or: pip install scikit-learn)"
        ) from exc
    bunch = load_digits()
    return bunch.images, bunch.target


def load_digits_sequences(
    test_fraction: float = 0.25,
    seed: SeedLike = 0,
    *,
    dtype=np.float64,
    scale: bool = True,
    layout: str = "rows",
    stratify: bool = True,
) -> SequenceData:
    """scikit-learn's 8x8 digits as sequences, split into train and test.

    Parameters
    ----------
    test_fraction : share of each class (or of all images, if not `stratify`) held out for testing.
    seed : int, None or numpy.random.Generator; fixes the split and the order within each part.
    dtype : float32 or float64.
    scale : if True, pixels (0..16 in the source) are divided by 16 into [0, 1].
    layout : "rows" -> X (8, N, 8), one row of 8 pixels per step; "pixels" -> X (64, N, 1).
    stratify : keep the class proportions equal in train and test.

    Returns
    -------
    SequenceData
        X_train, y_train, X_test, y_test (labels int64 in 0..9), n_classes=10.
    """
    images, labels = _load_sklearn_digits()
    train_idx, test_idx = stratified_split(labels, test_fraction, seed, stratify=stratify)
    X = images_to_sequences(images, layout, dtype=dtype, scale=16.0 if scale else None)
    labels = np.asarray(labels, dtype=np.int64)
    return SequenceData(
        X_train=np.ascontiguousarray(X[:, train_idx]),
        y_train=labels[train_idx],
        X_test=np.ascontiguousarray(X[:, test_idx]),
        y_test=labels[test_idx],
        n_classes=10,
    )


def one_hot(labels, n_classes: int, *, dtype=np.float64) -> np.ndarray:
    """Integer labels of any shape -> one-hot array with a trailing axis of n_classes."""
    n_classes = positive_int("n_classes", n_classes)
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got range [{labels.min()}, {labels.max()}]"
        )
    out = np.zeros(labels.shape + (n_classes,), dtype=float_dtype(dtype))
    np.put_along_axis(out, labels[..., None].astype(np.intp), 1, axis=-1)
    return out


def repeat_over_time(x, T: int) -> np.ndarray:
    """Stack T copies of x along a new leading time axis: (N, ...) -> (T, N, ...), contiguous."""
    T = positive_int("T", T)
    x = np.asarray(x)
    return np.ascontiguousarray(np.broadcast_to(x, (T,) + x.shape))


def sequence_targets(labels, T: int, target: str = "all", *, n_classes=None, dtype=np.float64):
    """Class targets for a sequence classifier.

    target "all": the label at every step, (T, N) int64 (loss averaged over all steps, as seed 004).
    target "last": the labels themselves, (N,) int64 (loss at the last step only).
    With `n_classes`, the targets are one-hot instead: (T, N, C) or (N, C) in `dtype`.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    if target == "all":
        Y = repeat_over_time(labels.astype(np.int64), T)
    elif target == "last":
        positive_int("T", T)
        Y = labels.astype(np.int64)
    else:
        raise ValueError(f'target must be "all" or "last", got {target!r}')
    return Y if n_classes is None else one_hot(Y, n_classes, dtype=dtype)


def classification_accuracy(scores, labels, *, step: int = -1) -> float:
    """Fraction of examples whose highest score is the true class.

    scores: (N, C), or (T, N, C) per-step outputs of which step `step` (default the last) is used.
    labels: (N,) integers.
    """
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim == 3:
        scores = scores[step]
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores {scores.shape} do not match labels {labels.shape}")
    return float(np.mean(np.argmax(scores, axis=1) == labels))

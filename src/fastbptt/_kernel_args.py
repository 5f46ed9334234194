"""What every kernel shares at the Python level: argument checks (shapes, batch_sizes) and how a
batch is cut into per-thread blocks. Used by the Cython drivers and their NumPy and pure-Python twins."""

import threading

import numpy as np


def check_shape(name, shape, expected):
    """A ValueError naming the array unless its shape is the expected one."""
    if tuple(shape) != tuple(expected):
        raise ValueError(f"{name} has shape {tuple(shape)}, expected {tuple(expected)}")


def check_head(V, c, out, T, B, n):
    """A ValueError unless the output layer's V (O, n), c (O,) and logits out (T, B, O) are all
    given, with those shapes, or all None."""
    if (V is None) != (c is None) or (V is None) != (out is None):
        raise ValueError("the output layer needs V, c and out together")
    if V is not None:
        check_shape("V", V.shape, (V.shape[0], n))
        check_shape("c", c.shape, (V.shape[0],))
        check_shape("out", out.shape, (T, B, V.shape[0]))


def check_head_grad(dH, dO, V, dV, T, B, n):
    """A ValueError unless the loss gradient at the states comes one way: as dH (T, B, n), or as
    dO (T, B, O) and V (O, n) meaning dH = dO @ V, with dV (O, n) to fill or None."""
    if (dH is None) == (dO is None) or (dO is None) != (V is None):
        raise ValueError("give the loss gradient as dH, or as dO and V (dH = dO @ V), not both")
    if dO is not None:
        check_shape("V", V.shape, (V.shape[0], n))
        check_shape("dO", dO.shape, (T, B, V.shape[0]))
        if dV is not None:
            check_shape("dV", dV.shape, (V.shape[0], n))
    elif dV is not None:
        raise ValueError("dV needs dO and V")
    else:
        check_shape("dH", dH.shape, (T, B, n))


def no_batch_sizes(batch_sizes):
    """The Elman kernels keep the contract's batch_sizes slot but run every row at every step:
    ElmanCell (cells.py) passes each run of steps with one batch size as its own call."""
    if batch_sizes is not None:
        raise ValueError("batch_sizes: the Elman kernels take None (every row at every step); "
                         "split the batch into runs of one batch size, as ElmanCell does")


def check_batch_sizes(batch_sizes, T, B, full_if_none=False):
    """batch_sizes as a C-contiguous intp array after checking it (shape (T,), values in [0, B],
    non-increasing); None stays None, or becomes all B (every row at every step) with full_if_none."""
    if batch_sizes is None:
        return np.full(T, B, dtype=np.intp) if full_if_none else None
    bs = np.asarray(batch_sizes)
    if bs.dtype.kind not in "iu":
        raise ValueError(f"batch_sizes has dtype {bs.dtype}, expected integers (intp)")
    check_shape("batch_sizes", bs.shape, (T,))
    if T and (bs.min() < 0 or bs.max() > B):
        raise ValueError(f"batch_sizes must lie in [0, B={B}], got range [{bs.min()}, {bs.max()}]")
    if np.any(bs[1:] > bs[:-1]):
        raise ValueError("batch_sizes must be non-increasing "
                         "(the batch sorted by decreasing length)")
    return np.ascontiguousarray(bs, dtype=np.intp)


# the even splits handed out so far, read-only: every kernel call asks for one
_EVEN_SPLITS = {}


def _even_split(B, blocks):
    starts = _EVEN_SPLITS.get((B, blocks))
    if starts is None:
        starts = (np.arange(blocks + 1) * B // blocks).astype(np.intp)
        starts.flags.writeable = False
        if len(_EVEN_SPLITS) < 256:
            _EVEN_SPLITS[(B, blocks)] = starts
    return starts


def block_starts(bs, T, B, blocks):
    """First row of each block and B at the end (blocks + 1 entries, each block at least one row;
    read-only).

    Equal row counts without batch_sizes; with them, about equal numbers of valid steps, since the
    longest sequences come first and would otherwise leave the first thread working alone.
    """
    if bs is None or blocks == 1:
        return _even_split(B, blocks)
    starts = _even_split(B, blocks).copy()
    # row j runs for the steps whose batch size exceeds j
    lengths = T - np.searchsorted(bs[::-1], np.arange(B), side="right")
    work = np.concatenate(([0], np.cumsum(lengths)))
    if work[B] == 0:
        return _even_split(B, blocks)
    starts[1:blocks] = np.searchsorted(work, work[B] * np.arange(1, blocks) / blocks)
    for c in range(1, blocks):
        starts[c] = max(starts[c], starts[c - 1] + 1)
    for c in range(blocks - 1, 0, -1):
        starts[c] = min(starts[c], starts[c + 1] - 1)
    return starts


class WorkPool:
    """Work areas of the compiled drivers (cython/_workarea.pxd), kept from one call to the next:
    an area of a megabyte malloc'd afresh at every call is paid for in page faults at every call,
    a few percent of an LSTM training window of 64 steps. A call takes an area out and gives it
    back when done, so concurrent calls never share one; the pool keeps the `keep` most recently
    given, none larger than `largest` bytes (beyond that the faults are small beside the work),
    `most` bytes in all."""

    def __init__(self, keep=4, largest=64 << 20, most=128 << 20):
        self._spare = []
        self._keep = keep
        self._largest = largest
        self._most = most
        self._lock = threading.Lock()

    def take(self, nbytes):
        """A fastbptt._build.Area of at least nbytes that no other call holds: a kept one at most
        twice that size, else a new one."""
        with self._lock:
            for i in range(len(self._spare) - 1, -1, -1):
                if nbytes <= len(self._spare[i]) <= 2 * max(nbytes, 1):
                    return self._spare.pop(i)
        from fastbptt._build import Area  # compiled: only the compiled drivers take areas

        return Area(nbytes)

    def give(self, area):
        """Return an area taken from the pool; the oldest kept ones go when there are too many or
        they hold too much."""
        if len(area) > self._largest:
            return
        with self._lock:
            self._spare.append(area)
            while (len(self._spare) > self._keep
                   or sum(len(a) for a in self._spare) > self._most):
                del self._spare[0]


# the one pool of the compiled modules
WORK = WorkPool()

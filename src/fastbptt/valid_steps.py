"""Variable lengths: the time-parallel work on the valid steps only.

With batch_sizes (T,), non-increasing, the valid (t, b) are rows [0, batch_sizes[t]) of each step.
Padded steps cost nothing in the kernels, so the GEMMs around them should not pay for them either:
the valid rows are packed, a chunk at a time, into buffers small enough to stay in cache, and each
chunk is one GEMM (faster than one GEMM over the whole padded array, zero rows included).
"""

import numpy as np

CHUNK_BYTES = 1 << 22


def runs(batch_sizes):
    """(t0, t1, b): the runs of consecutive steps with the same batch size b > 0."""
    edges = np.flatnonzero(np.diff(batch_sizes)) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(batch_sizes)]))
    return [(int(t0), int(t1), int(batch_sizes[t0]))
            for t0, t1 in zip(starts, ends, strict=True) if batch_sizes[t0] > 0]


def chunk_rows(arrays, B):
    """Rows per chunk: the packed rows of all `arrays` in about CHUNK_BYTES, at least one step."""
    row_bytes = sum(a.shape[-1] * a.itemsize for a in arrays)
    return max(B, CHUNK_BYTES // max(row_bytes, 1))


def chunks(batch_sizes, rows):
    """The valid steps as chunks of at most `rows` packed rows, in time order; each chunk is a list
    of pieces (t0, t1, b): steps t0..t1-1, rows [0, b) of each."""
    chunk, fill = [], 0
    for t0, t1, b in runs(batch_sizes):
        t = t0
        while t < t1:
            if fill + b > rows:
                yield chunk
                chunk, fill = [], 0
            steps = min(t1 - t, (rows - fill) // b)
            chunk.append((t, t + steps, b))
            fill += steps * b
            t += steps
    if chunk:
        yield chunk


def pack(a, chunk, buf):
    """The valid rows of a (T, B, k) named by chunk, packed into buf; returns the filled part."""
    n = 0
    for t0, t1, b in chunk:
        m = (t1 - t0) * b
        buf[n:n + m].reshape(t1 - t0, b, -1)[...] = a[t0:t1, :b]
        n += m
    return buf[:n]


def unpack(packed, chunk, a):
    """The inverse of _pack: packed rows back to their places in a (T, B, k)."""
    n = 0
    for t0, t1, b in chunk:
        m = (t1 - t0) * b
        a[t0:t1, :b] = packed[n:n + m].reshape(t1 - t0, b, -1)
        n += m


def rows_times(X, W, batch_sizes, bias=None):
    """X (T, B, k) @ W (k, m) (+ bias) at the valid steps, zero elsewhere: (T, B, m)."""
    T, B, _ = X.shape
    out = np.zeros((T, B, W.shape[1]), dtype=X.dtype)
    rows = chunk_rows((X, out), B)
    xbuf = np.empty((rows, X.shape[2]), dtype=X.dtype)
    obuf = np.empty((rows, W.shape[1]), dtype=X.dtype)
    for chunk in chunks(batch_sizes, rows):
        x = pack(X, chunk, xbuf)
        o = obuf[:len(x)]
        np.matmul(x, W, out=o)
        if bias is not None:
            o += bias
        unpack(o, chunk, out)
    return out


def valid_grads(batch_sizes, arrays, products, sums):
    """Over the valid steps of the (T, B, k) `arrays`: arrays[i]^T arrays[j] for each (i, j) in
    products and the column sum of arrays[i] for each i in sums."""
    B = arrays[0].shape[1]
    dtype = arrays[0].dtype
    rows = chunk_rows(arrays, B)
    bufs = [np.empty((rows, a.shape[2]), dtype=dtype) for a in arrays]
    prods = [np.zeros((arrays[i].shape[2], arrays[j].shape[2]), dtype=dtype) for i, j in products]
    totals = [np.zeros(arrays[i].shape[2], dtype=dtype) for i in sums]
    for chunk in chunks(batch_sizes, rows):
        packed = [pack(a, chunk, buf) for a, buf in zip(arrays, bufs, strict=True)]
        for out, (i, j) in zip(prods, products, strict=True):
            out += packed[i].T @ packed[j]
        for out, i in zip(totals, sums, strict=True):
            out += packed[i].sum(axis=0)
    return prods, totals

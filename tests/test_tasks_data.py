"""The task generators: shapes, exactness against integer arithmetic, seeds, splits, IDX files."""

import gzip
import sys

import numpy as np
import pytest

from fastbptt.tasks import (
    MAX_BITS,
    binary_addition,
    bit_accuracy,
    classification_accuracy,
    counting_accuracy,
    decode_bits,
    encode_bits,
    images_to_sequences,
    load_digits_sequences,
    load_mnist,
    one_hot,
    read_idx,
    repeat_over_time,
    running_sum,
    sample_pairs,
    sequence_accuracy,
    sequence_targets,
    split_pairs,
    stratified_split,
    train_test_pairs,
    write_idx,
)

DTYPES = [np.float64, np.float32]


def _pair_set(pairs):
    return {(int(a), int(b)) for a, b in pairs}


# ---------------------------------------------------------------------------------------------
# binary addition


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_bits", [1, 7, 8, 13, MAX_BITS])
@pytest.mark.parametrize("B", [1, 37])
@pytest.mark.parametrize("carry_out", [True, False])
def test_addition_shapes_and_dtypes(dtype, n_bits, B, carry_out, seed):
    X, Y, a, b = binary_addition(B, n_bits, seed, dtype=dtype, carry_out=carry_out)
    T = n_bits + 1 if carry_out else n_bits
    assert X.shape == (T, B, 2) and X.dtype == dtype and X.flags.c_contiguous
    assert Y.shape == (T, B, 1) and Y.dtype == dtype
    assert a.shape == b.shape == (B,) and a.dtype == b.dtype == np.int64
    assert set(np.unique(X)) <= {0.0, 1.0} and set(np.unique(Y)) <= {0.0, 1.0}
    assert a.min() >= 0 and a.max() < 2**n_bits and b.min() >= 0 and b.max() < 2**n_bits
    _, Yc, _, _ = binary_addition(
        B, n_bits, seed, dtype=dtype, carry_out=carry_out, targets="classes"
    )
    assert Yc.shape == (T, B) and Yc.dtype == np.int64
    np.testing.assert_array_equal(Yc, Y[:, :, 0])


def test_addition_worked_example():
    # 6 + 3 = 9 with 4-bit operands and a carry-out step; bits LSB first: 6 -> 0110, 9 -> 10010.
    X, Y, a, b = binary_addition(None, 4, pairs=[[6, 3]])
    np.testing.assert_array_equal(X[:, 0, 0], [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(X[:, 0, 1], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(Y[:, 0, 0], [1, 0, 0, 1, 0])
    # 15 + 15 = 30 = 11110: the carry-out step carries the top bit.
    _, Y, _, _ = binary_addition(None, 4, pairs=[[15, 15]])
    np.testing.assert_array_equal(Y[:, 0, 0], [0, 1, 1, 1, 1])
    _, Y, _, _ = binary_addition(None, 4, pairs=[[15, 15]], carry_out=False)
    np.testing.assert_array_equal(Y[:, 0, 0], [0, 1, 1, 1])


@pytest.mark.parametrize("n_bits", [1, 2, 7, 8, 16, 31, 32, 61, MAX_BITS])
@pytest.mark.parametrize("carry_out", [True, False])
def test_addition_bits_decode_to_sum(n_bits, carry_out, seed):
    top = 2**n_bits - 1
    extremes = np.array([[0, 0], [top, top], [0, top], [top, 0], [1, top], [top, 1]])
    random = sample_pairs(2000, n_bits, seed)
    pairs = np.concatenate([extremes, random])
    X, Y, a, b = binary_addition(None, n_bits, pairs=pairs, carry_out=carry_out)
    np.testing.assert_array_equal(decode_bits(X[:, :, 0]), pairs[:, 0])
    np.testing.assert_array_equal(decode_bits(X[:, :, 1]), pairs[:, 1])
    # Compare with Python integers, which cannot overflow.
    expected = [
        (int(p) + int(q)) % (2 ** (n_bits + 1) if carry_out else 2**n_bits) for p, q in pairs
    ]
    assert decode_bits(Y).tolist() == expected
    if carry_out:
        assert not X[-1].any(), "the carry-out step must read zeros"


def test_addition_one_bit_full_table():
    pairs = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    X, Y, _, _ = binary_addition(None, 1, pairs=pairs)
    np.testing.assert_array_equal(Y[:, :, 0].T, [[0, 0], [1, 0], [1, 0], [0, 1]])
    X, Y, _, _ = binary_addition(None, 1, pairs=pairs, carry_out=False)
    np.testing.assert_array_equal(Y[:, :, 0].T, [[0], [1], [1], [0]])


def test_addition_reproducible_and_seed_sensitive(seed):
    X1, Y1, a1, b1 = binary_addition(64, 8, seed)
    X2, Y2, a2, b2 = binary_addition(64, 8, seed)
    assert X1.tobytes() == X2.tobytes() and Y1.tobytes() == Y2.tobytes()
    np.testing.assert_array_equal(a1, a2)
    _, _, a3, b3 = binary_addition(64, 8, seed + 1)
    assert not (np.array_equal(a1, a3) and np.array_equal(b1, b3))
    X32, Y32, a32, _ = binary_addition(64, 8, seed, dtype=np.float32)
    np.testing.assert_array_equal(a32, a1)
    np.testing.assert_array_equal(X32, X1)
    np.testing.assert_array_equal(Y32, Y1)
    # A Generator is used as is and advances, so two calls draw different data.
    rng = np.random.default_rng(seed)
    _, _, g1, _ = binary_addition(64, 8, rng)
    _, _, g2, _ = binary_addition(64, 8, rng)
    np.testing.assert_array_equal(g1, a1)
    assert not np.array_equal(g1, g2)


def test_addition_operands_cover_the_range(seed):
    _, _, a, b = binary_addition(4000, 3, seed)
    assert _pair_set(np.stack([a, b], 1)) == {(p, q) for p in range(8) for q in range(8)}
    _, _, a, _ = binary_addition(200, MAX_BITS, seed)
    # The top bit is set in about half the draws: the whole width is used.
    assert 40 < np.sum(a >= 2 ** (MAX_BITS - 1)) < 160


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=4, n_bits=0), "n_bits"),
        (dict(n_samples=4, n_bits=63), "n_bits"),
        (dict(n_samples=0), "n_samples"),
        (dict(n_samples=4, dtype=np.int64), "dtype"),
        (dict(n_samples=4, dtype=np.float16), "dtype"),
        (dict(n_samples=4, targets="onehot"), "targets"),
        (dict(n_samples=3, pairs=[[1, 2]]), "pairs were given"),
        (dict(n_samples=None, n_bits=3, pairs=[[8, 0]]), r"\[0, 2\*\*3\)"),
        (dict(n_samples=None, pairs=[[-1, 0]]), "pairs must lie"),
        (dict(n_samples=None, pairs=[1, 2]), "shape"),
        (dict(n_samples=None, pairs=[[0.5, 1.0]]), "integers"),
        (dict(n_samples=None), "n_samples"),
    ],
)
def test_addition_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        binary_addition(**kwargs)


def test_addition_rejects_legacy_seed_objects():
    with pytest.raises(TypeError, match="Generator"):
        binary_addition(4, 8, np.random.RandomState(0))


@pytest.mark.parametrize("n_bits", [1, 3, 8])
def test_split_pairs_partitions_the_grid(n_bits, seed):
    train, test = split_pairs(n_bits, 0.3, seed)
    n_grid = 4**n_bits
    assert train.dtype == test.dtype == np.int64
    assert len(test) == round(0.3 * n_grid) and len(train) + len(test) == n_grid
    train_set, test_set = _pair_set(train), _pair_set(test)
    assert len(train_set) == len(train) and len(test_set) == len(test), "pairs repeated"
    assert not train_set & test_set
    assert train_set | test_set == {(a, b) for a in range(2**n_bits) for b in range(2**n_bits)}
    again_train, again_test = split_pairs(n_bits, 0.3, seed)
    np.testing.assert_array_equal(again_test, test)
    np.testing.assert_array_equal(again_train, train)


def test_split_pairs_seed_changes_the_test_set(seed):
    assert not np.array_equal(split_pairs(6, 0.1, seed)[1], split_pairs(6, 0.1, seed + 1)[1])


def test_split_pairs_limits():
    with pytest.raises(ValueError, match="at most 12"):
        split_pairs(13, 0.1)
    with pytest.raises(ValueError, match="test_fraction"):
        split_pairs(4, 1.5)


@pytest.mark.parametrize(
    "n_bits, n_train", [(4, None), (8, None), (8, 5000), (40, 3000), (62, 3000)]
)
def test_train_test_pairs_are_disjoint(n_bits, n_train, seed):
    train, test = train_test_pairs(n_bits, 100, seed, n_train=n_train)
    assert test.shape == (100, 2) and len(_pair_set(test)) == 100, "test pairs must be distinct"
    if n_train is None:
        assert len(train) == 4**n_bits - 100
    else:
        assert train.shape == (n_train, 2)
    assert not _pair_set(train) & _pair_set(test)
    assert train.min() >= 0 and max(train.max(), test.max()) < 2**n_bits


def test_train_test_pairs_errors():
    with pytest.raises(ValueError, match="n_train is required"):
        train_test_pairs(13, 10)
    with pytest.raises(ValueError, match="no pair for training"):
        train_test_pairs(1, 4)


def test_sample_pairs_excludes_held_out_pairs(seed):
    # Exclude 15 of the 16 two-bit pairs: only (2, 3) can be drawn.
    everything = np.array([(a, b) for a in range(4) for b in range(4) if (a, b) != (2, 3)])
    drawn = sample_pairs(500, 2, seed, exclude=everything)
    assert _pair_set(drawn) == {(2, 3)}
    with pytest.raises(ValueError, match="every pair is excluded"):
        sample_pairs(5, 2, seed, exclude=np.concatenate([everything, [[2, 3]]]))
    # Exclusion compares whole pairs: (3, 2) stays allowed when (2, 3) is excluded.
    drawn = sample_pairs(2000, 2, seed, exclude=[[2, 3]])
    assert (3, 2) in _pair_set(drawn) and (2, 3) not in _pair_set(drawn)


def test_decode_bits_accepts_and_refuses():
    bits = np.array([[1, 0], [1, 1], [0, 1]])
    np.testing.assert_array_equal(decode_bits(bits), [3, 6])
    np.testing.assert_array_equal(decode_bits(bits.astype(bool)), [3, 6])
    np.testing.assert_array_equal(decode_bits(bits[:, :, None].astype(np.float32)), [3, 6])
    ones = np.ones((63, 1))
    assert decode_bits(ones)[0] == 2**63 - 1
    with pytest.raises(ValueError, match="0 or 1"):
        decode_bits(np.array([[0.7, 1.0]]))
    with pytest.raises(ValueError, match="0 or 1"):
        decode_bits(np.array([[2, 0]]))
    with pytest.raises(ValueError, match="63"):
        decode_bits(np.zeros((64, 2)))
    with pytest.raises(ValueError, match="shape"):
        decode_bits(np.zeros(5))


def test_encode_bits_round_trip(rng):
    values = rng.integers(0, 2**62, size=50)
    np.testing.assert_array_equal(decode_bits(encode_bits(values, 63)), values)
    assert not encode_bits(values, 70)[63:].any()
    with pytest.raises(ValueError, match="non-negative"):
        encode_bits([-1], 4)


def test_bit_and_sequence_accuracy():
    _, Y, _, _ = binary_addition(10, 8, 0)
    assert bit_accuracy(Y, Y) == 1.0 and sequence_accuracy(Y, Y) == 1.0
    # Sigmoid-like scores: 0.9 for ones, 0.1 for zeros; one bit of one sequence flipped.
    scores = np.where(Y == 1, 0.9, 0.1)
    scores[4, 7, 0] = 1.0 - scores[4, 7, 0]
    assert bit_accuracy(scores, Y) == pytest.approx(1 - 1 / (9 * 10))
    assert sequence_accuracy(scores, Y) == pytest.approx(0.9)
    assert bit_accuracy(scores[:, :, 0], Y) == bit_accuracy(scores, Y[:, :, 0])
    # Logits (threshold 0) and two-class scores (argmax).
    logits = np.where(Y == 1, 2.0, -2.0)
    assert bit_accuracy(logits, Y, threshold=0.0) == 1.0
    assert bit_accuracy(logits, Y) == 1.0
    assert bit_accuracy(logits - 2.5, Y) == pytest.approx(float(np.mean(Y == 0)))
    two_class = np.concatenate([-logits, logits], axis=2)
    assert sequence_accuracy(two_class, Y[:, :, 0].astype(np.int64)) == 1.0
    two_class[0, 3] = two_class[0, 3, ::-1]
    assert sequence_accuracy(two_class, Y[:, :, 0]) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="do not match"):
        bit_accuracy(Y[:-1], Y)
    with pytest.raises(ValueError, match="integer"):
        bit_accuracy(Y, Y * 0.5)


# ---------------------------------------------------------------------------------------------
# counting


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T, B", [(1, 1), (5, 4), (10, 37), (200, 3)])
def test_running_sum_counts(dtype, T, B, seed):
    X, Y = running_sum(B, T, seed, dtype=dtype)
    assert X.shape == Y.shape == (T, B, 1) and X.dtype == Y.dtype == dtype
    assert set(np.unique(X)) <= {0.0, 1.0}
    # The count at step t is the number of ones among steps 0..t, checked step by step.
    count = np.zeros(B)
    for t in range(T):
        count += X[t, :, 0]
        np.testing.assert_array_equal(Y[t, :, 0], count)
    Xn, Yn = running_sum(B, T, seed, dtype=dtype, normalise=True)
    np.testing.assert_array_equal(Xn, X)
    np.testing.assert_allclose(Yn * T, Y, rtol=1e-6 if dtype == np.float32 else 1e-14)
    assert Yn.max() <= 1.0


def test_running_sum_probability_and_seeds(seed):
    X0, Y0 = running_sum(6, 9, seed, p=0.0)
    assert not X0.any() and not Y0.any()
    _, Y1 = running_sum(6, 9, seed, p=1.0)
    np.testing.assert_array_equal(Y1[:, :, 0], np.arange(1, 10)[:, None] * np.ones((1, 6)))
    X, _ = running_sum(400, 50, seed, p=0.2)
    assert 0.18 < X.mean() < 0.22
    Xa, Ya = running_sum(8, 12, seed)
    Xb, Yb = running_sum(8, 12, seed)
    assert Xa.tobytes() == Xb.tobytes() and Ya.tobytes() == Yb.tobytes()
    assert not np.array_equal(running_sum(8, 12, seed + 1)[0], Xa)
    with pytest.raises(ValueError, match="p must"):
        running_sum(2, 3, p=1.5)
    with pytest.raises(ValueError, match="T must"):
        running_sum(2, 0)


def test_counting_accuracy(seed, rng):
    X, Y = running_sum(20, 10, seed)
    noisy = Y + rng.uniform(-0.49, 0.49, size=Y.shape)
    assert counting_accuracy(noisy, Y) == 1.0
    noisy[3, 5, 0] += 1.0
    assert counting_accuracy(noisy, Y) == pytest.approx(1 - 1 / 200)
    assert counting_accuracy(noisy[:, :, 0], Y) == counting_accuracy(noisy, Y[:, :, 0])
    _, Yn = running_sum(20, 10, seed, normalise=True)
    assert counting_accuracy(Yn + 0.04 / 10, Yn, scale=10) == 1.0
    assert counting_accuracy(Yn + 0.6 / 10, Yn, scale=10) == 0.0
    with pytest.raises(ValueError, match="do not match"):
        counting_accuracy(Y[:-1], Y)


# ---------------------------------------------------------------------------------------------
# digits row by row


@pytest.fixture(scope="module")
def sk_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    return bunch.images, bunch.target


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("test_fraction", [0.25, 0.1])
def test_digits_split(sk_digits, dtype, test_fraction, seed):
    images, labels = sk_digits
    data = load_digits_sequences(test_fraction, seed, dtype=dtype)
    n_train, n_test = data.X_train.shape[1], data.X_test.shape[1]
    assert n_train + n_test == len(labels) == 1797
    assert data.X_train.shape == (8, n_train, 8) and data.X_test.shape == (8, n_test, 8)
    assert data.X_train.dtype == data.X_test.dtype == dtype and data.X_train.flags.c_contiguous
    assert data.y_train.dtype == data.y_test.dtype == np.int64 and data.n_classes == 10
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0 and data.X_test.max() <= 1.0
    # Stratified: each class sends round(fraction * its size) images to the test set.
    for cls in range(10):
        assert np.sum(data.y_test == cls) == round(test_fraction * np.sum(labels == cls))
        assert np.sum(data.y_train == cls) + np.sum(data.y_test == cls) == np.sum(labels == cls)
    # The split indices say which images landed where; rows must be the images' rows, scaled.
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    assert not set(train_idx) & set(test_idx) and len(train_idx) + len(test_idx) == 1797
    np.testing.assert_array_equal(data.y_test, labels[test_idx])
    np.testing.assert_array_equal(data.X_test[:, 0, :], (images[test_idx[0]] / 16).astype(dtype))
    np.testing.assert_array_equal(
        data.X_train, np.transpose(images[train_idx] / 16, (1, 0, 2)).astype(dtype)
    )


def test_digits_options_and_seeds(sk_digits, seed):
    images, labels = sk_digits
    a = load_digits_sequences(seed=seed)
    b = load_digits_sequences(seed=seed)
    c = load_digits_sequences(seed=seed + 1)
    assert a.X_train.tobytes() == b.X_train.tobytes()
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_test, c.y_test)
    raw = load_digits_sequences(seed=seed, scale=False)
    assert raw.X_train.max() == 16.0
    np.testing.assert_array_equal(raw.X_train / 16, a.X_train)
    pixels = load_digits_sequences(seed=seed, layout="pixels")
    assert pixels.X_train.shape == (64, a.X_train.shape[1], 1)
    # Pixel 8 r + c of an image is column c of its row r.
    by_rows = np.transpose(a.X_train, (0, 2, 1)).reshape(64, -1)
    np.testing.assert_array_equal(pixels.X_train[:, :, 0], by_rows)
    plain = load_digits_sequences(0.2, seed, stratify=False)
    assert plain.X_test.shape[1] == round(0.2 * 1797)


def test_digits_without_sklearn_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes the import fail as if the package were absent.
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ImportError, match=r"fastbptt\[data\]"):
        load_digits_sequences()


def test_images_to_sequences_layouts(rng):
    images = rng.integers(0, 256, size=(5, 3, 4)).astype(np.uint8)
    rows = images_to_sequences(images, "rows", scale=255)
    assert rows.shape == (3, 5, 4)
    np.testing.assert_array_equal(rows[2, 4], images[4, 2] / 255)
    pixels = images_to_sequences(images, "pixels", dtype=np.float32)
    assert pixels.shape == (12, 5, 1) and pixels.dtype == np.float32
    np.testing.assert_array_equal(pixels[7, 1, 0], images[1, 1, 3])
    # Scaling must not write through to the caller's array (one image of one row is a view case).
    one = np.full((1, 1, 4), 8.0)
    images_to_sequences(one, "rows", scale=16.0)
    assert one.max() == 8.0
    with pytest.raises(ValueError, match="layout"):
        images_to_sequences(images, "columns")
    with pytest.raises(ValueError, match="shape"):
        images_to_sequences(images[0], "rows")


def test_one_hot_and_targets(rng):
    labels = rng.integers(0, 10, size=13)
    oh = one_hot(labels, 10)
    assert oh.shape == (13, 10) and oh.dtype == np.float64
    np.testing.assert_array_equal(oh.sum(1), 1.0)
    np.testing.assert_array_equal(oh.argmax(1), labels)
    assert one_hot(labels, 10, dtype=np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="lie in"):
        one_hot(labels, 5 if labels.max() >= 5 else 1)
    with pytest.raises(ValueError, match="integers"):
        one_hot(labels.astype(float), 10)

    every = sequence_targets(labels, 8)
    assert every.shape == (8, 13) and every.dtype == np.int64 and every.flags.c_contiguous
    np.testing.assert_array_equal(every, np.tile(labels, (8, 1)))
    last = sequence_targets(labels, 8, "last")
    np.testing.assert_array_equal(last, labels)
    every_oh = sequence_targets(labels, 8, n_classes=10)
    assert every_oh.shape == (8, 13, 10)
    np.testing.assert_array_equal(every_oh.argmax(2), every)
    assert sequence_targets(labels, 8, "last", n_classes=10).shape == (13, 10)
    with pytest.raises(ValueError, match="target"):
        sequence_targets(labels, 8, "first")
    flat = rng.random((13, 64))
    static = repeat_over_time(flat, 5)
    assert static.shape == (5, 13, 64) and static.flags.writeable
    np.testing.assert_array_equal(static[3], flat)


def test_classification_accuracy(rng):
    labels = rng.integers(0, 10, size=40)
    scores = one_hot(labels, 10) + rng.uniform(0, 0.5, size=(40, 10))
    assert classification_accuracy(scores, labels) == 1.0
    scores[:4] = np.roll(scores[:4], 1, axis=1)
    assert classification_accuracy(scores, labels) == pytest.approx(0.9)
    per_step = np.stack([np.zeros_like(scores), scores])
    assert classification_accuracy(per_step, labels) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="do not match"):
        classification_accuracy(scores[:-1], labels)


# ---------------------------------------------------------------------------------------------
# IDX files and MNIST

IDX_CASES = [
    (np.uint8, (7,)),
    (np.int8, (3, 4)),
    (np.int16, (2, 3, 5)),
    (np.int32, (1, 1, 1)),
    (np.float32, (4, 28, 28)),
    (np.float64, (2, 1, 3, 2)),
]


@pytest.mark.parametrize("dtype, shape", IDX_CASES)
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, rng, dtype, shape, compress):
    if np.dtype(dtype).kind == "f":
        array = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == shape and back.flags.writeable
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == compress
    # Byte order of the input does not matter.
    swapped = array.astype(np.dtype(dtype).newbyteorder(">" if sys.byteorder == "little" else "<"))
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "b.idx", swapped)), array)


def test_idx_reads_hand_made_bytes(tmp_path):
    # Header bytes written by hand: uint8, one dimension of 3; then int32, shape (2,), big-endian.
    (tmp_path / "u8").write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2, 255]))
    np.testing.assert_array_equal(read_idx(tmp_path / "u8"), np.array([1, 2, 255], np.uint8))
    i32 = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + bytes([0, 0, 1, 0]) + bytes([255, 255, 255, 254])
    (tmp_path / "i32").write_bytes(i32)
    np.testing.assert_array_equal(read_idx(tmp_path / "i32"), [256, -2])
    assert write_idx(tmp_path / "again", np.array([256, -2], np.int32)).read_bytes() == i32


def test_idx_gzip_detected_by_content_not_name(tmp_path, rng):
    array = rng.integers(0, 256, size=(3, 5)).astype(np.uint8)
    write_idx(tmp_path / "looks-plain", array, compress=True)
    write_idx(tmp_path / "looks-compressed.gz", array, compress=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "looks-plain"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "looks-compressed.gz"), array)
    # Compressed output has no timestamp: the same array gives the same bytes.
    first = write_idx(tmp_path / "x.gz", array, compress=True).read_bytes()
    assert write_idx(tmp_path / "y.gz", array, compress=True).read_bytes() == first


def _corrupt_cases():
    good = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    return [
        ("truncated-data", good[:-1], "truncated"),
        ("trailing-bytes", good + b"\x00", "trailing bytes"),
        ("bad-magic", b"\x01" + good[1:], "magic number"),
        ("text-file", b"hello world, not idx", "magic number"),
        ("bad-type", good[:2] + b"\x0a" + good[3:], "type code 0x0A"),
        ("zero-dims", bytes([0, 0, 0x08, 0]), "0 dimensions"),
        ("short-header", good[:10], "truncated header"),
        ("tiny", b"\x00\x00", "too short"),
        ("empty", b"", "too short"),
        ("bad-gzip", gzip.compress(good)[:-6], "gzip"),
        ("gzip-of-short-payload", gzip.compress(good[:-2]), "truncated"),
        ("float-size-mismatch", bytes([0, 0, 0x0D, 1, 0, 0, 0, 2]) + bytes(7), "needs 8 bytes"),
    ]


@pytest.mark.parametrize(
    "name, content, match", _corrupt_cases(), ids=[c[0] for c in _corrupt_cases()]
)
def test_idx_refuses_corrupt_files(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert name in str(info.value), "the message must name the file"


def test_write_idx_refuses_unsupported(tmp_path):
    for bad in (
        np.zeros(3, np.int64),
        np.zeros(3, bool),
        np.zeros(3, np.float16),
        np.zeros(3, np.uint16),
    ):
        with pytest.raises(ValueError, match="cannot store dtype"):
            write_idx(tmp_path / "x", bad)
    with pytest.raises(ValueError, match="dimensions"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert not (tmp_path / "x").exists()


def _fake_mnist(directory, rng, n_train=9, n_test=4, spell=None):
    """Write a tiny MNIST-shaped data set; `spell` maps part -> (file name, compress)."""
    spell = spell or {}
    parts = {
        "train_images": rng.integers(0, 256, size=(n_train, 28, 28)).astype(np.uint8),
        "train_labels": rng.integers(0, 10, size=n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, size=(n_test, 28, 28)).astype(np.uint8),
        "test_labels": rng.integers(0, 10, size=n_test).astype(np.uint8),
    }
    default = {
        "train_images": ("train-images-idx3-ubyte.gz", True),
        "train_labels": ("train-labels-idx1-ubyte", False),
        "test_images": ("t10k-images.idx3-ubyte", False),
        "test_labels": ("t10k-labels-idx1-ubyte.gz", True),
    }
    paths = {}
    for part, array in parts.items():
        name, compress = spell.get(part, default[part])
        paths[part] = write_idx(directory / name, array, compress=compress)
    return parts, paths


@pytest.mark.parametrize("dtype", DTYPES)
def test_load_mnist_from_directory(tmp_path, rng, dtype):
    parts, paths = _fake_mnist(tmp_path, rng)
    data = load_mnist(tmp_path, dtype=dtype)
    assert data.X_train.shape == (28, 9, 28) and data.X_test.shape == (28, 4, 28)
    assert data.X_train.dtype == dtype and data.y_train.dtype == np.int64 and data.n_classes == 10
    np.testing.assert_array_equal(
        data.X_train, np.transpose(parts["train_images"] / 255.0, (1, 0, 2)).astype(dtype)
    )
    np.testing.assert_array_equal(data.y_test, parts["test_labels"])
    assert 0.0 <= data.X_test.min() and data.X_test.max() <= 1.0
    by_mapping = load_mnist({part: str(p) for part, p in paths.items()}, dtype=dtype)
    np.testing.assert_array_equal(by_mapping.X_test, data.X_test)
    small = load_mnist(tmp_path, layout="pixels", max_train=3, scale=False)
    assert small.X_train.shape == (784, 3, 1) and small.X_test.shape == (784, 4, 1)
    np.testing.assert_array_equal(small.X_train[:, 2, 0], parts["train_images"][2].ravel())


def test_load_mnist_errors(tmp_path, rng):
    _fake_mnist(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="lacks"):
        load_mnist({"train_images": "x"})
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="4 images but .* 5 labels"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(4, 10, np.uint8))
    with pytest.raises(ValueError, match="0..9"):
        load_mnist(tmp_path)
    with pytest.raises(ValueError, match="layout"):
        load_mnist(tmp_path, layout="columns")

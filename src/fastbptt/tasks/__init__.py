"""The seeds' problems as data: time-major arrays, reproducible from a seed.

- Binary addition (seeds 000-002): `binary_addition`, held-out pairs (`split_pairs`,
  `train_test_pairs`, `sample_pairs`), `decode_bits`, `bit_accuracy`, `sequence_accuracy`.
- Counting (seed 003): `running_sum`, `counting_accuracy`.
- Digits row by row (seed 004): `load_digits_sequences` (scikit-learn's 8x8 digits), `load_mnist`
  (IDX files you supply; `read_idx`/`write_idx`), `one_hot`, `sequence_targets`.
- Seed 002's hand-set adder as a ready model: `hand_set_adder` (imports the model lazily).
"""

from .adder import hand_set_adder, hand_set_adder_weights
from .addition import (
    MAX_BITS,
    MAX_GRID_BITS,
    binary_addition,
    bit_accuracy,
    decode_bits,
    encode_bits,
    sample_pairs,
    sequence_accuracy,
    split_pairs,
    train_test_pairs,
)
from .counting import counting_accuracy, running_sum
from .digits import (
    LAYOUTS,
    SequenceData,
    classification_accuracy,
    images_to_sequences,
    load_digits_sequences,
    one_hot,
    repeat_over_time,
    sequence_targets,
    stratified_split,
)
from .mnist import IDX_DTYPES, MNIST_FILES, load_mnist, read_idx, write_idx

__all__ = [
    "IDX_DTYPES",
    "LAYOUTS",
    "MAX_BITS",
    "MAX_GRID_BITS",
    "MNIST_FILES",
    "SequenceData",
    "binary_addition",
    "bit_accuracy",
    "classification_accuracy",
    "counting_accuracy",
    "decode_bits",
    "encode_bits",
    "hand_set_adder",
    "hand_set_adder_weights",
    "images_to_sequences",
    "load_digits_sequences",
    "load_mnist",
    "one_hot",
    "read_idx",
    "repeat_over_time",
    "running_sum",
    "sample_pairs",
    "sequence_accuracy",
    "sequence_targets",
    "split_pairs",
    "stratified_split",
    "train_test_pairs",
    "write_idx",
]

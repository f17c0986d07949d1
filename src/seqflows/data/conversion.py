r"""What the two converters (:mod:`~seqflows.data.folder`, :mod:`~seqflows.data.series`) share:
the seeded split of the sequences, which source files are visible, and the sources' fingerprint
written into a store's manifest.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["SPLIT_METHOD", "assign_splits", "is_visible", "names_sha1"]

SPLIT_METHOD = (
    "sequences sorted by path (natural order), permuted by numpy.random.default_rng(seed); "
    "the first round(validation N) are validation, the next round(test N) test, the rest train"
)


def assign_splits(count: int, validation: float, test: float, seed: int = 0) -> list[str]:
    r"""The split (``train``, ``validation``, ``test``) of each of ``count`` sequences.

    See :data:`SPLIT_METHOD`; rounding is half up.

    Example:
        >>> assign_splits(4, validation=0.25, test=0.25, seed=0).count("train")
        2
    """
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise ConfigError(
            f"validation and test must be fractions in [0, 1) with a sum below 1, "
            f"got {validation} and {test}"
        )
    num_validation = math.floor(validation * count + 0.5)
    num_test = math.floor(test * count + 0.5)
    if count - num_validation - num_test < 1:
        raise ConfigError(
            f"{count} sequences leave none for training with validation={validation}, test={test}"
        )
    permutation = np.random.default_rng(seed).permutation(count)
    splits = ["train"] * count
    for index in permutation[:num_validation]:
        splits[index] = "validation"
    for index in permutation[num_validation : num_validation + num_test]:
        splits[index] = "test"
    return splits


def is_visible(path: Path, root: Path) -> bool:
    """Whether no part of ``path`` below ``root`` is hidden (starts with a dot)."""
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def names_sha1(names: Sequence[str]) -> str:
    """SHA-1 (hex) of the names, one a line (the manifests' ``sources_sha1``); non-UTF-8 file
    names (surrogate escapes) hash as their bytes."""
    return hashlib.sha1("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()

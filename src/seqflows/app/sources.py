r"""The sequences of a data configuration: which dataset ``data.path`` is, and the stored
source or simulator of each split (:func:`build_source`).

Splits, by ``data.dataset``:

| dataset | train | validation | test |
| --- | --- | --- | --- |
| ``moving_mnist_file`` | sequences 0 .. 8999 - V | the V before 9000 | 9000 .. 9999 |
| ``moving_mnist`` | rendered from ``train_digits`` | ``validation_digits`` | ``test_digits`` |
| ``bouncing_balls``, ``controlled_balls`` | rendered on the fly | own seed stream | own seed |
| ``array`` | the rest | the V before the test part | the last ``test_sequences`` |
| ``store`` | the store's splits (``seqflows convert``) | | |

V is ``data.validation_sequences``. An array's held-out parts default to 10% of its sequences
each (at least 1; at most 256 validation and 512 test sequences, the fixed numbers of larger
data); ``evaluate.split=all`` reads every sequence of an array. An array's conditions are its
arrays named in ``data.conditions`` beside its ``frames``, (N, T) or (N, T, A_i) each.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..data import (
    ArraySource,
    BouncingBalls,
    ControlledBalls,
    MovingMNIST,
    Source,
    download_mnist,
    load_array,
    load_digits,
    load_moving_mnist_file,
    mnist,
)
from ..data.store import StoreSource
from ..errors import DataError
from .config import ConfigError, DataConfig

__all__ = [
    "FILE_DATASETS",
    "HELD_OUT_LIMITS",
    "HELD_OUT_SHARE",
    "RENDERED_SHAPE",
    "SIMULATORS",
    "SPLITS",
    "WholeSequences",
    "array_frames",
    "build_source",
    "dataset_of",
    "held_out_sequences",
]

SPLITS = ("train", "validation", "test", "all")
FILE_DATASETS = ("array", "store")  # the datasets read from data.path
SIMULATORS = ("bouncing_balls", "controlled_balls", "moving_mnist")
RENDERED_SHAPE = (1, 32)  # channels and size of the rendered datasets, unless set
HELD_OUT_SHARE = 0.1  # of an array's sequences, for each of validation and test
HELD_OUT_LIMITS = {"validation": 256, "test": 512}  # and the fixed numbers for larger data


def dataset_of(data: DataConfig) -> str:
    r"""``data.dataset``, or what ``data.path`` is when it is None: ``array`` for a .npy or .npz
    file, ``store`` for a folder (``seqflows convert``), ``bouncing_balls`` without a path."""
    if data.dataset is not None:
        return data.dataset
    if data.path is None:
        return "bouncing_balls"
    path = Path(data.path)
    if path.is_dir():
        return "store"
    if path.suffix.lower() in (".npy", ".npz"):
        return "array"
    raise ConfigError(
        f"data.path={data.path}: cannot tell which dataset this is (a .npy/.npz array or a store "
        "folder of seqflows convert are recognised); set data.dataset"
    )


def held_out_sequences(count: int, data: DataConfig) -> tuple[int, int]:
    r"""(validation, test) sequences at the end of an array of ``count``: the configured numbers,
    or :data:`HELD_OUT_SHARE` of ``count`` each (at least 1, at most 256 and 512)."""
    share = max(1, math.floor(HELD_OUT_SHARE * count + 0.5))
    validation = data.validation_sequences
    test = data.test_sequences
    if validation is None:
        validation = min(HELD_OUT_LIMITS["validation"], share)
    if test is None:
        test = min(HELD_OUT_LIMITS["test"], share)
    return validation, test


def build_source(data: DataConfig, split: str) -> Source:
    r"""The sequences of one split: a stored source (an :class:`~seqflows.data.ArraySource`, a
    :class:`~seqflows.data.StoreSource`) or a :class:`~seqflows.data.Simulator`.

    ``split``: ``train``, ``validation``, ``test``, or ``all`` (every sequence of an array).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    dataset = dataset_of(data)
    if split == "all" and dataset != "array":
        raise ConfigError(
            f"evaluate.split=all reads every sequence of an array (data.dataset=array); "
            f"{dataset} has the splits train, validation and test"
        )
    channels = RENDERED_SHAPE[0] if data.channels is None else data.channels
    size = RENDERED_SHAPE[1] if data.size is None else data.size
    if dataset == "bouncing_balls":
        return BouncingBalls(
            num_frames=data.num_frames, size=size, num_balls=data.num_balls, channels=channels
        )
    if dataset == "controlled_balls":
        return ControlledBalls(
            num_frames=data.num_frames,
            size=size,
            num_balls=data.num_balls,
            speed=data.speed,
            channels=channels,
        )
    if dataset == "moving_mnist":
        start, stop = getattr(data, f"{split}_digits")
        digits = load_digits(_digits_file(data), start, stop)
        return MovingMNIST(
            digits, num_frames=data.num_frames, size=size, num_digits=data.num_digits
        )
    if dataset == "moving_mnist_file":
        validation = data.validation_sequences
        return load_moving_mnist_file(
            _existing(data.path, "the standard Moving MNIST file mnist_test_seq.npy"),
            split,
            validation=HELD_OUT_LIMITS["validation"] if validation is None else validation,
        )
    if dataset == "store":
        return StoreSource(
            _existing(data.path, "a store folder written by seqflows convert"),
            split,
            data.condition_names,
        )
    array = array_frames(data)
    conditions = _load_conditions(data, array)
    count = array.shape[0]
    if split == "all":
        return ArraySource(array, name=str(data.path), conditions=conditions)
    validation, test = held_out_sequences(count, data)
    if test + validation >= count:
        raise ConfigError(
            f"{data.path}: {count} sequences cannot hold {test} test and {validation} "
            "validation sequences and leave some for training (data.test_sequences, "
            "data.validation_sequences)"
        )
    bounds = {
        "train": (0, count - test - validation),
        "validation": (count - test - validation, count - test),
        "test": (count - test, count),
    }[split]
    return ArraySource(
        array[bounds[0] : bounds[1]],
        name=f"{data.path} [{split}]",
        offset=bounds[0],
        conditions=None if conditions is None else conditions[bounds[0] : bounds[1]],
    )


class WholeSequences:
    """The whole sequences of a stored source, re-iterable (one read per pass)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __iter__(self) -> Iterator[np.ndarray]:
        source = self.source
        return (source.read(n, 0, source.lengths[n]) for n in range(len(source)))


def array_frames(data: DataConfig) -> Any:
    """The frames of an array file: a .npy, or the .npz's one array (its ``frames`` when it
    holds several)."""
    path = _existing(data.path, "an array of sequences (.npy or .npz)")
    if path.is_dir():
        raise ConfigError(
            f"data.path={data.path} is a folder, not an array file: for a store written by "
            "seqflows convert, set data.dataset=store"
        )
    if path.suffix.lower() == ".npz" and "frames" in _npz_keys(path):
        return load_array(path, "frames")
    return load_array(path)


def _npz_keys(path: Path) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return list(archive.keys())
    except (ValueError, OSError) as error:
        raise DataError(f"{path}: not a readable .npz archive ({error})") from None


def _load_conditions(data: DataConfig, frames: Any) -> np.ndarray | None:
    """The conditions (N, T, A) of an array file: its arrays named in ``data.conditions``,
    (N, T) or (N, T, A_i) each, concatenated; None without ``data.conditions``."""
    names = data.condition_names
    if not names:
        return None
    path = Path(data.path)
    if path.suffix.lower() != ".npz":
        raise ConfigError(
            f"{path}: data.conditions={list(names)} but a .npy file holds frames only; save the "
            "frames and the conditions into one .npz (np.savez(file, frames=..., "
            f"{names[0]}=...))"
        )
    keys = _npz_keys(path)
    missing = [name for name in names if name not in keys]
    if missing or "frames" in names:
        raise ConfigError(
            f"{path}: data.conditions={list(names)}: no array {(missing or ['frames'])[0]!r} of "
            f"conditions; the file holds {keys} (the frames are 'frames')"
        )
    parts = []
    for name in names:
        part = np.asarray(load_array(path, name))
        if part.ndim < 2 or part.shape[:2] != tuple(frames.shape[:2]):
            raise ConfigError(
                f"{path}: conditions {name!r} have shape {part.shape} but the frames "
                f"{tuple(frames.shape)}: they need (N, T) = {tuple(frames.shape[:2])} first, "
                "one value (or vector) per frame of every sequence"
            )
        parts.append(part.reshape(*part.shape[:2], -1).astype(np.float32))
    return np.concatenate(parts, axis=-1)


def _digits_file(data: DataConfig) -> Path:
    if data.path is not None:
        return _existing(data.path, "an MNIST images file in IDX format (gzipped or not)")
    folder = Path(data.root) / "mnist"
    return download_mnist(folder, mirrors=mnist.MNIST_MIRRORS)["train-images-idx3-ubyte.gz"]


def _existing(path: str | None, what: str) -> Path:
    if path is None:
        raise ConfigError(f"data.path must name {what}")
    if not Path(path).exists():
        raise FileNotFoundError(f"data file not found: {path} (data.path should be {what})")
    return Path(path)

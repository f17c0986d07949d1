r"""Datasets of a configuration: the training stream and the fixed validation and test sets.

Splits, by ``data.dataset``:

| dataset | train | validation | test |
| --- | --- | --- | --- |
| ``moving_mnist_file`` | sequences 0 .. 8999 - V | the V before 9000 | 9000 .. 9999 |
| ``moving_mnist`` | rendered from ``train_digits`` | ``validation_digits`` | ``test_digits`` |
| ``bouncing_balls`` | rendered on the fly | own seed stream | own seed stream |
| ``array`` | the rest | the V before the test part | the last ``test_sequences`` |
| ``store`` | the store's splits (``seqflows convert``) | | |

V is ``data.validation_sequences``. Training crops and noise come from ``train.seed``; the fixed
sets draw theirs from ``data.seed``, so evaluation is deterministic (the authors' was not).
"""

from __future__ import annotations

from pathlib import Path

from ..data import (
    ArraySource,
    BouncingBalls,
    FixedSequences,
    MovingMNIST,
    Source,
    TrainingSequences,
    download_mnist,
    load_array,
    load_digits,
    load_moving_mnist_file,
    mnist,
)
from ..data.store import StoreSource
from .config import Config, ConfigError, DataConfig

__all__ = [
    "build_source",
    "evaluation_set",
    "event_shape_of",
    "training_set",
]

SPLITS = ("train", "validation", "test")


def build_source(data: DataConfig, split: str) -> Source:
    r"""The sequences of one split: a stored source (an :class:`~seqflows.data.ArraySource`, a
    :class:`~seqflows.data.StoreSource`) or a :class:`~seqflows.data.Simulator`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if data.dataset == "bouncing_balls":
        return BouncingBalls(
            num_frames=data.num_frames,
            size=data.size,
            num_balls=data.num_balls,
            channels=data.channels,
        )
    if data.dataset == "moving_mnist":
        start, stop = getattr(data, f"{split}_digits")
        digits = load_digits(_digits_file(data), start, stop)
        return MovingMNIST(
            digits, num_frames=data.num_frames, size=data.size, num_digits=data.num_digits
        )
    if data.dataset == "moving_mnist_file":
        return load_moving_mnist_file(
            _existing(data.path, "the standard Moving MNIST file mnist_test_seq.npy"),
            split,
            validation=data.validation_sequences,
        )
    if data.dataset == "store":
        return StoreSource(
            _existing(data.path, "a store folder written by seqflows convert"), split
        )
    array = load_array(_existing(data.path, "a uint8 array of sequences"))
    count = array.shape[0]
    test = data.test_sequences
    validation = data.validation_sequences
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
    return ArraySource(array[bounds[0] : bounds[1]], name=f"{data.path} [{split}]")


def event_shape_of(source: Source, config: Config) -> tuple[int, ...]:
    r"""The frame shape of ``source``, checked against the configuration.

    Raises:
        ConfigError: Frames of another shape or channel count than ``data.channels`` and
            ``data.size``, or vector data for a convolutional model.
    """
    shape = tuple(int(size) for size in source.frame_shape)
    name = source.name if source.stored else config.data.dataset  # a file, or the simulator
    if len(shape) == 3 and shape != config.data.frame_shape:
        raise ConfigError(
            f"{name}: frames have shape (C, H, W) = {shape} but the configuration expects "
            f"{config.data.frame_shape}; set data.channels and data.size to match the data"
        )
    if len(shape) == 1 and config.model.conditioner == "conv":
        raise ConfigError(
            f"{name}: vector sequences (D = {shape[0]}) need model.conditioner=mlp or linear"
        )
    return shape


def training_set(config: Config, source: Source | None = None) -> TrainingSequences:
    r"""The endless, reproducible training stream (random crops of ``data.length`` frames).

    ``source``: the training sequences when the caller has built them already (checked
    against the configuration then), else built from ``config.data``.
    """
    if source is None:
        source = build_source(config.data, "train")
        event_shape_of(source, config)
    return TrainingSequences(
        source, length=config.data.length, noise=config.data.noise, seed=config.train.seed
    )


def evaluation_set(config: Config, split: str, count: int | None = None) -> FixedSequences:
    r"""A fixed evaluation set: the same crops and noise every time (seed ``data.seed``).

    Arguments:
        config: The experiment.
        split: ``validation``, ``test`` or ``train`` (fixed crops of training sequences, to
            measure overfitting as the paper's Table 3; simulators draw them from the ``train``
            stream of ``data.seed``, which training never sees).
        count: Sequences (None: the whole split, or the configured number for simulators).
    """
    source = build_source(config.data, split)
    event_shape_of(source, config)
    if count is None and source.stored:  # a file or a store: all of it
        count = len(source)
    elif count is None:
        data = config.data
        count = data.validation_sequences if split == "validation" else data.test_sequences
    return FixedSequences(
        source,
        length=config.data.evaluation_length,
        noise=config.data.noise,
        seed=config.data.seed,
        stream=split,
        count=count,
        crop=config.evaluate.crop,
    )


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

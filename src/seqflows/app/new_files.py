r"""Checks of a new data file given to a trained model (``seqflows evaluate``, ``sample``,
``predict`` with ``data.path`` of another file than the training run's).

The file's dataset kind, frame size and held-out parts are its own (:func:`new_file_settings`);
its frames must be the model's (:func:`check_new_file`), and a series far outside the model's
standardisation gets a warning: standardised with the training split's mean and std, a
dimension's mean beyond :data:`FAR_MEAN` or its sd :data:`FAR_SD` times off.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from pathlib import Path

import numpy as np

from ..data import Source
from ..data.scaling import series_statistics
from ..errors import DataError
from .config import ConfigError, DataConfig
from .sources import FILE_DATASETS, WholeSequences, build_source, dataset_of

__all__ = [
    "FAR_MEAN",
    "FAR_SD",
    "FILE_SETTINGS",
    "check_new_file",
    "new_file_settings",
    "reads_new_file",
]

# Settings of a training run that describe its file, not its model: a new file has its own.
FILE_SETTINGS = ("dataset", "channels", "size", "validation_sequences", "test_sequences")
# A new series is far outside the model's standardisation when, standardised with the training
# split's mean and std, a dimension's mean lies beyond FAR_MEAN or its sd differs by FAR_SD times.
FAR_MEAN = 3.0
FAR_SD = 3.0


def reads_new_file(trained: DataConfig, data: DataConfig) -> bool:
    r"""Whether ``data`` reads another file (array or store) than the training run's data
    ``trained`` (a file, or a rendered dataset, which has no path)."""
    if data.path is None:
        return False
    if trained.path is None:  # a model of rendered frames given a file (not MNIST digits)
        try:
            return dataset_of(dataclasses.replace(data, dataset=None)) in FILE_DATASETS
        except ConfigError:
            return False
    same = Path(data.path).resolve() == Path(trained.path).resolve()
    return not same and dataset_of(trained) in FILE_DATASETS


def new_file_settings(data: DataConfig, given: Collection[str]) -> DataConfig:
    r"""The data settings for a new file: its dataset kind, frame size and held-out parts are
    its own, read from it (:data:`FILE_SETTINGS`), unless ``given`` (the ``data.*`` keys set on
    the command line) names them; the model's settings (noise, standardisation, crops) stay."""
    own = dataclasses.replace(data, **{key: None for key in FILE_SETTINGS if key not in given})
    return dataclasses.replace(own, dataset=dataset_of(own))


def check_new_file(
    data: DataConfig, event_shape: tuple[int, ...], split: str
) -> tuple[Source, str | None]:
    r"""Checks that the file of ``data`` holds what a trained model models, before anything else.

    Arguments:
        data: The data settings of the new file (:func:`new_file_settings`).
        event_shape: The model's frame shape: (C, H, W) for video, (D,) for a series.
        split: The split to read from a store (an array is read whole).

    Returns:
        The file's sequences and, for a series far outside the model's standardisation
        (:data:`FAR_MEAN`, :data:`FAR_SD`), a one-line warning naming the file and the numbers
        (else None).

    Raises:
        DataError: The file holds frames of another kind or shape than the model's (the message
            says what the checkpoint models and what the file holds).
    """
    if dataset_of(data) == "array":
        source = build_source(data, "all")
    else:
        source = build_source(data, "test" if split == "all" else split)
    shape = tuple(int(size) for size in source.frame_shape)
    if shape != tuple(event_shape):
        raise DataError(
            f"{data.path}: the checkpoint models {_frames(tuple(event_shape))}; this file holds "
            f"{_frames(shape)} ({len(source)} sequences); a trained model scores data of its own "
            "shape only"
        )
    if data.mean is None:
        return source, None
    mean, std = series_statistics(WholeSequences(source), str(data.path))
    shift = (mean - np.asarray(data.mean)) / np.asarray(data.std)
    spread = std / np.asarray(data.std)
    distance = np.maximum(np.abs(shift) / FAR_MEAN, np.abs(np.log(spread)) / math.log(FAR_SD))
    worst = int(np.argmax(distance))
    if distance[worst] <= 1:
        return source, None
    return source, (
        f"{data.path}: far outside the model's standardisation: standardised with the training "
        f"split's mean and std, dimension {worst} has mean {shift[worst]:.3g} and sd "
        f"{spread[worst]:.3g} (training data: 0 and 1); the scores extrapolate (same units?)"
    )


def _frames(shape: tuple[int, ...]) -> str:
    """What frames of ``shape`` are, in words: video frames (C, H, W) or vectors (D,)."""
    if len(shape) == 3:
        return f"video frames (C, H, W) = {shape}"
    if len(shape) == 1:
        return f"vector series of D = {shape[0]} values per step"
    return f"frames of shape {shape}"

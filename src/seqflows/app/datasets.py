r"""Datasets of a configuration: what is read from the data, the training stream and the fixed
validation and test sets.

:func:`resolve_data` fills the data settings left unset (None) from the data itself, before any
training or evaluation starts: the dataset (from the path), the frame size and channels, the
crop length (13, or the shortest sequence when that is shorter), how many sequences of an array
are held out, the noise (the paper's for uint8 frames, none for real-valued series) and the
standardisation of real-valued series (mean and standard deviation per dimension, fitted on the
training split). Settings given in the file or on the command line always win, and everything
is checked against the data there: a crop longer than the sequences, frames of another size or a
model that leaves no frame to score are one-line errors before Lightning starts. ``seqflows
train`` prints what it read and records the result in the run's ``config.yaml`` and checkpoints,
so that a resume and ``evaluate`` see the same values.

Splits, by ``data.dataset``:

| dataset | train | validation | test |
| --- | --- | --- | --- |
| ``moving_mnist_file`` | sequences 0 .. 8999 - V | the V before 9000 | 9000 .. 9999 |
| ``moving_mnist`` | rendered from ``train_digits`` | ``validation_digits`` | ``test_digits`` |
| ``bouncing_balls`` | rendered on the fly | own seed stream | own seed stream |
| ``array`` | the rest | the V before the test part | the last ``test_sequences`` |
| ``store`` | the store's splits (``seqflows convert``) | | |

V is ``data.validation_sequences``. An array's held-out parts default to 10% of its sequences
each (at least 1; at most 256 validation and 512 test sequences, the fixed numbers of larger
data); ``evaluate.split=all`` reads every sequence of an array. Training crops and noise come
from ``train.seed``; the fixed sets draw theirs from ``data.seed``, so evaluation is
deterministic (the authors' was not).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..data import (
    ArraySource,
    BouncingBalls,
    FixedSequences,
    MovingMNIST,
    Preprocessing,
    Source,
    TrainingSequences,
    download_mnist,
    load_array,
    load_digits,
    load_moving_mnist_file,
    mnist,
)
from ..data.scaling import series_statistics
from ..data.store import StoreSource
from .config import Config, ConfigError, DataConfig, ModelConfig

__all__ = [
    "DEFAULT_LENGTH",
    "HELD_OUT_SHARE",
    "build_source",
    "burn_in_of",
    "dataset_of",
    "evaluation_set",
    "event_shape_of",
    "held_out_sequences",
    "inferred_settings",
    "preprocessing_of",
    "resolve_data",
    "training_set",
]

SPLITS = ("train", "validation", "test", "all")
SIMULATORS = ("bouncing_balls", "moving_mnist")
DEFAULT_LENGTH = 13  # the paper's crops: 3 context + 10 scored frames
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
            _existing(data.path, "a store folder written by seqflows convert"), split
        )
    array = _load_array(data)
    count = array.shape[0]
    if split == "all":
        return ArraySource(array, name=str(data.path))
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
        array[bounds[0] : bounds[1]], name=f"{data.path} [{split}]", offset=bounds[0]
    )


def burn_in_of(model: ModelConfig) -> int:
    r"""The context frames the model of ``model`` takes before its first scored frame (its
    ``burn_in``), from the configuration alone."""
    if model.type == "flow":
        return model.num_transforms * model.window if model.context == "burn_in" else 0
    if model.num_transforms:  # SLVM w/ M-AF: the flow's context
        return model.num_transforms * model.window
    return model.window if model.burn_in is None else model.burn_in


def resolve_data(config: Config, split: str | None = None) -> Config:
    r"""``config`` with the data settings left at None read from the data, and every setting
    checked against the data (see the module's description).

    Arguments:
        config: The experiment.
        split: The one split an evaluation reads (``test``, ``validation``, ``train``, ``all``);
            None: training, which reads the training split (crops of ``data.length``) and the
            validation split (crops of ``data.eval_length``).

    Returns:
        The configuration with ``dataset``, ``channels`` and ``size`` (frames), ``length``,
        ``noise``, ``validation_sequences`` and ``test_sequences`` (arrays and simulators), and
        ``mean`` and ``std`` (real-valued series) set.

    Raises:
        ConfigError: A setting that does not fit the data (the message names it and the data):
            frames of another size, a crop longer than the shortest sequence, a crop that leaves
            no frame to score, pixel noise or no standardisation for real values, too few
            sequences to hold out validation and test ones.
        FileNotFoundError: No data at ``data.path``.
        ValueError: A real-valued series with a NaN or an infinite value (named).
    """
    data = config.data
    dataset = dataset_of(data)
    changes: dict[str, Any] = {"dataset": dataset}
    reads = ("train", "validation") if split is None else (split,)
    if dataset in SIMULATORS:
        changes["channels"] = RENDERED_SHAPE[0] if data.channels is None else data.channels
        changes["size"] = RENDERED_SHAPE[1] if data.size is None else data.size
        if data.validation_sequences is None:
            changes["validation_sequences"] = HELD_OUT_LIMITS["validation"]
        if data.test_sequences is None:
            changes["test_sequences"] = HELD_OUT_LIMITS["test"]
        if data.mean is not None:
            raise ConfigError(
                f"data.mean and data.std standardise real-valued series; {dataset} renders "
                "uint8 frames"
            )
        changes["noise"] = data.noise or "gaussian"
        shortest = dict.fromkeys(reads, (data.num_frames, dataset))
    else:
        if dataset == "array":
            array = _load_array(data)
            validation, test = held_out_sequences(array.shape[0], data)
            changes.update(validation_sequences=validation, test_sequences=test)
        elif dataset == "moving_mnist_file" and data.validation_sequences is None:
            changes["validation_sequences"] = HELD_OUT_LIMITS["validation"]
        resolved = _replace(data, changes)
        sources = {name: build_source(resolved, name) for name in reads}
        first = sources[reads[0]]
        shape = tuple(int(size) for size in first.frame_shape)
        changes.update(_frame_settings(shape, data, first.name))
        for source in sources.values():  # every split of a store has the store's frames
            event_shape_of(source, config.replace(data=_replace(data, changes)))
        real = np.dtype(getattr(first, "dtype", np.uint8)).kind == "f"
        changes.update(_value_settings(real, shape, data, sources, first.name))
        shortest = {name: (source.num_frames, source.name) for name, source in sources.items()}
    changes.update(_lengths(config, shortest, split))
    return config.replace(data=_replace(data, changes))


def _replace(data: DataConfig, changes: dict[str, Any]) -> DataConfig:
    return dataclasses.replace(data, **changes)


def _frame_settings(shape: tuple[int, ...], data: DataConfig, name: str) -> dict[str, Any]:
    """``channels`` and ``size`` of frames (C, H, W), checked; nothing for vectors (D,)."""
    if len(shape) != 3:
        return {}
    channels, height, width = shape
    if height != width:
        raise ConfigError(
            f"{name}: frames of {height} x {width} pixels; the models take square frames "
            "(resize or crop them, e.g. seqflows convert folder --size)"
        )
    for key, value, given in (("channels", channels, data.channels), ("size", height, data.size)):
        if given is not None and given != value:
            raise ConfigError(
                f"{name}: frames have shape (C, H, W) = {shape} but data.{key}={given}; set "
                f"data.{key}={value} or leave it unset (read from the data)"
            )
    return {"channels": channels, "size": height}


def _value_settings(
    real: bool,
    shape: tuple[int, ...],
    data: DataConfig,
    sources: dict[str, Source],
    name: str,
) -> dict[str, Any]:
    """``noise``, ``mean`` and ``std``: pixel noise for uint8 frames, a standardisation (fitted
    on the training split unless given) for real-valued series."""
    if not real:
        if data.mean is not None:
            raise ConfigError(
                f"{name}: data.mean and data.std standardise real-valued series; these frames "
                "are uint8 (scaled by data.noise)"
            )
        return {"noise": data.noise or "gaussian"}
    if len(shape) != 1:
        raise ConfigError(f"{name}: real-valued frames {shape}; only vector series (D,) may be")
    if data.noise not in (None, "none"):
        raise ConfigError(
            f"{name}: data.noise={data.noise} is pixel noise for uint8 frames; real-valued "
            "series are taken as they are (data.noise=none)"
        )
    if data.mean is not None:
        if len(data.mean) != shape[0]:
            raise ConfigError(
                f"{name}: data.mean and data.std have {len(data.mean)} values for series of "
                f"{shape[0]} dimensions"
            )
        return {"noise": "none"}
    train = sources.get("train")
    if train is None:  # an evaluation of a configuration that was never resolved
        train = build_source(_replace(data, {"dataset": dataset_of(data)}), "train")
    for source in sources.values():  # checked once, before anything starts
        if source is not train:
            series_statistics(_Sequences(source), source.name)
    mean, std = series_statistics(_Sequences(train), train.name)
    return {"noise": "none", "mean": mean.tolist(), "std": std.tolist()}


class _Sequences:
    """The whole sequences of a stored source, re-iterable (one read per pass)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __iter__(self) -> Iterator[np.ndarray]:
        source = self.source
        return (source.read(n, 0, source.lengths[n]) for n in range(len(source)))


def _lengths(
    config: Config, shortest: dict[str, tuple[int, str]], split: str | None
) -> dict[str, int]:
    """``length``, checked against the training sequences, and the evaluation crops checked
    against the evaluated ones, both leaving a frame to score after the model's context."""
    data = config.data
    burn_in = burn_in_of(config.model)
    model = f"the model takes {burn_in} context frames before the first scored one"
    train = shortest.get("train") if split is None else None
    evaluated = [item for name, item in shortest.items() if split is not None or name != "train"]
    length = data.length
    if length is None:
        fits = [DEFAULT_LENGTH] + ([train[0]] if train else [])
        if data.eval_length is None:
            fits += [frames for frames, _ in evaluated]
        length = min(fits)
        if length <= burn_in:
            frames, name = min([train] if train else evaluated)
            raise ConfigError(
                f"{name}: sequences of {frames} frames are too short for this model: {model} "
                "(model.window, model.num_transforms); use longer sequences or a shorter window"
            )
    if train is not None:
        if length > train[0]:
            raise ConfigError(
                f"{train[1]}: data.length={length} is longer than the shortest training sequence "
                f"({train[0]} frames); set data.length <= {train[0]} or leave it unset (the "
                "longest crop that fits)"
            )
        if length <= burn_in:
            raise ConfigError(f"data.length={length} leaves no frame to score: {model}")
    crop = length if data.eval_length is None else data.eval_length
    key = "data.length" if data.eval_length is None else "data.eval_length"
    for frames, name in evaluated:
        if crop > frames:
            raise ConfigError(
                f"{name}: {key}={crop} is longer than the shortest sequence there ({frames} "
                f"frames); set data.eval_length <= {frames}"
            )
    scored = config.evaluate.scored_frames
    if crop <= burn_in or (scored is not None and scored > crop - burn_in):
        wanted = "a frame" if scored is None else f"evaluate.scored_frames={scored} frames"
        raise ConfigError(
            f"{key}={crop} leaves no room for {wanted} to score: {model}; lengthen "
            "data.eval_length or score fewer frames"
        )
    return {"length": length}


def inferred_settings(given: Config, resolved: Config) -> dict[str, Any]:
    r"""The data settings that :func:`resolve_data` read from stored data (files, stores):
    ``{"data.key": value}`` of every field that was None in ``given`` (``mean`` and ``std``:
    how many values were fitted). Empty for the rendered datasets, whose unset fields take
    their defaults."""
    settings: dict[str, Any] = {}
    if resolved.data.dataset in SIMULATORS:
        return settings
    for key, value in vars(resolved.data).items():
        if getattr(given.data, key) is None and value is not None:
            if key in ("mean", "std"):
                value = f"{len(value)} values fitted on the training split"
            settings[f"data.{key}"] = value
    return settings


def preprocessing_of(data: DataConfig) -> Preprocessing:
    r"""How the data of a resolved configuration becomes model input: the noise of uint8
    frames, or the standardisation of real-valued series."""
    if data.mean is None:
        return Preprocessing(noise=data.noise or "gaussian")
    return Preprocessing(noise="none", mean=tuple(data.mean), std=tuple(data.std))


def event_shape_of(source: Source, config: Config) -> tuple[int, ...]:
    r"""The frame shape of ``source``, checked against the configuration.

    Raises:
        ConfigError: Frames of another shape or channel count than ``data.channels`` and
            ``data.size``, or vector data for a convolutional model.
    """
    shape = tuple(int(size) for size in source.frame_shape)
    name = source.name if source.stored else config.data.dataset  # a file, or the simulator
    data = config.data
    if len(shape) == 3 and data.channels is not None and data.size is not None:
        if shape != data.frame_shape:
            raise ConfigError(
                f"{name}: frames have shape (C, H, W) = {shape} but the configuration expects "
                f"{data.frame_shape}; set data.channels and data.size to match the data (or "
                "leave them unset: read from the data)"
            )
    if len(shape) == 1 and config.model.conditioner == "conv":
        raise ConfigError(
            f"{name}: vector sequences (D = {shape[0]}) need model.conditioner=mlp or linear "
            "(or auto)"
        )
    return shape


def training_set(config: Config, source: Source | None = None) -> TrainingSequences:
    r"""The endless, reproducible training stream (random crops of ``data.length`` frames).

    ``config`` is resolved first (:func:`resolve_data`; a resolved one stays as it is).
    ``source``: the training sequences when the caller has built them already (checked
    against the configuration then), else built from ``config.data``.
    """
    config = resolve_data(config)
    if source is None:
        source = build_source(config.data, "train")
    event_shape_of(source, config)
    return TrainingSequences(
        source,
        length=config.data.length,
        seed=config.train.seed,
        preprocessing=preprocessing_of(config.data),
    )


def evaluation_set(config: Config, split: str, count: int | None = None) -> FixedSequences:
    r"""A fixed evaluation set: the same crops and noise every time (seed ``data.seed``).

    Arguments:
        config: The experiment (resolved first for this split, :func:`resolve_data`).
        split: ``validation``, ``test``, ``train`` (fixed crops of training sequences, to
            measure overfitting as the paper's Table 3; simulators draw them from the ``train``
            stream of ``data.seed``, which training never sees) or ``all`` (every sequence of
            an array).
        count: Sequences (None: the whole split, or the configured number for simulators).
    """
    config = resolve_data(config, split)
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
        seed=config.data.seed,
        stream=split,
        count=count,
        crop=config.evaluate.crop,
        preprocessing=preprocessing_of(config.data),
    )


def _load_array(data: DataConfig) -> Any:
    path = _existing(data.path, "an array of sequences (.npy or .npz)")
    if path.is_dir():
        raise ConfigError(
            f"data.path={data.path} is a folder, not an array file: for a store written by "
            "seqflows convert, set data.dataset=store"
        )
    return load_array(path)


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

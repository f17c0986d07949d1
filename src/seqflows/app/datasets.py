r"""Datasets of a configuration: what is read from the data, the training stream and the fixed
validation and test sets.

:func:`resolve_data` fills the data settings left unset (None) from the data itself, before any
training or evaluation starts: the dataset (from the path), the frame size and channels, the
crop length (13, or the shortest sequence when that is shorter), how many sequences of an array
are held out, the noise (the paper's for uint8 frames, none for real-valued series) and the
standardisation of real-valued series (mean and standard deviation per dimension, fitted on the
training split) and the names of a series' dimensions (the columns of a CSV, for figures).
Settings given in the file or on the command line always win, and everything
is checked against the data there: a crop longer than the sequences, frames of another size or a
model that leaves no frame to score are one-line errors before Lightning starts. ``seqflows
train`` prints what it read and records the result in the run's ``config.yaml`` and checkpoints,
so that a resume and ``evaluate`` see the same values.

Conditions (beyond the paper, :mod:`seqflows.conditioning`): ``data.conditions`` names the
per-step values the data carries beside its frames, and :func:`resolve_data` checks that the data
has them and sets ``model.condition_dim`` to their number per step A when it is 0 (a non-zero
value must equal it). The training stream and the evaluation sets then give (frames, conditions)
items, crops of both from the same frames. Which names a dataset has:

- ``controlled_balls``: ``[action]``, each step's velocity command (A = 2);
- ``store``: its per-frame arrays (BAIR: ``action``, A = 4, and ``endeffector_pos``, A = 3) or,
  for a series converted from a CSV, its columns: covariates, which then leave the modelled
  vector (one store serves with and without them);
- ``array``: arrays of an .npz beside its ``frames``, (N, T) or (N, T, A_i) each.

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
data); ``evaluate.split=all`` reads every sequence of an array. Training crops and noise come
from ``train.seed``; the fixed sets draw theirs from ``data.seed``, so evaluation is
deterministic (the authors' was not).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..data import (
    ArraySource,
    BouncingBalls,
    ControlledBalls,
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
from ..data.scaling import MIN_OBSERVED_STEPS, observed_steps, series_statistics
from ..data.store import StoreSource
from ..errors import DataError
from .config import Config, ConfigError, DataConfig, ModelConfig

__all__ = [
    "DEFAULT_LENGTH",
    "HELD_OUT_SHARE",
    "build_source",
    "check_new_file",
    "condition_dim_of",
    "dataset_of",
    "evaluation_set",
    "event_shape_of",
    "held_out_sequences",
    "inferred_settings",
    "new_file_settings",
    "reads_new_file",
    "preprocessing_of",
    "resolve_data",
    "training_set",
]

SPLITS = ("train", "validation", "test", "all")
FILE_DATASETS = ("array", "store")  # the datasets read from data.path
SIMULATORS = ("bouncing_balls", "controlled_balls", "moving_mnist")
RENDERED_CONDITIONS = {"controlled_balls": ("action",)}  # what a simulator renders with frames
DEFAULT_LENGTH = 13  # the paper's crops: 3 context + 10 scored frames
RENDERED_SHAPE = (1, 32)  # channels and size of the rendered datasets, unless set
HELD_OUT_SHARE = 0.1  # of an array's sequences, for each of validation and test
HELD_OUT_LIMITS = {"validation": 256, "test": 512}  # and the fixed numbers for larger data
# Settings of a training run that describe its file, not its model: a new file has its own.
FILE_SETTINGS = ("dataset", "channels", "size", "validation_sequences", "test_sequences")
# A new series is far outside the model's standardisation when, standardised with the training
# split's mean and std, a dimension's mean lies beyond FAR_MEAN or its sd differs by FAR_SD times.
FAR_MEAN = 3.0
FAR_SD = 3.0


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
    array = _load_array(data)
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
        ``noise``, ``validation_sequences`` and ``test_sequences`` (arrays and simulators),
        ``mean`` and ``std`` (real-valued series), ``dimension_names`` (a series converted from
        a CSV) and ``model.condition_dim`` (conditions) set.

    Raises:
        ConfigError: A setting that does not fit the data (the message names it and the data):
            frames of another size, a crop longer than the shortest sequence, a crop that leaves
            no frame to score, pixel noise or no standardisation for real values, too few
            sequences to hold out validation and test ones, conditions the data does not have or
            a ``model.condition_dim`` that differs from theirs.
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
        condition_dim = _rendered_condition_dim(data, dataset)
        where = dataset
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
        changes.update(_dimension_names(shape, data, first))
        for source in sources.values():  # every split of a store has the store's frames
            event_shape_of(source, config.replace(data=_replace(data, changes)))
        real = np.dtype(getattr(first, "dtype", np.uint8)).kind == "f"
        changes.update(_value_settings(real, shape, data, sources, first.name))
        shortest = {name: (source.num_frames, source.name) for name, source in sources.items()}
        condition_dim = condition_dim_of(first)
        changes["gaps"] = _gaps(real, data, sources, first.name)
        condition_dim += 2 * shape[0] if changes["gaps"] else 0  # the observation masks
        where = first.name
    changes.update(_lengths(config, shortest, split))
    model = _model_conditions(config.model, data, condition_dim, where)
    return config.replace(data=_replace(data, changes), model=model)


def condition_dim_of(source: Source) -> int:
    r"""A, the number of conditions per step that the items of ``source`` carry (0: none)."""
    return int(getattr(source, "condition_dim", 0) or 0)


def _rendered_condition_dim(data: DataConfig, dataset: str) -> int:
    """A of a simulator's ``data.conditions``, checked against what it renders."""
    names = data.condition_names
    if not names:
        return 0
    rendered = RENDERED_CONDITIONS.get(dataset, ())
    if names != rendered:
        has = f"it renders {list(rendered)}" if rendered else "it renders frames only"
        raise ConfigError(
            f"{dataset}: data.conditions={list(names)} are not values of this dataset: {has} "
            "(data.conditions=null: no conditions)"
        )
    return ControlledBalls.condition_dim


def _model_conditions(
    model: ModelConfig, data: DataConfig, condition_dim: int, where: str
) -> dict[str, int]:
    """``model.condition_dim`` set from the data's A when 0, or checked against it."""
    given = model.condition_dim
    if not condition_dim and data.conditions:
        raise ConfigError(
            f"{where}: data.conditions={list(data.condition_names)} but these sequences have no "
            "conditions (data.conditions=null: none)"
        )
    if not condition_dim:
        if given:
            raise ConfigError(
                f"{where}: model.condition_dim={given} but the data gives no conditions; name "
                "them with data.conditions (e.g. [action]) or set model.condition_dim=0"
            )
        return {}
    if given and given != condition_dim:
        raise ConfigError(
            f"{where}: data.conditions={list(data.condition_names)} hold {condition_dim} values "
            f"per step but model.condition_dim={given}; set model.condition_dim="
            f"{condition_dim} or leave it 0 (read from the data)"
        )
    return {"condition_dim": condition_dim}


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


def _dimension_names(shape: tuple[int, ...], data: DataConfig, source: Source) -> dict[str, Any]:
    """``dimension_names`` of a vector series (D,): the given ones, checked, or the data's (a
    CSV's columns); nothing for frames and for series without names."""
    names = data.dimension_names
    if len(shape) != 1:
        if names is not None:
            raise ConfigError(
                f"{source.name}: data.dimension_names names the dimensions of vector series; "
                f"these are frames of shape {shape}"
            )
        return {}
    if names is None:
        found = list(getattr(source, "dimension_names", ()))
        return {"dimension_names": found} if found else {}
    if len(names) != shape[0]:
        raise ConfigError(
            f"{source.name}: data.dimension_names has {len(names)} names for series of "
            f"{shape[0]} dimensions"
        )
    return {}


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


def _gaps(real: bool, data: DataConfig, sources: dict[str, Source], name: str) -> bool | None:
    """``gaps``: the given setting, or whether the training split of a real-valued series has a
    missing value (NaN); None for frames, which have no gaps."""
    if not real:
        if data.gaps:
            raise ConfigError(
                f"{name}: data.gaps=true gives observation masks of real-valued series with "
                "missing values; these frames are uint8 (no gaps)"
            )
        return data.gaps
    for source in sources.values():  # every sequence read needs a context and a score
        for index, sequence in enumerate(_Sequences(source)):
            if observed_steps(sequence) < MIN_OBSERVED_STEPS:
                raise DataError(
                    f"{source.name}: sequence {index} has {observed_steps(sequence)} steps with "
                    f"an observed value (of {len(sequence)}); a sequence needs at least "
                    f"{MIN_OBSERVED_STEPS}: drop it or fill its gaps"
                )
    train = sources.get("train")
    if data.gaps is not None or train is None:  # given, or an evaluation of a model trained
        return bool(data.gaps)  # before gaps were read (no masks: it has none)
    return any(bool(np.isnan(sequence).any()) for sequence in _Sequences(train))


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
    burn_in = config.model.burn_in_frames
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
    how many values were fitted), and ``model.condition_dim`` when it was read from the
    conditions. The rendered datasets' unset data fields take their defaults (not listed)."""
    settings: dict[str, Any] = {}
    if resolved.model.condition_dim != given.model.condition_dim:
        settings["model.condition_dim"] = resolved.model.condition_dim
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


def reads_new_file(trained: DataConfig, data: DataConfig) -> bool:
    r"""Whether ``data`` reads another file (array or store) than the training run's data
    ``trained`` (a file, or a rendered dataset, which has no path)."""
    if data.path is None:
        return False
    if trained.path is None:  # a model of rendered frames given a file (not MNIST digits)
        try:
            return dataset_of(_replace(data, {"dataset": None})) in FILE_DATASETS
        except ConfigError:
            return False
    same = Path(data.path).resolve() == Path(trained.path).resolve()
    return not same and dataset_of(trained) in FILE_DATASETS


def new_file_settings(data: DataConfig, given: Collection[str]) -> DataConfig:
    r"""The data settings for a new file: its dataset kind, frame size and held-out parts are
    its own, read from it (:data:`FILE_SETTINGS`), unless ``given`` (the ``data.*`` keys set on
    the command line) names them; the model's settings (noise, standardisation, crops) stay."""
    own = _replace(data, {key: None for key in FILE_SETTINGS if key not in given})
    return _replace(own, {"dataset": dataset_of(own)})


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
    mean, std = series_statistics(_Sequences(source), str(data.path))
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


def training_set(config: Config, source: Source | None = None) -> TrainingSequences:
    r"""The endless, reproducible training stream (random crops of ``data.length`` frames).

    ``config`` is resolved first (:func:`resolve_data`; a resolved one stays as it is).
    ``source``: the training sequences when the caller has built them already (checked
    against the configuration then), else built from ``config.data``. With
    ``data.conditions`` its items are (frames, conditions) pairs.
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
        conditions=bool(config.data.conditions),
    )


def evaluation_set(
    config: Config, split: str, count: int | None = None, conditions: bool = False
) -> FixedSequences:
    r"""A fixed evaluation set: the same crops and noise every time (seed ``data.seed``).

    Arguments:
        config: The experiment (resolved first for this split, :func:`resolve_data`).
        split: ``validation``, ``test``, ``train`` (fixed crops of training sequences, to
            measure overfitting as the paper's Table 3; simulators draw them from the ``train``
            stream of ``data.seed``, which training never sees) or ``all`` (every sequence of
            an array).
        count: Sequences (None: the whole split, or the configured number for simulators).
        conditions: Items are (frames, conditions (length, A)) pairs (``data.conditions`` must
            name them); without it, the frames alone, whose conditions
            :meth:`~seqflows.data.FixedSequences.with_conditions` still gives.
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
        conditions=conditions,
    )


def _load_array(data: DataConfig) -> Any:
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

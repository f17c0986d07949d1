r"""What the data says: :func:`resolve_data` reads, before any training or evaluation starts,
the data settings left unset (None) from the data itself and checks every setting against it;
it returns what it read as its own frozen object, :class:`ResolvedData`, which the commands pass
down beside the configuration (the configuration itself is parsed once and never rewritten).

Read from the data: the dataset (from the path), the frame size and channels, the crop length
(13, or the shortest sequence when that is shorter), how many sequences of an array are held
out, the noise (the paper's for uint8 frames, none for real-valued series), the
standardisation of real-valued series (mean and standard deviation per dimension, fitted on the
training split), the names of a series' dimensions (the columns of a CSV, for figures) and A,
the number of conditions per step. Settings given in the file or on the command line always
win, and are checked against the data: a crop longer than the sequences, frames of another size
or a model that leaves no frame to score are one-line errors before Lightning starts. ``seqflows
train`` prints what it read (:func:`inferred_settings`) and records the settings in effect
(:func:`settings_in_effect`) in the run's ``config.yaml`` and checkpoints, so that a resume and
``evaluate`` see the same values.

Conditions (beyond the paper, :mod:`seqflows.conditioning`): ``data.conditions`` names the
per-step values the data carries beside its frames; :func:`resolve_data` checks that the data
has them and reads their number per step A (``model.condition_dim``, when non-zero, must equal
it). Which names a dataset has:

- ``controlled_balls``: ``[action]``, each step's velocity command (A = 2);
- ``store``: its per-frame arrays (BAIR: ``action``, A = 4, and ``endeffector_pos``, A = 3) or,
  for a series converted from a CSV, its columns: covariates, which then leave the modelled
  vector (one store serves with and without them);
- ``array``: arrays of an .npz beside its ``frames``, (N, T) or (N, T, A_i) each.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import ControlledBalls, Preprocessing, Source
from ..data.scaling import MIN_OBSERVED_STEPS, observed_steps, series_statistics
from ..errors import DataError
from .checkpoints import with_condition_dim
from .config import Config, ConfigError, DataConfig
from .sources import (
    HELD_OUT_LIMITS,
    RENDERED_SHAPE,
    SIMULATORS,
    WholeSequences,
    array_frames,
    build_source,
    dataset_of,
    held_out_sequences,
)

__all__ = [
    "DEFAULT_LENGTH",
    "ResolvedData",
    "condition_dim_of",
    "event_shape_of",
    "inferred_settings",
    "preprocessing_of",
    "resolve_data",
    "settings_in_effect",
]

DEFAULT_LENGTH = 13  # the paper's crops: 3 context + 10 scored frames
RENDERED_CONDITIONS = {"controlled_balls": ("action",)}  # what a simulator renders with frames


@dataclass(frozen=True)
class ResolvedData:
    r"""What :func:`resolve_data` read from the data (and the given settings it checked).

    Attributes:
        dataset: The dataset kind (``data.dataset``, or what ``data.path`` is).
        source: Where the data comes from, for messages: the file or store (its first split
            read), or the simulator.
        event_shape: The frame shape: (C, H, W) for frames, (D,) for vector series.
        channels: C of frames (None for vector series).
        size: H = W of frames (None for vector series).
        length: Frames of each training crop.
        evaluation_length: Frames of each evaluation crop (``data.eval_length`` or ``length``).
        noise: ``gaussian``, ``uniform`` or ``none`` (real-valued series).
        mean: The per-dimension standardisation mean of a real-valued series (else None).
        std: Its per-dimension standard deviation (else None).
        dimension_names: The names of a vector series' dimensions, where known (else None).
        validation_sequences: Sequences held out for validation (None: the store's split).
        test_sequences: Test sequences (None: the store's or the file's own split).
        condition_dim: A, the conditions per step (0: none), the observation masks of a
            series with gaps included (2 D: each step's and the previous step's).
        gaps: Whether a real-valued series has missing values (NaN), whose observation masks
            the model sees beside its conditions (``data.gaps``; None for frames).
    """

    dataset: str
    source: str
    event_shape: tuple[int, ...]
    channels: int | None
    size: int | None
    length: int
    evaluation_length: int
    noise: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    dimension_names: tuple[str, ...] | None
    validation_sequences: int | None
    test_sequences: int | None
    condition_dim: int
    gaps: bool | None = None

    def fills(self, given: DataConfig) -> dict[str, Any]:
        r"""``{key: value}`` of the data settings that ``given`` leaves None and the data
        decided, in the order of :class:`DataConfig`'s fields, as YAML values (lists)."""
        read = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        fills = {}
        for key, value in vars(given).items():
            if value is None and read.get(key) is not None:
                fills[key] = list(read[key]) if isinstance(read[key], tuple) else read[key]
        return fills


def resolve_data(config: Config, split: str | None = None) -> ResolvedData:
    r"""What the data of ``config`` says, with every setting checked against the data (see
    the module's description).

    Arguments:
        config: The experiment.
        split: The one split an evaluation reads (``test``, ``validation``, ``train``, ``all``);
            None: training, which reads the training split (crops of ``data.length``) and the
            validation split (crops of ``data.eval_length``).

    Returns:
        What was read, the given settings where set (:class:`ResolvedData`).

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
    reads = ("train", "validation") if split is None else (split,)
    read: dict[str, Any] = {  # the given settings, until the data decides them
        "mean": data.mean,
        "std": data.std,
        "validation_sequences": data.validation_sequences,
        "test_sequences": data.test_sequences,
    }
    if dataset in SIMULATORS:
        channels = RENDERED_SHAPE[0] if data.channels is None else data.channels
        size = RENDERED_SHAPE[1] if data.size is None else data.size
        read.update(channels=channels, size=size, event_shape=(channels, size, size))
        if data.validation_sequences is None:
            read["validation_sequences"] = HELD_OUT_LIMITS["validation"]
        if data.test_sequences is None:
            read["test_sequences"] = HELD_OUT_LIMITS["test"]
        if data.mean is not None:
            raise ConfigError(
                f"data.mean and data.std standardise real-valued series; {dataset} renders "
                "uint8 frames"
            )
        read["noise"] = data.noise or "gaussian"
        read["gaps"] = _gaps(False, data, {}, dataset)
        shortest = dict.fromkeys(reads, (data.num_frames, dataset))
        condition_dim = _rendered_condition_dim(data, dataset)
        where = dataset
    else:
        sources = {name: build_source(data, name) for name in reads}
        first = sources[reads[0]]
        shape = frame_shape(first)
        read.update(_frame_settings(shape, data, first.name), event_shape=shape)
        read.update(_held_out(data))
        read["dimension_names"] = _dimension_names(shape, data, first)
        for source in sources.values():  # every split of a store has the store's frames
            _check_frames(source, source.name, read["channels"], read["size"], config)
        real = np.dtype(getattr(first, "dtype", np.uint8)).kind == "f"
        read.update(_value_settings(real, shape, data, sources, first.name))
        shortest = {name: (source.num_frames, source.name) for name, source in sources.items()}
        condition_dim = condition_dim_of(first)
        read["gaps"] = _gaps(real, data, sources, first.name)
        condition_dim += 2 * shape[0] if read["gaps"] else 0  # the observation masks
        where = first.name
    length, evaluation_length = _lengths(config, shortest, split)
    _check_condition_dim(config.model.condition_dim, data, condition_dim, where)
    names = read.pop("dimension_names", None) or data.dimension_names
    return ResolvedData(
        dataset=dataset,
        source=where,
        length=length,
        evaluation_length=evaluation_length,
        condition_dim=condition_dim,
        dimension_names=None if names is None else tuple(names),
        **{key: tuple(value) if isinstance(value, list) else value for key, value in read.items()},
    )


def settings_in_effect(config: Config, data: ResolvedData) -> Config:
    r"""The settings a run records (``config.yaml``, checkpoints): ``config`` with the data
    settings it leaves unset as the data decided them (:meth:`ResolvedData.fills`) and the
    model given the data's A (:func:`~seqflows.app.checkpoints.with_condition_dim`). A record
    to write and compare, not a configuration that the run reads."""
    return config.replace(
        data=data.fills(config.data), model=with_condition_dim(config.model, data.condition_dim)
    )


def inferred_settings(given: Config, data: ResolvedData) -> dict[str, Any]:
    r"""The data settings that :func:`resolve_data` read from stored data (files, stores):
    ``{"data.key": value}`` of every field that was None in ``given`` (``mean`` and ``std``:
    how many values were fitted), and ``model.condition_dim`` when it was read from the
    conditions. The rendered datasets' unset data fields take their defaults (not listed)."""
    settings: dict[str, Any] = {}
    if data.condition_dim != given.model.condition_dim:
        settings["model.condition_dim"] = data.condition_dim
    if data.dataset in SIMULATORS:
        return settings
    for key, value in data.fills(given.data).items():
        if key in ("mean", "std"):
            value = f"{len(value)} values fitted on the training split"
        settings[f"data.{key}"] = value
    return settings


def preprocessing_of(data: DataConfig | ResolvedData) -> Preprocessing:
    r"""How the data becomes model input: the noise of uint8 frames, or the standardisation of
    real-valued series (``data``: what :func:`resolve_data` read, or the settings a run
    recorded)."""
    if data.mean is None:
        return Preprocessing(noise=data.noise or "gaussian")
    gaps = bool(data.gaps)  # the masks the conditioners see
    return Preprocessing(noise="none", mean=tuple(data.mean), std=tuple(data.std), gaps=gaps)


def frame_shape(source: Source) -> tuple[int, ...]:
    """The frame shape of ``source`` as plain ints: (C, H, W) or (D,)."""
    return tuple(int(size) for size in source.frame_shape)


def event_shape_of(source: Source, config: Config, data: ResolvedData) -> tuple[int, ...]:
    r"""The frame shape of ``source``, checked against what :func:`resolve_data` read and the
    model's conditioner.

    Raises:
        ConfigError: Frames of another shape or channel count than ``data.channels`` and
            ``data.size``, or vector data for a convolutional model.
    """
    name = source.name if source.stored else data.dataset  # a file, or the simulator
    return _check_frames(source, name, data.channels, data.size, config)


def _check_frames(
    source: Source, name: str, channels: int | None, size: int | None, config: Config
) -> tuple[int, ...]:
    """:func:`event_shape_of` with the expected channels and size given."""
    shape = frame_shape(source)
    if len(shape) == 3 and channels is not None and size is not None:
        if shape != (channels, size, size):
            raise ConfigError(
                f"{name}: frames have shape (C, H, W) = {shape} but the configuration expects "
                f"{(channels, size, size)}; set data.channels and data.size to match the data "
                "(or leave them unset: read from the data)"
            )
    if len(shape) == 1:
        try:
            config.model.check_frames(shape, "data.size")
        except ConfigError as error:
            raise ConfigError(f"{name}: {error}") from None
    return shape


def _held_out(data: DataConfig) -> dict[str, Any]:
    """The held-out sequences of an array (its own numbers) and the standard Moving MNIST file
    (the fixed validation part); a store's are its splits (None)."""
    dataset = dataset_of(data)
    if dataset == "array":
        validation, test = held_out_sequences(array_frames(data).shape[0], data)
        return {"validation_sequences": validation, "test_sequences": test}
    if dataset == "moving_mnist_file" and data.validation_sequences is None:
        return {"validation_sequences": HELD_OUT_LIMITS["validation"]}
    return {}


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
        for index, sequence in enumerate(WholeSequences(source)):
            if observed_steps(sequence) < MIN_OBSERVED_STEPS:
                raise DataError(
                    f"{source.name}: sequence {index} has {observed_steps(sequence)} steps with "
                    f"an observed value (of {len(sequence)}); a sequence needs at least "
                    f"{MIN_OBSERVED_STEPS}: drop it or fill its gaps"
                )
    train = sources.get("train")
    if data.gaps is not None or train is None:  # given, or an evaluation of a model trained
        return bool(data.gaps)  # before gaps were read (no masks: it has none)
    return any(bool(np.isnan(sequence).any()) for sequence in WholeSequences(train))


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


def _check_condition_dim(given: int, data: DataConfig, condition_dim: int, where: str) -> None:
    """Checks the data's conditions against ``data.conditions`` and a given (non-zero)
    ``model.condition_dim``."""
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
        return
    if given and given != condition_dim:
        raise ConfigError(
            f"{where}: data.conditions={list(data.condition_names)} hold {condition_dim} values "
            f"per step but model.condition_dim={given}; set model.condition_dim="
            f"{condition_dim} or leave it 0 (read from the data)"
        )


def _frame_settings(shape: tuple[int, ...], data: DataConfig, name: str) -> dict[str, Any]:
    """``channels`` and ``size`` of frames (C, H, W), checked; nothing for vectors (D,)."""
    if len(shape) != 3:
        return {"channels": None, "size": None}
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


def _dimension_names(shape: tuple[int, ...], data: DataConfig, source: Source) -> list[str] | None:
    """``dimension_names`` of a vector series (D,) read from the data (a CSV's columns), or the
    given ones checked (then None: nothing read); None for frames and series without names."""
    names = data.dimension_names
    if len(shape) != 1:
        if names is not None:
            raise ConfigError(
                f"{source.name}: data.dimension_names names the dimensions of vector series; "
                f"these are frames of shape {shape}"
            )
        return None
    if names is None:
        return list(getattr(source, "dimension_names", ())) or None
    if len(names) != shape[0]:
        raise ConfigError(
            f"{source.name}: data.dimension_names has {len(names)} names for series of "
            f"{shape[0]} dimensions"
        )
    return None


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
        train = build_source(data, "train")
    for source in sources.values():  # checked once, before anything starts
        if source is not train:
            series_statistics(WholeSequences(source), source.name)
    mean, std = series_statistics(WholeSequences(train), train.name)
    return {"noise": "none", "mean": mean.tolist(), "std": std.tolist()}


def _lengths(
    config: Config, shortest: dict[str, tuple[int, str]], split: str | None
) -> tuple[int, int]:
    """``length`` and the evaluation crop: the training crop checked against the training
    sequences, the evaluation crop against the evaluated ones, both leaving a frame to score
    after the model's context."""
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
    return length, crop

r"""Experiment configurations: frozen, typed sections read from YAML, overridable by ``key=value``.

A configuration has four sections, ``data``, ``model``, ``train`` and ``evaluate``; every field
has a default, so a YAML file lists only what differs. The ``model`` section is the model's own
configuration, chosen by its ``type``: :class:`~seqflows.flows.FlowConfig` (``type: flow``) or
:class:`~seqflows.slvm.SLVMConfig` (``type: slvm``), so a model setting has one name, one default
and one validation, beside the model. Unknown keys, wrong types, unknown choices and values out
of range are errors that name the file (or the override) and the key. The experiments of the
paper ship with the package (:func:`find_config`, ``seqflows configs``).

Example:
    >>> config = Config.from_dict(
    ...     {"model": {"conditioner": {"window": 2}}}, overrides=["train.batch_size=4"]
    ... )
    >>> config.model.conditioner.window, config.train.batch_size, type(config.model).__name__
    (2, 4, 'FlowConfig')
    >>> slvm = Config.from_dict({}, ["model.type=slvm", "model.latent.latent_dim=8"]).model
    >>> slvm.latent.latent_dim
    8

The flat names of earlier versions (``model.window``, ``model.latent_dim``) remain accepted as
aliases of the nested settings (:mod:`seqflows.flat_settings`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from ..config import build, check_at_least, check_choices, check_seed, coerce
from ..data.scaling import check_standardization
from ..errors import ConfigError
from ..flat_settings import FLAT_NAMES
from ..flows import FlowConfig
from ..pretrained import MODEL_CLASSES
from ..slvm import SLVMConfig

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "ModelConfig",
    "TrainConfig",
    "available_configs",
    "default_cadences",
    "find_config",
    "load_config",
    "stored_config",
]

ModelConfig = FlowConfig | SLVMConfig
SECTIONS = ("data", "model", "train", "evaluate")


@dataclass(frozen=True)
class DataConfig:
    r"""Where sequences come from and how they become model input.

    Fields left at None are read from the data before training
    (:func:`~seqflows.app.resolution.resolve_data`), printed, and recorded in the run's
    ``config.yaml`` and checkpoints; a value given in the file or on the command line always
    wins (and is checked against the data).

    Attributes:
        dataset: ``bouncing_balls`` (rendered on the fly, no download), ``controlled_balls``
            (balls that a known velocity action moves at every step, rendered on the fly with
            their actions: for conditioned models), ``moving_mnist``
            (two MNIST digits bouncing, rendered on the fly from an IDX digits file),
            ``moving_mnist_file`` (the standard ``mnist_test_seq.npy``, the paper's data),
            ``array`` (a .npy/.npz of shape (N, T, C, H, W), (N, T, H, W) or (N, T, D): uint8,
            or float for vector series) or ``store`` (a folder written by ``seqflows convert``:
            BAIR, KTH, your videos or series). None: ``array`` for a .npy/.npz ``path``,
            ``store`` for a folder, ``bouncing_balls`` without a path.
        path: The data file: ``mnist_test_seq.npy``, the MNIST images IDX file (None: download
            ``train-images-idx3-ubyte.gz`` into ``root``), the array or the store.
        root: Folder for downloaded files.
        channels: Channels C of a frame (None: the data's; 1 for the rendered datasets).
        size: Height and width of a frame (None: the data's; 32 for the rendered datasets).
        length: Frames of each training crop (13 for 1-AF and the SLVMs, 16 for 2-AF; None: 13,
            or the shortest sequence when that is shorter).
        eval_length: Frames of each evaluation crop (None: ``length``); the model scores the last
            eval_length - burn_in of them (10 in the paper).
        conditions: What the model is conditioned on (beyond the paper,
            :mod:`seqflows.conditioning`): the names of per-step values the data carries beside
            its frames, concatenated in this order into the conditions c_t of each step.
            ``controlled_balls``: ``[action]``; a store: per-frame arrays (BAIR: ``[action]``
            or ``[action, endeffector_pos]``) or, for a series converted from a CSV, columns
            (covariates: they become conditions instead of modelled dimensions); an .npz:
            arrays (N, T) or (N, T, A_i) beside its ``frames``. None: no conditions (an
            unconditioned model). ``model.condition_dim`` left at 0: the model is built with the
            number of values per step read from the data (A); a non-zero one must equal it.
        noise: ``gaussian``: x/255 + N(0, (1/256)^2), the paper's; ``uniform``: (x + u)/256,
            dequantization, which makes bits/dim meaningful; ``none``: x/255, and real-valued
            series as they are. None: ``gaussian`` for uint8 data, ``none`` for real series.
        dimension_names: Vector series: the name of each of the D dimensions, for figures
            (None: read from the data, the CSV's columns of a series converted from a CSV;
            series without names are drawn as "dimension 0", "dimension 1", ...).
        mean: Real-valued series: the per-dimension mean of the standardisation
            (x - mean) / std (None: fitted on the training split).
        std: Real-valued series: the per-dimension standard deviation (None: fitted on the
            training split; a dimension that never varies gets 1).
        gaps: Vector series with missing values (NaN, :mod:`seqflows.missing`): true gives the
            conditioners the observation masks of each step and of the one before as 2 D more
            conditions per step (``model.condition_dim`` = A + 2 D); false: no masks (the gaps
            are still filled and left out of the density). None: true when the training split
            has a missing value.
        num_frames: Frames rendered per generated sequence (bouncing balls, Moving MNIST).
        validation_sequences: Sequences held out for model selection (the end of the training part
            of a file; generated with their own seed for simulators). None: 256; for an array,
            10% of its sequences, at least 1 and at most 256.
        test_sequences: Evaluation sequences generated for simulators, and the end of an array.
            None: 512; for an array, 10% of its sequences, at least 1 and at most 512.
        train_digits: [start, stop) of the digits that training sequences use (moving_mnist).
        validation_digits: [start, stop) of the digits of validation sequences.
        test_digits: [start, stop) of the digits of test sequences.
        num_digits: Digits per Moving MNIST sequence.
        num_balls: Balls per bouncing-balls (and controlled-balls) sequence.
        speed: ``controlled_balls``: the largest commanded displacement per frame and
            coordinate, in pixels (None: size / 16).
        seed: Seed of the fixed validation and test sets (crops, noise, generated sequences).
        num_workers: DataLoader worker processes.
    """

    dataset: (
        Literal[
            "bouncing_balls",
            "controlled_balls",
            "moving_mnist",
            "moving_mnist_file",
            "array",
            "store",
        ]
        | None
    ) = None
    path: str | None = None
    root: str = "data"
    channels: int | None = None
    size: int | None = None
    length: int | None = None
    eval_length: int | None = None
    conditions: list[str] | None = None
    noise: Literal["gaussian", "uniform", "none"] | None = None
    dimension_names: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    gaps: bool | None = None
    num_frames: int = 20
    validation_sequences: int | None = None
    test_sequences: int | None = None
    train_digits: list[int] = field(default_factory=lambda: [0, 7000])
    validation_digits: list[int] = field(default_factory=lambda: [7000, 8000])
    test_digits: list[int] = field(default_factory=lambda: [8000, 10000])
    num_digits: int = 2
    num_balls: int = 2
    speed: float | None = None
    seed: int = 1234
    num_workers: int = 1

    def __post_init__(self) -> None:
        check_choices(self)
        if self.dataset in ("moving_mnist_file", "array", "store") and self.path is None:
            raise ConfigError(
                f"path is required for dataset {self.dataset}: give the file or folder of your "
                "sequences, e.g. data.path=my_sequences.npy on the command line"
            )
        for name in ("train_digits", "validation_digits", "test_digits"):
            value = getattr(self, name)
            if len(value) != 2 or value[0] >= value[1]:
                raise ConfigError(f"{name} must be [start, stop) with start < stop: {value}")
        check_at_least(self, 1, "channels", "size", "length", "num_frames", "eval_length")
        check_at_least(self, 0, "num_workers", "validation_sequences", "test_sequences")
        check_seed(self.seed)
        if self.conditions is not None:
            names = self.conditions
            if not names or any(not isinstance(name, str) or not name for name in names):
                raise ConfigError(
                    f"conditions must be a non-empty list of names (or null: none), got {names}"
                )
            if len(set(names)) != len(names):
                raise ConfigError(f"conditions name a value twice: {names}")
        names = self.dimension_names
        if names is not None and (
            not names or any(not isinstance(name, str) or not name for name in names)
        ):
            raise ConfigError(
                f"dimension_names must be a non-empty list of names (or null), got {names}"
            )
        if self.speed is not None and not 0 <= self.speed < math.inf:
            raise ConfigError(f"speed must be >= 0 and finite, got {self.speed}")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("mean and std standardise together: give both or neither")
        if self.mean is not None:
            try:
                check_standardization(self.mean, self.std, self.noise)
            except ValueError as error:
                raise ConfigError(str(error)) from None

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one frame (known once ``channels`` and ``size`` are: see
        :func:`~seqflows.app.resolution.resolve_data`)."""
        if self.channels is None or self.size is None:
            raise ConfigError(
                "data.channels and data.size are read from the data (resolve_data) or given"
            )
        return (self.channels, self.size, self.size)

    @property
    def condition_names(self) -> tuple[str, ...]:
        """The names of ``conditions``, () for none."""
        return tuple(self.conditions or ())

    @property
    def evaluation_length(self) -> int | None:
        """Frames of each evaluation crop (None until ``length`` is known)."""
        return self.length if self.eval_length is None else self.eval_length


@dataclass(frozen=True)
class TrainConfig:
    r"""Optimisation and the trainer.

    Attributes:
        seed: Seed of the initial weights and of the training stream (crops, noise, order).
        batch_size: Sequences per step, over all processes together (16 in the paper; 8 for
            2-AF). Each of N processes takes batch_size / N.
        max_steps: Optimizer steps (100k for the paper's flows).
        learning_rate: Adam's learning rate (1e-4, no schedule, in the paper).
        optimizer: ``adam`` (the paper's) or ``sgd``.
        lr_schedule: ``constant`` (the paper's) or ``cosine`` (from ``learning_rate`` down to 0
            at ``max_steps``: short runs at a large rate end in a stable model; ``max_steps``
            cannot change on resume with it, as the schedule was laid over it, while a changed
            ``learning_rate`` scales the rest of it).
        gradient_clip: Maximal gradient norm (1.0; the paper's code configured it but never
            applied it); 0 disables clipping.
        kl_warmup: SLVMs: steps over which the KL weight rises linearly from 0 to 1 (0: the
            ELBO from the start, as the paper).
        val_every: Steps between validations (None: ``max_steps // 10``, between 1 and 1000;
            see :func:`default_cadences`).
        val_sequences: Validation sequences scored each time (None: all).
        checkpoint_every: Steps between writes of ``last.ckpt`` (None: as ``val_every``'s
            default).
        log_every: Steps between logged training metrics (None: ``max_steps // 20``, between 1
            and 50).
        precision: ``32``, ``bf16-mixed``, ``16-mixed``, ``64``, or ``auto``: ``bf16-mixed``
            where the device computes in bf16 natively, ``32`` elsewhere
            (:func:`~seqflows.app.precision.resolve_precision`).
        accelerator: ``auto``, ``cpu``, ``gpu``, ...
        devices: Devices per node (an int >= 1, -1 for all, or ``auto``).
        num_nodes: Nodes.
        strategy: Lightning strategy (``auto``, ``ddp``, ...).
        sync_batchnorm: Batch statistics over all processes in data-parallel training (the
            paper trained on one GPU: each process then normalizes with its own batch share).
        allocator: ``retain`` (on Linux, keep freed memory: 1.3-1.5x faster on CPU, see the
            README) or ``system``.
        steps_per_call: Optimizer steps taken in one call of the Lightning task (an int >= 1,
            or ``auto``: up to 50 for a small vector model, 1 for frames, large models and
            several processes; :func:`~seqflows.app.runtime.steps_per_call`). Each step has its
            own batch, as with 1: only Lightning's cost per call is shared; no result changes
            (a stop request, SIGTERM or SIGINT, ends the run after the current call).
    """

    seed: int = 0
    batch_size: int = 16
    max_steps: int = 100_000
    learning_rate: float = 1e-4
    optimizer: Literal["adam", "sgd"] = "adam"
    lr_schedule: Literal["constant", "cosine"] = "constant"
    gradient_clip: float = 1.0
    kl_warmup: int = 0
    val_every: int | None = None
    val_sequences: int | None = None
    checkpoint_every: int | None = None
    log_every: int | None = None
    precision: Literal["32", "bf16-mixed", "16-mixed", "64", "auto"] = "32"
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False
    allocator: Literal["retain", "system"] = "retain"
    steps_per_call: int | str = "auto"

    def __post_init__(self) -> None:
        check_choices(self)
        if self.steps_per_call != "auto" and (
            isinstance(self.steps_per_call, bool)
            or not isinstance(self.steps_per_call, int)
            or self.steps_per_call < 1
        ):
            raise ConfigError(
                f"steps_per_call must be an integer >= 1 or auto, got {self.steps_per_call!r}"
            )
        check_at_least(
            self,
            1,
            "batch_size",
            "max_steps",
            "val_every",
            "checkpoint_every",
            "log_every",
            "num_nodes",
            "val_sequences",
        )
        check_at_least(self, 0, "kl_warmup")
        check_seed(self.seed)
        # Unset cadences follow max_steps; the values in effect are the fields' values (and
        # what config.yaml records). A copy with another max_steps keeps them.
        for name, value in default_cadences(self.max_steps).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if isinstance(self.devices, int) and self.devices < 1 and self.devices != -1:
            raise ConfigError(f"devices must be at least 1 (-1 or auto: all), got {self.devices}")
        if not 0 < self.learning_rate < math.inf:
            raise ConfigError(f"learning_rate must be > 0 and finite, got {self.learning_rate}")
        if not 0 <= self.gradient_clip < math.inf:  # NaN fails too
            raise ConfigError(
                f"gradient_clip must be >= 0 and finite (0: no clipping), got {self.gradient_clip}"
            )


def default_cadences(max_steps: int) -> dict[str, int]:
    r"""The cadences of a run of ``max_steps`` steps whose configuration leaves them unset: about
    20 logged points and 10 validations (and checkpoints), at most every 50 and 1000 steps (the
    defaults of the paper's 100k steps), so that a short run draws curves too.

    Example:
        >>> default_cadences(60)
        {'log_every': 3, 'val_every': 6, 'checkpoint_every': 6}
        >>> default_cadences(100_000)
        {'log_every': 50, 'val_every': 1000, 'checkpoint_every': 1000}
    """
    validation = min(max(max_steps // 10, 1), 1000)
    return {
        "log_every": min(max(max_steps // 20, 1), 50),
        "val_every": validation,
        "checkpoint_every": validation,
    }


@dataclass(frozen=True)
class EvaluateConfig:
    r"""The evaluation protocol (deterministic: fixed crops and noise).

    Attributes:
        split: ``test`` (reported numbers), ``validation``, ``train`` (fixed crops of the
            training sequences: the paper's Table 3) or ``all`` (every sequence of an array,
            e.g. a new one to score: ``data.path=new.npy``).
        sequences: Sequences scored (None: the whole split).
        batch_size: Sequences per batch.
        crop: ``random`` (a fixed random crop per sequence, drawn from data.seed) or ``last``.
        iwae_samples: SLVMs: K of the importance-weighted bound (0: ELBO only).
        iwae_chunk: SLVMs: samples per pass of the bound (bounds memory).
        scored_frames: Score the last N frames of each crop, the others being context (None:
            every frame after the model's burn_in). With one crop length and one N, models
            that need different context are compared on the same frames.
    """

    split: Literal["test", "validation", "train", "all"] = "test"
    sequences: int | None = None
    batch_size: int = 32
    crop: Literal["random", "last", "first"] = "random"
    iwae_samples: int = 100
    iwae_chunk: int = 10
    scored_frames: int | None = None

    def __post_init__(self) -> None:
        check_choices(self)
        check_at_least(self, 1, "batch_size", "sequences", "iwae_chunk", "scored_frames")
        check_at_least(self, 0, "iwae_samples")


SECTION_TYPES: dict[str, type] = {
    "data": DataConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
}


@dataclass(frozen=True)
class Config:
    r"""A whole experiment: ``name`` and the four sections (``model``: the model's own config)."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    @classmethod
    def from_dict(
        cls,
        values: Mapping[str, Any],
        overrides: Sequence[str] = (),
        source: str = "",
    ) -> Config:
        r"""Builds and validates a configuration.

        Arguments:
            values: Nested mapping, as read from YAML.
            overrides: ``section.key=value`` strings (values parsed as YAML: ``3``, ``1e-4``,
                ``null``, ``[0, 10]``), applied after ``values``; ``model.type=slvm`` switches
                the model's configuration type.
            source: Name of where ``values`` came from, for error messages.
        """
        where_values = f"{source}: " if source else ""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where_values}expected a mapping of sections, got {type(values)}")
        unknown = sorted(set(values) - {"name", *SECTIONS})
        if unknown:
            raise ConfigError(
                f"{where_values}unknown configuration key {unknown[0]!r}; sections are "
                f"{sorted(SECTIONS)} (and name)"
            )
        tree: dict[str, Any] = {"name": values.get("name", "experiment")}
        where: dict[str, str] = {}  # "section.key" -> where its value came from
        for section in SECTIONS:
            part = values.get(section) or {}
            if not isinstance(part, Mapping):
                raise ConfigError(f"{where_values}section {section!r} must be a mapping")
            tree[section] = dict(part)
        for override in overrides:
            key, sep, text = override.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override {override!r} is not of the form section.key=value")
            section, _, name = key.partition(".")
            if section == "name" and not name:
                tree["name"] = text
                continue
            if section not in SECTIONS or not name:
                raise ConfigError(
                    f"override {override!r}: unknown configuration key {key!r}; sections are "
                    f"{sorted(SECTIONS)}"
                )
            _set_nested(tree[section], name.split("."), _parse_value(text))
            where[key] = f"override {override!r}"
        sections = {
            section: _build_section(section, tree[section], source, where) for section in SECTIONS
        }
        return cls(name=str(tree["name"]), **sections)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and checkpoint-safe); ``from_dict`` reads it back."""
        return dataclasses.asdict(self)

    def replace(self, **sections: Any) -> Config:
        r"""A copy with some fields changed: ``config.replace(evaluate={"crop": "first"})``
        changes fields of sections (mappings are merged into the section, then checked)."""
        changed = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
                value = dataclasses.replace(current, **value)
            changed[name] = value
        return dataclasses.replace(self, **changed)


def stored_config(values: Mapping[str, Any], source: str) -> Config:
    r"""The configuration stored in a checkpoint (also one of seqflows 0.1: see
    :func:`model_config`)."""
    from ..saving import model_config  # reads the model sections of seqflows 0.1 too

    values = dict(values)
    if isinstance(values.get("model"), Mapping):
        values["model"] = dataclasses.asdict(model_config(values["model"], source))
    return Config.from_dict(values, source=source)


def _build_section(
    section: str, values: dict[str, Any], source: str, where: Mapping[str, str]
) -> Any:
    """One section from its values, naming the override or the file of a bad value."""
    if section == "model":
        kind = values.get("type", "flow")
        if kind not in MODEL_CLASSES:
            place = where.get("model.type", source)
            raise ConfigError(
                f"{place + ': ' if place else ''}model.type must be one of "
                f"{', '.join(MODEL_CLASSES)}; got {kind!r}"
            )
        cls: type = MODEL_CLASSES[kind].config_class
        for key in sorted(set(values) - _model_keys(kind)):  # a setting of the other model type
            for other in MODEL_CLASSES:
                if key in _model_keys(other):
                    place = where.get(f"model.{key}", source)
                    raise ConfigError(
                        f"{place + ': ' if place else ''}model.{key} is a setting of "
                        f"model.type={other}; it does not apply to model.type={kind} (start from "
                        f"a configuration of that model type, see seqflows configs)"
                    )
        # The model's settings are coerced by build (flat names nested first), which names
        # the nested key; an override is named as such.
        overridden = [where[key] for key in where if key.startswith("model.")]
        try:
            return build(cls, values, source, "model.")
        except ConfigError as error:
            if not overridden:
                raise
            raise ConfigError(f"{error} (given by {', '.join(overridden)})") from None
    cls = SECTION_TYPES[section]
    hints = typing.get_type_hints(cls)
    for key in values:  # a bad override is named as such
        place = where.get(f"{section}.{key}")
        if place is None:
            continue
        if key not in hints:
            raise ConfigError(
                f"{place}: unknown configuration key {f'{section}.{key}'!r}; {section} "
                f"({cls.__name__}) has {', '.join(sorted(hints))}"
            )
        values[key] = coerce(values[key], hints[key], f"{section}.{key}", place)
    return build(cls, values, source, f"{section}.")


def _set_nested(values: dict[str, Any], path: list[str], value: Any) -> None:
    r"""Sets ``values[path[0]][path[1]]... = value``, making the mappings on the way: an
    override ``model.conditioner.hidden=64`` sets one setting of the nested
    ``conditioner``; ``model.transforms.0.bins=4`` one of the first transform (a flat
    ``conditioner: conv`` on the way becomes ``{kind: conv}``)."""
    head, *rest = path
    if not rest:
        values[head] = value
        return
    inner = values.get(head)
    if isinstance(inner, list) and rest[0].isdigit() and int(rest[0]) < len(inner):
        inner = list(inner)
        index = int(rest[0])
        item = dict(inner[index]) if isinstance(inner[index], Mapping) else {"type": inner[index]}
        if len(rest) == 1:
            item = value
        else:
            _set_nested(item, rest[1:], value)
        inner[index] = item
        values[head] = inner
        return
    if isinstance(inner, str) and head == "conditioner":
        inner = {"kind": inner}
    inner = dict(inner) if isinstance(inner, Mapping) else {}
    _set_nested(inner, rest, value)
    values[head] = inner


def _model_keys(kind: str) -> set[str]:
    """The keys a model section of ``kind`` takes: its fields and the flat names of earlier
    versions (:mod:`seqflows.flat_settings`)."""
    fields = {item.name for item in dataclasses.fields(MODEL_CLASSES[kind].config_class)}
    return fields | FLAT_NAMES.get(kind, frozenset())


def available_configs() -> dict[str, str]:
    r"""The experiment configurations that ship with seqflows: name -> the first sentence of
    the file's leading comment (which may span several comment lines)."""
    folder = resources.files("seqflows") / "configs"
    configs = {}
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".yaml"):
            text = entry.read_text(encoding="utf-8")
            configs[entry.name[: -len(".yaml")]] = _first_sentence(text)
    return configs


# A sentence ends at ". " (or the comment's end), but not after these abbreviations.
ABBREVIATIONS = ("e.g.", "i.e.", "Fig.", "al.", "cf.", "vs.")


def _first_sentence(text: str) -> str:
    """The first sentence of the comment lines that open a YAML file, joined into one line."""
    comment = []
    for line in text.splitlines():
        if not line.startswith("#") or not line.lstrip("# ").strip():
            break
        comment.append(line.lstrip("# ").strip())
    joined = " ".join(comment)
    for match in re.finditer(r"(?<!\.)[.!?](?=\s)", joined):  # not "..."
        words = joined[: match.end()].split()
        if words[-1] not in ABBREVIATIONS:
            return joined[: match.end()]
    return joined


def find_config(name_or_path: str | Path) -> Path:
    r"""A configuration file: a path that exists, or the name of a shipped experiment
    (``mmnist_1af`` or ``mmnist_1af.yaml``, see ``seqflows configs``).

    Raises:
        FileNotFoundError: Neither a file nor a shipped experiment; the message suggests the
            closest shipped name and points to ``seqflows configs``.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    shipped = resources.files("seqflows") / "configs" / f"{name}.yaml"
    if str(path.parent) in ("", ".", "configs") and shipped.is_file():
        return Path(str(shipped))
    closest = difflib.get_close_matches(name, available_configs(), n=1)
    guess = f"; did you mean {closest[0]}?" if closest else ""
    raise FileNotFoundError(
        f"configuration file not found: {name_or_path} is neither a file nor a shipped "
        f"experiment{guess} (seqflows configs lists them)"
    )


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    r"""Reads a YAML configuration (a path, or the name of a shipped experiment; None: the
    defaults) and applies ``overrides``.

    Raises:
        FileNotFoundError: No such file or experiment.
        ConfigError: Invalid YAML, unknown key, wrong type or unknown choice (names the file).
    """
    if path is None:
        return Config.from_dict({}, overrides)
    import yaml

    path = find_config(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text ({error})") from None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return Config.from_dict(values, overrides, source=str(path))


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text

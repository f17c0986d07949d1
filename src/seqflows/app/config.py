r"""Experiment configurations: typed dataclasses read from YAML, overridable from the command line.

A configuration has four sections, ``data``, ``model``, ``train`` and ``evaluate``; every field
has a default, so a YAML file lists only what differs. Unknown keys, wrong types and unknown
choices are errors that name the file and the key. ``configs/*.yaml`` hold the paper's settings
(Appendix B and the authors' configurations, see docs/design.md).

Example:
    >>> config = Config.from_dict({"model": {"window": 2}}, overrides=["train.batch_size=4"])
    >>> config.model.window, config.train.batch_size
    (2, 4)
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "ModelConfig",
    "TrainConfig",
    "load_config",
]

DATASETS = ("bouncing_balls", "moving_mnist", "moving_mnist_file", "array", "store")
NOISES = ("gaussian", "uniform", "none")
PRECISIONS = ("32", "bf16-mixed", "16-mixed", "64")


class ConfigError(ValueError):
    """A configuration that cannot be used: unknown key, wrong type, unknown choice."""


@dataclass
class DataConfig:
    r"""Where sequences come from and how they become model input.

    Attributes:
        dataset: ``bouncing_balls`` (rendered on the fly, no download), ``moving_mnist``
            (two MNIST digits bouncing, rendered on the fly from an IDX digits file),
            ``moving_mnist_file`` (the standard ``mnist_test_seq.npy``, the paper's data) or
            ``array`` (a uint8 .npy/.npz of shape (N, T, C, H, W), (N, T, H, W) or (N, T, D))
            or ``store`` (a folder written by ``seqflows convert``: BAIR, KTH, your videos).
        path: The data file: ``mnist_test_seq.npy``, the MNIST images IDX file (None: download
            ``train-images-idx3-ubyte.gz`` into ``root``) or the array.
        root: Folder for downloaded files.
        channels: Channels C of a frame (1: Moving MNIST, KTH; 3: BAIR).
        size: Height and width of a frame.
        length: Frames of each training crop (13 for 1-AF and the SLVMs, 16 for 2-AF).
        eval_length: Frames of each evaluation crop (None: ``length``); the model scores the last
            eval_length - burn_in of them (10 in the paper).
        noise: ``gaussian``: x/255 + N(0, (1/256)^2), the paper's; ``uniform``: (x + U[0, 1))/256,
            dequantization, which makes bits/dim meaningful; ``none``: x/255.
        num_frames: Frames rendered per generated sequence (bouncing balls, Moving MNIST).
        validation_sequences: Sequences held out for model selection (the end of the training part
            of a file; generated with their own seed for simulators).
        test_sequences: Evaluation sequences generated for simulators (files have their own).
        train_digits: [start, stop) of the digits that training sequences use (moving_mnist).
        validation_digits: [start, stop) of the digits of validation sequences.
        test_digits: [start, stop) of the digits of test sequences.
        num_digits: Digits per Moving MNIST sequence.
        num_balls: Balls per bouncing-balls sequence.
        seed: Seed of the fixed validation and test sets (crops, noise, generated sequences).
        num_workers: DataLoader worker processes.
    """

    dataset: str = "bouncing_balls"
    path: str | None = None
    root: str = "data"
    channels: int = 1
    size: int = 32
    length: int = 13
    eval_length: int | None = None
    noise: str = "gaussian"
    num_frames: int = 20
    validation_sequences: int = 256
    test_sequences: int = 512
    train_digits: list[int] = field(default_factory=lambda: [0, 7000])
    validation_digits: list[int] = field(default_factory=lambda: [7000, 8000])
    test_digits: list[int] = field(default_factory=lambda: [8000, 10000])
    num_digits: int = 2
    num_balls: int = 2
    seed: int = 1234
    num_workers: int = 1

    def validate(self) -> None:
        _check_choice("data.dataset", self.dataset, DATASETS)
        _check_choice("data.noise", self.noise, NOISES)
        if self.dataset in ("moving_mnist_file", "array", "store") and self.path is None:
            raise ConfigError(f"data.path is required for data.dataset={self.dataset}")
        for name in ("train_digits", "validation_digits", "test_digits"):
            value = getattr(self, name)
            if len(value) != 2 or value[0] >= value[1]:
                raise ConfigError(f"data.{name} must be [start, stop) with start < stop: {value}")
        _check_positive(self, ("channels", "size", "length", "num_frames"), "data")

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one frame."""
        return (self.channels, self.size, self.size)

    @property
    def evaluation_length(self) -> int:
        """Frames of each evaluation crop."""
        return self.length if self.eval_length is None else self.eval_length


@dataclass
class ModelConfig:
    r"""The model: :class:`seqflows.FlowModel` or :class:`seqflows.SLVM` (Appendix B defaults).

    Attributes:
        type: ``flow`` (M-AF with exact likelihood) or ``slvm`` (sequential latent variable
            model, with an M-AF conditional likelihood when num_transforms > 0).
        num_transforms: M (1-AF, 2-AF; 0 for the SLVM baseline).
        window: k past frames seen by each conditioner (3 in the paper).
        conditioner: ``conv`` (Appendix B), ``mlp`` or ``linear``.
        hidden: Channels (conv) or units (mlp) of the flow's conditioners (64 in the paper).
        latent_dim: SLVM: size of z_t (256).
        lstm_hidden: SLVM: units of the LSTMs and of the prior's layers (256).
        lstm_layers: SLVM: LSTM layers (None: 2 for the baseline, 1 with a flow, as the paper).
        encoder_features: SLVM: size of the frame encoder's output (128).
        conv_width: SLVM: filters of the DC-GAN encoder's first layer (64).
        mlp_hidden: SLVM: units of the encoder and decoder of vector frames (256).
        burn_in: SLVM baseline: context frames not scored (None: ``window``).
        likelihood_loc: SLVM: ``sigmoid`` or ``linear`` loc of p(x_t | z_t) (None: sigmoid for
            the baseline on frames, linear with a flow, as the paper).
        context: ``burn_in`` (the paper) or ``padded``.
        base: ``standard`` (N(0, I): what the paper's code did) or ``learned``.
        min_scale: Floor of the scales.
        max_scale: Ceiling of the scales (10 in the paper's code).
        scale_map: ``clamp`` (the paper's) or ``soft``.
        normalization: ``batch`` (BatchNorm, the paper's) or ``none``.
        identity_init: Zero heads, so that training starts from the identity.
        batch_norm: Training-mode BatchNorm statistics: ``pooled`` over all time steps (one
            time-parallel pass) or ``per_step`` (each time step its own, as the authors' step
            loop computed them; the density of a frame then depends on no later frame).
        init: SLVM: ``default`` (PyTorch's) or ``reference`` (the authors': xavier-normal
            weights, zero biases, 0.1 before ReLU, BatchNorm scales ~ N(1, 0.02)).
        train_frames: SLVM: frames of the training ELBO: ``all`` (the authors': every frame of
            the crop for the baseline; after the flow's context with a flow) or ``scored`` (the
            frames after burn_in, which evaluation scores).
    """

    type: str = "flow"
    num_transforms: int = 1
    window: int = 3
    conditioner: str = "conv"
    hidden: int = 64
    context: str = "burn_in"
    base: str = "standard"
    min_scale: float = 1e-4
    max_scale: float = 10.0
    scale_map: str = "clamp"
    normalization: str = "batch"
    identity_init: bool = True
    latent_dim: int = 256
    lstm_hidden: int = 256
    lstm_layers: int | None = None
    encoder_features: int = 128
    conv_width: int = 64
    mlp_hidden: int = 256
    burn_in: int | None = None
    likelihood_loc: str | None = None
    batch_norm: str = "pooled"
    init: str = "default"
    train_frames: str = "all"

    def validate(self) -> None:
        _check_choice("model.type", self.type, ("flow", "slvm"))
        if self.likelihood_loc is not None:
            _check_choice("model.likelihood_loc", self.likelihood_loc, ("sigmoid", "linear"))
        minimum = 1 if self.type == "flow" else 0
        if self.num_transforms < minimum:
            raise ConfigError(
                f"model.num_transforms must be at least {minimum} for model.type={self.type}, "
                f"got {self.num_transforms}"
            )
        _check_positive(
            self, ("latent_dim", "lstm_hidden", "encoder_features", "conv_width"), "model"
        )
        _check_choice("model.conditioner", self.conditioner, ("conv", "mlp", "linear"))
        _check_choice("model.context", self.context, ("burn_in", "padded"))
        _check_choice("model.base", self.base, ("standard", "learned"))
        _check_choice("model.scale_map", self.scale_map, ("clamp", "soft"))
        _check_choice("model.normalization", self.normalization, ("batch", "none"))
        _check_choice("model.batch_norm", self.batch_norm, ("pooled", "per_step"))
        _check_choice("model.init", self.init, ("default", "reference"))
        _check_choice("model.train_frames", self.train_frames, ("all", "scored"))
        _check_positive(self, ("window", "hidden", "mlp_hidden", "lstm_layers"), "model")


@dataclass
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
        val_every: Steps between validations.
        val_sequences: Validation sequences scored each time (None: all).
        checkpoint_every: Steps between writes of ``last.ckpt``.
        log_every: Steps between logged training metrics.
        precision: ``32``, ``bf16-mixed``, ``16-mixed`` (or ``64``).
        accelerator: ``auto``, ``cpu``, ``gpu``, ...
        devices: Devices per node (an int >= 1, -1 for all, or ``auto``).
        num_nodes: Nodes.
        strategy: Lightning strategy (``auto``, ``ddp``, ...).
        sync_batchnorm: Batch statistics over all processes in data-parallel training (the
            paper trained on one GPU: each process then normalizes with its own batch share).
        allocator: ``retain`` (on Linux, keep freed memory: 1.3-1.5x faster on CPU, see the
            README) or ``system``.
    """

    seed: int = 0
    batch_size: int = 16
    max_steps: int = 100_000
    learning_rate: float = 1e-4
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    gradient_clip: float = 1.0
    kl_warmup: int = 0
    val_every: int = 1000
    val_sequences: int | None = None
    checkpoint_every: int = 1000
    log_every: int = 50
    precision: str = "32"
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False
    allocator: str = "retain"

    def validate(self) -> None:
        _check_choice("train.optimizer", self.optimizer, ("adam", "sgd"))
        _check_choice("train.lr_schedule", self.lr_schedule, ("constant", "cosine"))
        _check_choice("train.precision", self.precision, PRECISIONS)
        _check_choice("train.allocator", self.allocator, ("retain", "system"))
        _check_positive(
            self,
            ("batch_size", "max_steps", "val_every", "checkpoint_every", "log_every", "num_nodes"),
            "train",
        )
        if isinstance(self.devices, int) and self.devices < 1 and self.devices != -1:
            raise ConfigError(
                f"train.devices must be at least 1 (-1 or auto: all), got {self.devices}"
            )
        if not 0 < self.learning_rate < math.inf:
            raise ConfigError(
                f"train.learning_rate must be > 0 and finite, got {self.learning_rate}"
            )
        if self.gradient_clip < 0:
            raise ConfigError(f"train.gradient_clip must be >= 0, got {self.gradient_clip}")


@dataclass
class EvaluateConfig:
    r"""The evaluation protocol (deterministic: fixed crops and noise).

    Attributes:
        split: ``test`` (reported numbers), ``validation`` or ``train`` (fixed crops of the
            training sequences: the paper's Table 3).
        sequences: Sequences scored (None: the whole split).
        batch_size: Sequences per batch.
        crop: ``random`` (a fixed random crop per sequence, drawn from data.seed) or ``last``.
        iwae_samples: SLVMs: K of the importance-weighted bound (0: ELBO only).
        iwae_chunk: SLVMs: samples per pass of the bound (bounds memory).
        scored_frames: Score the last N frames of each crop, the others being context (None:
            every frame after the model's burn_in). With one crop length and one N, models
            that need different context are compared on the same frames.
    """

    split: str = "test"
    sequences: int | None = None
    batch_size: int = 32
    crop: str = "random"
    iwae_samples: int = 100
    iwae_chunk: int = 10
    scored_frames: int | None = None

    def validate(self) -> None:
        _check_choice("evaluate.split", self.split, ("test", "validation", "train"))
        _check_choice("evaluate.crop", self.crop, ("random", "last", "first"))
        _check_positive(
            self, ("batch_size", "sequences", "iwae_chunk", "scored_frames"), "evaluate"
        )
        if self.iwae_samples < 0:
            raise ConfigError(f"evaluate.iwae_samples must be >= 0, got {self.iwae_samples}")


@dataclass
class Config:
    """A whole experiment: ``name`` and the four sections."""

    name: str = "experiment"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    @classmethod
    def from_dict(
        cls,
        values: Mapping[str, Any],
        overrides: Sequence[str] = (),
        source: str = "configuration",
    ) -> Config:
        r"""Builds and validates a configuration.

        Arguments:
            values: Nested mapping, as read from YAML.
            overrides: ``section.key=value`` strings (values parsed as YAML: ``3``, ``1e-4``,
                ``null``, ``[0, 10]``), applied after ``values``.
            source: Name of where ``values`` came from, for error messages.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: expected a mapping of sections, got {type(values)}")
        config = cls()
        for key, value in values.items():
            _set(config, key, value, source)
        for override in overrides:
            key, sep, text = override.partition("=")
            if not sep or not key:
                raise ConfigError(f"override {override!r} is not of the form section.key=value")
            _set(config, key.strip(), _parse_value(text), f"override {override!r}")
        config.validate()
        return config

    def validate(self) -> None:
        """Checks every section (choices and ranges); raises :class:`ConfigError`."""
        for section in (self.data, self.model, self.train, self.evaluate):
            section.validate()

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML- and checkpoint-safe)."""
        return dataclasses.asdict(self)


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    r"""Reads a YAML configuration (None: the defaults) and applies ``overrides``.

    Raises:
        FileNotFoundError: The file does not exist.
        ConfigError: Invalid YAML, unknown key, wrong type or unknown choice (names the file).
    """
    if path is None:
        return Config.from_dict({}, overrides)
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file not found: {path}")
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


def _set(config: Config, key: str, value: Any, source: str) -> None:
    """Sets ``section`` (a mapping) or ``section.field`` to ``value``, checking name and type."""
    section_name, _, field_name = key.partition(".")
    if section_name == "name" and not field_name:
        config.name = str(value)
        return
    sections = {f.name for f in dataclasses.fields(config) if f.name != "name"}
    if section_name not in sections:
        raise ConfigError(
            f"{source}: unknown configuration key {key!r}; sections are {sorted(sections)}"
        )
    section = getattr(config, section_name)
    if not field_name:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: section {section_name!r} must be a mapping")
        for name, item in value.items():
            _set(config, f"{section_name}.{name}", item, source)
        return
    known = {f.name: f for f in dataclasses.fields(section)}
    if field_name not in known:
        raise ConfigError(
            f"{source}: unknown configuration key {key!r}; {section_name} has "
            f"{', '.join(sorted(known))}"
        )
    hint = typing.get_type_hints(type(section))[field_name]
    setattr(section, field_name, _coerce(value, hint, key, source))


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """``value`` as the type ``hint`` (int, float, str, bool, list[int], unions with None)."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{source}: {key} cannot be null")
    for option in options:
        if option is type(None):
            continue
        origin = typing.get_origin(option)
        if origin is list and isinstance(value, list):
            (item_type,) = typing.get_args(option)
            return [_coerce(item, item_type, key, source) for item in value]
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is float and isinstance(value, str):  # YAML 1.1 reads 3e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
        if option is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{source}: {key} must be {expected}, got {value!r}")


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}; got {value!r}")


def _check_positive(section: object, names: Sequence[str], prefix: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value is not None and value < 1:
            raise ConfigError(f"{prefix}.{name} must be at least 1, got {value}")

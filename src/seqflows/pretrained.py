r"""Saved models and the registry of model classes.

A saved model is a folder that loads anywhere, without pickle and without seqflows' training
code (the layout of the Hugging Face ecosystem):

* ``config.json``: the format, the model's type and its configuration
  (:class:`~seqflows.flows.FlowConfig` or :class:`~seqflows.slvm.SLVMConfig`), the frame shape,
  and the preprocessing of the frames it was trained on
  (:class:`~seqflows.preprocessing.Preprocessing`: the noise of uint8 frames, or the mean and
  standard deviation that standardised a real-valued series);
* ``model.safetensors``: every parameter and buffer (BatchNorm statistics included).

A model class derives from :class:`Pretrained` and names its configuration class
(``config_class``), whose ``type`` (``"flow"``, ``"slvm"``) is the name the class is saved
under (``model_type`` in ``config.json`` and in checkpoints, ``model.type`` in a
configuration). Defining the class registers it in :data:`MODEL_CLASSES`, the one registry that
saving, loading and the command line look model types up in: this module imports no model, and
the models import it, one way. :mod:`seqflows.saving` (above the models) adds the checkpoints
of ``seqflows train`` and :func:`seqflows.load`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from .atomic import write_atomically, write_text_atomically
from .config import build, coerce
from .errors import CheckpointError
from .preprocessing import Preprocessing
from .transforms import TransformConfig
from .version import __version__

__all__ = [
    "CONFIG_NAME",
    "MODEL_CLASSES",
    "MODEL_FORMAT",
    "WEIGHTS_NAME",
    "Pretrained",
    "from_pretrained",
    "model_config",
    "save_pretrained",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_FORMAT = "seqflows-model/1"
# The model classes by the type they are saved under: filled as each class is defined.
MODEL_CLASSES: dict[str, type[Pretrained]] = {}

Model = TypeVar("Model", bound="Pretrained")


class Pretrained:
    r"""Gives a model ``save_pretrained(folder)`` and ``from_pretrained(folder)``: a folder of
    ``config.json`` (its configuration) and ``model.safetensors`` (its weights), no pickle; and
    registers the class under its configuration's ``type``.

    ``config_class``: the model's configuration dataclass (a
    :class:`~seqflows.transforms.TransformConfig` with a ``type``), set by each model class.
    ``preprocessing``: how raw frames become the model's input, when known (a model loaded by
    :func:`seqflows.load` or ``from_pretrained`` has the one it was saved with).
    """

    config_class: ClassVar[type[TransformConfig]]
    config: TransformConfig
    event_shape: tuple[int, ...]
    preprocessing: Preprocessing | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Registers a class that names its own ``config_class`` (a subclass that keeps its
        parent's is not registered: it would be saved and loaded as the parent)."""
        super().__init_subclass__(**kwargs)
        if "config_class" not in vars(cls):
            return
        model_type = cls.config_class.type
        known = MODEL_CLASSES.get(model_type)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise TypeError(
                f"{cls.__qualname__}: model type {model_type!r} is already that of "
                f"{known.__qualname__}; give its config_class another type"
            )
        MODEL_CLASSES[model_type] = cls

    @classmethod
    def from_config(cls: type[Model], config: Any, event_shape: tuple[int, ...]) -> Model:
        """The model that ``config`` describes, for frames of ``event_shape``."""
        raise NotImplementedError

    def save_pretrained(
        self, folder: str | Path, preprocessing: Preprocessing | None = None
    ) -> Path:
        """Writes the model into ``folder`` (:func:`save_pretrained`)."""
        return save_pretrained(self, folder, preprocessing)

    @classmethod
    def from_pretrained(cls: type[Model], folder: str | Path, **_: Any) -> Model:
        """The model saved in ``folder``, in eval mode (:func:`from_pretrained`)."""
        return from_pretrained(folder, expected=cls)


def model_config(values: Mapping[str, Any], source: str = "") -> TransformConfig:
    r"""The model configuration of a stored ``model`` section: its ``type`` picks the class
    (:data:`MODEL_CLASSES`).

    Stored configurations of earlier versions are migrated: the flat settings move to their
    nested places (:mod:`seqflows.flat_settings`); those of seqflows 0.1, whose model section
    held every setting of both model types, are read too: the settings of the other type had no
    effect and are dropped, as are those of a flat configuration that its model did not use
    (``bins`` of an affine transform, ``hidden`` of the SLVM baseline).
    """
    if not isinstance(values, Mapping):
        raise CheckpointError(
            f"{source + ': ' if source else ''}the model configuration must be a mapping, got "
            f"{type(values).__name__}"
        )
    kind = values.get("type", "flow")
    if kind not in MODEL_CLASSES:
        raise CheckpointError(
            f"{source + ': ' if source else ''}unknown model type {kind!r}; known: "
            f"{', '.join(MODEL_CLASSES)}"
        )
    cls = MODEL_CLASSES[kind].config_class
    known = {field.name for field in dataclasses.fields(cls)}
    nest = getattr(cls, "nest_flat_settings", None)  # flat files before the nested configs
    nested = nest(values) if nest is not None else values
    return build(cls, {key: value for key, value in nested.items() if key in known}, source)


def save_pretrained(
    model: Pretrained, folder: str | Path, preprocessing: Preprocessing | None = None
) -> Path:
    r"""Writes ``model`` into ``folder``: ``config.json`` and ``model.safetensors`` (atomically).

    ``config.json`` records the SHA-256 of ``model.safetensors`` (``weights_sha256``), and the
    weights file's metadata the frame shape, both checked by :func:`load`.

    Arguments:
        model: A :class:`~seqflows.flows.FlowModel` or :class:`~seqflows.slvm.SLVM`.
        folder: The folder (created).
        preprocessing: How raw frames become its input (default: ``model.preprocessing`` when
            it has one, else none recorded).

    Returns:
        The folder.
    """
    from safetensors.torch import save as save_tensors

    folder = Path(folder)
    preprocessing = preprocessing or getattr(model, "preprocessing", None)
    info = {
        "format": MODEL_FORMAT,
        "seqflows_version": __version__,
        "model_type": type(model).config_class.type,
        "_class_name": type(model).__name__,  # the class, as diffusers names it
        "config": dataclasses.asdict(model.config),
        "event_shape": list(model.event_shape),
        "preprocessing": None if preprocessing is None else preprocessing.record(),
    }
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    # The frame shape goes into the weights file too: no weight's shape depends on it in most
    # models, and config.json alone could be edited without the checksum noticing.
    weights = save_tensors(state, metadata={"event_shape": json.dumps(info["event_shape"])})
    info["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    write_atomically(folder / WEIGHTS_NAME, lambda stream: stream.write(weights))
    write_text_atomically(folder / CONFIG_NAME, json.dumps(info, indent=2) + "\n")
    return folder


def from_pretrained(folder: str | Path, expected: type[Model] | None = None) -> Model:
    r"""Reads a model written by :func:`save_pretrained`, in eval mode.

    Arguments:
        folder: The folder with ``config.json`` and ``model.safetensors``.
        expected: The class the caller asked for (``FlowModel.from_pretrained``), or None.

    Raises:
        CheckpointError: A missing or malformed file, another model type than ``expected``, or
            weights that do not fit the configuration.
    """
    folder = Path(folder)
    config_file, weights_file = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for file in (config_file, weights_file):
        if not file.is_file():
            raise CheckpointError(f"{folder}: not a saved seqflows model ({file.name} missing)")
    try:
        info = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_file}: not valid JSON ({error})") from None
    if not isinstance(info, dict) or info.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{config_file}: not a seqflows model (format {MODEL_FORMAT!r})")
    values = _required(info, "config", str(config_file))
    kind = values.get("type", "flow") if isinstance(values, Mapping) else None
    if expected is not None and isinstance(kind, str) and MODEL_CLASSES.get(kind) is not expected:
        held = MODEL_CLASSES[kind].__name__ if kind in MODEL_CLASSES else "model"
        raise CheckpointError(f"{folder}: holds a {held} ({kind}), not a {expected.__name__}")
    event_shape = _event_shape(_required(info, "event_shape", str(config_file)), str(config_file))
    weights = _read_weights(weights_file, info.get("weights_sha256"), event_shape, config_file)
    check_counts(values, len(weights), str(config_file), str(weights_file))
    config = model_config(values, str(config_file))
    model = _model_for_weights(config, event_shape, weights, str(config_file), str(weights_file))
    stored = info.get("preprocessing")
    try:
        if stored is not None:
            stored = build(Preprocessing, stored)
            stored = dataclasses.replace(stored, frame_shape=model.event_shape)
        model.preprocessing = stored
    except ValueError as error:
        raise CheckpointError(f"{config_file}: malformed preprocessing: {error}") from None
    return model.eval()


def _required(record: Any, key: str, source: str) -> Any:
    """``record[key]``; a CheckpointError naming the key and ``source`` when it is missing."""
    if not isinstance(record, Mapping) or key not in record:
        raise CheckpointError(f"{source}: missing {key!r} (the file is incomplete or edited)")
    return record[key]


def _event_shape(value: Any, source: str) -> tuple[int, ...]:
    """A stored ``event_shape``: a non-empty list of integers of at least 1."""
    shape = coerce(value, list[int], "event_shape", source)
    if not shape or min(shape) < 1:
        raise CheckpointError(f"{source}: event_shape must hold sizes of at least 1, got {shape}")
    return tuple(shape)


def _read_weights(
    weights_file: Path, checksum: Any, event_shape: tuple[int, ...], config_file: Path
) -> dict[str, torch.Tensor]:
    r"""The tensors of a saved ``model.safetensors``, checked against the SHA-256 and the frame
    shape that ``config_file`` records (folders saved before these existed have neither)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_tensors

    data = weights_file.read_bytes()
    if checksum is not None and hashlib.sha256(data).hexdigest() != checksum:
        raise CheckpointError(
            f"{weights_file}: corrupt or edited: its SHA-256 differs from the weights_sha256 "
            f"that {config_file.name} records (the file changed after it was saved)"
        )
    try:
        weights = load_tensors(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    except (SafetensorError, ValueError, OSError) as error:
        raise CheckpointError(
            f"{weights_file}: not a safetensors file ({_one_line(error)})"
        ) from None
    saved_for = (header.get("__metadata__") or {}).get("event_shape")
    if saved_for is not None and json.loads(saved_for) != list(event_shape):
        raise CheckpointError(
            f"{config_file}: event_shape {list(event_shape)} differs from the frame shape "
            f"{json.loads(saved_for)} that {weights_file.name} was saved for"
        )
    return weights


def check_counts(values: Any, tensors: int, config_source: str, weights_source: str) -> None:
    r"""Refuses a stored model configuration whose counts of transforms or LSTM layers (each
    holds tensors of its own) exceed the ``tensors`` of its weights, before anything is built
    from it: an edited ``num_transforms: 1000000`` is an error in milliseconds."""
    if not isinstance(values, Mapping):
        return
    nested = [values.get(name) for name in ("latent", "likelihood", "prior")]
    counts = {
        "num_transforms": values.get("num_transforms"),
        "lstm_layers": values.get("lstm_layers"),
        "transforms": _length(values.get("transforms")),
        **{
            f"{name}.{key}": _length(part.get(key)) if key == "transforms" else part.get(key)
            for name, part in zip(("latent", "likelihood", "prior"), nested, strict=True)
            if isinstance(part, Mapping)
            for key in ("transforms", "lstm_layers")
        },
    }
    for name, count in counts.items():
        if isinstance(count, int) and count > tensors:
            raise CheckpointError(
                f"{config_source}: {name}={count} cannot describe {weights_source}, which holds "
                f"{tensors} tensors (an edited configuration?)"
            )


def _length(items: Any) -> int | None:
    return len(items) if isinstance(items, list) else None


def _model_for_weights(
    config: TransformConfig,
    event_shape: tuple[int, ...],
    weights: Mapping[str, torch.Tensor],
    config_source: str,
    weights_source: str,
) -> Pretrained:
    r"""The model that ``config`` describes, holding ``weights``; checked before it is built.

    The configuration is first checked against the weights without allocating anything: the
    counts of transforms and LSTM layers (each holds tensors of its own) against the number of
    tensors, then the names and shapes of a model built on the ``meta`` device against those of
    the weights. So an edited configuration (``num_transforms: 1000000``, ``hidden: 1000000``)
    is an error in milliseconds, not an allocation of terabytes; so are NaN or infinite weights.
    """
    edited = "(an edited configuration?)"
    latent = getattr(config, "latent", None)  # an SLVM's latent model
    counts = {
        "num_transforms": getattr(config, "num_transforms", None),
        "latent.lstm_layers": getattr(latent, "lstm_layers", None),
    }
    for name, count in counts.items():
        if count is not None and count > len(weights):
            raise CheckpointError(
                f"{config_source}: {name}={count} cannot describe {weights_source}, which holds "
                f"{len(weights)} tensors {edited}"
            )
    cls = MODEL_CLASSES[config.type]
    try:
        with torch.device("meta"):
            skeleton = cls.from_config(config, event_shape)
    except (ValueError, RuntimeError) as error:  # sizes too large for any tensor, ...
        raise CheckpointError(
            f"{config_source}: describes no model that {weights_source} fits ({_one_line(error)})"
        ) from None
    mismatch = _shape_mismatch(skeleton.state_dict(), weights)
    if mismatch:
        raise CheckpointError(
            f"{config_source}: does not describe the weights of {weights_source}: {mismatch} "
            f"{edited}"
        )
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights_source}: {name} holds NaN or infinite values")
    model = cls.from_config(config, event_shape)
    model.load_state_dict(weights)
    return model


def _shape_mismatch(expected: Mapping[str, torch.Tensor], weights: Mapping[str, Any]) -> str:
    """The first difference of names or shapes between two state dicts, or "" when none."""
    for name, tensor in expected.items():
        if name not in weights:
            return f"the model needs {name}, which the weights lack"
        stored = weights[name]
        if not isinstance(stored, torch.Tensor) or stored.shape != tensor.shape:
            size = "x".join(map(str, getattr(stored, "shape", ()))) or repr(stored)
            needed = "x".join(map(str, tensor.shape)) or "a scalar"
            return f"{name} is {size} in the weights, {needed} in the model"
    for name in weights:
        if name not in expected:
            return f"the weights hold {name}, which the model has not"
    return ""


def _one_line(error: BaseException) -> str:
    """The error's type and the gist of its message, on one line (torch's span several)."""
    message = str(error).rsplit("WeightsUnpickler error: ", 1)[-1]
    message = " ".join(message.split())
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__

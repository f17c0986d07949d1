r"""Saving and loading models: a folder of config.json and model.safetensors, or a checkpoint.

A saved model is a folder that loads anywhere, without pickle and without seqflows' training
code (the layout of the Hugging Face ecosystem):

* ``config.json``: the format, the model's type and its configuration
  (:class:`~seqflows.flows.FlowConfig` or :class:`~seqflows.slvm.SLVMConfig`), the frame shape,
  and the preprocessing of the frames it was trained on (:class:`~seqflows.data.Preprocessing`:
  the noise of uint8 frames, or the mean and standard deviation that standardised a real-valued
  series);
* ``model.safetensors``: every parameter and buffer (BatchNorm statistics included).

``model.save_pretrained(folder)`` writes one, ``FlowModel.from_pretrained(folder)`` (or
``SLVM``) reads it, and :func:`load` reads either such a folder or a training checkpoint of
``seqflows train`` and returns the model in eval mode, with ``model.config`` and
``model.preprocessing``. Training checkpoints are read with ``torch.load(weights_only=True)``
(nothing in them can run code) and checked against the SHA-256 of their weights and of every
record. A saved folder is checked against the SHA-256 of ``model.safetensors`` that
``config.json`` records, and its configuration against the names and shapes of the weights
before the model is built; NaN or infinite weights are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import write_atomically, write_text_atomically
from .config import build, coerce
from .data.scaling import Preprocessing
from .errors import CheckpointError
from .flows import FlowConfig, FlowModel
from .slvm import SLVM, SLVMConfig
from .version import __version__

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKSUM_KEYS",
    "CONFIG_NAME",
    "MODEL_CLASSES",
    "MODEL_FORMAT",
    "WEIGHTS_NAME",
    "load",
    "load_checkpoint_model",
    "model_config",
    "read_checkpoint",
    "records_checksum",
    "save_pretrained",
    "weights_checksum",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_FORMAT = "seqflows-model/1"
CHECKPOINT_FORMAT = "seqflows-checkpoint/1"
# The checksums of a checkpoint's "seqflows" entry: of its weights (state_dict only, all that
# checkpoints of seqflows 0.1 have) and of every record (:func:`records_checksum`).
CHECKSUM_KEYS = ("weights_sha256", "checkpoint_sha256")
MODEL_CLASSES: dict[str, type[FlowModel] | type[SLVM]] = {"flow": FlowModel, "slvm": SLVM}
MODEL_CONFIGS: dict[str, type[FlowConfig] | type[SLVMConfig]] = {
    "flow": FlowConfig,
    "slvm": SLVMConfig,
}


def model_config(values: Mapping[str, Any], source: str = "") -> FlowConfig | SLVMConfig:
    r"""The model configuration of a stored ``model`` section: its ``type`` picks the class.

    Stored configurations of seqflows 0.1, whose model section held every setting of both
    model types, are read too: the settings of the other type had no effect and are dropped.
    """
    if not isinstance(values, Mapping):
        raise CheckpointError(
            f"{source + ': ' if source else ''}the model configuration must be a mapping, got "
            f"{type(values).__name__}"
        )
    kind = values.get("type", "flow")
    if kind not in MODEL_CONFIGS:
        raise CheckpointError(
            f"{source + ': ' if source else ''}unknown model type {kind!r}; known: "
            f"{', '.join(MODEL_CONFIGS)}"
        )
    cls = MODEL_CONFIGS[kind]
    known = {field.name for field in dataclasses.fields(cls)}
    return build(cls, {key: value for key, value in values.items() if key in known}, source)


def weights_checksum(state_dict: Mapping[str, Any]) -> str:
    r"""SHA-256 (hex) of a state dict: every tensor's name, dtype, shape and bytes, by name.

    The bytes are those of the tensor on the CPU in its own dtype, so the checksum does not
    depend on the device the weights were saved from or loaded to.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if isinstance(tensor, torch.Tensor):
            _hash_tensor(digest, tensor, f"{name}|")
    return digest.hexdigest()


def records_checksum(checkpoint: Mapping[str, Any]) -> str:
    r"""SHA-256 (hex) of every record of a checkpoint, in their stored order: nested dicts and
    lists, tensors (dtype, shape and bytes on the CPU, as in :func:`weights_checksum`), strings
    and plain values; the checksums of its ``seqflows`` entry (``CHECKSUM_KEYS``) excluded.
    """
    info = checkpoint.get("seqflows")
    if isinstance(info, Mapping):
        kept = {key: value for key, value in info.items() if key not in CHECKSUM_KEYS}
        checkpoint = {**checkpoint, "seqflows": kept}
    digest = hashlib.sha256()
    _hash_record(digest, checkpoint)
    return digest.hexdigest()


def _hash_tensor(digest: Any, tensor: torch.Tensor, prefix: str = "") -> None:
    values = tensor.detach().to("cpu").contiguous().reshape(-1)
    digest.update(f"{prefix}{values.dtype}|{tuple(tensor.shape)}|".encode())
    digest.update(values.view(torch.uint8).numpy().tobytes())


def _hash_record(digest: Any, value: Any) -> None:
    """Feeds ``value`` to ``digest``, each part tagged with its kind and length."""
    if isinstance(value, torch.Tensor):
        _hash_tensor(digest, value, "tensor|")
    elif isinstance(value, Mapping):
        digest.update(f"dict|{len(value)}|".encode())
        for key, item in value.items():
            _hash_record(digest, key)
            _hash_record(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"list|{len(value)}|".encode())
        for item in value:
            _hash_record(digest, item)
    else:  # str, int, float, bool, None, bytes, torch.dtype: repr is exact
        text = repr(value).encode("utf-8", "surrogatepass")
        digest.update(f"{type(value).__name__}|{len(text)}|".encode() + text)


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    r"""Loads a checkpoint of ``seqflows train`` with ``weights_only=True`` and checks it.

    A checkpoint carries ``checkpoint_sha256`` (:func:`records_checksum`: every record) and
    ``weights_sha256`` (:func:`weights_checksum`: the state dict); older ones the latter only,
    or neither: each is checked with what it has.

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: Corrupt or truncated file (whatever fails while reading it), records
            that do not match their stored checksum, a file holding arbitrary Python objects,
            or a checkpoint that seqflows did not write.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise
    except pickle.UnpicklingError as error:
        refused = re.search(r"GLOBAL (\S+)", str(error))
        if refused is None:
            raise CheckpointError(f"{path}: corrupt checkpoint ({_one_line(error)})") from None
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects other than tensors and "
            f"plain containers ({refused[1]}), and loading them could run code; or it is corrupt"
        ) from None
    except Exception as error:  # noqa: BLE001 - a damaged file fails in many ways, all alike
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({_one_line(error)})"
        ) from None
    info = checkpoint.get("seqflows") if isinstance(checkpoint, dict) else None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a seqflows checkpoint (expected an entry 'seqflows' with format "
            f"{CHECKPOINT_FORMAT!r})"
        )
    expected = info.get("weights_sha256")  # None: written before checksums existed
    if expected is not None:
        state = checkpoint.get("state_dict")
        if not isinstance(state, Mapping) or weights_checksum(state) != expected:
            raise CheckpointError(
                f"{path}: corrupt checkpoint: the weights do not match the checksum stored with "
                "them (the file changed after it was written)"
            )
    expected = info.get("checkpoint_sha256")  # None: written by seqflows 0.1 or before
    if expected is not None and records_checksum(checkpoint) != expected:
        raise CheckpointError(
            f"{path}: corrupt checkpoint: its records (configuration, training state) do not "
            "match the checksum stored with them (the file changed after it was written)"
        )
    return checkpoint


def _one_line(error: BaseException) -> str:
    """The error's type and the gist of its message, on one line (torch's span several)."""
    message = str(error).rsplit("WeightsUnpickler error: ", 1)[-1]
    message = " ".join(message.split())
    if len(message) > 160:
        message = message[:157] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def load_checkpoint_model(checkpoint: Mapping[str, Any], path: str | Path) -> FlowModel | SLVM:
    r"""The trained model of a checkpoint read by :func:`read_checkpoint`, in eval mode, with
    ``preprocessing`` set from the checkpoint's record of it (or, in checkpoints written before
    it was recorded, from the stored data settings)."""
    info = checkpoint["seqflows"]
    source = f"{path} (stored configuration)"
    stored = _required(info, "config", source)
    config = model_config(_required(stored, "model", source), source)
    event_shape = _event_shape(_required(info, "event_shape", source), source)
    prefix = "model."
    state = {
        key[len(prefix) :]: value
        for key, value in _required(checkpoint, "state_dict", str(path)).items()
        if key.startswith(prefix)
    }
    model = _model_for_weights(config, event_shape, state, source, f"{path} (state_dict)")
    recorded = info.get("preprocessing")
    if recorded is None:
        data = stored.get("data", {})
        recorded = {"noise": data.get("noise") or "gaussian"}
        if data.get("mean") is not None:
            recorded.update(noise="none", mean=data["mean"], std=data["std"])
    try:
        preprocessing = build(Preprocessing, recorded, f"{path} (preprocessing)")
        model.preprocessing = dataclasses.replace(preprocessing, frame_shape=model.event_shape)
    except ValueError as error:
        raise CheckpointError(f"{path}: malformed preprocessing record: {error}") from None
    return model.eval()


def save_pretrained(
    model: FlowModel | SLVM, folder: str | Path, preprocessing: Preprocessing | None = None
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
        "model_type": model.config.type,
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


def from_pretrained(folder: str | Path, expected: type[nn.Module] | None = None) -> nn.Module:
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
    config = model_config(_required(info, "config", str(config_file)), str(config_file))
    event_shape = _event_shape(_required(info, "event_shape", str(config_file)), str(config_file))
    cls = MODEL_CLASSES[config.type]
    if expected is not None and cls is not expected:
        raise CheckpointError(
            f"{folder}: holds a {cls.__name__} ({config.type}), not a {expected.__name__}"
        )
    weights = _read_weights(weights_file, info.get("weights_sha256"), event_shape, config_file)
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


def _model_for_weights(
    config: FlowConfig | SLVMConfig,
    event_shape: tuple[int, ...],
    weights: Mapping[str, torch.Tensor],
    config_source: str,
    weights_source: str,
) -> FlowModel | SLVM:
    r"""The model that ``config`` describes, holding ``weights``; checked before it is built.

    The configuration is first checked against the weights without allocating anything: the
    counts of transforms and LSTM layers (each holds tensors of its own) against the number of
    tensors, then the names and shapes of a model built on the ``meta`` device against those of
    the weights. So an edited configuration (``num_transforms: 1000000``, ``hidden: 1000000``)
    is an error in milliseconds, not an allocation of terabytes; so are NaN or infinite weights.
    """
    edited = "(an edited configuration?)"
    for name in ("num_transforms", "lstm_layers"):
        count = getattr(config, name, None)
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


def load(path: str | Path) -> FlowModel | SLVM:
    r"""A trained model, in eval mode: from a folder of :func:`save_pretrained` or a training
    checkpoint of ``seqflows train`` (``.ckpt``).

    The model carries ``model.config`` (its settings) and ``model.preprocessing`` (how raw
    frames become its input, :class:`~seqflows.data.Preprocessing`; None when unknown): for a
    standardised series, ``model.log_prob(model.preprocessing(x)) +
    model.preprocessing.log_abs_det`` is log p(x) in the series' own units.

    Example:
        >>> import tempfile
        >>> model = FlowModel((2,), window=1, conditioner="linear")
        >>> folder = model.save_pretrained(tempfile.mkdtemp())
        >>> load(folder).config == model.config
        True
    """
    path = Path(path)
    if path.is_dir():
        return from_pretrained(path)
    return load_checkpoint_model(read_checkpoint(path), path)

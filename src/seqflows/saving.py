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
(nothing in them can run code) and checked against the SHA-256 of their weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import write_atomically, write_text_atomically
from .config import build
from .data.scaling import Preprocessing
from .errors import CheckpointError
from .flows import FlowConfig, FlowModel
from .slvm import SLVM, SLVMConfig
from .version import __version__

__all__ = [
    "CHECKPOINT_FORMAT",
    "CONFIG_NAME",
    "MODEL_CLASSES",
    "MODEL_FORMAT",
    "WEIGHTS_NAME",
    "load",
    "load_checkpoint_model",
    "model_config",
    "read_checkpoint",
    "save_pretrained",
    "weights_checksum",
]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_FORMAT = "seqflows-model/1"
CHECKPOINT_FORMAT = "seqflows-checkpoint/1"
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
        if not isinstance(tensor, torch.Tensor):
            continue
        values = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{values.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(values.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    r"""Loads a checkpoint of ``seqflows train`` with ``weights_only=True`` and checks it.

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: Corrupt or truncated file, weights that do not match their stored
            checksum, a file holding arbitrary Python objects, or a checkpoint that seqflows did
            not write.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects other than tensors and "
            f"plain containers, and loading them could run code ({error})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({error})") from None
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
    return checkpoint


def load_checkpoint_model(checkpoint: Mapping[str, Any], path: str | Path) -> FlowModel | SLVM:
    r"""The trained model of a checkpoint read by :func:`read_checkpoint`, in eval mode, with
    ``preprocessing`` set from the checkpoint's record of it (or, in checkpoints written before
    it was recorded, from the stored data settings)."""
    info = checkpoint["seqflows"]
    stored = info["config"]
    config = model_config(stored["model"], f"{path} (stored configuration)")
    model = MODEL_CLASSES[config.type].from_config(config, tuple(info["event_shape"]))
    prefix = "model."
    state = {
        key[len(prefix) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the stored model: {error}") from None
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
    write_atomically(folder / WEIGHTS_NAME, lambda stream: stream.write(save_tensors(state)))
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
    from safetensors import SafetensorError
    from safetensors.torch import load_file

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
    config = model_config(info["config"], str(config_file))
    cls = MODEL_CLASSES[config.type]
    if expected is not None and cls is not expected:
        raise CheckpointError(
            f"{folder}: holds a {cls.__name__} ({config.type}), not a {expected.__name__}"
        )
    model = cls.from_config(config, tuple(info["event_shape"]))
    try:
        model.load_state_dict(load_file(weights_file))
    except (SafetensorError, RuntimeError) as error:
        raise CheckpointError(f"{weights_file}: weights do not fit the model: {error}") from None
    stored = info.get("preprocessing")
    try:
        if stored is not None:
            stored = build(Preprocessing, stored)
            stored = dataclasses.replace(stored, frame_shape=model.event_shape)
        model.preprocessing = stored
    except ValueError as error:
        raise CheckpointError(f"{config_file}: malformed preprocessing: {error}") from None
    return model.eval()


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

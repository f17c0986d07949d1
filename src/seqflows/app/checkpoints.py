r"""Checkpoints: written atomically, read without executing code, checked before use.

A seqflows checkpoint is a Lightning checkpoint (weights, optimizer, loop and RNG state) with one
more entry, ``"seqflows"``: the format version, the model type and the whole configuration as
plain data. Reading uses ``torch.load(weights_only=True)``, which refuses any pickled object
other than tensors and plain containers, so opening a checkpoint never runs code from it.
"""

from __future__ import annotations

import pickle
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomically
from ..flows import FlowConfig, FlowModel
from ..slvm import SLVM, SLVMConfig
from .config import Config

__all__ = [
    "FORMAT",
    "CheckpointError",
    "build_model",
    "checkpoint_step",
    "model_from_checkpoint",
    "read_checkpoint",
    "save_atomically",
]

FORMAT = "seqflows-checkpoint/1"
MODEL_TYPES = ("flow", "slvm")


class CheckpointError(ValueError):
    """A file that is not a usable seqflows checkpoint (corrupt, foreign, other model type)."""


def save_atomically(payload: Any, path: str | Path) -> Path:
    r"""``torch.save`` through :func:`~seqflows.atomic.write_atomically`: a reader, or a kill at
    any moment, sees the old checkpoint or the complete new one, never a half-written file."""
    return write_atomically(path, lambda stream: torch.save(payload, stream))


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    r"""Loads a seqflows checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: No such file.
        CheckpointError: Corrupt or truncated file, a file holding arbitrary Python objects, or a
            checkpoint that seqflows did not write.
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
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a seqflows checkpoint (expected an entry 'seqflows' with format "
            f"{FORMAT!r})"
        )
    return checkpoint


def checkpoint_step(path: str | Path) -> int:
    """The optimizer steps a checkpoint written by ``seqflows train`` was saved after."""
    return int(read_checkpoint(path)["global_step"])


def build_model(config: Config, event_shape: tuple[int, ...]) -> FlowModel | SLVM:
    """The model that ``config.model`` describes, for frames of ``event_shape``."""
    model = config.model
    if model.type not in MODEL_TYPES:
        raise CheckpointError(f"unknown model type {model.type!r}; known: {MODEL_TYPES}")
    kind, settings = (SLVM, SLVMConfig) if model.type == "slvm" else (FlowModel, FlowConfig)
    values = {field.name: getattr(model, field.name) for field in fields(settings)}
    return kind.from_config(settings(**values), event_shape)


def model_from_checkpoint(
    path: str | Path, model_types: tuple[str, ...] = MODEL_TYPES
) -> tuple[FlowModel | SLVM, Config, dict[str, Any]]:
    r"""Rebuilds the trained model of a checkpoint, in eval mode.

    Arguments:
        path: A checkpoint written by ``seqflows train``.
        model_types: The model types the caller can use.

    Returns:
        The model, the configuration it was trained with, and the raw checkpoint.
    """
    checkpoint = read_checkpoint(path)
    info = checkpoint["seqflows"]
    if info.get("model_type") not in model_types:
        raise CheckpointError(
            f"{path}: holds a model of type {info.get('model_type')!r}; this command takes "
            f"{', '.join(model_types)}"
        )
    config = Config.from_dict(info["config"], source=f"{path} (stored configuration)")
    model = build_model(config, tuple(info["event_shape"]))
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
    return model.eval(), config, checkpoint

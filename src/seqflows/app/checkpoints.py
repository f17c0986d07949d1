r"""Checkpoints: written atomically, read without executing code, checked before use.

A seqflows checkpoint is a Lightning checkpoint (weights, optimizer, loop and RNG state) with one
more entry, ``"seqflows"``: the format version, the model type and the whole configuration as
plain data, ``weights_sha256``, a SHA-256 of the weights, and ``checkpoint_sha256``, a SHA-256 of
every record (configuration, loops, optimizer and RNG state too). Reading uses
``torch.load(weights_only=True)``, which refuses any pickled object other than tensors and plain
containers, so opening a checkpoint never runs code from it; any failure while reading is a
"corrupt checkpoint" naming the file; the checksums are then verified, so that bytes changed
inside a tensor or a record (torch's zip reader checks no CRC) are an error and not a model that
scores -6e11 or a silently changed configuration. Checkpoints written before a checksum existed
load without it.

:func:`save_checkpoint`, the one function every checkpoint write goes through, refuses a state
with a NaN or an infinity in the weights or the optimizer state: a diverged run stops and its
previous ``last.ckpt`` stays as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomically
from ..errors import CheckpointError, NonFiniteError
from ..flows import FlowModel
from ..saving import (
    CHECKPOINT_FORMAT,
    MODEL_CLASSES,
    load_checkpoint_model,
    read_checkpoint,
    records_checksum,
    weights_checksum,
)
from ..slvm import SLVM
from .config import Config, ModelConfig, stored_config

__all__ = [
    "FORMAT",
    "CheckpointError",
    "NonFiniteStateError",
    "build_model",
    "checkpoint_step",
    "model_from_checkpoint",
    "read_checkpoint",
    "save_atomically",
    "save_checkpoint",
    "weights_checksum",
    "with_condition_dim",
]

FORMAT = CHECKPOINT_FORMAT
MODEL_TYPES = tuple(MODEL_CLASSES)


class NonFiniteStateError(NonFiniteError):
    """A training state with NaN or infinite weights or optimizer state: never written."""


def save_atomically(payload: Any, path: str | Path) -> Path:
    r"""``torch.save`` through :func:`~seqflows.atomic.write_atomically`: a reader, or a kill at
    any moment, sees the old checkpoint or the complete new one, never a half-written file."""
    return write_atomically(path, lambda stream: torch.save(payload, stream))


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> Path:
    r"""Writes a training checkpoint: checked finite, stamped with its weights' checksum, atomic.

    Arguments:
        checkpoint: Lightning's checkpoint dict, with ``state_dict`` and, from
            :class:`~seqflows.app.task.SequenceTask`, the ``"seqflows"`` entry, which gets
            ``weights_sha256`` (:func:`weights_checksum` of ``state_dict``) and
            ``checkpoint_sha256`` (:func:`records_checksum` of the whole checkpoint).
        path: The file (replaced atomically).

    Raises:
        NonFiniteStateError: A weight or an optimizer state holds NaN or an infinity; nothing
            is written, so the previous file at ``path`` stays.
    """
    path = Path(path)
    state = {
        "weights": checkpoint.get("state_dict", {}),
        "optimizer state": checkpoint.get("optimizer_states", []),
    }
    for name, tensor in _floating_tensors(state):
        if not bool(torch.isfinite(tensor).all()):
            raise NonFiniteStateError(
                f"refused to write {path}: {name} holds NaN or infinite values at step "
                f"{checkpoint.get('global_step', '?')} (the training diverged); the previous "
                f"{path.name}, if any, is kept. Lower train.learning_rate, or try "
                "model.scale_map=soft"
            )
    info = checkpoint.get("seqflows")
    if isinstance(info, dict):
        info["weights_sha256"] = weights_checksum(checkpoint["state_dict"])
        info["checkpoint_sha256"] = records_checksum(checkpoint)
    return save_atomically(checkpoint, path)


def _floating_tensors(value: Any, name: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) of every floating-point tensor in nested dicts and lists."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield name, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _floating_tensors(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _floating_tensors(item, f"{name}[{index}]")


def checkpoint_step(path: str | Path) -> int:
    """The optimizer steps a checkpoint written by ``seqflows train`` was saved after."""
    return int(read_checkpoint(path)["global_step"])


def build_model(
    config: Config, event_shape: tuple[int, ...], condition_dim: int | None = None
) -> FlowModel | SLVM:
    """The model that ``config.model`` describes, for frames of ``event_shape`` and, when
    given, A = ``condition_dim`` conditions per step read from the data (None: the
    configuration's ``model.condition_dim``)."""
    model_class = MODEL_CLASSES[config.model.type]
    model_class.check_frames(event_shape, "data.size")  # the error names the setting
    settings = (
        config.model if condition_dim is None else with_condition_dim(config.model, condition_dim)
    )
    return model_class.from_config(settings, event_shape)


def with_condition_dim(model: ModelConfig, condition_dim: int) -> ModelConfig:
    """The model settings ``model`` for data with A = ``condition_dim`` conditions per step
    (:func:`~seqflows.app.resolution.resolve_data` checked that a non-zero
    ``model.condition_dim`` equals it). The one place that sets a model setting from the
    data."""
    return dataclasses.replace(model, condition_dim=condition_dim)


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
    config = stored_config(info["config"], source=f"{path} (stored configuration)")
    MODEL_CLASSES[config.model.type].check_frames(tuple(info["event_shape"]), "data.size")
    model = load_checkpoint_model(checkpoint, path)
    return model, config, checkpoint

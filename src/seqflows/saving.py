r"""Saving and loading models: a folder of config.json and model.safetensors, or a checkpoint.

``model.save_pretrained(folder)`` writes a folder (:mod:`seqflows.pretrained`: its format, and
the registry of model classes), ``FlowModel.from_pretrained(folder)`` (or ``SLVM``) reads it,
and :func:`load` reads either such a folder or a training checkpoint of ``seqflows train`` and
returns the model in eval mode, with ``model.config`` and ``model.preprocessing``. This module
sits above the models (it imports :mod:`~seqflows.flows` and :mod:`~seqflows.slvm`, so that
their classes are registered) and keeps the names of :mod:`seqflows.pretrained` it always had.
Training checkpoints are read with ``torch.load(weights_only=True)`` (nothing in them can run
code) and checked against the SHA-256 of their weights and of every record. A saved folder is
checked against the SHA-256 of ``model.safetensors`` that ``config.json`` records, and its
configuration against the names and shapes of the weights before the model is built; NaN or
infinite weights are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .config import build
from .errors import CheckpointError
from .flows import FlowModel
from .preprocessing import Preprocessing
from .pretrained import (
    CONFIG_NAME,
    MODEL_CLASSES,
    MODEL_FORMAT,
    WEIGHTS_NAME,
    _event_shape,
    _model_for_weights,
    _one_line,
    _required,
    from_pretrained,
    model_config,
    save_pretrained,
)
from .slvm import SLVM

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKSUM_KEYS",
    "CONFIG_NAME",
    "MODEL_CLASSES",
    "MODEL_FORMAT",
    "WEIGHTS_NAME",
    "from_pretrained",
    "load",
    "load_checkpoint_model",
    "model_config",
    "read_checkpoint",
    "records_checksum",
    "save_pretrained",
    "weights_checksum",
]

CHECKPOINT_FORMAT = "seqflows-checkpoint/1"
# The checksums of a checkpoint's "seqflows" entry: of its weights (state_dict only, all that
# checkpoints of seqflows 0.1 have) and of every record (:func:`records_checksum`).
CHECKSUM_KEYS = ("weights_sha256", "checkpoint_sha256")


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
    if "gaps" not in recorded and stored.get("data", {}).get("gaps"):  # recorded before gaps
        recorded = {**recorded, "gaps": True}
    try:
        preprocessing = build(Preprocessing, recorded, f"{path} (preprocessing)")
        model.preprocessing = dataclasses.replace(preprocessing, frame_shape=model.event_shape)
    except ValueError as error:
        raise CheckpointError(f"{path}: malformed preprocessing record: {error}") from None
    return model.eval()


def load(path: str | Path) -> FlowModel | SLVM:
    r"""A trained model, in eval mode: from a folder of :func:`save_pretrained` or a training
    checkpoint of ``seqflows train`` (``.ckpt``).

    The model carries ``model.config`` (its settings) and ``model.preprocessing`` (how raw
    frames become its input, :class:`~seqflows.preprocessing.Preprocessing`; None when
    unknown): for a standardised series, ``model.log_prob(model.preprocessing(x)) +
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

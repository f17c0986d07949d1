r"""Conditions of generated frames (``seqflows sample`` and ``seqflows predict``).

A conditioned model (``model.condition_dim`` A > 0, :mod:`seqflows.conditioning`) generates
frame t from c_{<=t}: to sample L frames after c context frames it needs the conditions of all
c + L steps, (N, c + L, A). Those of the context always come from the data (the frames were
produced under them); those of the predicted frames come either from the data too (what really
happened next: the robot's recorded actions, the observed covariates) or from a file given on
the command line (``--conditions FILE``: "what happens if the robot pushes left instead").

A conditions file holds the conditions of the L predicted frames:

* ``.npy``: an array (L, A), the same future for every sequence, or (N, L, A), one each;
* ``.npz``: the same, under the key ``conditions`` (or its only array);
* ``.csv``: L rows of A numbers, one row per predicted frame (a first row of column names is
  skipped); the same future for every sequence.

A file with more than L rows gives its first L.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = [
    "generation_conditions",
    "read_conditions",
]


def read_conditions(path: str | os.PathLike[str]) -> np.ndarray:
    r"""The conditions in a file: float32 (L, A) or (N, L, A) (the module's formats).

    Raises:
        ConfigError: A missing or unreadable file, values that are not finite numbers, or an
            array of another rank, each naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such conditions file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            values = _read_csv(path)
        elif suffix in (".npy", ".npz"):
            values = _read_array(path)
        else:
            raise ConfigError(f"{path}: conditions are read from .npy, .npz or .csv files")
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read conditions: {error}") from None
    if values.ndim not in (2, 3) or values.shape[-1] < 1 or values.shape[-2] < 1:
        raise ConfigError(
            f"{path}: conditions must have shape (L, A) or (N, L, A), got {values.shape}"
        )
    if values.dtype.kind not in "fiub":
        raise ConfigError(f"{path}: conditions must be numbers, got {values.dtype}")
    values = values.astype(np.float32)
    if not np.isfinite(values).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        raise ConfigError(f"{path}: the condition at {index} is not a finite number")
    return values


def _read_array(path: Path) -> np.ndarray:
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return np.asarray(loaded)
    with loaded:
        keys = list(loaded.keys())
        if "conditions" in keys:
            return np.asarray(loaded["conditions"])
        if len(keys) == 1:
            return np.asarray(loaded[keys[0]])
    raise ConfigError(
        f"{path}: holds {keys}; name the conditions' array 'conditions' (or keep only it)"
    )


def _read_csv(path: Path) -> np.ndarray:
    with path.open(newline="", encoding="utf-8-sig") as stream:
        rows = [row for row in csv.reader(stream) if any(cell.strip() for cell in row)]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]  # column names
    if not rows:
        raise ConfigError(f"{path}: no rows of conditions")
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ConfigError(f"{path}: rows of {sorted(widths)} values; every row needs the same A")
    for number, row in enumerate(rows, start=1):
        if not _numeric(row):
            raise ConfigError(f"{path}: row {number} of conditions is not all numbers: {row}")
    return np.array([[float(cell) for cell in row] for row in rows], dtype=np.float64)


def _numeric(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def generation_conditions(
    condition_dim: int,
    count: int,
    context: int,
    length: int,
    known: Tensor | None = None,
    file: str | os.PathLike[str] | None = None,
) -> Tensor | None:
    r"""The conditions (count, context + length, A) that a model generates under, or None for an
    unconditioned model.

    Arguments:
        condition_dim: The model's A (0: unconditioned).
        count: Sequences N generated.
        context: Real frames c the generation starts from.
        length: Frames L to generate.
        known: The data's conditions of each sequence's context and of the frames that followed
            it, (N, c + L', A), L' <= L (None: the data has none).
        file: A conditions file for the L generated frames (:func:`read_conditions`), which
            replaces the data's.

    Raises:
        ConfigError: Conditions for an unconditioned model, missing or too few conditions for a
            conditioned one, or conditions of another size A.
    """
    if condition_dim == 0:
        if file is not None:
            raise ConfigError(f"{file}: this model takes no conditions (model.condition_dim is 0)")
        return None
    if known is None and context > 0:
        raise ConfigError(
            f"this model is conditioned on {condition_dim} values per step, but the data gives "
            "no conditions of the context frames (set data.conditions)"
        )
    if known is not None and known.shape[-1] != condition_dim:
        raise ConfigError(
            f"the data's conditions have {known.shape[-1]} values per step, the model takes "
            f"{condition_dim} (model.condition_dim)"
        )
    past = None if known is None else known[:, :context]
    if file is not None:
        future = _file_future(file, condition_dim, count, length)
    elif known is not None and known.shape[1] >= context + length:
        future = known[:, context : context + length]
    else:
        available = 0 if known is None else known.shape[1] - context
        raise ConfigError(
            f"this model is conditioned on {condition_dim} values per step and the data gives "
            f"the conditions of {available} of the {length} frames to generate: give them with "
            f"--conditions FILE ({length} rows of {condition_dim} numbers)"
        )
    future = future.to(dtype=torch.float32)
    return future if past is None else torch.cat([past.float(), future.to(past.device)], dim=1)


def _file_future(
    file: str | os.PathLike[str], condition_dim: int, count: int, length: int
) -> Tensor:
    """The file's conditions of the L generated frames, (count, L, A)."""
    values = torch.from_numpy(read_conditions(file))
    if values.shape[-1] != condition_dim:
        raise ConfigError(
            f"{file}: {values.shape[-1]} conditions per step, the model takes {condition_dim} "
            "(model.condition_dim)"
        )
    if values.shape[-2] < length:
        raise ConfigError(
            f"{file}: conditions of {values.shape[-2]} frames, {length} are generated (--length)"
        )
    values = values[..., :length, :]
    if values.dim() == 2:
        return values.expand(count, length, condition_dim)
    if values.shape[0] not in (1, count):
        raise ConfigError(
            f"{file}: conditions of {values.shape[0]} sequences, {count} are generated (give "
            "one future (L, A) for all, or one per sequence)"
        )
    return values.expand(count, length, condition_dim)

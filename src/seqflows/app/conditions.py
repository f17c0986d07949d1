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

The file must hold exactly L rows: fewer leave frames without conditions, and more are refused too
(a 2,000,000-row file for ``--length 10`` is almost certainly the wrong file), counted before the
values are read whole. Values beyond +-1.8e19 (:data:`~seqflows.data.scaling.LARGEST_SERIES_VALUE`,
whose float32 squares overflow) are refused: the model's float32 arithmetic cannot carry them.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.scaling import LARGEST_SERIES_VALUE, first_too_large
from ..errors import ConfigError
from ..missing import generation_masks

__all__ = [
    "generation_conditions",
    "read_conditions",
]


def read_conditions(path: str | os.PathLike[str], frames: int | None = None) -> np.ndarray:
    r"""The conditions in a file: float32 (L, A) or (N, L, A) (the module's formats).

    Arguments:
        path: The conditions file.
        frames: The rows L that the command needs (None: any number); a file with another
            number of rows is refused before its values are read whole (a .npy is mapped, a CSV
            counted row by row).

    Raises:
        ConfigError: A missing or unreadable file, another number of rows than ``frames``,
            values that are not finite numbers or beyond +-1.8e19, or an array of another rank,
            each naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such conditions file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            values, rows = _read_csv(path, frames)
        elif suffix in (".npy", ".npz"):
            values = _read_array(path)
            rows = values.shape[-2] if values.ndim >= 2 else 0
        else:
            raise ConfigError(f"{path}: conditions are read from .npy, .npz or .csv files")
    except ConfigError:
        raise
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: cannot read conditions: {error}") from None
    if values.ndim not in (2, 3) or values.shape[-1] < 1 or values.shape[-2] < 1:
        raise ConfigError(
            f"{path}: conditions must have shape (L, A) or (N, L, A), got {values.shape}"
        )
    if values.dtype.kind not in "fiub":
        raise ConfigError(f"{path}: conditions must be numbers, got {values.dtype}")
    if frames is not None and rows < frames:
        raise ConfigError(
            f"{path}: conditions of {rows} frames, {frames} are generated (--length)"
        )
    if frames is not None and rows > frames:
        raise ConfigError(
            f"{path}: conditions of {rows} frames, but {frames} are generated (--length): "
            f"give exactly {frames} rows (a longer file is likely the wrong one)"
        )
    values = np.asarray(values[..., :frames, :] if frames is not None else values)
    _check_values(path, values)
    return values.astype(np.float32)


def _check_values(path: Path, values: np.ndarray) -> None:
    """Refuses values that are not finite or beyond float32's safe range, naming the place."""
    if not np.isfinite(values).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(values))[0])
        raise ConfigError(f"{path}: the condition at {index} is not a finite number")
    large = first_too_large(values)
    if large is not None:
        names = ("sequence", "row", "column")[-len(large) :]
        place = ", ".join(f"{name} {item + 1}" for name, item in zip(names, large, strict=True))
        raise ConfigError(
            f"{path}: {place} of conditions is {float(values[large]):g}, beyond "
            f"+-{LARGEST_SERIES_VALUE:.2g} (its float32 square overflows in the model); give "
            "conditions on the scale of those the model was trained on"
        )


def _read_array(path: Path) -> np.ndarray:
    loaded = np.load(path, mmap_mode="r", allow_pickle=False)  # a .npy: mapped, not read whole
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return loaded
    with loaded:
        keys = list(loaded.keys())
        if "conditions" in keys:
            return np.asarray(loaded["conditions"])
        if len(keys) == 1:
            return np.asarray(loaded[keys[0]])
    raise ConfigError(
        f"{path}: holds {keys}; name the conditions' array 'conditions' (or keep only it)"
    )


def _read_csv(path: Path, limit: int | None = None) -> tuple[np.ndarray, int]:
    """The first ``limit`` rows of numbers of a CSV (all: None), and how many it holds."""
    rows: list[list[str]] = []
    count, first = 0, True
    with path.open(newline="", encoding="utf-8-sig") as stream:
        for row in csv.reader(stream):
            if not any(cell.strip() for cell in row):
                continue
            if first and not _numeric(row):  # column names
                first = False
                continue
            first = False
            count += 1
            if limit is None or count <= limit:
                rows.append(row)
    if not rows:
        raise ConfigError(f"{path}: no rows of conditions")
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ConfigError(f"{path}: rows of {sorted(widths)} values; every row needs the same A")
    for number, row in enumerate(rows, start=1):
        if not _numeric(row):
            raise ConfigError(f"{path}: row {number} of conditions is not all numbers: {row}")
    return np.array([[float(cell) for cell in row] for row in rows], dtype=np.float64), count


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
    gaps: Tensor | None = None,
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
        gaps: The context frames (N, c, D) of a model given observation masks (``data.gaps``):
            their masks, and 1 for the generated frames, end the conditions
            (:func:`~seqflows.missing.generation_masks`); ``condition_dim`` counts them.

    Raises:
        ConfigError: Conditions for an unconditioned model, missing or too few conditions for a
            conditioned one, or conditions of another size A.
    """
    if gaps is not None:  # the masks: the data's conditions (if any) come first
        masks = generation_masks(gaps.cpu(), length).float()
        own = generation_conditions(
            condition_dim - masks.shape[-1], count, context, length, known, file
        )
        return masks if own is None else torch.cat([own, masks.to(own.device)], dim=-1)
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
    values = torch.from_numpy(read_conditions(file, length))
    if values.shape[-1] != condition_dim:
        raise ConfigError(
            f"{file}: {values.shape[-1]} conditions per step, the model takes {condition_dim} "
            "(model.condition_dim)"
        )
    if values.dim() == 2:
        return values.expand(count, length, condition_dim)
    if values.shape[0] not in (1, count):
        raise ConfigError(
            f"{file}: conditions of {values.shape[0]} sequences, {count} are generated (give "
            "one future (L, A) for all, or one per sequence)"
        )
    return values.expand(count, length, condition_dim)

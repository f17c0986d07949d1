r"""Users' own data converted into a store: folders of videos or frames, and vector time series.

:func:`convert_folder` takes a folder (searched recursively) of video files (anything PyAV reads:
:data:`~seqflows.data.video.VIDEO_SUFFIXES`) and/or of folders of frame images, one folder per
sequence (:data:`~seqflows.data.video.IMAGE_SUFFIXES`, in natural order). Every video or frame
folder is one sequence and one shard of the store; its frames are prepared by
:func:`~seqflows.data.video.prepare_frames`. A video that cannot be decoded or a frame folder
whose images differ in size is skipped and reported in the manifest's ``skipped`` list.

:func:`convert_series` takes CSV files (one sequence per file, or sequences told apart by an id
column) or ``.npy`` files (one (T, D) array each). The store holds uint8 frames only, so values
are quantised per dimension d: ``q = round(255 (x - low_d) / (high_d - low_d))``, clipped to
0..255, where low and high are the minimum and maximum of each dimension over the *training*
split (values of the other splits outside that range are clipped and counted). low and high
are recorded in the manifest's options (:func:`series_range`) and :func:`dequantize_series`
inverts the map, ``x = low + q (high - low) / 255``, within (high - low) / 510 inside the range.
Likelihoods in bits or nats per dimension therefore refer to the quantised data, not to the
original real values.

Both converters split the sequences the same way (:func:`assign_splits`): the sequences are
sorted by path (natural order), permuted by ``numpy.random.default_rng(seed)``, and the first
``round(validation N)`` of the permutation form the validation split, the next
``round(test N)`` the test split and the rest the training split. The fractions, the seed, the
number of sequences and a hash of their names are recorded in the manifest's options, so a
resume over a changed folder is refused instead of mixing two assignments.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .store import Progress, ShardData, StoreWriter, convert_shards, read_manifest
from .video import (
    IMAGE_SUFFIXES,
    RESIZES,
    VIDEO_SUFFIXES,
    natural_key,
    prepare_frames,
    read_frame_folder,
    read_video,
)

__all__ = [
    "SPLIT_METHOD",
    "assign_splits",
    "convert_folder",
    "convert_folder_item",
    "convert_series",
    "dequantize_series",
    "find_folder_items",
    "series_range",
]

FOLDER_VERSION = 1
SERIES_VERSION = 1
SERIES_SHARD = 256  # sequences per shard of a series store
SPLIT_METHOD = (
    "sequences sorted by path (natural order), permuted by numpy.random.default_rng(seed); "
    "the first round(validation N) are validation, the next round(test N) test, the rest train"
)
_log = logging.getLogger(__name__)


def assign_splits(count: int, validation: float, test: float, seed: int = 0) -> list[str]:
    r"""The split (``train``, ``validation``, ``test``) of each of ``count`` sequences.

    See :data:`SPLIT_METHOD`; rounding is half up.

    Example:
        >>> assign_splits(4, validation=0.25, test=0.25, seed=0).count("train")
        2
    """
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise ValueError(
            f"validation and test must be fractions in [0, 1) with a sum below 1, "
            f"got {validation} and {test}"
        )
    num_validation = math.floor(validation * count + 0.5)
    num_test = math.floor(test * count + 0.5)
    if count - num_validation - num_test < 1:
        raise ValueError(
            f"{count} sequences leave none for training with validation={validation}, test={test}"
        )
    permutation = np.random.default_rng(seed).permutation(count)
    splits = ["train"] * count
    for index in permutation[:num_validation]:
        splits[index] = "validation"
    for index in permutation[num_validation : num_validation + num_test]:
        splits[index] = "test"
    return splits


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def find_folder_items(src: str | os.PathLike) -> list[tuple[str, str]]:
    r"""The sequences under ``src``: (``"video"`` or ``"frames"``, path relative to ``src``).

    Video files and folders that directly hold image files, searched recursively (hidden files
    and folders ignored), in natural order of their paths.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder not found: {src}")
    items: dict[str, str] = {}
    for path in src.rglob("*"):
        if not path.is_file() or not _visible(path, src):
            continue
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            items[path.relative_to(src).as_posix()] = "video"
        elif suffix in IMAGE_SUFFIXES:
            items[path.parent.relative_to(src).as_posix()] = "frames"
    return [(items[name], name) for name in sorted(items, key=natural_key)]


def _fingerprint(names: Sequence[str]) -> str:
    return hashlib.sha1("\n".join(names).encode()).hexdigest()


def _shard_name(index: int, name: str) -> str:
    return f"{index:06d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[-80:]}"


def convert_folder_item(argument: dict[str, Any]) -> ShardData:
    r"""One video or frame folder as one sequence uint8 (T, C, H, W), or a skip report.

    Arguments:
        argument: ``{"path", "name", "kind", "size", "grayscale", "resize"}`` as made by
            :func:`convert_folder`.
    """
    path, kind = argument["path"], argument["kind"]
    try:
        frames = read_video(path) if kind == "video" else read_frame_folder(path)
    except (ValueError, FileNotFoundError) as error:
        return ShardData([], sources=[path], skipped=[f"skipped {kind} {path}: {error}"])
    frames = prepare_frames(frames, argument["size"], argument["grayscale"], argument["resize"])
    metadata = {"source": argument["name"], "kind": kind}
    return ShardData([frames], [metadata], sources=[path])


def convert_folder(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    size: int | tuple[int, int],
    grayscale: bool = False,
    resize: str = "squash",
    validation: float = 0.05,
    test: float = 0.05,
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, dict[str, int]]:
    r"""Converts a folder of videos and/or frame folders into a store at ``dst``.

    Arguments:
        src: The folder (see :func:`find_folder_items`).
        dst: The store folder.
        size: Frame size, ``S`` for (S, S) or (H, W).
        grayscale: Whether to keep the BT.601 luma only (C = 1) instead of RGB (C = 3).
        resize: ``"squash"`` or ``"crop"`` (:func:`~seqflows.data.video.prepare_frames`).
        validation: Fraction of the sequences in the validation split.
        test: Fraction of the sequences in the test split.
        seed: Seed of the split permutation (:func:`assign_splits`).
        workers: Worker processes.
        progress: Called with a :class:`~seqflows.data.store.Progress` before the first shard
            and after each one.

    Returns:
        ``{split: {"sequences", "frames"}}`` for the whole store; what was skipped is in the
        manifest's ``skipped`` list.
    """
    if resize not in RESIZES:
        raise ValueError(f"unknown resize {resize!r}: choose one of {', '.join(RESIZES)}")
    target = (size, size) if isinstance(size, int) else tuple(int(side) for side in size)
    items = find_folder_items(src)
    if not items:
        raise FileNotFoundError(f"no videos or folders of images under {src}")
    names = [name for _, name in items]
    splits = assign_splits(len(items), validation, test, seed)
    options = {
        "size": list(target),
        "grayscale": grayscale,
        "resize": resize,
        "validation": validation,
        "test": test,
        "seed": seed,
        "split_method": SPLIT_METHOD,
        "count": len(items),
        "sources_sha1": _fingerprint(names),
    }
    frame_shape = (1 if grayscale else 3, *target)
    writer = StoreWriter(dst, "folder", FOLDER_VERSION, frame_shape, options)
    tasks = [
        (
            split,
            _shard_name(index, name),
            {
                "path": str(Path(src) / name),
                "name": name,
                "kind": kind,
                "size": target,
                "grayscale": grayscale,
                "resize": resize,
            },
        )
        for index, ((kind, name), split) in enumerate(zip(items, splits, strict=True))
    ]
    return convert_shards(writer, tasks, convert_folder_item, workers, progress)


# Vector time series


def _read_csv(
    path: Path,
    name: str,
    id_column: str | None,
    time_column: str | None,
    columns: Sequence[str] | None,
) -> tuple[list[str], list[tuple[np.ndarray, dict[str, Any]]]]:
    with open(path, newline="") as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty CSV file (a header row is needed)")
        header = [column.strip() for column in header]
        for column in (id_column, time_column, *(columns or ())):
            if column is not None and column not in header:
                raise ValueError(f"{path}: no column {column!r}; the header has {header}")
        keep = (
            list(columns) if columns else [c for c in header if c not in (id_column, time_column)]
        )
        positions = [header.index(column) for column in keep]
        groups: dict[str, list[tuple[str, list[float]]]] = {}
        for line, row in enumerate(reader, 2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}, line {line}: {len(row)} cells, the header {len(header)}"
                )
            try:
                values = [float(row[position]) for position in positions]
            except ValueError:
                raise ValueError(
                    f"{path}, line {line}: a value of {keep} is not a number"
                ) from None
            key = row[header.index(id_column)].strip() if id_column else ""
            time = row[header.index(time_column)].strip() if time_column else ""
            groups.setdefault(key, []).append((time, values))
    sequences = []
    for key in sorted(groups, key=natural_key):
        rows = groups[key]
        if time_column:
            times = [time for time, _ in rows]
            try:
                order = np.argsort([float(time) for time in times], kind="stable")
            except ValueError:  # not numbers: sort as text (ISO dates sort right)
                order = np.argsort(np.array(times), kind="stable")
            rows = [rows[index] for index in order]
        metadata: dict[str, Any] = {"source": name}
        if id_column:
            metadata["id"] = key
        sequences.append((np.array([values for _, values in rows], np.float64), metadata))
    return keep, sequences


def _load_series(
    src: Path,
    id_column: str | None,
    time_column: str | None,
    columns: Sequence[str] | None,
) -> tuple[list[np.ndarray], list[dict[str, Any]], list[str] | None]:
    if src.is_file():
        root, files = src.parent, [src]
    elif src.is_dir():
        root = src
        files = [
            path
            for path in src.rglob("*")
            if path.is_file() and path.suffix.lower() in (".csv", ".npy") and _visible(path, src)
        ]
        files.sort(key=lambda path: natural_key(path.relative_to(src).as_posix()))
    else:
        raise FileNotFoundError(f"series source not found: {src}")
    if not files:
        raise FileNotFoundError(f"no .csv or .npy files under {src}")
    arrays, metadata, names = [], [], None
    for path in files:
        name = path.relative_to(root).as_posix()
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as error:
                raise ValueError(f"{path}: unreadable .npy file ({error})") from None
            if array.ndim == 1:
                array = array[:, None]  # (T, 1)
            if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
                raise ValueError(f"{path}: a numeric (T, D) array expected, got {array.shape}")
            found = [(array.astype(np.float64), {"source": name})]
        else:
            names, found = _read_csv(path, name, id_column, time_column, columns)
        for array, item in found:
            if not np.isfinite(array).all():
                raise ValueError(f"{path}: non-finite values (NaN or inf); fill or drop them")
            if arrays and array.shape[1] != arrays[0].shape[1]:
                raise ValueError(
                    f"{path}: {array.shape[1]} dimensions, {metadata[0]['source']} has "
                    f"{arrays[0].shape[1]}; every sequence needs the same dimensions"
                )
            if len(array):
                arrays.append(array)
                metadata.append(item)
    if not arrays:
        raise ValueError(f"{src}: no non-empty sequences")
    return arrays, metadata, names


def _series_shard(argument: dict[str, Any]) -> ShardData:
    return ShardData(argument["sequences"], argument["metadata"], sources=argument["sources"])


def series_range(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The per-dimension (low, high) of a series store's quantisation, each with shape (D,)."""
    scale = read_manifest(root)["options"].get("scale")
    if not scale:
        raise ValueError(f"{root}: not a series store (no scale in its options)")
    return np.array(scale["low"], np.float64), np.array(scale["high"], np.float64)


def dequantize_series(q: Any, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    r"""Real values x = low + q (high - low) / 255 of quantised series frames.

    Arguments:
        q: uint8 values (array or tensor), with shape (*, D).
        low: Per-dimension low end (:func:`series_range`), with shape (D,).
        high: Per-dimension high end, with shape (D,).

    Returns:
        float64 values, with shape (*, D).
    """
    q = np.asarray(q, dtype=np.float64)
    return low + q * (high - low) / 255


def convert_series(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    id_column: str | None = None,
    time_column: str | None = None,
    columns: Sequence[str] | None = None,
    validation: float = 0.05,
    test: float = 0.05,
    scale: str | tuple[Sequence[float], Sequence[float]] = "minmax",
    seed: int = 0,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, dict[str, int]]:
    r"""Converts vector time series (CSV or .npy) into a store of uint8 frames (D,).

    Arguments:
        src: A .csv or .npy file, or a folder of them (searched recursively).
        dst: The store folder.
        id_column: CSV column that tells the sequences of one file apart (one per id, in
            natural order of the ids); None: one sequence per file.
        time_column: CSV column to sort the rows of a sequence by (numbers, else text);
            None: file order.
        columns: CSV columns that form the vector (default: all but the id and time columns).
            ``.npy`` files hold (T, D) (or (T,)) arrays and use all their columns.
        validation: Fraction of the sequences in the validation split.
        test: Fraction of the sequences in the test split.
        scale: ``"minmax"`` (per-dimension range of the training split) or a given
            (low, high) pair of (D,) sequences, e.g. to share the quantisation of another store.
        seed: Seed of the split permutation (:func:`assign_splits`).
        progress: Called with a :class:`~seqflows.data.store.Progress` before the first shard
            and after each one.

    Returns:
        ``{split: {"sequences", "frames"}}`` for the whole store, plus ``"clipped"``: the number
        of values outside [low, high] (clipped to it) in every split.
    """
    arrays, metadata, names = _load_series(Path(src), id_column, time_column, columns)
    splits = assign_splits(len(arrays), validation, test, seed)
    if isinstance(scale, str):
        if scale != "minmax":
            raise ValueError(f"unknown scale {scale!r}: 'minmax' or a (low, high) pair")
        train = np.concatenate(
            [a for a, split in zip(arrays, splits, strict=True) if split == "train"]
        )
        low, high = train.min(axis=0), train.max(axis=0)  # (D,)
        method = "minmax over the training split"
    else:
        low, high = (np.asarray(side, np.float64).reshape(-1) for side in scale)
        method = "given"
    dimensions = arrays[0].shape[1]
    if low.shape != (dimensions,) or high.shape != (dimensions,) or (high < low).any():
        raise ValueError(f"scale needs low <= high, each with shape ({dimensions},)")
    high = np.where(high > low, high, low + 1)  # a constant dimension maps to 0
    options = {
        "id_column": id_column,
        "time_column": time_column,
        "columns": names,
        "validation": validation,
        "test": test,
        "seed": seed,
        "split_method": SPLIT_METHOD,
        "count": len(arrays),
        "sources_sha1": _fingerprint([f"{m['source']}#{m.get('id', '')}" for m in metadata]),
        "scale": {
            "method": method,
            "low": low.tolist(),
            "high": high.tolist(),
            "inverse": "x = low + q * (high - low) / 255",
        },
    }
    clipped: dict[str, int] = {}
    grouped: dict[str, list[tuple[np.ndarray, dict[str, Any]]]] = {}
    for array, item, split in zip(arrays, metadata, splits, strict=True):
        clipped[split] = clipped.get(split, 0) + int(((array < low) | (array > high)).sum())
        unit = np.clip(np.rint((array - low) / (high - low) * 255), 0, 255)
        grouped.setdefault(split, []).append((unit.astype(np.uint8), item))
    tasks = []
    for split, members in grouped.items():
        for start in range(0, len(members), SERIES_SHARD):
            chunk = members[start : start + SERIES_SHARD]
            argument = {
                "sequences": [array for array, _ in chunk],
                "metadata": [item for _, item in chunk],
                "sources": sorted({item["source"] for _, item in chunk}),
            }
            tasks.append((split, f"{start // SERIES_SHARD:06d}", argument))
    writer = StoreWriter(dst, "series", SERIES_VERSION, (dimensions,), options)
    summary = convert_shards(writer, tasks, _series_shard, 1, progress)
    for split, count in clipped.items():
        summary[split]["clipped"] = count
        if count:
            _log.warning("series %s: %d values outside the training range, clipped", split, count)
    return summary

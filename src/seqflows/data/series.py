r"""Users' own vector time series converted into a store: CSV or ``.npy`` files.

:func:`convert_series` takes CSV files (one sequence per file, or sequences told apart by an id
column) or ``.npy`` files (one (T, D) array each). By default it keeps the values as they are
(float64 frames (D,): no quantisation; training standardises them per dimension with the
training split's mean and standard deviation, and likelihoods are in the series' own units).
Missing values are kept as NaN: an empty CSV cell, ``NaN`` or ``NA`` (or a NaN of an ``.npy``
array); models fill them and leave them out of the density (:mod:`seqflows.missing`). A sequence
with fewer than :data:`MIN_OBSERVED_STEPS` steps holding an observed value is refused with its
file (and id). Infinite cells (inf, or a CSV number beyond float64, e.g. ``1e309``) are refused
in any split with their file, CSV line and column (or ``.npy`` element).

``quantize=True`` (``seqflows convert series --quantize``) writes uint8 frames instead,
quantised per dimension d: ``q = round(255 (x - low_d) / (high_d - low_d))``, clipped to
0..255, where low and high are the minimum and maximum of each dimension over the *training*
split (values of the other splits outside that range are clipped and counted). low and high
are recorded in the manifest's options (:func:`series_range`) and :func:`dequantize_series`
inverts the map, ``x = low + q (high - low) / 255``, within (high - low) / 510 inside the range.
Likelihoods in bits or nats per dimension then refer to the quantised data, not to the
original real values. The range is not made robust (no percentiles: min and max are what the
inverse needs); instead extreme training cells that make the range useless are refused: in
some dimension, the training values without the ``K = max(1, N // 100)`` smallest and ``K``
largest of its N cells differ but would all quantise to one uint8 level (a single ``1e308``
among values of order 1 does that), or the range overflows float64; the error names the cell
farthest from the others' median.

The sequences are split as those of a folder (:func:`~seqflows.data.conversion.assign_splits`).
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import DataError
from .conversion import SPLIT_METHOD, assign_splits, is_visible, names_sha1
from .scaling import MIN_OBSERVED_STEPS, TOO_LARGE, first_too_large, observed_steps
from .store import Progress, ShardData, StoreWriter, convert_shards, read_manifest
from .video import natural_key

__all__ = ["convert_series", "dequantize_series", "series_range", "write_series"]

SERIES_VERSION = 2  # 2: real values kept (float64) unless quantised
SERIES_SHARD = 256  # sequences per shard of a series store
MISSING_CELLS = ("", "nan", "na", "n/a")  # CSV cells of missing values (any case)
_log = logging.getLogger(__name__)


class _Series(NamedTuple):
    """One loaded sequence and where its cells come from (for error messages)."""

    values: np.ndarray  # (T, D) float64
    metadata: dict[str, Any]
    path: Path
    lines: list[int] | None  # CSV line of each row; None for .npy
    columns: list[str] | None  # CSV column of each dimension; None for .npy

    def cell(self, row: int, dimension: int) -> str:
        """Where cell (row, dimension) is: file and CSV line and column, or .npy element."""
        if self.lines is None or self.columns is None:
            return f"{self.path}, element [{row}, {dimension}]"
        return f"{self.path}, line {self.lines[row]}, column {self.columns[dimension]!r}"


def _read_csv(
    path: Path,
    name: str,
    id_column: str | None,
    time_column: str | None,
    columns: Sequence[str] | None,
) -> tuple[list[str], list[_Series]]:
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); "
            "save the CSV as UTF-8"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: empty CSV file (a header row is needed)")
    header = [column.strip() for column in header]
    for column in (id_column, time_column, *(columns or ())):
        if column is not None and column not in header:
            raise DataError(f"{path}: no column {column!r}; the header has {header}")
    keep = list(columns) if columns else [c for c in header if c not in (id_column, time_column)]
    positions = [header.index(column) for column in keep]
    groups: dict[str, list[tuple[str, list[float], int]]] = {}
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} cells, the header {len(header)}")
        values = []
        for column, position in zip(keep, positions, strict=True):
            where = f"{path}, line {line}, column {column!r}"
            if row[position].strip().lower() in MISSING_CELLS:
                values.append(math.nan)  # a missing value
                continue
            try:
                value = float(row[position])
            except ValueError:
                raise DataError(f"{where}: {row[position]!r} is not a number") from None
            if math.isinf(value):
                raise DataError(
                    f"{where}: {row[position].strip()!r} is infinite (inf or beyond 1.8e308); "
                    "fill or drop it (an empty cell or NaN marks a missing value)"
                )
            values.append(value)
        key = row[header.index(id_column)].strip() if id_column else ""
        time = row[header.index(time_column)].strip() if time_column else ""
        groups.setdefault(key, []).append((time, values, line))
    sequences = []
    for key in sorted(groups, key=natural_key):
        rows = groups[key]
        if time_column:
            times = [time for time, _, _ in rows]
            try:
                order = np.argsort([float(time) for time in times], kind="stable")
            except ValueError:  # not numbers: sort as text (ISO dates sort right)
                order = np.argsort(np.array(times), kind="stable")
            rows = [rows[index] for index in order]
        metadata: dict[str, Any] = {"source": name}
        if id_column:
            metadata["id"] = key
        array = np.array([values for _, values, _ in rows], np.float64).reshape(-1, len(keep))
        sequences.append(_Series(array, metadata, path, [line for *_, line in rows], keep))
    return keep, sequences


def _load_series(
    src: Path,
    id_column: str | None,
    time_column: str | None,
    columns: Sequence[str] | None,
) -> tuple[list[_Series], list[str] | None]:
    if src.is_file():
        root, files = src.parent, [src]
    elif src.is_dir():
        root = src
        files = [
            path
            for path in src.rglob("*")
            if path.is_file() and path.suffix.lower() in (".csv", ".npy") and is_visible(path, src)
        ]
        files.sort(key=lambda path: natural_key(path.relative_to(src).as_posix()))
    else:
        raise FileNotFoundError(f"series source not found: {src}")
    if not files:
        raise FileNotFoundError(f"no .csv or .npy files under {src}")
    loaded: list[_Series] = []
    names = None
    for path in files:
        name = path.relative_to(root).as_posix()
        if path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as error:
                raise DataError(f"{path}: unreadable .npy file ({error})") from None
            if array.ndim == 1:
                array = array[:, None]  # (T, 1)
            if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
                raise DataError(f"{path}: a numeric (T, D) array expected, got {array.shape}")
            found = [_Series(array.astype(np.float64), {"source": name}, path, None, None)]
            infinite = np.argwhere(np.isinf(found[0].values))
            if len(infinite):
                row, dimension = (int(index) for index in infinite[0])
                raise DataError(
                    f"{found[0].cell(row, dimension)}: {array[row, dimension]} is infinite; "
                    "fill or drop it (NaN marks a missing value)"
                )
        else:
            names, found = _read_csv(path, name, id_column, time_column, columns)
        for series in found:
            if loaded and series.values.shape[1] != loaded[0].values.shape[1]:
                raise DataError(
                    f"{path}: {series.values.shape[1]} dimensions, "
                    f"{loaded[0].metadata['source']} has {loaded[0].values.shape[1]}; every "
                    "sequence needs the same dimensions"
                )
            if len(series.values):
                _check_observed_steps(series)
                loaded.append(series)
    if not loaded:
        raise DataError(f"{src}: no non-empty sequences")
    return loaded, names


def _check_observed_steps(series: _Series) -> None:
    """Refuses a sequence with fewer than :data:`MIN_OBSERVED_STEPS` steps holding an observed
    value (the rest are gaps), naming its file and id."""
    observed = observed_steps(series.values)
    if observed < MIN_OBSERVED_STEPS:
        which = f", id {series.metadata['id']!r}" if "id" in series.metadata else ""
        raise DataError(
            f"{series.path}{which}: {observed} of its {len(series.values)} steps hold an observed "
            f"value; a sequence needs at least {MIN_OBSERVED_STEPS} (one to condition on, one to "
            "score): drop it or fill its gaps"
        )


def _check_range(train: list[_Series], low: np.ndarray, high: np.ndarray) -> None:
    r"""Refuses a training range that a few extreme cells make useless (see convert_series).

    Per dimension, the values without the ``K = max(1, N // 100)`` smallest and ``K`` largest
    of its N training cells must not all quantise to one uint8 level while they differ, and the
    range must be finite; otherwise the error names the cell farthest from their median.
    """
    values = np.concatenate([series.values for series in train])  # (N, D)
    count = len(values)
    extremes = max(1, count // 100)
    with np.errstate(over="ignore"):
        widths = high - low  # (D,): inf when the range overflows
    for dimension in range(values.shape[1]):
        column = values[:, dimension]
        width = widths[dimension]
        bulk = np.sort(column)[extremes : count - extremes]
        if np.isfinite(width) and (
            len(bulk) == 0
            or bulk[0] == bulk[-1]
            or np.rint((bulk[-1] - low[dimension]) / width * 255)
            != np.rint((bulk[0] - low[dimension]) / width * 255)
        ):
            continue
        centre = np.median(bulk) if len(bulk) else np.median(column)
        flat = int(np.argmax(np.abs(column - centre)))
        for series in train:  # the sequence and row of cell ``flat``
            if flat < len(series.values):
                break
            flat -= len(series.values)
        reason = (
            "makes the range overflow float64"
            if not np.isfinite(width)
            else f"widens the range to [{low[dimension]:g}, {high[dimension]:g}], where the bulk "
            f"of the training values ({bulk[0]:g} .. {bulk[-1]:g}) falls on one uint8 level"
        )
        raise DataError(
            f"{series.cell(flat, dimension)}: {series.values[flat, dimension]:g} {reason}; "
            "remove or correct this outlier"
        )


def _series_tasks(
    grouped: dict[str, list[tuple[np.ndarray, dict[str, Any]]]],
) -> list[tuple[str, str, dict[str, Any]]]:
    """(split, shard name, argument) of every shard of :data:`SERIES_SHARD` sequences."""
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
    return tasks


def _series_shard(argument: dict[str, Any]) -> ShardData:
    return ShardData(argument["sequences"], argument["metadata"], sources=argument["sources"])


def series_range(root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The per-dimension (low, high) of a series store's quantisation, each with shape (D,)."""
    scale = read_manifest(root)["options"].get("scale")
    if not scale:
        raise DataError(
            f"{root}: not a quantised series store (no scale in its options; convert series "
            "--quantize writes one)"
        )
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


def _series_options(
    metadata: Sequence[dict[str, Any]],
    columns: Sequence[str] | None,
    validation: float,
    test: float,
    seed: int,
    found: dict[str, Any],
) -> dict[str, Any]:
    """The manifest's options of a series store: how it was read (``found``) and split."""
    return {
        **found,
        "columns": None if columns is None else list(columns),
        "validation": validation,
        "test": test,
        "seed": seed,
        "split_method": SPLIT_METHOD,
        "count": len(metadata),
        "sources_sha1": names_sha1([f"{m['source']}#{m.get('id', '')}" for m in metadata]),
    }


def write_series(
    sequences: Sequence[np.ndarray],
    metadata: Sequence[dict[str, Any]],
    dst: str | os.PathLike,
    columns: Sequence[str] | None = None,
    validation: float = 0.05,
    test: float = 0.05,
    seed: int = 0,
    found: dict[str, Any] | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, dict[str, int]]:
    r"""Writes real-valued sequences as they are (float64 frames (D,)) into a series store, split
    as :func:`convert_series` splits them (its reader and that of other formats, e.g. GluonTS's).

    Arguments:
        sequences: One (T_i, D) array per sequence, finite and within the float32 model's range
            (the caller checks, to name the file and cell).
        metadata: One JSON-ready dict per sequence, with at least ``source`` (its origin).
        dst: The store folder.
        columns: The names of the D columns (covariates among them become conditions by name);
            None: unnamed.
        validation: Fraction of the sequences in the validation split.
        test: Fraction of the sequences in the test split.
        seed: Seed of the split permutation (:func:`assign_splits`).
        found: How the sequences were read, recorded first in the manifest's options.
        progress: As :func:`convert_series`'s.

    Returns:
        ``{split: {"sequences", "frames"}}`` for the whole store.
    """
    splits = assign_splits(len(sequences), validation, test, seed)
    options = _series_options(metadata, columns, validation, test, seed, found or {})
    options["values"] = "as read (float64), not quantised"
    grouped: dict[str, list[tuple[np.ndarray, dict[str, Any]]]] = {}
    for array, item, split in zip(sequences, metadata, splits, strict=True):
        grouped.setdefault(split, []).append((np.asarray(array, np.float64), item))
    dimensions = sequences[0].shape[1]
    writer = StoreWriter(dst, "series", SERIES_VERSION, (dimensions,), options, "float64")
    return convert_shards(writer, _series_tasks(grouped), _series_shard, 1, progress)


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
    quantize: bool = False,
) -> dict[str, dict[str, int]]:
    r"""Converts vector time series (CSV or .npy) into a store of frames (D,): float64 values as
    they are, or uint8 quantised (``quantize``).

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
        scale: With ``quantize``: ``"minmax"`` (per-dimension range of the training split;
            extreme cells that would collapse the other values to one level are refused, see
            the module's description) or a given finite (low, high) pair of (D,) sequences,
            e.g. to share the quantisation of another store.
        seed: Seed of the split permutation (:func:`assign_splits`).
        progress: Called with a :class:`~seqflows.data.store.Progress` before the first shard
            and after each one.
        quantize: Write uint8 frames quantised with ``scale`` (the stores of seqflows 0.1);
            default: float64 frames, the values as they are.

    Returns:
        ``{split: {"sequences", "frames"}}`` for the whole store, plus, with ``quantize``,
        ``"clipped"``: the number of values outside [low, high] (clipped to it) in every split.

    Raises:
        ValueError: An unreadable file (also: a CSV that is not UTF-8), a cell that is not a
            number (or is infinite), a sequence with too few observed steps, or (with
            ``quantize``) a missing value or an extreme training cell (see above); the
            message names the file and the CSV line and column (or the ``.npy`` element).
    """
    loaded, names = _load_series(Path(src), id_column, time_column, columns)
    arrays = [series.values for series in loaded]
    metadata = [series.metadata for series in loaded]
    found = {"id_column": id_column, "time_column": time_column}
    if not quantize:  # real values reach the float32 model: refuse those that overflow it
        for series in loaded:
            large = first_too_large(series.values)
            if large is not None:
                raise DataError(f"{series.cell(*large)}: {series.values[large]:g} is {TOO_LARGE}")
        return write_series(arrays, metadata, dst, names, validation, test, seed, found, progress)
    gapped = next((series for series in loaded if np.isnan(series.values).any()), None)
    if gapped is not None:
        row, dimension = (int(index) for index in np.argwhere(np.isnan(gapped.values))[0])
        raise DataError(
            f"{gapped.cell(row, dimension)}: a missing value; --quantize writes uint8 values, "
            "which cannot mark one: convert without --quantize (real values keep their gaps)"
        )
    splits = assign_splits(len(arrays), validation, test, seed)
    dimensions = arrays[0].shape[1]
    options = _series_options(metadata, names, validation, test, seed, found)
    if isinstance(scale, str):
        if scale != "minmax":
            raise ValueError(f"unknown scale {scale!r}: 'minmax' or a (low, high) pair")
        train = [series for series, split in zip(loaded, splits, strict=True) if split == "train"]
        values = np.concatenate([series.values for series in train])
        low, high = values.min(axis=0), values.max(axis=0)  # (D,)
        _check_range(train, low, high)
        method = "minmax over the training split"
    else:
        low, high = (np.asarray(side, np.float64).reshape(-1) for side in scale)
        method = "given"
    usable = low.shape == high.shape == (dimensions,)
    with np.errstate(over="ignore", invalid="ignore"):  # inf or NaN ends, an overflowing range
        usable = usable and bool(np.isfinite(high - low).all()) and not (high < low).any()
    if not usable:
        raise ValueError(f"scale needs finite low <= high, each with shape ({dimensions},)")
    high = np.where(high > low, high, low + 1)  # a constant dimension maps to 0
    width = np.where(high > low, high - low, 1.0)  # (D,): also when low + 1 == low
    options["scale"] = {
        "method": method,
        "low": low.tolist(),
        "high": high.tolist(),
        "inverse": "x = low + q * (high - low) / 255",
    }
    clipped: dict[str, int] = {}
    grouped: dict[str, list[tuple[np.ndarray, dict[str, Any]]]] = {}
    for array, item, split in zip(arrays, metadata, splits, strict=True):
        clipped[split] = clipped.get(split, 0) + int(((array < low) | (array > high)).sum())
        unit = np.clip(np.rint((array - low) / width * 255), 0, 255)
        grouped.setdefault(split, []).append((unit.astype(np.uint8), item))
    writer = StoreWriter(dst, "series", SERIES_VERSION, (dimensions,), options)
    summary = convert_shards(writer, _series_tasks(grouped), _series_shard, 1, progress)
    for split, count in clipped.items():
        summary[split]["clipped"] = count
        if count:
            _log.warning("series %s: %d values outside the training range, clipped", split, count)
    return summary

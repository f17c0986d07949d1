r"""One store for converted datasets: shards plus a manifest, written atomically, resumable.

Layout of a store folder::

    manifest.json                     what is in the store (below)
    <split>/<shard>.frames.npy        (F, *frame_shape): the frames of the shard's sequences, one
                                      after the other (memory-mappable); uint8, or float32 or
                                      float64 for real-valued series (the manifest's ``dtype``)
    <split>/<shard>.arrays.npz        optional per-frame arrays (e.g. BAIR actions), (F, ...) each

``manifest.json`` holds the converter and its version, the frame shape, the options of the
conversion, and for every split its shards in order: name, source files, the length of each of
its sequences and each sequence's metadata (e.g. KTH person, action, scenario). Sequences may have
different lengths (KTH); frames of one store all have one shape, (C, H, W) or (D,).

A shard is the unit of work: :func:`convert_shards` computes shards in worker processes, writes
each one through a temporary file and a rename, and then rewrites the manifest atomically, so an
interrupted conversion leaves only complete shards, and running it again skips them (and removes
the temporary files that a conversion killed by SIGKILL left behind). Worker
processes end with the converting process, however it ends (an error, Ctrl-C, SIGTERM or
SIGKILL), and it reports each written shard as a :class:`Progress`.
:func:`open_dataset` reads a split as a torch Dataset of uint8 sequences.

File names that are not UTF-8 (held by Python as surrogate escapes) are written into the manifest
in a readable escaped form: the byte 0xE9 of ``caf\xe9.png`` becomes the four characters
``\xe9``.
"""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..atomic import remove_stale_temporaries, write_atomically, write_text_atomically
from ..errors import DataError
from .sources import StoredSource

__all__ = [
    "MANIFEST",
    "Progress",
    "ShardData",
    "StoreError",
    "StoreSource",
    "StoreWriter",
    "convert_shards",
    "open_dataset",
    "read_manifest",
]

MANIFEST = "manifest.json"
FORMAT = "seqflows-store/1"
DTYPES = ("uint8", "float32", "float64")  # of the frames; stores without a dtype hold uint8
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): a signal for the child when its parent ends
_log = logging.getLogger(__name__)


class StoreError(DataError):
    """A store that cannot be used: missing or corrupt manifest or shard, mixed frame shapes."""


@dataclass
class ShardData:
    r"""The converted sequences of one shard.

    Attributes:
        sequences: Arrays of the store's dtype (uint8, or float for real series), each
            (T_i, *frame_shape).
        metadata: One JSON-ready dict per sequence (e.g. ``{"person": 1, "action": "boxing"}``).
        arrays: Optional per-frame arrays by name, each a list of (T_i, ...) arrays.
        sources: The source files of the shard.
        skipped: Reports of what was skipped (e.g. a corrupt record: file, offset, reason).
    """

    sequences: list[np.ndarray]
    metadata: list[dict[str, Any]] = field(default_factory=list)
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    r"""Where a conversion stands: sent to the ``progress`` callback of :func:`convert_shards`.

    The first report comes before any work (``done`` 0, no shard), then one after each written
    shard, so a progress bar can start its clock and estimate the time left.

    Attributes:
        done: Shards written by this run so far.
        total: Shards this run writes (those a resumed conversion still lacks).
        split: The split of the shard just written (None in the first report).
        shard: The name of the shard just written (None in the first report).
    """

    done: int
    total: int
    split: str | None = None
    shard: str | None = None


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a store, checked; raises :class:`StoreError` naming the file."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"not a seqflows store (no {MANIFEST}): {Path(root)}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(f"{path}: corrupt manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError(f"{path}: not a seqflows store manifest (format {FORMAT!r} expected)")
    problem = _manifest_problem(manifest)
    if problem:
        raise StoreError(f"{path}: malformed manifest, {problem}")
    return manifest


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the keys a store reads from a manifest, or None."""

    def integers(value: Any, least: int) -> bool:
        return isinstance(value, list) and all(
            isinstance(item, int) and not isinstance(item, bool) and item >= least
            for item in value
        )

    if not integers(manifest.get("frame_shape"), 1) or not manifest["frame_shape"]:
        return "'frame_shape' must be a list of positive sizes"
    if manifest.get("dtype", "uint8") not in DTYPES:
        return f"'dtype' must be one of {', '.join(DTYPES)}"
    if not isinstance(manifest.get("options", {}), dict):
        return "'options' must be an object"
    if not isinstance(manifest.get("skipped", []), list):
        return "'skipped' must be a list"
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        return "no 'splits' object (split name: list of shards)"
    for split, shards in splits.items():
        if not isinstance(shards, list):
            return f"split {split!r} must be a list of shards"
        for position, shard in enumerate(shards):
            where = f"shard {position} of split {split!r}"
            if not isinstance(shard, dict) or not isinstance(shard.get("name"), str):
                return f"{where} has no 'name'"
            where = f"shard {shard['name']!r} of split {split!r}"
            if not integers(shard.get("lengths"), 0):
                return f"{where}: 'lengths' must be a list of sequence lengths"
            metadata = shard.get("metadata")
            if not isinstance(metadata, list) or len(metadata) != len(shard["lengths"]):
                return f"{where}: 'metadata' must be a list with one entry per sequence"
            arrays = shard.get("arrays")
            if not isinstance(arrays, list) or not all(isinstance(a, str) for a in arrays):
                return f"{where}: 'arrays' must be a list of names"
    return None


def _readable(value: Any) -> Any:
    r"""``value`` with the surrogate escapes of non-UTF-8 file names as readable ``\xNN``
    escapes, in strings, lists and dict values (what a manifest may hold)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        return value
    if isinstance(value, list | tuple):
        return [_readable(item) for item in value]
    if isinstance(value, dict):
        return {key: _readable(item) for key, item in value.items()}
    return value


class StoreWriter:
    r"""Writes shards into a store folder and keeps its manifest up to date.

    Arguments:
        root: The store folder (created).
        converter: Name of the converter (``bair``, ``kth``, ``folder``, ``series``, ...).
        version: Version of the converter; a store written by another version is not resumed.
        frame_shape: Shape of every frame, (C, H, W) or (D,).
        options: The conversion's options (recorded; a resume with other options is refused).
        dtype: Of the frames: ``uint8``, or ``float32`` / ``float64`` for real-valued series.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        converter: str,
        version: int,
        frame_shape: Sequence[int],
        options: dict[str, Any] | None = None,
        dtype: str = "uint8",
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.root = Path(root)
        self.frame_shape = [int(size) for size in frame_shape]
        self.dtype = np.dtype(dtype)
        header = {
            "format": FORMAT,
            "converter": converter,
            "converter_version": version,
            "frame_shape": self.frame_shape,
            "dtype": dtype,
            "options": options or {},
        }
        if (self.root / MANIFEST).is_file():
            self.manifest = read_manifest(self.root)
            self.manifest.setdefault("skipped", [])
            stored = {key: self.manifest.get(key) for key in header}
            if stored != json.loads(json.dumps(header)):
                raise StoreError(
                    f"{self.root}: holds a store written with other settings "
                    f"({ {k: v for k, v in stored.items() if v != header[k]} }); "
                    "convert into another folder or delete this one"
                )
        else:
            self.manifest = {**header, "splits": {}, "skipped": []}
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Removes the temporary files of shards and manifests that a killed conversion left
        (write_atomically's own names only, in the store folder and its split folders)."""
        folders = [self.root, *(path for path in self.root.glob("*") if path.is_dir())]
        for folder in folders:
            for path in remove_stale_temporaries(folder):
                _log.info("removed %s, left by an interrupted conversion", path)

    def done(self, split: str, name: str) -> bool:
        """Whether shard ``name`` of ``split`` is complete (listed and its files present)."""
        for shard in self.manifest["splits"].get(split, []):
            if shard["name"] == name:
                files = [f"{name}.frames.npy"] + (
                    [f"{name}.arrays.npz"] if shard["arrays"] else []
                )
                return all((self.root / split / file).is_file() for file in files)
        return False

    def write_shard(self, split: str, name: str, data: ShardData) -> None:
        r"""Checks one shard, writes it atomically, then records it in the manifest.

        A shard that produced no sequence but reports skips (say, an unreadable video) is not
        recorded as done: its reports go into the manifest and a later run tries it again.
        """
        reports = [f"[{split}/{name}] {_readable(report)}" for report in data.skipped]
        kept = [s for s in self.manifest["skipped"] if not s.startswith(f"[{split}/{name}]")]
        self.manifest["skipped"] = sorted(kept + reports)
        if not data.sequences and data.skipped:
            self.save()
            return
        lengths = self._check(name, data)
        folder = self.root / split
        frames = (
            np.concatenate(data.sequences)
            if data.sequences
            else np.zeros((0, *self.frame_shape), self.dtype)
        )
        write_atomically(folder / f"{name}.frames.npy", lambda stream: np.save(stream, frames))
        arrays = {key: values for key, values in data.arrays.items() if values}
        if arrays:
            joined = {key: np.concatenate(values) for key, values in arrays.items()}
            write_atomically(
                folder / f"{name}.arrays.npz", lambda stream: np.savez(stream, **joined)
            )
        shards = [s for s in self.manifest["splits"].setdefault(split, []) if s["name"] != name]
        shards.append(
            {
                "name": name,
                "sources": _readable(list(data.sources)),
                "lengths": lengths,
                "metadata": _readable(data.metadata) if data.metadata else [{} for _ in lengths],
                "arrays": sorted(arrays),
            }
        )
        shards.sort(key=lambda shard: shard["name"])
        self.manifest["splits"][split] = shards
        self.save()

    def _check(self, name: str, data: ShardData) -> list[int]:
        """The sequence lengths of a shard, after checking dtype, shapes, metadata, arrays."""
        lengths = []
        for index, sequence in enumerate(data.sequences):
            if sequence.dtype != self.dtype:
                raise StoreError(
                    f"shard {name}: sequence {index} is {sequence.dtype}, not {self.dtype}"
                )
            if list(sequence.shape[1:]) != self.frame_shape:
                raise StoreError(
                    f"shard {name} ({', '.join(data.sources) or 'no source'}): sequence {index} "
                    f"has frames of shape {tuple(sequence.shape[1:])}, the store "
                    f"{tuple(self.frame_shape)}; resize or crop all frames to one size"
                )
            lengths.append(int(sequence.shape[0]))
        if data.metadata and len(data.metadata) != len(lengths):
            raise StoreError(
                f"shard {name}: {len(data.metadata)} metadata for {len(lengths)} sequences"
            )
        for key, values in data.arrays.items():
            if values and [len(value) for value in values] != lengths:
                raise StoreError(f"shard {name}: array {key!r} does not match the sequences")
        return lengths

    def save(self) -> None:
        """Rewrites the manifest atomically (splits in name order: independent of workers)."""
        self.manifest["splits"] = dict(sorted(self.manifest["splits"].items()))
        write_text_atomically(self.root / MANIFEST, json.dumps(self.manifest, indent=1))

    def summary(self) -> dict[str, dict[str, int]]:
        """Sequences and frames per split."""
        return {
            split: {
                "sequences": sum(len(s["lengths"]) for s in shards),
                "frames": sum(sum(s["lengths"]) for s in shards),
            }
            for split, shards in sorted(self.manifest["splits"].items())
        }


def convert_shards(
    writer: StoreWriter,
    tasks: Iterable[tuple[str, str, Any]],
    work: Callable[[Any], ShardData],
    workers: int = 1,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, dict[str, int]]:
    r"""Runs ``work(argument)`` for every (split, shard name, argument) not yet done.

    Shards are computed in ``workers`` processes (``work`` must be a module-level function) and
    written by this process as they complete, so the store is consistent after an interruption
    and a second call continues where the first stopped. The workers end with this process: an
    exception here (including KeyboardInterrupt) terminates them at once; on Linux the kernel
    kills them when this process dies, even by SIGKILL (``prctl(PR_SET_PDEATHSIG)``), and on
    any system a thread in each worker ends it once its parent is gone.

    Arguments:
        writer: The store.
        tasks: (split, shard name, argument of ``work``) of every shard of the store.
        work: Computes one shard.
        workers: Processes computing shards (1: this process).
        progress: Called with a :class:`Progress` before the first shard and after each one.

    Returns:
        Sequences and frames per split (:meth:`StoreWriter.summary`).
    """
    pending = [(split, name, argument) for split, name, argument in tasks]
    pending = [task for task in pending if not writer.done(task[0], task[1])]
    report = progress or (lambda state: None)
    report(Progress(0, len(pending)))
    if workers <= 1:
        for count, (split, name, argument) in enumerate(pending, 1):
            writer.write_shard(split, name, work(argument))
            report(Progress(count, len(pending), split, name))
    elif pending:
        pool = ProcessPoolExecutor(min(workers, len(pending)), initializer=_end_with_parent)
        try:
            with _signals_blocked():  # workers start with them blocked, see _end_with_parent
                futures = {
                    pool.submit(work, argument): (split, name) for split, name, argument in pending
                }
            for count, future in enumerate(as_completed(futures), 1):
                split, name = futures[future]
                writer.write_shard(split, name, future.result())
                report(Progress(count, len(pending), split, name))
        except BaseException:
            _stop_workers(pool)  # at the first failure or interruption
            raise
        pool.shutdown()
    if writer.manifest["skipped"]:
        _log.warning(
            "%d skip reports (unreadable or clipped input) in %s, under 'skipped'",
            len(writer.manifest["skipped"]),
            writer.root / MANIFEST,
        )
    return writer.summary()


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def _signals_blocked() -> Iterator[None]:
    """Blocks SIGINT and SIGTERM in this thread while workers are started (where the system
    can), so that a worker never runs its parent's handlers before its own are set; a signal
    that came meanwhile is delivered on leaving."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _end_with_parent() -> None:
    """Initializer of conversion workers: a worker ends when the process that started it does.

    Ctrl-C reaches every process of the terminal's group: a worker ignores SIGINT and leaves
    the stop to its parent, which terminates it (SIGTERM, here its default action: end).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the thread below does it
            pass
    parent = multiprocessing.parent_process()
    if parent is not None:  # also covers a parent that died before prctl
        threading.Thread(target=_exit_after, args=(parent.sentinel,), daemon=True).start()


def _exit_after(sentinel: int) -> None:
    """Waits until the parent process ends, then ends this worker."""
    multiprocessing.connection.wait([sentinel])
    os._exit(1)


def _stop_workers(pool: ProcessPoolExecutor, patience: float = 5.0) -> None:
    """Cancels the pending shards, terminates the running workers and waits for them to end
    (``patience`` seconds each, then SIGKILL), so that none is left running or a zombie."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
    else:
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            try:
                process.terminate()
            except (ProcessLookupError, ValueError):  # already ended, or closed
                pass
    for process in processes:
        try:
            process.join(patience)
            if process.exitcode is None:
                process.kill()
                process.join(patience)
        except (ProcessLookupError, ValueError, AssertionError):  # ended, closed, not ours
            pass


class StoreSource(StoredSource):
    r"""The sequences of one split of a store, memory-mapped: a stored source for the datasets.

    ``source[n]`` is an array (T_n, *frame_shape) of the store's ``dtype`` (uint8, or float for
    real-valued series); ``lengths[n]`` is T_n. Sequences keep the order of the manifest (shards
    sorted by name), and ``metadata[n]`` is what the converter recorded of sequence n (its
    source file, and e.g. an id, a person or an action).

    Arguments:
        root: The store folder.
        split: ``train``, ``validation``, ``test`` or any split the converter wrote.
        conditions: Names of per-frame arrays of the store that are the sequences' conditions
            (:mod:`seqflows.conditioning`), concatenated in this order: e.g. ``("action",)``
            or ``("action", "endeffector_pos")`` for BAIR; () for none. For a series converted
            from a CSV they may instead name columns (covariates): those columns become the
            conditions and leave the frames, which then hold the other columns only.
    """

    def __init__(
        self, root: str | os.PathLike, split: str, conditions: Sequence[str] = ()
    ) -> None:
        self.root = Path(root)
        manifest = read_manifest(self.root)
        if split not in manifest["splits"]:
            raise StoreError(
                f"{self.root}: no split {split!r}; the store has "
                f"{', '.join(sorted(manifest['splits'])) or 'none'}"
            )
        self.split = split
        self.name = f"{self.root} [{split}]"
        self.frame_shape = tuple(manifest["frame_shape"])
        self.stored_shape = self.frame_shape  # of the stored frames (with covariate columns)
        self.dtype = np.dtype(manifest.get("dtype", "uint8"))
        self.shards = manifest["splits"][split]
        self.lengths = [length for shard in self.shards for length in shard["lengths"]]
        self.metadata = [item for shard in self.shards for item in shard["metadata"]]
        self._index = [  # (shard, first frame, length) of every sequence
            (position, int(start), length)
            for position, shard in enumerate(self.shards)
            for start, length in zip(
                np.cumsum([0, *shard["lengths"][:-1]]), shard["lengths"], strict=True
            )
        ]
        self._frames: dict[int, np.ndarray] = {}
        self.condition_arrays = tuple(conditions)
        self.columns = list(manifest.get("options", {}).get("columns") or [])
        self._covariates = self._covariate_columns()  # (modelled, covariates) or None
        if self._covariates is not None:
            self.frame_shape = (len(self._covariates[0]),)
        self.condition_dim = 0
        if self.condition_arrays and self.lengths:  # the sizes, from the first sequence
            self.condition_dim = int(self.read_conditions(0, 0, self.lengths[0]).shape[-1])

    def _covariate_columns(self) -> tuple[list[int], list[int]] | None:
        """The indices of the modelled and of the covariate columns of a series whose
        conditions name columns; None when they name per-frame arrays (or nothing)."""
        covariates = [name for name in self.condition_arrays if name in self.columns]
        if not covariates:
            return None
        if len(covariates) != len(self.condition_arrays):
            others = [name for name in self.condition_arrays if name not in self.columns]
            raise StoreError(
                f"{self.name}: the conditions name the columns {covariates} and {others}, which "
                f"is no column; the columns are {', '.join(self.columns)}"
            )
        modelled = [index for index, name in enumerate(self.columns) if name not in covariates]
        if not modelled:
            raise StoreError(
                f"{self.name}: the conditions take every column ({', '.join(self.columns)}); "
                "at least one must remain to be modelled"
            )
        return modelled, [self.columns.index(name) for name in covariates]

    def read_conditions(self, n: int, start: int, stop: int) -> np.ndarray:
        r"""The conditions of frames start .. stop - 1 of sequence n: the arrays named in
        ``conditions``, flattened per frame and concatenated (or the named columns of a
        series), float32 (stop - start, A)."""
        if not self.condition_arrays:
            raise StoreError(f"{self.name}: no conditions were named for this store")
        if self._covariates is not None:
            return np.asarray(self._read_rows(n, start, stop)[:, self._covariates[1]], np.float32)
        arrays = self.arrays(n)
        length = self.lengths[n]
        parts = []
        for key in self.condition_arrays:
            if key not in arrays:
                columns = f" and the columns {', '.join(self.columns)}" if self.columns else ""
                raise StoreError(
                    f"{self.name}: sequence {n} has no per-frame array {key!r} for the "
                    f"conditions; it has {', '.join(sorted(arrays)) or 'no arrays'}{columns}"
                )
            if len(arrays[key]) != length:
                raise StoreError(
                    f"{self.name}: sequence {n} has {length} frames but {len(arrays[key])} "
                    f"values of {key!r}: frames and conditions must have the same length"
                )
            parts.append(np.asarray(arrays[key][start:stop], np.float32).reshape(stop - start, -1))
        return np.concatenate(parts, axis=-1)

    @property
    def dimension_names(self) -> tuple[str, ...]:
        r"""The names of the D dimensions of the frames that ``read`` returns: the CSV columns
        of a series converted from a CSV (without its covariate columns); () for frames and for
        series without names (.npy files)."""
        if self._covariates is not None:
            return tuple(self.columns[index] for index in self._covariates[0])
        if len(self.frame_shape) == 1 and len(self.columns) == self.frame_shape[0]:
            return tuple(self.columns)
        return ()

    @property
    def num_sequences(self) -> int:
        """Number of sequences."""
        return len(self.lengths)

    @property
    def num_frames(self) -> int:
        """Frames of the shortest sequence (every crop must fit in it)."""
        return min(self.lengths) if self.lengths else 0

    def __len__(self) -> int:
        return len(self.lengths)

    def _shard(self, position: int) -> np.ndarray:
        if position not in self._frames:
            path = self.root / self.split / f"{self.shards[position]['name']}.frames.npy"
            try:
                frames = np.load(path, mmap_mode="r")
            except FileNotFoundError:
                raise FileNotFoundError(f"store shard missing: {path}") from None
            except (ValueError, OSError) as error:
                raise StoreError(f"{path}: corrupt or truncated shard ({error})") from None
            expected = sum(self.shards[position]["lengths"])
            if frames.shape != (expected, *self.stored_shape) or frames.dtype != self.dtype:
                raise StoreError(
                    f"{path}: holds {frames.dtype} {frames.shape}, the manifest says "
                    f"{self.dtype} {(expected, *self.stored_shape)}"
                )
            self._frames[position] = frames
        return self._frames[position]

    def __getitem__(self, n: int) -> np.ndarray:
        return self.read(n, 0, self.lengths[n])

    def read(self, n: int, start: int, stop: int) -> np.ndarray:
        """Frames start .. stop - 1 of sequence n, copied from the memory map (a crop of a long
        video reads only its frames); without the covariate columns of a series."""
        rows = self._read_rows(n, start, stop)
        return rows if self._covariates is None else rows[:, self._covariates[0]]

    def _read_rows(self, n: int, start: int, stop: int) -> np.ndarray:
        """Frames start .. stop - 1 of sequence n as stored (every column)."""
        position, first, length = self._index[n]
        if not 0 <= start <= stop <= length:
            raise IndexError(f"frames {start}..{stop} out of range for a sequence of {length}")
        return np.array(self._shard(position)[first + start : first + stop])

    def arrays(self, n: int) -> dict[str, np.ndarray]:
        """The per-frame arrays of sequence n (e.g. BAIR ``action``: (T_n, 4))."""
        position, start, length = self._index[n]
        shard = self.shards[position]
        if not shard["arrays"]:
            return {}
        path = self.root / self.split / f"{shard['name']}.arrays.npz"
        with np.load(path) as arrays:
            return {key: arrays[key][start : start + length] for key in shard["arrays"]}

    def __getstate__(self) -> dict[str, Any]:  # workers reopen the memory maps
        return {**self.__dict__, "_frames": {}}


class _StoreDataset(Dataset):
    def __init__(self, source: StoreSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, n: int) -> Tensor | tuple[Tensor, Tensor]:
        frames = torch.from_numpy(self.source[n])
        if not self.source.condition_arrays:
            return frames
        return frames, torch.from_numpy(self.source.read_conditions(n, 0, len(frames)))


def open_dataset(
    path: str | os.PathLike, split: str = "train", conditions: Sequence[str] = ()
) -> Dataset:
    r"""A split of a store as a torch Dataset of tensors (T, C, H, W) or (T, D) (uint8, or float
    for real-valued series); with ``conditions`` (names of per-frame arrays, e.g.
    ``("action",)`` for BAIR) items are pairs (frames, conditions (T, A) float32).

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> writer = StoreWriter(root, "example", 1, frame_shape=(2,))
        >>> frames = np.arange(12, dtype=np.uint8).reshape(6, 2)
        >>> writer.write_shard("train", "a", ShardData([frames[:4], frames[4:]]))
        >>> data = open_dataset(root, "train")
        >>> len(data), tuple(data[1].shape), data[1].dtype
        (2, (2, 2), torch.uint8)
    """
    return _StoreDataset(StoreSource(path, split, conditions))

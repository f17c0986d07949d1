r"""``seqflows convert``: datasets from their original files into a store (see data.store).

    seqflows convert bair SRC DST       BAIR robot pushing, TFRecords read without TensorFlow
    seqflows convert kth SRC DST        KTH actions, AVI files or the six zips, PyAV
    seqflows convert folder SRC DST     your videos, or folders of frame images
    seqflows convert series SRC DST     vector time series from CSV or NPY files

Conversion is atomic per shard and resumable: run the same command again after an interruption.
A progress bar with the time left goes to stderr; at the end the command prints (stdout, JSON) the
sequences and frames per split, what was skipped, notes (e.g. values clipped to the training
range), and the throughput. Worker processes (--workers) end with the command, however it ends.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..data.store import Progress

__all__ = [
    "SOURCES",
    "convert",
]


def _progress_bar() -> tuple[Callable[[Progress], None], Callable[[], None]]:
    """A progress callback (a bar of shards with the time left, on stderr) and its closer."""
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:  # pragma: no cover - tqdm comes with the data and train extras

        def show(progress: Progress) -> None:
            if progress.shard is not None:
                print(
                    f"{progress.done}/{progress.total} {progress.split}/{progress.shard}",
                    file=sys.stderr,
                    flush=True,
                )

        return show, (lambda: None)
    bars: list[tqdm] = []

    def update(progress: Progress) -> None:
        if not bars:
            bars.append(tqdm(total=progress.total, unit="shard", file=sys.stderr))
        if progress.shard is not None:
            bars[0].set_postfix_str(f"{progress.split}/{progress.shard}", refresh=False)
        bars[0].update(progress.done - bars[0].n)

    def close() -> None:
        if bars:
            bars[0].close()

    return update, close


class _Notes(logging.Handler):
    """Collects the warnings of the converters (loggers under ``seqflows``) for the report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


SOURCES = ("bair", "kth", "folder", "series")


def convert(
    source: str, src: str | Path, dst: str | Path, progress: bool = True, **options: Any
) -> dict[str, Any]:
    r"""Converts the original files ``src`` of ``source`` into the store ``dst``.

    Arguments:
        source: ``bair``, ``kth``, ``folder`` (videos or frame folders) or ``series``.
        src: The original files.
        dst: The store folder (resumed when it exists).
        progress: Show a bar of shards with the time left (stderr).
        options: The converter's own options (:func:`~seqflows.data.convert_bair`,
            :func:`~seqflows.data.convert_kth`, :func:`~seqflows.data.convert_folder`,
            :func:`~seqflows.data.convert_series`): ``workers``, ``size``, ``validation``, ...

    Returns:
        The store, sequences and frames per split, the frame shape, what was skipped, notes
        (warnings of the converter) and the throughput.
    """
    from ..data.store import read_manifest

    if source not in SOURCES:
        raise ConfigError(f"convert: unknown source {source!r}; choose from {', '.join(SOURCES)}")
    from ..data import convert_bair, convert_folder, convert_kth, convert_series

    converters = {
        "bair": convert_bair,
        "kth": convert_kth,
        "folder": convert_folder,
        "series": convert_series,
    }
    function = converters[source]
    update, close = _progress_bar() if progress else ((lambda _: None), (lambda: None))
    notes = _Notes()
    logger = logging.getLogger("seqflows")
    logger.addHandler(notes)
    started = time.perf_counter()
    try:
        summary = function(src, dst, progress=update, **options)
    finally:
        close()
        logger.removeHandler(notes)
    seconds = time.perf_counter() - started
    manifest = read_manifest(dst)
    sequences = sum(split["sequences"] for split in summary.values())
    report = {
        "store": str(dst),
        "splits": summary,
        "frame_shape": manifest["frame_shape"],
        "skipped": manifest.get("skipped", []),
        "notes": notes.messages,
        "seconds": round(seconds, 2),
        "sequences_per_second": round(sequences / seconds, 2) if seconds > 0 else None,
    }
    return report

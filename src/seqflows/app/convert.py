r"""``seqflows convert``: datasets from their original files into a store (see data.store).

    seqflows convert bair SRC DST       BAIR robot pushing, TFRecords read without TensorFlow
    seqflows convert kth SRC DST        KTH actions, AVI files or the six zips, PyAV
    seqflows convert folder SRC DST     your videos, or folders of frame images
    seqflows convert series SRC DST     vector time series from CSV or NPY files
    seqflows convert gluonts SRC DST    a GluonTS dataset of JSON lines (seqflows[gluonts])

Conversion is atomic per shard and resumable: run the same command again after an interruption.
Progress with the time left goes to stderr (a bar on a terminal, a line every few seconds in a
log); at the end the command prints (stdout, JSON) the sequences and frames per split, what was
skipped, notes (e.g. values clipped to the training range), and the throughput. Worker
processes (--workers) end with the command, however it ends. Ctrl-C (SIGINT) or SIGTERM stops
it at once with one line and exit status 130 or 143 (workers ignore Ctrl-C and are terminated
and waited for by the command).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .interrupt import InterruptAtOnce

if TYPE_CHECKING:
    from ..data.store import Progress

__all__ = [
    "SOURCES",
    "convert",
]


def _progress_bar() -> tuple[Callable[[Progress], None], Callable[[], None]]:
    """A progress callback (shards with the time left, on stderr: a bar on a terminal, a line
    every few seconds in a log) and its closer."""
    from .progress import Progress as ProgressDisplay

    shown: list[ProgressDisplay] = []

    def update(progress: Progress) -> None:
        if not shown:
            shown.append(ProgressDisplay(progress.total, "convert", "shards"))
        if progress.shard is not None:
            shown[0].set_postfix(f"{progress.split}/{progress.shard}")
        shown[0].update_to(progress.done)

    def close() -> None:
        if shown:
            shown[0].close()

    return update, close


class _Notes(logging.Handler):
    """Collects the warnings of the converters (loggers under ``seqflows``) for the report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


SOURCES = ("bair", "kth", "folder", "series", "gluonts")
STOPPED = (
    "convert stopped by {signal}; the shards written so far are kept: run the same command "
    "again to resume"
)


def convert(
    source: str, src: str | Path, dst: str | Path, progress: bool = True, **options: Any
) -> dict[str, Any]:
    r"""Converts the original files ``src`` of ``source`` into the store ``dst``.

    Arguments:
        source: ``bair``, ``kth``, ``folder`` (videos or frame folders), ``series`` or
            ``gluonts``.
        src: The original files.
        dst: The store folder (resumed when it exists).
        progress: Show a bar of shards with the time left (stderr).
        options: The converter's own options (:func:`~seqflows.data.convert_bair`,
            :func:`~seqflows.data.convert_kth`, :func:`~seqflows.data.convert_folder`,
            :func:`~seqflows.data.convert_series`, :func:`~seqflows.app.gluonts.convert_gluonts`):
            ``workers``, ``size``, ``validation``, ...

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
    if source == "gluonts":  # the optional extra, imported only when asked for
        from .gluonts import convert_gluonts

        converters["gluonts"] = convert_gluonts
    function = converters[source]
    update, close = _progress_bar() if progress else ((lambda _: None), (lambda: None))
    notes = _Notes()
    logger = logging.getLogger("seqflows")
    logger.addHandler(notes)
    started = time.perf_counter()
    try:
        with InterruptAtOnce(STOPPED):  # writes are atomic: stopping anywhere keeps the store
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

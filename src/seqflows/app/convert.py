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

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..data.store import Progress

__all__ = [
    "add_convert_arguments",
    "run_convert",
]


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``seqflows convert`` and its four sources."""
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")

    def source(name: str, summary: str, workers: bool = True) -> argparse.ArgumentParser:
        sub = sources.add_parser(name, help=summary, description=summary)
        sub.add_argument("src", help="the original files (see the description)")
        sub.add_argument("dst", help="the store folder to write (resumed when it exists)")
        if workers:
            sub.add_argument("--workers", type=int, default=1, help="processes (default 1)")
        return sub

    bair = source(
        "bair",
        "BAIR robot pushing: SRC holds softmotion30_44k/{train,test}/*.tfrecords (or the tar)",
    )
    bair.add_argument(
        "--validation",
        type=int,
        default=256,
        help="trajectories carved out of the end of train for validation (default 256)",
    )
    kth = source("kth", "KTH actions: SRC holds the six action zips or the extracted AVI files")
    kth.add_argument(
        "--split",
        choices=("reference", "standard"),
        default="reference",
        help="persons: reference (the authors': train 11-18, validation 19-21, 23-25, 1, 4, "
        "test 22, 2, 3, 5-10) or standard (1-16 / 17-25)",
    )
    _add_frame_options(kth, grayscale=False)
    folder = source(
        "folder", "your data: SRC holds video files, or one sub-folder of frame images each"
    )
    _add_frame_options(folder, grayscale=True)
    _add_split_options(folder)
    series = source(
        "series",
        "vector time series: SRC holds CSV files or (T, D) .npy files, one per sequence",
        workers=False,
    )
    series.add_argument("--id-column", help="CSV column that names the sequence of each row")
    series.add_argument("--time-column", help="CSV column to sort the rows of a sequence by")
    series.add_argument("--columns", nargs="+", help="CSV columns to keep (default: all others)")
    _add_split_options(series)


def _add_frame_options(parser: argparse.ArgumentParser, grayscale: bool) -> None:
    parser.add_argument("--size", type=int, default=64, help="frame height and width (64)")
    parser.add_argument(
        "--resize",
        choices=("squash", "crop"),
        default="squash",
        help="squash the whole frame to a square (the reference's KTH protocol) or take the "
        "centred square crop first",
    )
    if grayscale:
        parser.add_argument("--grayscale", action="store_true", help="one channel (luma)")


def _add_split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--validation", type=float, default=0.05, help="validation share")
    parser.add_argument("--test", type=float, default=0.05, help="test share")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")


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


def run_convert(args: argparse.Namespace) -> int:
    r"""Converts SRC into the store DST and prints sequences and frames per split (JSON)."""
    from ..data.store import read_manifest

    update, close = _progress_bar()
    notes = _Notes()
    logger = logging.getLogger("seqflows")
    logger.addHandler(notes)
    started = time.perf_counter()
    try:
        if args.source == "bair":
            from ..data.bair import convert_bair

            summary = convert_bair(
                args.src,
                args.dst,
                validation=args.validation,
                workers=args.workers,
                progress=update,
            )
        elif args.source == "kth":
            from ..data.kth import convert_kth

            summary = convert_kth(
                args.src,
                args.dst,
                split=args.split,
                size=args.size,
                resize=args.resize,
                workers=args.workers,
                progress=update,
            )
        elif args.source == "folder":
            from ..data.folder import convert_folder

            summary = convert_folder(
                args.src,
                args.dst,
                size=args.size,
                grayscale=args.grayscale,
                resize=args.resize,
                validation=args.validation,
                test=args.test,
                seed=args.seed,
                workers=args.workers,
                progress=update,
            )
        else:
            from ..data.folder import convert_series

            summary = convert_series(
                args.src,
                args.dst,
                id_column=args.id_column,
                time_column=args.time_column,
                columns=args.columns,
                validation=args.validation,
                test=args.test,
                seed=args.seed,
                progress=update,
            )
    finally:
        close()
        logger.removeHandler(notes)
    seconds = time.perf_counter() - started
    manifest = read_manifest(args.dst)
    sequences = sum(split["sequences"] for split in summary.values())
    report = {
        "store": str(args.dst),
        "splits": summary,
        "frame_shape": manifest["frame_shape"],
        "skipped": manifest.get("skipped", []),
        "notes": notes.messages,
        "seconds": round(seconds, 2),
        "sequences_per_second": round(sequences / seconds, 2) if seconds > 0 else None,
    }
    print(json.dumps(report, indent=2))
    return 0

r"""``seqflows convert``: datasets from their original files into a store (see data.store).

    seqflows convert bair SRC DST       BAIR robot pushing, TFRecords read without TensorFlow
    seqflows convert kth SRC DST        KTH actions, AVI files or the six zips, PyAV
    seqflows convert folder SRC DST     your videos, or folders of frame images
    seqflows convert series SRC DST     vector time series from CSV or NPY files

Conversion is atomic per shard and resumable: run the same command again after an interruption.
It prints the number of sequences and frames per split, what was skipped, and the throughput.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

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


def _progress() -> tuple[Callable[[str], None], Callable[[], None]]:
    """A progress callback for convert_shards messages 'k/n split/shard', and a closer."""
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:  # pragma: no cover - tqdm comes with the train extra
        return (lambda message: print(message, flush=True)), (lambda: None)
    state: dict[str, Any] = {}

    def update(message: str) -> None:
        done, total = (int(part) for part in message.split()[0].split("/"))
        if "bar" not in state:
            state["bar"] = tqdm(total=total, unit="shard")
        state["bar"].set_postfix_str(message.split()[1], refresh=False)
        state["bar"].update(done - state["bar"].n)

    def close() -> None:
        if "bar" in state:
            state["bar"].close()

    return update, close


def run_convert(args: argparse.Namespace) -> int:
    r"""Converts SRC into the store DST and prints sequences and frames per split."""
    from ..data.store import read_manifest

    update, close = _progress()
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
            )
    finally:
        close()
    seconds = time.perf_counter() - started
    manifest = read_manifest(args.dst)
    sequences = sum(split["sequences"] for split in summary.values())
    report = {
        "store": str(args.dst),
        "splits": summary,
        "frame_shape": manifest["frame_shape"],
        "skipped": manifest.get("skipped", []),
        "seconds": round(seconds, 2),
        "sequences_per_second": round(sequences / seconds, 2) if seconds > 0 else None,
    }
    print(json.dumps(report, indent=2))
    return 0

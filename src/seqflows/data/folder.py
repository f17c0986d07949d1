r"""Users' own video converted into a store: folders of videos or of frames.

:func:`convert_folder` takes a folder (searched recursively) of video files (anything PyAV reads:
:data:`~seqflows.data.video.VIDEO_SUFFIXES`) and/or of folders of frame images, one folder per
sequence (:data:`~seqflows.data.video.IMAGE_SUFFIXES`, in natural order). Every video or frame
folder is one sequence and one shard of the store; its frames are prepared by
:func:`~seqflows.data.video.prepare_frames`. A video that cannot be decoded or a frame folder
whose images differ in size is skipped and reported in the manifest's ``skipped`` list.

This converter and :func:`~seqflows.data.series.convert_series` split the sequences the same
way (:func:`assign_splits`): the sequences are sorted by path (natural order), permuted by
``numpy.random.default_rng(seed)``, and the first
``round(validation N)`` of the permutation form the validation split, the next
``round(test N)`` the test split and the rest the training split. The fractions, the seed, the
number of sequences and a hash of their names are recorded in the manifest's options, so a
resume over a changed folder is refused instead of mixing two assignments.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conversion import SPLIT_METHOD, assign_splits, is_visible, names_sha1
from .store import Progress, ShardData, StoreWriter, convert_shards
from .video import (
    IMAGE_SUFFIXES,
    RESIZES,
    VIDEO_SUFFIXES,
    natural_key,
    prepare_frames,
    read_frame_folder,
    read_video,
)

__all__ = ["convert_folder", "convert_folder_item", "find_folder_items"]

FOLDER_VERSION = 1
# The series converter moved to .series (issue 25): its names still work from here, with a warning.
_MOVED_TO_SERIES = ("convert_series", "dequantize_series", "series_range")


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
        if not path.is_file() or not is_visible(path, src):
            continue
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            items[path.relative_to(src).as_posix()] = "video"
        elif suffix in IMAGE_SUFFIXES:
            items[path.parent.relative_to(src).as_posix()] = "frames"
    return [(items[name], name) for name in sorted(items, key=natural_key)]


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
        "sources_sha1": names_sha1(names),
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


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_SERIES:
        from . import series

        message = f"seqflows.data.folder.{name} moved to seqflows.data.series.{name}"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return getattr(series, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

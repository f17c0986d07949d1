r"""KTH actions (Schuldt et al., 2004) converted into a store, as the authors prepared it (Sec. 4).

The dataset is a set of AVI files ``personXX_<action>_dY_uncomp.avi``: 25 persons (01-25), six
actions (:data:`KTH_ACTIONS`), four scenarios (d1-d4), 160 x 120, 25 fps, grayscale content.
The source folder may hold the six archives as downloaded (``boxing.zip``, ...) or the extracted
AVI files, in any sub-folders (searched recursively; an extracted file wins over an archive
member of the same name). Archive members are decoded straight from the archive: each worker
extracts its one member into a temporary file, decodes it and deletes it, so no extracted copy
of the dataset is kept on disk.

Sub-sequences follow the dataset's annotation list ``00sequences.txt`` (searched in the source
folder), lines like ``person01_boxing_d1  frames  1-95, 96-185, 186-245, 246-360`` with 1-based
inclusive frame ranges (:func:`parse_kth_sequences`); every range becomes one sequence of the
store. Without the file every whole video is one sequence. Ranges that run past the end of a
video are clipped (and reported in the manifest's ``skipped`` list); a video missing from the
list is kept whole (and reported).

Frames are converted to grayscale (BT.601 luma) and resized to ``size`` x ``size`` by
:func:`~seqflows.data.video.prepare_frames`: ``resize="squash"`` is the authors' protocol
(no crop, aspect ratio squashed), with a clean uint8 conversion (no per-frame min..max stretch).

Person splits (:data:`KTH_SPLITS`), store splits ``train``, ``validation``, ``test``:

- ``"reference"``, the authors': train 11-18; validation (their "evaluation") 19, 20, 21, 23,
  24, 25, 1, 4; test 22, 2, 3, 5-10.
- ``"standard"``, used by other works: train 1-16 and test 17-25; our validation split is
  persons 15 and 16, carved out of that training part, so training is persons 1-14.

Expected numbers for the full dataset: the dataset's page announces 600 videos
(25 x 6 x 4) and 2391 sequences; the archives are widely reported to hold 599 AVI files
(``person13_handclapping_d3`` is absent). We are fairly but not fully sure of these numbers, and
the exact count of annotated ranges depends on how the irregular lines of ``00sequences.txt``
are read: :func:`convert_kth` returns the videos, sequences and frames of every split (``seqflows
convert kth`` prints them), so compare those with other works rather than trusting a quote.

References:
    | Recognizing Human Actions: A Local SVM Approach (Schuldt et al., 2004)
    | https://www.csc.kth.se/cvap/actions/
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .store import Progress, ShardData, StoreWriter, convert_shards
from .video import RESIZES, prepare_frames, read_video

__all__ = [
    "KTH_ACTIONS",
    "KTH_SPLITS",
    "convert_kth",
    "convert_kth_video",
    "find_kth_videos",
    "kth_person_split",
    "kth_tasks",
    "parse_kth_sequences",
]

KTH_ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
KTH_SPLITS: dict[str, dict[str, tuple[int, ...]]] = {
    "reference": {
        "train": tuple(range(11, 19)),
        "validation": (19, 20, 21, 23, 24, 25, 1, 4),
        "test": (22, 2, 3, *range(5, 11)),
    },
    "standard": {
        "train": tuple(range(1, 15)),
        "validation": (15, 16),
        "test": tuple(range(17, 26)),
    },
}
KTH_VERSION = 1
_NAME = re.compile(r"^person(\d+)_(" + "|".join(KTH_ACTIONS) + r")_d(\d+)(?:_uncomp)?$")
_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)")
_log = logging.getLogger(__name__)


def kth_person_split(person: int, split: str = "reference") -> str | None:
    """The store split (``train``, ``validation``, ``test``) of a person, None if in none.

    Example:
        >>> kth_person_split(4), kth_person_split(4, "standard")
        ('validation', 'train')
    """
    if split not in KTH_SPLITS:
        raise ValueError(f"unknown split rule {split!r}: choose one of {', '.join(KTH_SPLITS)}")
    for name, persons in KTH_SPLITS[split].items():
        if person in persons:
            return name
    return None


def parse_kth_sequences(path: str | os.PathLike) -> dict[str, list[tuple[int, int]]]:
    r"""The annotated sub-sequences of ``00sequences.txt``, by video stem.

    Tolerant of the file's irregularities: header and blank lines and lines without a video
    name are skipped; any whitespace (tabs or spaces) and an optional ``frames`` word may sit
    between the name and the ranges; ranges are ``a-b`` separated by commas and/or spaces.

    Returns:
        ``{"person01_boxing_d1": [(1, 95), (96, 185), ...]}``: 1-based inclusive frame ranges
        (frames ``start - 1 : stop`` of the decoded video), in the file's order.
    """
    sequences: dict[str, list[tuple[int, int]]] = {}
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    for line in text.splitlines():
        match = re.match(r"\s*(person\d+_[a-z]+_d\d+)(?:_uncomp)?(?!\d)(.*)$", line)
        if match is None:
            continue
        ranges = [(int(a), int(b)) for a, b in _RANGE.findall(match.group(2))]
        ranges = [(start, stop) for start, stop in ranges if 1 <= start <= stop]
        if ranges:
            sequences.setdefault(match.group(1), []).extend(ranges)
    return sequences


def find_kth_videos(src: str | os.PathLike) -> dict[str, str]:
    r"""The KTH videos under ``src``, by stem: a file path, or ``archive.zip::member``.

    Searches ``src`` recursively for ``person*_<action>_d*_uncomp.avi`` files and members of
    ``*.zip`` archives; an extracted file wins over an archive member of the same stem.
    """
    src = Path(src)
    if not src.is_dir():
        raise FileNotFoundError(f"KTH source folder not found: {src}")
    videos: dict[str, str] = {}
    for archive in sorted(src.rglob("*.zip")):
        try:
            with zipfile.ZipFile(archive) as opened:
                members = opened.namelist()
        except zipfile.BadZipFile as error:
            raise ValueError(f"{archive}: not a readable zip archive ({error})") from None
        for member in members:
            stem = _stem(member)
            if member.lower().endswith(".avi") and _NAME.match(stem):
                videos.setdefault(stem.removesuffix("_uncomp"), f"{archive}::{member}")
    for file in sorted(src.rglob("*.avi")):
        stem = _stem(file.name)
        if _NAME.match(stem):
            videos[stem.removesuffix("_uncomp")] = str(file)
    return dict(sorted(videos.items()))


def _stem(name: str) -> str:
    return Path(name.replace("\\", "/")).stem


def kth_tasks(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    split: str = "reference",
    size: int = 64,
    resize: str = "squash",
) -> list[tuple[str, str, dict[str, Any]]]:
    r"""One (store split, shard name, argument of :func:`convert_kth_video`) task per video.

    Videos of persons outside the split rule are left out. ``dst`` is not written; it is part
    of the signature so that every converter's tasks are made the same way.
    """
    if resize not in RESIZES:
        raise ValueError(f"unknown resize {resize!r}: choose one of {', '.join(RESIZES)}")
    kth_person_split(1, split)  # checks the rule's name
    videos = find_kth_videos(src)
    annotation = _annotation_file(src)
    sequences = parse_kth_sequences(annotation) if annotation else None
    tasks = []
    for stem, source in videos.items():
        person, action, scenario = _NAME.match(stem).groups()
        store_split = kth_person_split(int(person), split)
        if store_split is None:
            continue
        argument = {
            "source": source,
            "video": stem,
            "person": int(person),
            "action": action,
            "scenario": int(scenario),
            "ranges": None if sequences is None else sequences.get(stem),
            "annotated": sequences is not None,
            "size": size,
            "resize": resize,
        }
        tasks.append((store_split, stem, argument))
    return tasks


def _annotation_file(src: str | os.PathLike) -> Path | None:
    found = sorted(Path(src).rglob("00sequences.txt"))
    return found[0] if found else None


def _decode(source: str) -> Any:
    """read_video of a file, or of an archive member through a temporary file."""
    if "::" not in source:
        return read_video(source)
    archive, member = source.split("::", 1)
    with tempfile.TemporaryDirectory(prefix="seqflows-kth-") as folder:
        target = Path(folder) / Path(member).name
        try:
            with zipfile.ZipFile(archive) as opened, opened.open(member) as stream:
                with open(target, "wb") as output:
                    shutil.copyfileobj(stream, output)
        except (zipfile.BadZipFile, OSError) as error:  # a CRC error is a BadZipFile
            raise ValueError(f"{source}: unreadable archive member ({error})") from None
        try:
            return read_video(target)
        except ValueError as error:
            raise ValueError(str(error).replace(str(target), source)) from None


def convert_kth_video(argument: dict[str, Any]) -> ShardData:
    r"""The annotated sub-sequences of one KTH video, each uint8 (T_i, 1, size, size).

    Arguments:
        argument: A task argument from :func:`kth_tasks`.

    Returns:
        One sequence per annotated range with metadata ``{"person", "action", "scenario",
        "video", "frames": [start, stop]}`` (1-based inclusive, after clipping), or, for an
        unreadable video, no sequence and a report in ``skipped``.
    """
    source, stem = argument["source"], argument["video"]
    try:
        frames = _decode(source)
    except (ValueError, FileNotFoundError) as error:
        return ShardData([], sources=[source], skipped=[f"{stem}: skipped, {error}"])
    frames = prepare_frames(frames, argument["size"], True, argument["resize"])  # (T, 1, S, S)
    skipped = []
    ranges = argument["ranges"]
    if ranges is None:
        ranges = [(1, len(frames))]
        if argument["annotated"]:
            skipped.append(f"{stem}: not in 00sequences.txt, kept whole (1-{len(frames)})")
    sequences, metadata = [], []
    for start, stop in ranges:
        end = min(stop, len(frames))
        if end < stop:
            skipped.append(
                f"{stem}: range {start}-{stop} clipped to the video's {len(frames)} frames"
                if end >= start
                else f"{stem}: range {start}-{stop} skipped, the video has {len(frames)} frames"
            )
        if end < start:
            continue
        sequences.append(frames[start - 1 : end])
        metadata.append(
            {
                "person": argument["person"],
                "action": argument["action"],
                "scenario": argument["scenario"],
                "video": stem,
                "frames": [start, end],
            }
        )
    return ShardData(sequences, metadata, sources=[source], skipped=skipped)


def convert_kth(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    split: str = "reference",
    size: int = 64,
    resize: str = "squash",
    workers: int = 1,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, dict[str, int]]:
    r"""Converts KTH into a store at ``dst``: grayscale (1, size, size) frames, person splits.

    Resumable: shards (one per video) already in ``dst`` are kept. Without ``00sequences.txt``
    every whole video is one sequence, and a warning (logger ``seqflows.data.kth``) says so.

    Arguments:
        src: Folder with the six action archives or the extracted AVI files (and
            ``00sequences.txt``).
        dst: The store folder.
        split: The person split rule, ``"reference"`` (the authors') or ``"standard"``.
        size: Side of the square frames.
        resize: ``"squash"`` (the authors') or ``"crop"`` (see
            :func:`~seqflows.data.video.prepare_frames`).
        workers: Worker processes.
        progress: Called with a :class:`~seqflows.data.store.Progress` before the first shard
            and after each one.

    Returns:
        ``{split: {"videos", "sequences", "frames"}}`` for the whole store; unreadable videos
        and clipped ranges are in the manifest's ``skipped`` list.
    """
    tasks = kth_tasks(src, dst, split, size, resize)
    if not tasks:
        raise FileNotFoundError(f"no KTH videos (person*_<action>_d*_uncomp.avi) under {src}")
    annotation = _annotation_file(src)
    options = {
        "split": split,
        "size": size,
        "resize": resize,
        "grayscale": "BT.601 luma",
        "sequences": "00sequences.txt" if annotation else "whole videos",
    }
    if annotation is None:
        _log.warning("no 00sequences.txt under %s: every whole video is one sequence", src)
    writer = StoreWriter(dst, "kth", KTH_VERSION, (1, size, size), options)
    summary = convert_shards(writer, tasks, convert_kth_video, workers, progress)
    for name, shards in writer.manifest["splits"].items():
        summary[name]["videos"] = sum(1 for shard in shards if shard["lengths"])
    return summary

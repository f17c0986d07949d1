r"""BAIR robot pushing (softmotion30_44k, Ebert et al., 2017) without TensorFlow (Sec. 4).

The original data are TFRecord files ``softmotion30_44k/{train,test}/traj_<a>_to_<b>.tfrecords``
(inside ``bair_robot_pushing_dataset_v0.tar``); each record is one ``tf.train.Example``
trajectory of 30 frames with the features ``'<i>/image_aux1/encoded'`` (raw RGB bytes, 64 x 64 x
3 = 12,288, height-width-channel, not PNG), ``'<i>/action'`` (4 floats) and
``'<i>/endeffector_pos'`` (3 floats). :func:`convert_bair` writes them into a store
(:mod:`.store`): frames uint8 (30, 3, 64, 64), channel-first, the raw bytes unchanged (a clean
conversion: the authors' PNG export stretched each frame's min..max to 0..255, so their pixels
differ slightly), and the arrays ``action`` (30, 4) and ``endeffector_pos`` (30, 3), float32.

Sources, searched in this order in the folder ``src``: ``softmotion30_44k/{train,test}/``,
``{train,test}/``, then the tar ``bair_robot_pushing_dataset_v0.tar`` (or ``src`` may be the
tar itself). A tar is not extracted: the records are read in place from the members of the
(uncompressed) tar, so no second 30 GB copy is needed; a compressed tar is refused.

Splits (one shard per TFRecord file, named after the file's stem):

- ``test``: every file of ``test/`` (256 trajectories; the authors evaluated on it).
- ``validation``: the last whole files of ``train/``, in natural order of their names
  (``traj_256_to_511`` after ``traj_0_to_255``), the fewest that hold at least ``validation``
  framed records (it can hold more when ``validation`` is not a multiple of the file size).
- ``train``: the other files of ``train/``.

With the real data and ``validation=256`` (files of 256 trajectories): train 43,008, validation
256 (``traj_43008_to_43263``), test 256 trajectories, 30 frames each. Corrupt records (bad CRC,
truncated file, a frame of the wrong size, another number of frames) are skipped and listed in
the manifest's ``skipped`` with file, byte offset and reason.

References:
    | Self-Supervised Visual Planning with Temporal Skip Connections (Ebert et al., 2017)
    | https://arxiv.org/abs/1710.05268
"""

from __future__ import annotations

import os
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .store import Progress, ShardData, StoreWriter, convert_shards
from .tfrecord import Record, count_records, iter_records, parse_example

__all__ = [
    "BAIR_FRAMES",
    "BAIR_FRAME_SHAPE",
    "BAIR_TAR",
    "BAIR_URL",
    "BairFile",
    "bair_tasks",
    "convert_bair",
    "convert_bair_file",
]

BAIR_URL = "http://rail.eecs.berkeley.edu/datasets/bair_robot_pushing_dataset_v0.tar"
BAIR_TAR = "bair_robot_pushing_dataset_v0.tar"
BAIR_FRAME_SHAPE = (3, 64, 64)  # (C, H, W)
BAIR_FRAMES = 30  # frames per trajectory in the real data
VERSION = 1

_IMAGE = "{}/image_aux1/encoded"
_ARRAYS = {"action": 4, "endeffector_pos": 3}  # name: values per frame
_IMAGE_KEY = re.compile(r"^(\d+)/image_aux1/encoded$")
_MEMBER = re.compile(r"(?:^|/)(train|test)/([^/]+)\.tfrecords$")
_EXPECTED = (
    "softmotion30_44k/train/*.tfrecords and softmotion30_44k/test/*.tfrecords, "
    f"train/ and test/ directly, or {BAIR_TAR} (from {BAIR_URL})"
)


@dataclass(frozen=True)
class BairFile:
    r"""One TFRecord file of BAIR to convert (the picklable argument of :func:`convert_bair_file`).

    Attributes:
        path: The ``.tfrecords`` file, or the tar that holds it.
        name: The file relative to the dataset, e.g. ``train/traj_0_to_255.tfrecords``.
        source: The file in reports (``path``, or ``tar:member``).
        start: Byte offset of the file in ``path`` (0, or the member's data in the tar).
        length: Bytes of the file (None: to the end of ``path``).
        frames: Frames every trajectory must have (None: those of the file's first record).
    """

    path: str
    name: str
    source: str
    start: int = 0
    length: int | None = None
    frames: int | None = None


def _natural(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _from_folders(src: Path) -> dict[str, list[BairFile]] | None:
    for root in (src / "softmotion30_44k", src):
        found = {split: sorted((root / split).glob("*.tfrecords")) for split in ("train", "test")}
        if not any(found.values()):
            continue
        for split, files in found.items():
            if not files:
                raise FileNotFoundError(
                    f"{root / split}: no *.tfrecords (incomplete BAIR extraction?); "
                    f"expected {_EXPECTED}"
                )
        return {
            split: [BairFile(str(f), f"{split}/{f.name}", str(f)) for f in files]
            for split, files in found.items()
        }
    return None


def _from_tar(tar: Path) -> dict[str, list[BairFile]]:
    size = tar.stat().st_size
    with open(tar, "rb") as stream:
        magic = stream.read(6)
    if magic.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")):
        raise DataError(
            f"{tar}: not an uncompressed tar (compressed); extract it (tar -xf) and pass the "
            "folder"
        )
    try:
        with tarfile.open(tar, "r:") as archive:  # members are read in place
            members = archive.getmembers()
    except tarfile.ReadError as error:
        raise DataError(
            f"{tar}: truncated download or not a tar ({error}); download it again"
        ) from None
    found: dict[str, list[BairFile]] = {"train": [], "test": []}
    for member in members:
        match = _MEMBER.search(member.name)
        if not match or not member.isfile():
            continue
        if member.offset_data + member.size > size:
            raise DataError(
                f"{tar}: truncated download ({member.name} ends at byte "
                f"{member.offset_data + member.size}, the file has {size}); download it again"
            )
        split = match.group(1)
        name = f"{split}/{match.group(2)}.tfrecords"
        source = f"{tar}:{member.name}"
        found[split].append(BairFile(str(tar), name, source, member.offset_data, member.size))
    for split, files in found.items():
        if not files:
            raise FileNotFoundError(f"{tar}: no {split}/*.tfrecords member; expected {_EXPECTED}")
    return found


def _locate(src: str | os.PathLike) -> dict[str, list[BairFile]]:
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"BAIR source not found: {src} (expected {_EXPECTED})")
    if src.is_file():
        return _from_tar(src)
    found = _from_folders(src)
    if found is not None:
        return found
    tars = [src / BAIR_TAR] if (src / BAIR_TAR).is_file() else sorted(src.glob("*.tar"))
    if len(tars) == 1:
        return _from_tar(tars[0])
    raise FileNotFoundError(f"{src}: no BAIR data; expected {_EXPECTED}")


def _frame_count(features: dict) -> int | None:
    r"""Frames of a parsed trajectory (keys 0..T-1), or None when its keys are not 0..T-1."""
    indices = sorted(int(m.group(1)) for key in features if (m := _IMAGE_KEY.match(key)))
    return len(indices) if indices == list(range(len(indices))) else None


def _records(file: BairFile, skipped: list[str] | None = None) -> Iterator[Record]:
    return iter_records(
        file.path, "skip", skipped, start=file.start, length=file.length, name=file.source
    )


def _detect_frames(files: list[BairFile]) -> int:
    for file in files:
        for record in _records(file):
            try:
                count = _frame_count(parse_example(record.payload))
            except ValueError:
                continue
            if count:
                return count
    raise DataError(
        f"no readable BAIR trajectory in {', '.join(f.source for f in files[:3])}...: "
        f"no record with the features {_IMAGE.format('<i>')!r}"
    )


def bair_tasks(
    src: str | os.PathLike, validation: int = 256, frames: int | None = None
) -> list[tuple[str, str, BairFile]]:
    r"""The shards to convert: (split, shard name, :class:`BairFile`), one per TFRecord file.

    Arguments:
        src: Folder with ``softmotion30_44k/{train,test}/`` or ``{train,test}/``, or with the
            tar ``bair_robot_pushing_dataset_v0.tar``, or that tar itself (read in place).
        validation: Trajectories for the validation split: the fewest last training files (in
            natural order) holding at least this many records; 0 for none.
        frames: Frames per trajectory (None: those of the first readable training record).

    Raises:
        FileNotFoundError: ``src`` does not exist or holds no BAIR data (the message says what
            was expected).
    """
    if validation < 0:
        raise ValueError(f"validation must be >= 0, got {validation}")
    found = _locate(src)
    train = sorted(found["train"], key=lambda f: _natural(f.name))
    test = sorted(found["test"], key=lambda f: _natural(f.name))
    held_out, count = 0, 0
    while count < validation and held_out < len(train):
        held_out += 1
        file = train[-held_out]
        count += count_records(file.path, start=file.start, length=file.length)
    if validation and (count < validation or held_out == len(train)):
        raise ConfigError(
            f"validation={validation} would take all {len(train)} training files "
            f"({count} trajectories); choose a smaller validation"
        )
    frames = frames or _detect_frames(train + test)
    splits = {
        "train": train[: len(train) - held_out],
        "validation": train[len(train) - held_out :],
        "test": test,
    }
    return [
        (split, Path(file.name).stem, replace(file, frames=frames))
        for split, files in splits.items()
        for file in files
    ]


def _trajectory(features: dict, frames: int) -> tuple[np.ndarray, dict[str, np.ndarray]] | str:
    r"""Frames uint8 (T, 3, 64, 64) and arrays {name: (T, n)} of one record, or what is wrong."""
    count = _frame_count(features)
    if not count or count != frames:
        if count == 0:
            return f"no {_IMAGE.format('<i>')!r} features (not a BAIR trajectory)"
        found = "frame keys not numbered 0..T-1" if count is None else f"{count} frames"
        return f"{found}, {frames} expected"
    height, width = BAIR_FRAME_SHAPE[1:]
    size = height * width * 3
    images = []
    arrays: dict[str, list[np.ndarray]] = {name: [] for name in _ARRAYS}
    for t in range(frames):
        image = features[_IMAGE.format(t)]
        if not isinstance(image, list) or len(image) != 1 or len(image[0]) != size:
            got = f"{len(image[0])} bytes" if isinstance(image, list) and image else "no bytes"
            if isinstance(image, list) and len(image) > 1:
                got = f"{len(image)} images"
            return f"frame {t}: {_IMAGE.format(t)!r} has {got}, {size} (64*64*3 raw RGB) expected"
        images.append(image[0])
        for name, expected in _ARRAYS.items():
            values = features.get(f"{t}/{name}")
            if not isinstance(values, np.ndarray) or values.shape != (expected,):
                got = "missing" if values is None else f"{len(values)} values"
                return f"frame {t}: '{t}/{name}' {got}, {expected} floats expected"
            arrays[name].append(values.astype(np.float32))
    pixels = np.frombuffer(b"".join(images), np.uint8).reshape(frames, height, width, 3)
    video = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))  # (T, H, W, C) -> (T, C, H, W)
    return video, {name: np.stack(values) for name, values in arrays.items()}  # (T, n)


def convert_bair_file(file: BairFile) -> ShardData:
    r"""The trajectories of one TFRecord file: frames uint8 (T, 3, 64, 64), actions, positions.

    Every record is CRC-checked and parsed; a corrupt record, a frame that is not 12,288 raw
    bytes, a missing action or position, or another number of frames than ``file.frames`` is
    skipped and reported in ``skipped`` ("FILE @ OFFSET: record N: reason").

    Returns:
        The shard: sequences (T, 3, 64, 64), arrays ``action`` (T, 4) and ``endeffector_pos``
        (T, 3) float32, metadata ``{"file", "record", "offset"}`` per trajectory.
    """
    skipped: list[str] = []
    data = ShardData(sequences=[], sources=[file.source], skipped=skipped)
    arrays: dict[str, list[np.ndarray]] = {name: [] for name in _ARRAYS}
    frames = file.frames
    for record in _records(file, skipped):
        try:
            features = parse_example(record.payload)
        except ValueError as error:
            result: tuple | str = f"not a tf.train.Example ({error})"
        else:
            frames = frames or _frame_count(features) or 0
            result = _trajectory(features, frames)
        if isinstance(result, str):
            skipped.append(f"{file.source} @ {record.offset}: record {record.index}: {result}")
            continue
        video, values = result
        data.sequences.append(video)
        data.metadata.append({"file": file.name, "record": record.index, "offset": record.offset})
        for name, value in values.items():
            arrays[name].append(value)
    if data.sequences:  # the store cannot concatenate empty arrays
        data.arrays = arrays
    return data


def convert_bair(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    validation: int = 256,
    workers: int = 1,
    progress: Callable[[Progress], None] | None = None,
) -> dict[str, dict[str, int]]:
    r"""Converts BAIR into the store ``dst`` (resumable: converted files are skipped).

    Arguments:
        src: The BAIR data (see :func:`bair_tasks`).
        dst: The store folder.
        validation: Trajectories carved out of the end of train (see :func:`bair_tasks`).
        workers: Processes converting files in parallel.
        progress: Called with a :class:`~seqflows.data.store.Progress` before the first file
            and after each one.

    Returns:
        Sequences and frames per split; expected with the real data: train 43,008, validation
        256, test 256 trajectories of 30 frames. Skipped records are listed in the
        manifest's ``skipped`` (:func:`.store.read_manifest`).
    """
    tasks = bair_tasks(src, validation)
    writer = StoreWriter(
        dst, "bair", VERSION, BAIR_FRAME_SHAPE, options={"validation": validation}
    )
    return convert_shards(writer, tasks, convert_bair_file, workers, progress)

"""Videos, frame folders, KTH, users' folders and series converted into stores: round trips."""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from seqflows.app.cli import main
from seqflows.data.conversion import assign_splits
from seqflows.data.folder import convert_folder, find_folder_items
from seqflows.data.kth import (
    KTH_SPLITS,
    convert_kth,
    find_kth_videos,
    kth_person_split,
    kth_tasks,
    parse_kth_sequences,
)
from seqflows.data.series import convert_series, dequantize_series, series_range
from seqflows.data.store import Progress, open_dataset, read_manifest
from seqflows.data.video import natural_key, prepare_frames, read_frame_folder, read_video

KTH_SIZE = 16
KTH_FRAMES = 12


def write_video(path: Path, frames: np.ndarray) -> Path:
    """A lossless FFV1 AVI of uint8 RGB frames (T, H, W, 3)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def gray_video(seed: int, num_frames: int = KTH_FRAMES, height: int = 30, width: int = 40):
    """KTH-like frames: gray content stored as RGB, (T, H, W, 3), distinct per seed."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width))
    frames = (base[None] + 7 * np.arange(num_frames)[:, None, None]) % 256
    return np.repeat(frames[..., None], 3, axis=-1).astype(np.uint8)


def color_frames(seed: int, num_frames: int = 5, height: int = 12, width: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8)


def png_bytes(values: np.ndarray, size: tuple[int, int] | None = None) -> bytes:
    """A 16-bit PNG of uint16 values (H, W) grey or (H, W, 3) RGB, written by hand (Pillow
    writes no 16-bit RGB); ``size`` (H, W) overrides the size the header claims."""
    height, width = size or values.shape[:2]
    color_type = 2 if values.ndim == 3 else 0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)  # filter 0
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(rows)), chunk(b"IEND", b"")]
    )


def convert_command(capsys: pytest.CaptureFixture, *arguments: object) -> tuple[int, dict, str]:
    """Runs ``seqflows convert ARGUMENTS``: (exit status, printed JSON report or {}, stderr)."""
    status = main(["convert", *map(str, arguments)])
    captured = capsys.readouterr()
    return status, json.loads(captured.out) if status == 0 else {}, captured.err


SEQUENCES_TXT = """\
Sequences of the KTH action database (header line)

person11_boxing_d1\t\tframes\t1-4, 5-8, 9-12
person19_boxing_d2   frames 1-6,7-12
person02_handwaving_d3\tframes\t1-5, 6-14
person15_walking_d4\t\tframes\t2-11
person22_jogging_d1\t\tframes\t1-12
person11_jogging_d2 frames 1-3 , 4-6, 7 - 9,
person04_boxing_d1\t\tframes\t1-12

"""

# video stem -> (seed, source): "file" (extracted AVI), "zip" (in jogging.zip), "corrupt"
KTH_VIDEOS = {
    "person11_boxing_d1": (1, "file"),
    "person19_boxing_d2": (2, "file"),
    "person02_handwaving_d3": (3, "file"),
    "person15_walking_d4": (4, "file"),
    "person17_running_d1": (5, "file"),  # not in 00sequences.txt: kept whole
    "person22_jogging_d1": (6, "zip"),
    "person11_jogging_d2": (7, "zip"),
    "person04_boxing_d1": (8, "corrupt"),
}


@pytest.fixture(scope="module")
def kth_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("kth")
    (src / "00sequences.txt").write_text(SEQUENCES_TXT)
    archive = zipfile.ZipFile(src / "jogging.zip", "w")
    for stem, (seed, kind) in KTH_VIDEOS.items():
        action = stem.split("_")[1]
        path = src / "extracted" / action / f"{stem}_uncomp.avi"
        if kind == "corrupt":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"RIFF\x00\x00\x00\x00AVI not a video" * 20)
            continue
        write_video(path, gray_video(seed))
        if kind == "zip":
            archive.write(path, f"jogging/{path.name}")
            path.unlink()
    archive.close()
    return src


def expected_kth(stem: str, size: int = KTH_SIZE, resize: str = "squash") -> np.ndarray:
    return prepare_frames(gray_video(KTH_VIDEOS[stem][0]), size, True, resize)


@pytest.fixture(scope="module")
def kth_store(kth_source: Path, tmp_path_factory: pytest.TempPathFactory):
    dst = tmp_path_factory.mktemp("kth-store") / "store"
    reports: list[Progress] = []
    summary = convert_kth(kth_source, dst, "reference", size=KTH_SIZE, progress=reports.append)
    return dst, summary, reports


# Frames


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["frame10.png", "frame2.png", "frame1.png", "frame100.png"]
    assert sorted(names, key=natural_key) == [
        "frame1.png",
        "frame2.png",
        "frame10.png",
        "frame100.png",
    ]


def test_grayscale_is_bt601_luma() -> None:
    primaries = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]])
    frames = primaries.astype(np.uint8).reshape(1, 1, 5, 3)
    gray = prepare_frames(frames, (1, 5), grayscale=True)
    assert gray.shape == (1, 1, 1, 5) and gray.dtype == np.uint8
    assert gray.ravel().tolist() == [76, 150, 29, 255, 0]
    frames = color_frames(0)
    luma = np.clip(np.rint(frames @ np.array([0.299, 0.587, 0.114])), 0, 255)
    np.testing.assert_array_equal(prepare_frames(frames, (12, 16), True)[:, 0], luma)
    np.testing.assert_array_equal(prepare_frames(frames, (12, 16)), frames.transpose(0, 3, 1, 2))


def test_squash_keeps_the_whole_frame_crop_the_centre() -> None:
    bands = np.repeat(np.array([0, 60, 120, 180], np.uint8), 10)  # 4 bands of 10 columns
    frames = np.repeat(np.broadcast_to(bands, (1, 20, 40))[..., None], 3, axis=-1)
    squashed = prepare_frames(frames, (10, 4), grayscale=True, resize="squash")
    cropped = prepare_frames(frames, (10, 4), grayscale=True, resize="crop")
    assert squashed.shape == cropped.shape == (1, 1, 10, 4)
    assert (squashed[0, 0] == [0, 60, 120, 180]).all()  # every band, one column each
    assert (cropped[0, 0] == [60, 60, 120, 120]).all()  # columns 16-23 only
    square = prepare_frames(frames, 5, grayscale=True, resize="crop")  # columns 10-29
    assert (square[0, 0] == [60, 60, 90, 120, 120]).all()  # area filter: 90 = mean(60, 120)
    tall = prepare_frames(frames.transpose(0, 2, 1, 3), (4, 10), True, "crop")  # rows 16-23
    assert (tall[0, 0, :, 0] == [60, 60, 120, 120]).all()


def test_prepare_frames_checks_its_arguments() -> None:
    frames = color_frames(0)
    with pytest.raises(ValueError, match="uint8 RGB"):
        prepare_frames(frames.astype(np.float32), 8)
    with pytest.raises(ValueError, match="unknown resize 'pad'"):
        prepare_frames(frames, 8, resize="pad")
    with pytest.raises(ValueError, match="size must be"):
        prepare_frames(frames, (0, 8))


def test_read_video_round_trip_and_errors(tmp_path: Path) -> None:
    frames = color_frames(1)
    np.testing.assert_array_equal(read_video(write_video(tmp_path / "a.avi", frames)), frames)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(ValueError, match=r"bad\.mp4: unreadable video"):
        read_video(bad)
    data = (tmp_path / "a.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"cut\.avi"):
        read_video(tmp_path / "cut.avi")
    with pytest.raises(FileNotFoundError, match="missing.avi"):
        read_video(tmp_path / "missing.avi")


def test_read_frame_folder_natural_order_and_mixed_sizes(tmp_path: Path) -> None:
    for t in range(11):  # frame0.png ... frame10.png, pixel values t
        Image.fromarray(np.full((4, 6, 3), t, np.uint8)).save(tmp_path / f"frame{t}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    frames = read_frame_folder(tmp_path)
    assert frames.shape == (11, 4, 6, 3) and frames[:, 0, 0, 0].tolist() == list(range(11))
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(tmp_path / "frame11.png")
    with pytest.raises(ValueError, match=r"mixed sizes: frame0.png is \(4, 6\), frame11.png is"):
        read_frame_folder(tmp_path)


def test_high_bit_depth_frames_are_scaled_not_saturated(tmp_path: Path) -> None:
    grey = np.linspace(0, 59850, 4 * 6).reshape(4, 6).astype(np.uint16)
    grey[0, :3] = [257, 32896, 65535]
    (tmp_path / "grey").mkdir()
    (tmp_path / "grey" / "f0.png").write_bytes(png_bytes(grey))
    Image.fromarray(grey[::-1].copy()).save(tmp_path / "grey" / "f1.png")  # Pillow's I;16
    frames = read_frame_folder(tmp_path / "grey")
    expected = np.rint(grey.astype(float) * 255 / 65535).astype(np.uint8)  # 59850: 233, 257: 1
    np.testing.assert_array_equal(frames[0], np.repeat(expected[..., None], 3, axis=-1))
    np.testing.assert_array_equal(frames[1, ..., 0], expected[::-1])
    assert len(np.unique(frames)) == len(np.unique(expected)) > 3  # not {0, 203, 255}
    # 16-bit colour: Pillow keeps the high byte, within one level of the rounded scaling.
    rgb = np.random.default_rng(0).integers(0, 65536, (4, 6, 3)).astype(np.uint16)
    (tmp_path / "rgb").mkdir()
    (tmp_path / "rgb" / "f0.png").write_bytes(png_bytes(rgb))
    (frame,) = read_frame_folder(tmp_path / "rgb")
    np.testing.assert_array_equal(frame, rgb // 256)
    assert np.abs(frame - np.rint(rgb.astype(float) * 255 / 65535)).max() <= 1
    # A 12-bit PGM (Pillow maps its maximum to 65535) and what cannot be scaled.
    (tmp_path / "pgm").mkdir()
    twelve = np.array([[0, 1000, 2048, 4095]], ">u2")
    (tmp_path / "pgm" / "f0.pgm").write_bytes(b"P5\n4 1\n4095\n" + twelve.tobytes())
    (frame,) = read_frame_folder(tmp_path / "pgm")
    assert np.abs(frame[0, :, 0] - np.rint(twelve[0].astype(float) * 255 / 4095)).max() <= 1
    (tmp_path / "float").mkdir()
    Image.fromarray(np.full((2, 2), 0.5, np.float32)).save(tmp_path / "float" / "f0.tif")
    with pytest.raises(ValueError, match=r"float.*unreadable image f0.tif.*floating-point"):
        read_frame_folder(tmp_path / "float")
    (tmp_path / "int32").mkdir()
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(tmp_path / "int32" / "f0.tif")
    with pytest.raises(ValueError, match=r"f0.tif \(32-bit integer pixels from 0 to 70000"):
        read_frame_folder(tmp_path / "int32")


def test_a_decompression_bomb_is_skipped_and_reported(
    user_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    bomb = user_folder / "frames" / "bomb"
    bomb.mkdir()
    data = png_bytes(np.zeros((1, 1), np.uint16), size=(40000, 40000))
    assert len(data) < 200
    (bomb / "f0.png").write_bytes(data)
    status, report, _ = convert_command(
        capsys, "folder", user_folder, tmp_path / "store", "--size", "8", "--test", "0"
    )
    assert status == 0
    assert sum(split["sequences"] for split in report["splits"].values()) == 7
    (skipped,) = report["skipped"]
    assert "frames/bomb" in skipped and "f0.png" in skipped and "decompression bomb" in skipped
    assert read_manifest(tmp_path / "store")["skipped"] == [skipped]


# KTH


def test_parse_kth_sequences_is_tolerant(kth_source: Path) -> None:
    sequences = parse_kth_sequences(kth_source / "00sequences.txt")
    assert sequences["person11_boxing_d1"] == [(1, 4), (5, 8), (9, 12)]
    assert sequences["person19_boxing_d2"] == [(1, 6), (7, 12)]
    assert sequences["person11_jogging_d2"] == [(1, 3), (4, 6), (7, 9)]
    assert len(sequences) == 7 and "person17_running_d1" not in sequences


def test_person_splits() -> None:
    for rule, splits in KTH_SPLITS.items():
        persons = sorted(p for members in splits.values() for p in members)
        assert persons == list(range(1, 26)), rule  # every person in exactly one split
    reference = {p: kth_person_split(p) for p in range(1, 26)}
    assert [p for p, s in reference.items() if s == "train"] == list(range(11, 19))
    assert [p for p, s in reference.items() if s == "validation"] == [1, 4, 19, 20, 21, 23, 24, 25]
    assert [p for p, s in reference.items() if s == "test"] == [2, 3, 5, 6, 7, 8, 9, 10, 22]
    standard = {p: kth_person_split(p, "standard") for p in range(1, 26)}
    assert [p for p, s in standard.items() if s == "train"] == list(range(1, 15))
    assert [p for p, s in standard.items() if s == "validation"] == [15, 16]
    assert [p for p, s in standard.items() if s == "test"] == list(range(17, 26))
    with pytest.raises(ValueError, match="unknown split rule 'other'"):
        kth_person_split(1, "other")


def test_find_kth_videos_in_folders_and_archives(kth_source: Path) -> None:
    videos = find_kth_videos(kth_source)
    assert sorted(videos) == sorted(KTH_VIDEOS)
    assert videos["person22_jogging_d1"].endswith(
        "jogging.zip::jogging/person22_jogging_d1_uncomp.avi"
    )
    tasks = kth_tasks(kth_source, "unused", "standard")
    splits = {name: split for split, name, _ in tasks}
    assert (
        splits["person15_walking_d4"] == "validation" and splits["person17_running_d1"] == "test"
    )
    assert splits["person04_boxing_d1"] == "train"
    with pytest.raises(FileNotFoundError, match="KTH source folder not found"):
        find_kth_videos(kth_source / "nowhere")


def test_kth_store_round_trip(kth_store) -> None:
    dst, summary, reports = kth_store
    manifest = read_manifest(dst)
    assert manifest["converter"] == "kth" and manifest["frame_shape"] == [1, KTH_SIZE, KTH_SIZE]
    persons = {
        split: sorted({m["person"] for s in shards for m in s["metadata"]})
        for split, shards in manifest["splits"].items()
    }
    assert persons == {"train": [11, 15, 17], "validation": [19], "test": [2, 22]}
    checked = 0
    for split in ("train", "validation", "test"):
        data = open_dataset(dst, split)
        metadata = [m for shard in manifest["splits"][split] for m in shard["metadata"]]
        assert len(data) == len(metadata) == summary[split]["sequences"]
        for n, item in enumerate(metadata):
            start, stop = item["frames"]
            expected = expected_kth(item["video"])[start - 1 : stop]
            np.testing.assert_array_equal(data[n].numpy(), expected)
            person, action, scenario = item["video"].split("_")
            assert item["person"] == int(person[6:]) and item["action"] == action
            assert item["scenario"] == int(scenario[1:])
            checked += 1
    assert checked == 8 + 2 + 3  # person04_boxing_d1 (corrupt) is out
    assert summary == {
        "train": {"sequences": 8, "frames": 12 + 9 + 10 + 12, "videos": 4},
        "validation": {"sequences": 2, "frames": 12, "videos": 1},
        "test": {"sequences": 3, "frames": 12 + 12, "videos": 2},
    }
    assert reports[0] == Progress(0, len(KTH_VIDEOS))  # before the first shard
    assert [(report.done, report.total) for report in reports[1:]] == [
        (done, len(KTH_VIDEOS)) for done in range(1, len(KTH_VIDEOS) + 1)
    ]
    assert sorted(report.shard for report in reports[1:]) == sorted(KTH_VIDEOS)


def test_kth_reports_corrupt_and_clipped(kth_store) -> None:
    dst, _, _ = kth_store
    skipped = read_manifest(dst)["skipped"]
    assert any("person04_boxing_d1: skipped" in s and "unreadable video" in s for s in skipped)
    assert any("person02_handwaving_d3: range 6-14 clipped" in s for s in skipped)
    clipped = [m for m in read_manifest(dst)["splits"]["test"][0]["metadata"]]
    assert [m["frames"] for m in clipped] == [[1, 5], [6, 12]]


def test_kth_resume_converts_nothing(kth_source: Path, kth_store) -> None:
    dst, summary, _ = kth_store
    before = {p: p.stat().st_mtime_ns for p in dst.rglob("*.npy")}
    reports: list[Progress] = []
    assert convert_kth(kth_source, dst, "reference", KTH_SIZE, progress=reports.append) == summary
    # Only the unreadable video is tried again (a failed shard is not recorded as done).
    assert reports == [Progress(0, 1), Progress(1, 1, "validation", "person04_boxing_d1")]
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*.npy")} == before
    with pytest.raises(ValueError, match="other settings"):
        convert_kth(kth_source, dst, "standard", KTH_SIZE)


def test_kth_standard_split_with_two_workers(kth_source: Path, tmp_path: Path) -> None:
    summary = convert_kth(kth_source, tmp_path, "standard", 8, "crop", workers=2)
    manifest = read_manifest(tmp_path)
    persons = {
        split: sorted({m["person"] for s in shards for m in s["metadata"]})
        for split, shards in manifest["splits"].items()
    }
    assert persons == {"train": [2, 11], "validation": [15], "test": [17, 19, 22]}
    assert summary["test"]["sequences"] == 1 + 2 + 1  # person17 kept whole
    whole = open_dataset(tmp_path, "test")[0].numpy()
    np.testing.assert_array_equal(whole, expected_kth("person17_running_d1", 8, "crop"))


def test_kth_two_workers_equal_one(kth_source: Path, kth_store, tmp_path: Path) -> None:
    dst, summary, _ = kth_store
    assert convert_kth(kth_source, tmp_path, "reference", KTH_SIZE, workers=2) == summary
    one, two = read_manifest(dst), read_manifest(tmp_path)
    assert one["splits"] == two["splits"]
    assert sorted(one["skipped"]) == sorted(two["skipped"])
    for path in dst.rglob("*.frames.npy"):
        np.testing.assert_array_equal(np.load(path), np.load(tmp_path / path.relative_to(dst)))


def test_convert_kth_command_exits_0_and_prints_its_summary(
    kth_source: Path, kth_store, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _, summary, _ = kth_store
    status, report, err = convert_command(
        capsys, "kth", kth_source, tmp_path / "store", "--size", KTH_SIZE, "--workers", "2"
    )
    assert status == 0 and report["splits"] == summary  # videos, sequences, frames per split
    assert report["splits"]["train"] == {"sequences": 8, "frames": 43, "videos": 4}
    assert report["frame_shape"] == [1, KTH_SIZE, KTH_SIZE]
    assert any("person04_boxing_d1: skipped" in line for line in report["skipped"])
    # progress with the time left; a line, not a redrawn bar, where stderr is not a terminal
    assert f"convert: {len(KTH_VIDEOS)}/{len(KTH_VIDEOS)} shards (100%)" in err
    assert " left" in err and "\r" not in err
    (kth_source / "00sequences.txt").rename(kth_source / "sequences.bak")
    try:
        status, report, _ = convert_command(
            capsys, "kth", kth_source, tmp_path / "whole", "--size", 8, "--split", "standard"
        )
    finally:
        (kth_source / "sequences.bak").rename(kth_source / "00sequences.txt")
    assert status == 0 and report["splits"]["test"]["sequences"] == 3  # one per whole video
    assert any("no 00sequences.txt" in note for note in report["notes"])


# Users' folders


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    src = tmp_path / "clips"
    for n in range(4):
        write_video(src / f"video{n}.avi", color_frames(10 + n))
    for n in range(3):
        folder = src / "frames" / f"clip{n}"
        folder.mkdir(parents=True)
        for t, frame in enumerate(color_frames(20 + n, num_frames=4)):
            Image.fromarray(frame).save(folder / f"img{t}.png")
    return src


def test_folder_round_trip_is_pixel_exact(user_folder: Path, tmp_path: Path) -> None:
    dst = tmp_path / "store"
    reports: list[Progress] = []
    summary = convert_folder(
        user_folder, dst, (12, 16), validation=0.2, test=0.2, progress=reports.append
    )
    items = find_folder_items(user_folder)
    splits = assign_splits(len(items), 0.2, 0.2, seed=0)
    assert splits.count("validation") == 1 and splits.count("test") == 1
    manifest = read_manifest(dst)
    assert manifest["options"]["seed"] == 0 and manifest["options"]["count"] == 7
    assert sum(counts["sequences"] for counts in summary.values()) == 7
    for split in ("train", "validation", "test"):
        data = open_dataset(dst, split)
        metadata = [m for shard in manifest["splits"][split] for m in shard["metadata"]]
        assert [m["source"] for m in metadata] == [
            name for (_, name), s in zip(items, splits, strict=True) if s == split
        ]
        for n, item in enumerate(metadata):
            name = item["source"]
            seed = 10 + int(name[-5]) if item["kind"] == "video" else 20 + int(name[-1])
            frames = color_frames(seed, num_frames=5 if item["kind"] == "video" else 4)
            np.testing.assert_array_equal(data[n].numpy(), frames.transpose(0, 3, 1, 2))
    assert [report.done for report in reports] == list(range(8))
    assert {report.split for report in reports[1:]} == {"train", "validation", "test"}


def test_folder_reports_bad_items_and_missing_source(user_folder: Path, tmp_path: Path) -> None:
    (user_folder / "broken.mp4").write_bytes(b"\x00garbage" * 40)
    mixed = user_folder / "frames" / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(mixed / "a1.png")
    Image.fromarray(np.zeros((10, 16, 3), np.uint8)).save(mixed / "a2.png")
    summary = convert_folder(user_folder, tmp_path / "store", 8, grayscale=True, test=0)
    assert sum(counts["sequences"] for counts in summary.values()) == 7
    skipped = read_manifest(tmp_path / "store")["skipped"]
    assert len(skipped) == 2
    assert any("broken.mp4" in s and "unreadable video" in s for s in skipped)
    assert any("frames/mixed" in s and "(12, 16)" in s and "(10, 16)" in s for s in skipped)
    assert open_dataset(tmp_path / "store", "train")[0].shape[1:] == (1, 8, 8)
    with pytest.raises(FileNotFoundError, match="source folder not found: .*nowhere"):
        convert_folder(tmp_path / "nowhere", tmp_path / "other", 8)


def test_folder_resume_and_workers(user_folder: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    summary = convert_folder(user_folder, one, 8, validation=0.2, test=0.2)
    reports: list[Progress] = []
    assert (
        convert_folder(user_folder, one, 8, validation=0.2, test=0.2, progress=reports.append)
        == summary
    )
    assert reports == [Progress(0, 0)]  # nothing left to convert
    assert convert_folder(user_folder, two, 8, validation=0.2, test=0.2, workers=2) == summary
    assert read_manifest(one)["splits"] == read_manifest(two)["splits"]
    write_video(user_folder / "video9.avi", color_frames(0))
    with pytest.raises(ValueError, match="other settings"):  # another folder, other splits
        convert_folder(user_folder, one, 8, validation=0.2, test=0.2)


def test_convert_folder_command_exits_0_and_prints_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for n in range(3):  # the case: three folders of 5 PNGs each
        (tmp_path / "src" / f"clip{n}").mkdir(parents=True)
        for t, frame in enumerate(color_frames(n, height=20, width=24)):
            Image.fromarray(frame).save(tmp_path / "src" / f"clip{n}" / f"{t}.png")
    arguments = ["folder", tmp_path / "src", tmp_path / "dst", "--size", 16]
    arguments += ["--validation", "0.34", "--test", "0.34"]
    status, report, err = convert_command(capsys, *arguments)
    assert status == 0, err
    assert report["splits"] == {
        split: {"sequences": 1, "frames": 5} for split in ("test", "train", "validation")
    }
    assert report["frame_shape"] == [3, 16, 16] and report["skipped"] == []
    assert "3/3" in err and "error" not in err
    status, again, _ = convert_command(capsys, *arguments)  # resumed: nothing left to do
    assert status == 0 and again["splits"] == report["splits"]


def test_file_and_folder_names_that_are_not_utf8(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    try:
        os.mkdir(os.path.join(os.fsencode(src), b"clip\xe9"))
    except (OSError, UnicodeError):
        pytest.skip("the file system takes only UTF-8 names")
    folder = src / os.fsdecode(b"clip\xe9")
    for t, frame in enumerate(color_frames(1, num_frames=3, height=8, width=8)):
        Image.fromarray(frame).save(folder / f"{t}.png")
    write_video(src / os.fsdecode(b"video\xff.avi"), color_frames(2))
    write_video(src / "plain.avi", color_frames(3))
    arguments = ["folder", src, tmp_path / "dst", "--size", 8, "--validation", 0, "--test", 0]
    status, report, err = convert_command(capsys, *arguments)
    assert status == 0, err
    assert report["splits"] == {"train": {"sequences": 3, "frames": 3 + 5 + 5}}
    manifest = read_manifest(tmp_path / "dst")  # valid UTF-8 JSON, readable escapes
    (shard,) = [s for s in manifest["splits"]["train"] if s["metadata"][0]["kind"] == "frames"]
    assert shard["metadata"][0]["source"] == "clip\\xe9"
    assert shard["sources"] == [str(src / "clip\\xe9")]
    assert {m["source"] for s in manifest["splits"]["train"] for m in s["metadata"]} == {
        "clip\\xe9",
        "plain.avi",
        "video\\xff.avi",
    }
    frames = open_dataset(tmp_path / "dst", "train")[0].numpy()
    expected = color_frames(1, num_frames=3, height=8, width=8)
    np.testing.assert_array_equal(frames, expected.transpose(0, 3, 1, 2))
    status, again, _ = convert_command(capsys, *arguments)  # resumed over the same names
    assert status == 0 and again["splits"] == report["splits"]


def test_assign_splits() -> None:
    splits = assign_splits(100, 0.1, 0.2, seed=3)
    assert (splits.count("train"), splits.count("validation"), splits.count("test")) == (
        70,
        10,
        20,
    )
    assert splits == assign_splits(100, 0.1, 0.2, seed=3) != assign_splits(100, 0.1, 0.2, seed=4)
    with pytest.raises(ValueError, match="none for training"):
        assign_splits(2, 0.4, 0.4)
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(10, -0.1, 0.2)


# Series


def test_series_csv_with_ids_and_times(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows, truth = [], {}
    for n in range(10):
        values = rng.normal(size=(6, 2)) * [1, 100] + [0, 50]
        truth[f"s{n}"] = values
        rows += [(f"s{n}", t, *v) for t, v in enumerate(values.tolist())]
    order = rng.permutation(len(rows))
    lines = ["id,time,a,b"] + [
        f"{rows[i][0]},{rows[i][1]},{rows[i][2]!r},{rows[i][3]!r}" for i in order
    ]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    dst = tmp_path / "store"
    summary = convert_series(
        tmp_path / "data.csv",
        dst,
        id_column="id",
        time_column="time",
        validation=0.2,
        test=0.2,
        quantize=True,
    )
    assert summary["train"]["sequences"] == 6 and summary["train"]["clipped"] == 0
    manifest = read_manifest(dst)
    assert manifest["frame_shape"] == [2] and manifest["options"]["columns"] == ["a", "b"]
    low, high = series_range(dst)
    train_ids = [m["id"] for s in manifest["splits"]["train"] for m in s["metadata"]]
    train = np.concatenate([truth[i] for i in train_ids])
    np.testing.assert_allclose(low, train.min(0))
    np.testing.assert_allclose(high, train.max(0))
    for split in ("train", "validation", "test"):
        data = open_dataset(dst, split)
        metadata = [m for s in manifest["splits"][split] for m in s["metadata"]]
        for n, item in enumerate(metadata):
            x = truth[item["id"]]
            restored = dequantize_series(data[n], low, high)
            inside = ((x >= low) & (x <= high)).all(axis=1)
            error = np.abs(restored - np.clip(x, low, high))
            assert (error <= (high - low) / 510 + 1e-9).all()
            assert inside.all() or split != "train"


def test_series_npy_files(tmp_path: Path) -> None:
    src = tmp_path / "arrays"
    src.mkdir()
    for n in range(5):
        np.save(src / f"run{n}.npy", np.linspace(n, n + 1, 7 + n)[:, None] * [1.0, -2.0, 0.0])
    dst = tmp_path / "store"
    summary = convert_series(src, dst, validation=0, test=0, quantize=True)
    assert summary == {"train": {"sequences": 5, "frames": 7 + 8 + 9 + 10 + 11, "clipped": 0}}
    low, high = series_range(dst)
    np.testing.assert_allclose(low, [0, -10, 0])
    np.testing.assert_allclose(high, [5, 0, 1])
    sequence = open_dataset(dst, "train")[4].numpy()  # run4.npy
    assert sequence.shape == (11, 3) and sequence[0].tolist() == [204, 51, 0]
    assert sequence[-1].tolist() == [255, 0, 0]
    reports: list[Progress] = []
    resumed = convert_series(
        src, dst, validation=0, test=0, progress=reports.append, quantize=True
    )
    assert resumed == summary
    assert reports == [Progress(0, 0)]  # resumed: nothing left to convert
    np.save(src / "bad.npy", np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"run0\.npy: 3 dimensions, bad\.npy has 2"):
        convert_series(src, tmp_path / "other")
    with pytest.raises(FileNotFoundError, match="series source not found"):
        convert_series(tmp_path / "nowhere", tmp_path / "other")


def test_the_series_converter_moved_to_its_own_module_and_its_old_names_warn() -> None:
    import seqflows.data.folder as folder
    import seqflows.data.series as series

    assert "convert_series" not in folder.__all__
    for name in ("convert_series", "dequantize_series", "series_range"):
        with pytest.warns(DeprecationWarning, match=f"moved to seqflows.data.series.{name}$"):
            assert getattr(folder, name) is getattr(series, name)
    with pytest.raises(AttributeError, match="has no attribute 'convert_kth'"):
        folder.convert_kth  # noqa: B018


def test_manifest_is_json(kth_store) -> None:
    dst, _, _ = kth_store
    assert json.loads((dst / "manifest.json").read_text())["options"]["resize"] == "squash"


def test_convert_series_command_exits_0_and_prints_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    rows = ["id,t,x,y"] + [f"s{n},{t},{n + t},{-t}" for n in range(5) for t in range(4)]
    rows += ["s9,0,100,0", "s9,1,100,-1"]  # two frames, far outside the others' range
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n")
    arguments = ["series", tmp_path / "data.csv", tmp_path / "dst", "--id-column", "id"]
    arguments += ["--time-column", "t", "--validation", "0.34", "--test", "0", "--seed", "2"]
    arguments.append("--quantize")
    status, report, err = convert_command(capsys, *arguments)
    assert status == 0, err
    assert report["frame_shape"] == [2]
    assert report["splits"] == {  # seed 2: s3 and s9 in validation, s9's x = 100 clipped to 7
        "train": {"sequences": 4, "frames": 16, "clipped": 0},
        "validation": {"sequences": 2, "frames": 6, "clipped": 2},
    }
    assert report["notes"] == ["series validation: 2 values outside the training range, clipped"]


def test_series_cells_are_checked_with_their_location(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    def refused(name: str, text: str | bytes, *options: object) -> str:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        status, _, err = convert_command(capsys, "series", path, tmp_path / name / "no", *options)
        assert status == 2 and "Traceback" not in err and err.count("\n") == 1
        return err

    err = refused("latin1.csv", b"a,b\n1,2\n\xe9,3\n")
    assert err.startswith(f"seqflows: error: {tmp_path / 'latin1.csv'}, line 3: not UTF-8")
    err = refused("inf.csv", "a,b\n1,2\n3,1e309\n")
    assert "inf.csv, line 3, column 'b': '1e309' is infinite" in err
    # NaN is a missing value; a sequence needs two steps with an observed value
    err = refused("nan.csv", "a,b\n1,nan\n,\nNA,\n")
    assert f"{tmp_path / 'nan.csv'}: 1 of its 2 steps hold an observed value" in err
    array = np.ones((4, 2))
    array[2, 1] = np.inf
    np.save(tmp_path / "inf.npy", array)
    status, _, err = convert_command(capsys, "series", tmp_path / "inf.npy", tmp_path / "o")
    assert status == 2 and "inf.npy, element [2, 1]: inf is infinite" in err
    # One huge training cell would put every other value of its column on one uint8 level.
    rng = np.random.default_rng(0)
    rows = [f"s{n},{rng.normal():.6f},{rng.normal():.6f}" for n in range(10) for _ in range(5)]
    rows[17] = "s3,1e308,0.5"  # line 19 of the file
    text = "id,x,y\n" + "\n".join(rows) + "\n"
    split = ("--id-column", "id", "--validation", "0", "--test", "0", "--quantize")
    err = refused("outlier.csv", text, *split)
    assert "outlier.csv, line 19, column 'x': 1e+308 widens the range to" in err
    assert "falls on one uint8 level" in err
    rows[30] = "s6,-1e308,0.5"  # now the range overflows
    err = refused("overflow.csv", "id,x,y\n" + "\n".join(rows) + "\n", *split)
    assert "makes the range overflow float64" in err and "column 'x'" in err
    # A large but real excursion keeps its dimension: converted, nothing refused.
    rows[17], rows[30] = "s3,40,0.5", "s6,0,0.5"
    (tmp_path / "ok.csv").write_text("id,x,y\n" + "\n".join(rows) + "\n")
    status, report, err = convert_command(
        capsys, "series", tmp_path / "ok.csv", tmp_path / "s", *split
    )
    assert status == 0, err
    assert report["splits"] == {"train": {"sequences": 10, "frames": 50, "clipped": 0}}
    assert len(np.unique(open_dataset(tmp_path / "s", "train")[0][:, 0])) == 5

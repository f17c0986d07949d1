"""TFRecord reading without TensorFlow and the BAIR conversion into a store, on tiny fixtures."""

from __future__ import annotations

import json
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from seqflows.app.cli import main
from seqflows.data import tfrecord
from seqflows.data.bair import bair_tasks, convert_bair, convert_bair_file
from seqflows.data.store import Progress, open_dataset, read_manifest
from seqflows.data.tfrecord import (
    CorruptRecord,
    count_records,
    crc32c,
    encode_example,
    iter_records,
    masked_crc32c,
    parse_example,
    write_records,
)

FRAMES = 4  # per trajectory (30 in the real data)
SIZE = 64 * 64 * 3
# (split folder, file, file id, records); natural order puts traj_9 before traj_12
FILES = [
    ("train", "traj_9_to_11", 0, 3),
    ("train", "traj_12_to_14", 1, 3),
    ("test", "traj_0_to_2", 2, 3),
]
CORRUPT = (0, 1)  # (file id, record): one payload byte flipped
TRUNCATED = (2, 2)  # the last record of the test file, cut in half

CRC_VECTORS = [  # CRC32C check values (RFC 3720, B.4) and masked values
    (b"", 0x00000000, 0xA282EAD8),
    (b"123456789", 0xE3069283, 0xC78AB0E5),
    (bytes(32), 0x8A9136AA, 0x0FD7FFFA),
    (b"\xff" * 32, 0x62A8AB43, 0xF909B029),
    (bytes(range(32)), 0x46DD794E, 0x951F7892),
]


def video(file: int, record: int, frames: int = FRAMES) -> np.ndarray:
    """Frames (T, C, H, W) whose pixels encode file, record, frame, channel, row and column."""
    t, c, h, w = np.meshgrid(*map(np.arange, (frames, 3, 64, 64)), indexing="ij")
    return ((file * 50 + record * 13 + t * 7 + c * 3 + h + 2 * w) % 256).astype(np.uint8)


def actions(file: int, record: int, frames: int = FRAMES) -> dict[str, np.ndarray]:
    t = np.arange(frames, dtype=np.float32)
    return {
        "action": np.stack([t * 0 + file, t * 0 + record, t, t * 0 + 0.5], 1),  # (T, 4)
        "endeffector_pos": np.stack([t * 0 + file + 0.25, t * 0 - record, t], 1),  # (T, 3)
    }


def example(file: int, record: int, frames: int = FRAMES) -> bytes:
    pixels = video(file, record, frames).transpose(0, 2, 3, 1)  # stored (T, H, W, C)
    arrays = actions(file, record, frames)
    features: dict = {}
    for t in range(frames):
        features[f"{t}/image_aux1/encoded"] = [pixels[t].tobytes()]
        features[f"{t}/action"] = arrays["action"][t]
        features[f"{t}/endeffector_pos"] = arrays["endeffector_pos"][t]
        features[f"{t}/unused"] = np.array([t, -t])
    return encode_example(features)


def make_bair(root: Path) -> Path:
    """softmotion30_44k/{train,test}: 3 files of 3 trajectories, one corrupt, one truncated."""
    for split, name, file, records in FILES:
        path = root / "softmotion30_44k" / split / f"{name}.tfrecords"
        path.parent.mkdir(parents=True, exist_ok=True)
        offsets = write_records(path, [example(file, r) for r in range(records)])
        data = bytearray(path.read_bytes())
        if file == CORRUPT[0]:
            data[offsets[CORRUPT[1]] + 12 + 100] ^= 0xFF
        if file == TRUNCATED[0]:
            data = data[: offsets[TRUNCATED[1]] + (len(data) - offsets[TRUNCATED[1]]) // 2]
        path.write_bytes(bytes(data))
    return root


@pytest.fixture(scope="module")
def bair_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bair(tmp_path_factory.mktemp("bair"))


@pytest.fixture(scope="module")
def bair_store(bair_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("store")
    convert_bair(bair_src, dst, validation=2)
    return dst


def store_contents(root: Path) -> dict:
    manifest = read_manifest(root)
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.npy"))} | {
        f"{p.relative_to(root)}/{k}": v.tobytes()
        for p in sorted(root.rglob("*.npz"))
        for k, v in np.load(p).items()
    }
    return {"manifest": manifest, "files": files}


# CRC and framing


@pytest.mark.parametrize("implementation", ["python", "google_crc32c"])
def test_crc32c_known_vectors(implementation, monkeypatch):
    if implementation == "python":
        monkeypatch.setattr(tfrecord, "google_crc32c", None)
    elif tfrecord.google_crc32c is None:
        pytest.skip("google_crc32c is not installed")
    for data, crc, masked in CRC_VECTORS:
        assert crc32c(data) == crc
        assert tfrecord._crc32c_python(data) == crc
        assert masked_crc32c(data) == masked
    data = np.random.default_rng(0).bytes(1000)
    assert tfrecord._crc32c_python(data) == crc32c(data)


def test_framing_round_trip(tmp_path, monkeypatch):
    payloads = [b"", b"a", bytes(range(256)) * 4, b"last"]
    path = tmp_path / "a.tfrecords"
    offsets = write_records(path, payloads)
    assert offsets == [0, 16, 33, 33 + 16 + 1024]
    records = list(iter_records(path))
    assert [(r.index, r.offset, r.payload) for r in records] == list(
        zip(range(4), offsets, payloads, strict=True)
    )
    assert count_records(path) == 4
    monkeypatch.setattr(tfrecord, "google_crc32c", None)  # the fallback reads the same file
    assert [r.payload for r in iter_records(path)] == payloads
    # a byte range of a file (a member of a tar): offsets relative to its start
    inner = tmp_path / "b.tfrecords"
    inner.write_bytes(b"header" + path.read_bytes() + b"trailer")
    part = list(iter_records(inner, start=6, length=path.stat().st_size))
    assert [(r.offset, r.payload) for r in part] == list(zip(offsets, payloads, strict=True))


# tf.train.Example


def test_parse_example_round_trip():
    features = {
        "bytes": [b"", b"\x00\xff", bytes(300)],
        "text": "caf\u00e9",
        "floats": np.array([1.5, -2.25, 3e30, 0.0], dtype=np.float32),
        "ints": np.array([0, 1, -1, 2**63 - 1, -(2**63), 300], dtype=np.int64),
        "list ints": [1, 2, 3],
        "list floats": [0.5, 1],
        "empty": [],
    }
    for packed in (True, False):
        parsed = parse_example(encode_example(features, packed=packed))
        assert parsed["bytes"] == features["bytes"]
        assert parsed["text"] == ["caf\u00e9".encode()]
        assert parsed["floats"].dtype == np.float32 and parsed["ints"].dtype == np.int64
        np.testing.assert_array_equal(parsed["floats"], features["floats"])
        np.testing.assert_array_equal(parsed["ints"], features["ints"])
        np.testing.assert_array_equal(parsed["list ints"], [1, 2, 3])
        np.testing.assert_array_equal(parsed["list floats"], [0.5, 1.0])
        assert parsed["empty"] == []
    with pytest.raises(TypeError, match="feature 'bad'"):
        encode_example({"bad": object()})


def test_parse_example_hand_encoded_unpacked():
    # Int64List{value: 1, value: -1} unpacked (varints), FloatList{value: 1.5, value: -2} unpacked
    ints = b"\x1a\x0d" + b"\x08\x01" + b"\x08" + b"\xff" * 9 + b"\x01"  # Feature.int64_list = 3
    floats = b"\x12\x0a" + b"\x0d" + struct.pack("<f", 1.5) + b"\x0d" + struct.pack("<f", -2)
    unknown = b"\x28\x07" + b"\x31" + bytes(8)  # field 5 varint, field 6 fixed64: skipped
    entry_i = b"\x0a\x01x" + b"\x12" + bytes([len(ints) + len(unknown)]) + ints + unknown
    entry_f = b"\x0a\x01f" + b"\x12" + bytes([len(floats)]) + floats
    body = b"\x0a" + bytes([len(entry_i)]) + entry_i + b"\x0a" + bytes([len(entry_f)]) + entry_f
    payload = b"\x0a" + bytes([len(body)]) + body + unknown
    parsed = parse_example(payload)
    np.testing.assert_array_equal(parsed["x"], np.array([1, -1], dtype=np.int64))
    np.testing.assert_array_equal(parsed["f"], np.array([1.5, -2.0], dtype=np.float32))
    with pytest.raises(ValueError, match="past the end"):
        parse_example(payload[:-12])


# corrupt records


def test_corrupt_record_is_reported_and_skipped(tmp_path):
    path = tmp_path / "c.tfrecords"
    payloads = [b"zero" * 10, b"one" * 10, b"two" * 10]
    offsets = write_records(path, payloads)
    good = path.read_bytes()
    # bad payload CRC: that record only
    data = bytearray(good)
    data[offsets[1] + 12 + 5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecord, match="payload CRC") as raised:
        list(iter_records(path))
    assert (raised.value.path, raised.value.offset) == (str(path), offsets[1])
    skipped: list[str] = []
    records = list(iter_records(path, "skip", skipped))
    assert [(r.index, r.payload) for r in records] == [(0, payloads[0]), (2, payloads[2])]
    assert skipped == [f"{path} @ {offsets[1]}: bad payload CRC"]
    # bad length CRC: the rest of the file cannot be framed
    data = bytearray(good)
    data[offsets[1]] ^= 0x01
    path.write_bytes(bytes(data))
    skipped = []
    assert [r.payload for r in iter_records(path, "skip", skipped)] == payloads[:1]
    assert skipped == [f"{path} @ {offsets[1]}: bad length CRC (cannot frame the rest)"]
    assert count_records(path) == 1
    # truncated at the end (an interrupted download), in the payload and in the header
    for cut in (len(good) - 3, offsets[2] + 5):
        path.write_bytes(good[:cut])
        skipped = []
        assert [r.payload for r in iter_records(path, "skip", skipped)] == payloads[:2]
        assert len(skipped) == 1 and skipped[0].startswith(f"{path} @ {offsets[2]}: truncated")
        with pytest.raises(CorruptRecord, match="truncated"):
            list(iter_records(path))
    with pytest.raises(ValueError, match="on_corrupt"):
        list(iter_records(path, "ignore"))


def test_convert_file_skips_bad_frames(tmp_path):
    bad_size = parse_example(example(0, 0))
    bad_size["2/image_aux1/encoded"] = [bytes(SIZE - 1)]
    no_action = parse_example(example(0, 1))
    del no_action["1/action"]
    path = tmp_path / "traj_0_to_3.tfrecords"
    offsets = write_records(
        path,
        [encode_example(bad_size), encode_example(no_action), example(0, 2, frames=3), b"\xff"],
    )
    file = bair_tasks_file(path, frames=FRAMES)
    data = convert_bair_file(file)
    assert data.sequences == [] and data.arrays == {}
    assert data.skipped == [
        f"{path} @ {offsets[0]}: record 0: frame 2: '2/image_aux1/encoded' has 12287 bytes, "
        "12288 (64*64*3 raw RGB) expected",
        f"{path} @ {offsets[1]}: record 1: frame 1: '1/action' missing, 4 floats expected",
        f"{path} @ {offsets[2]}: record 2: 3 frames, 4 expected",
        f"{path} @ {offsets[3]}: record 3: not a tf.train.Example (truncated varint)",
    ]


def bair_tasks_file(path: Path, frames: int | None = None):
    from seqflows.data.bair import BairFile

    return BairFile(str(path), f"train/{path.name}", str(path), frames=frames)


# conversion into a store


def test_convert_bair_store_is_pixel_exact(bair_src, bair_store):
    manifest = read_manifest(bair_store)
    assert manifest["converter"] == "bair" and manifest["frame_shape"] == [3, 64, 64]
    expected = {  # split: [(file id, record)]
        "train": [(0, 0), (0, 2)],  # record 1 corrupt
        "validation": [(1, 0), (1, 1), (1, 2)],
        "test": [(2, 0), (2, 1)],  # record 2 truncated
    }
    for split, items in expected.items():
        data = open_dataset(bair_store, split)
        assert len(data) == len(items)
        for n, (file, record) in enumerate(items):
            frames = data[n].numpy()
            assert frames.shape == (FRAMES, 3, 64, 64)
            np.testing.assert_array_equal(frames, video(file, record))
        (shard,) = manifest["splits"][split]
        assert [m["record"] for m in shard["metadata"]] == [r for _, r in items]
        assert shard["metadata"][0]["file"] == f"{FILES[items[0][0]][0]}/{shard['name']}.tfrecords"
        assert shard["arrays"] == ["action", "endeffector_pos"]
        arrays = np.load(bair_store / split / f"{shard['name']}.arrays.npz")
        for name in ("action", "endeffector_pos"):
            want = np.concatenate([actions(f, r)[name] for f, r in items])
            assert arrays[name].dtype == np.float32
            np.testing.assert_array_equal(arrays[name], want)
    train = bair_src / "softmotion30_44k" / "train" / "traj_9_to_11.tfrecords"
    offset = manifest["splits"]["train"][0]["metadata"][1]["offset"]
    skipped = manifest["skipped"]
    assert len(skipped) == 2
    crc = next(report for report in skipped if report.startswith("[train/"))
    assert crc.startswith(f"[train/traj_9_to_11] {train} @ ")
    assert crc.endswith("bad payload CRC") and offset > 0
    truncated = next(report for report in skipped if report.startswith("[test/"))
    assert "[test/traj_0_to_2]" in truncated and "truncated" in truncated


def test_convert_bair_command_exits_0_and_prints_its_summary(bair_src, tmp_path, capsys):
    arguments = ["convert", "bair", str(bair_src), str(tmp_path / "store"), "--validation", "2"]
    assert main([*arguments, "--workers", "2"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["splits"] == {
        "test": {"sequences": 2, "frames": 2 * FRAMES},
        "train": {"sequences": 2, "frames": 2 * FRAMES},
        "validation": {"sequences": 3, "frames": 3 * FRAMES},
    }
    assert report["frame_shape"] == [3, 64, 64] and report["store"] == str(tmp_path / "store")
    assert sorted(line.split("]")[0] for line in report["skipped"]) == [
        "[test/traj_0_to_2",
        "[train/traj_9_to_11",
    ]
    assert report["notes"] == [
        f"2 skip reports (unreadable or clipped input) in {tmp_path / 'store' / 'manifest.json'}"
        ", under 'skipped'"
    ]
    assert "3/3" in captured.err and "error" not in captured.err
    assert main(arguments) == 0  # resumed: nothing to convert, the same summary
    assert json.loads(capsys.readouterr().out)["splits"] == report["splits"]


def test_splits(bair_src, tmp_path):
    tasks = bair_tasks(bair_src, validation=2)
    assert [(split, name) for split, name, _ in tasks] == [
        ("train", "traj_9_to_11"),
        ("validation", "traj_12_to_14"),
        ("test", "traj_0_to_2"),
    ]
    assert all(file.frames == FRAMES for _, _, file in tasks)
    assert [s for s, _, _ in bair_tasks(bair_src, validation=0)] == ["train", "train", "test"]
    # validation=4 needs both training files: refused
    with pytest.raises(ValueError, match="validation=4 would take all 2 training files"):
        bair_tasks(bair_src, validation=4)
    # {train,test}/ directly, without the softmotion30_44k folder
    shutil.copytree(bair_src / "softmotion30_44k", tmp_path / "direct")
    assert [t[:2] for t in bair_tasks(tmp_path / "direct", 2)] == [t[:2] for t in tasks]


def test_missing_data_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"not found: {missing}.*softmotion30_44k/train"):
        bair_tasks(missing)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no BAIR data"):
        bair_tasks(tmp_path)
    (tmp_path / "train").mkdir()
    write_records(tmp_path / "train" / "traj_0_to_0.tfrecords", [example(0, 0)])
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'test'}: no \\*.tfrecords"):
        bair_tasks(tmp_path)


def test_tar_is_read_in_place(bair_src, bair_store, tmp_path):
    tar = tmp_path / "bair_robot_pushing_dataset_v0.tar"
    with tarfile.open(tar, "w") as archive:
        archive.add(bair_src / "softmotion30_44k", "softmotion30_44k")
    for src in (tar, tmp_path):  # the tar, or a folder holding it
        dst = tmp_path / f"store_{src.name}"
        convert_bair(src, dst, validation=2)
        got, want = store_contents(dst), store_contents(bair_store)
        assert got["files"] == want["files"]
        assert got["manifest"]["splits"].keys() == want["manifest"]["splits"].keys()
        shard = got["manifest"]["splits"]["train"][0]
        assert shard["sources"] == [f"{tar}:softmotion30_44k/train/traj_9_to_11.tfrecords"]
        assert shard["metadata"] == want["manifest"]["splits"]["train"][0]["metadata"]
    # a download cut short is refused, naming the file
    cut = tmp_path / "cut" / "bair_robot_pushing_dataset_v0.tar"
    cut.parent.mkdir()
    cut.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"{cut}: truncated download"):
        bair_tasks(cut)
    packed = tmp_path / "packed.tar"
    with tarfile.open(packed, "w:gz") as archive:
        archive.add(bair_src / "softmotion30_44k", "softmotion30_44k")
    with pytest.raises(ValueError, match="not an uncompressed tar"):
        bair_tasks(packed)


def test_resume_converts_only_missing_shards(bair_src, tmp_path):
    dst = tmp_path / "store"
    reports: list[Progress] = []
    summary = convert_bair(bair_src, dst, validation=2, progress=reports.append)
    assert summary == {
        "test": {"sequences": 2, "frames": 2 * FRAMES},
        "train": {"sequences": 2, "frames": 2 * FRAMES},
        "validation": {"sequences": 3, "frames": 3 * FRAMES},
    }
    assert [(report.done, report.total) for report in reports] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    files = sorted(dst.rglob("*.np*"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    assert convert_bair(bair_src, dst, validation=2) == summary
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before
    # an interrupted conversion: one shard's frames are missing; only that shard is redone
    lost = dst / "validation" / "traj_12_to_14.frames.npy"
    lost.unlink()
    assert convert_bair(bair_src, dst, validation=2) == summary
    assert lost.read_bytes() == before[lost][1]
    for path in files:
        if path.parent.name != "validation":  # the other shards are untouched
            assert path.stat().st_mtime_ns == before[path][0]
    with pytest.raises(ValueError, match="other settings"):
        convert_bair(bair_src, dst, validation=0)


def test_workers_give_the_same_store(bair_src, bair_store, tmp_path):
    convert_bair(bair_src, tmp_path / "two", validation=2, workers=2)
    got, want = store_contents(tmp_path / "two"), store_contents(bair_store)
    assert got["files"] == want["files"]
    for contents in (got, want):  # the store lists them in the order the workers finish
        contents["manifest"]["skipped"].sort()
    assert json.dumps(got["manifest"], sort_keys=True) == json.dumps(
        want["manifest"], sort_keys=True
    )

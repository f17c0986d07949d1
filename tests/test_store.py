"""The store of converted data: round trips, variable lengths, atomic resumable conversion."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from seqflows.app.cli import main
from seqflows.atomic import DiskFullError, write_text_atomically
from seqflows.data import FixedSequences, StoreSource, TrainingSequences, open_dataset
from seqflows.data.store import (
    FORMAT,
    MANIFEST,
    ShardData,
    StoreError,
    StoreWriter,
    convert_shards,
    read_manifest,
)

FRAME = (1, 8, 8)


def coded(shard: int, lengths: list[int]) -> list[np.ndarray]:
    """Sequences whose pixels hold 20 * shard + 10 * sequence + frame: checkable content."""
    return [
        np.stack([np.full(FRAME, 20 * shard + 10 * n + t, dtype=np.uint8) for t in range(length)])
        for n, length in enumerate(lengths)
    ]


def make_shard(shard: int) -> ShardData:
    """Shard ``shard``: sequences of 6 and 7 frames, with metadata and a per-frame array."""
    sequences = coded(shard, [6, 7])
    return ShardData(
        sequences=sequences,
        metadata=[{"shard": shard, "sequence": n} for n in range(2)],
        arrays={"action": [np.full((len(s), 2), shard, np.float32) for s in sequences]},
        sources=[f"source-{shard}.bin"],
    )


TASKS = [("train", f"shard-{k}", k) for k in range(3)] + [("test", "shard-9", 9)]


def test_round_trip_with_variable_lengths_metadata_and_arrays(tmp_path):
    writer = StoreWriter(tmp_path, "test", 1, FRAME, options={"size": 8})
    summary = convert_shards(writer, TASKS, make_shard)
    assert summary == {
        "test": {"sequences": 2, "frames": 13},
        "train": {"sequences": 6, "frames": 39},
    }
    data = open_dataset(tmp_path, "train")
    assert len(data) == 6
    item = data[3]  # shard 1, sequence 1
    assert item.dtype == torch.uint8 and item.shape == (7, *FRAME)
    assert item[:, 0, 0, 0].tolist() == [20 + 10 + t for t in range(7)]
    source = StoreSource(tmp_path, "train")
    assert source.lengths == [6, 7] * 3 and source.num_frames == 6
    assert source.metadata[3] == {"shard": 1, "sequence": 1}
    manifest = read_manifest(tmp_path)
    assert manifest["options"] == {"size": 8} and manifest["frame_shape"] == list(FRAME)
    arrays = np.load(tmp_path / "train" / "shard-1.arrays.npz")
    assert arrays["action"].shape == (13, 2)
    with pytest.raises(StoreError, match="no split 'validation'"):
        open_dataset(tmp_path, "validation")


def test_datasets_crop_sequences_of_different_lengths(tmp_path):
    convert_shards(StoreWriter(tmp_path, "test", 1, FRAME), TASKS, make_shard)
    source = StoreSource(tmp_path, "train")
    training = TrainingSequences(source, length=6, noise="none", seed=0)
    for i in range(12):
        frames = training[i][:, 0, 0, 0] * 255
        assert torch.all(frames.diff().round() == 1)  # consecutive frames of one sequence
    fixed = FixedSequences(source, length=5, noise="none", crop="last")
    assert [round(float(fixed[j][-1, 0, 0, 0] * 255)) % 10 for j in range(6)] == [5, 6] * 3
    with pytest.raises(ValueError, match="cannot crop 7 frames"):
        TrainingSequences(source, length=7)


def test_conversion_resumes_and_parallel_equals_serial(tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    convert_shards(StoreWriter(serial, "test", 1, FRAME), TASKS[:2], make_shard)
    stamp = (serial / "train" / "shard-0.frames.npy").stat().st_mtime_ns
    convert_shards(StoreWriter(serial, "test", 1, FRAME), TASKS, make_shard)  # resume
    assert (serial / "train" / "shard-0.frames.npy").stat().st_mtime_ns == stamp
    convert_shards(StoreWriter(parallel, "test", 1, FRAME), TASKS, make_shard, workers=2)
    assert read_manifest(serial) == read_manifest(parallel)
    for split in ("train", "test"):
        a, b = open_dataset(serial, split), open_dataset(parallel, split)
        assert all(torch.equal(a[n], b[n]) for n in range(len(a)))


def test_bad_stores_and_shards_get_clear_errors(tmp_path):
    writer = StoreWriter(tmp_path, "test", 1, FRAME)
    wrong = ShardData([np.zeros((3, 1, 8, 9), np.uint8)], sources=["clip.avi"])
    with pytest.raises(StoreError, match=r"clip.avi.*\(1, 8, 9\).*\(1, 8, 8\)"):
        writer.write_shard("train", "bad", wrong)
    with pytest.raises(StoreError, match="float32, not uint8"):
        writer.write_shard("train", "bad", ShardData([np.zeros((3, *FRAME), np.float32)]))
    writer.write_shard("train", "good", make_shard(0))
    with pytest.raises(StoreError, match="other settings"):
        StoreWriter(tmp_path, "test", 2, FRAME)  # another converter version
    (tmp_path / "train" / "good.frames.npy").write_bytes(b"\x93NUMPY broken")
    with pytest.raises(StoreError, match="good.frames.npy: corrupt or truncated"):
        open_dataset(tmp_path, "train")[0]
    (tmp_path / "manifest.json").write_text("{ not json")
    with pytest.raises(StoreError, match="corrupt manifest"):
        open_dataset(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="not a seqflows store"):
        open_dataset(tmp_path / "elsewhere")


def test_an_interrupted_shard_write_leaves_no_partial_file(tmp_path, monkeypatch):
    writer = StoreWriter(tmp_path, "test", 1, FRAME)
    writer.write_shard("train", "a", make_shard(0))

    def killed(stream, array):
        stream.write(b"\x93NUMPY half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        writer.write_shard("train", "b", make_shard(1))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == [
        "a.arrays.npz",
        "a.frames.npy",
    ]
    assert [s["name"] for s in read_manifest(tmp_path)["splits"]["train"]] == ["a"]


def test_training_and_evaluation_read_a_store(tmp_path, capsys):
    pytest.importorskip("lightning")
    store = tmp_path / "store"
    tasks = [("train", "a", 0), ("train", "b", 1), ("validation", "c", 2), ("test", "d", 3)]
    convert_shards(StoreWriter(store, "test", 1, FRAME), tasks, make_shard)
    run = tmp_path / "run"
    overrides = [
        "data.dataset=store",
        f"data.path={store}",
        "data.size=8",
        "data.length=5",
        "data.num_workers=0",
        "model.window=2",
        "model.hidden=4",
        "train.batch_size=2",
        "train.val_every=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
    ]
    assert main(["train", "--out", str(run), "--max-steps", "2", "--no-progress", *overrides]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run / "checkpoints" / "last.ckpt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sequences"] == 2 and result["frames_scored"] == 2 * 3
    assert result["protocol"]["dataset"] == "store"
    assert main(["train", "--out", str(tmp_path / "rgb"), *overrides, "data.channels=3"]) == 2
    assert "(1, 8, 8)" in capsys.readouterr().err


def test_per_frame_arrays_permissions_and_retried_failures(tmp_path):
    writer = StoreWriter(tmp_path, "test", 1, FRAME)
    writer.write_shard("train", "a", make_shard(4))
    source = StoreSource(tmp_path, "train")
    np.testing.assert_array_equal(source.arrays(1)["action"], np.full((7, 2), 4, np.float32))
    umask = os.umask(0)
    os.umask(umask)
    mode = (tmp_path / "train" / "a.frames.npy").stat().st_mode & 0o777
    assert mode == 0o666 & ~umask  # as any file the user creates, not private like mkstemp
    failed = ShardData([], sources=["broken.avi"], skipped=["broken.avi: unreadable video"])
    writer.write_shard("train", "b", failed)
    assert not writer.done("train", "b")  # tried again by the next run
    assert read_manifest(tmp_path)["skipped"] == ["[train/b] broken.avi: unreadable video"]
    writer.write_shard("train", "b", make_shard(5))  # the next run succeeds
    assert writer.done("train", "b") and read_manifest(tmp_path)["skipped"] == []
    with pytest.raises(StoreError, match="array 'action' does not match"):
        bad = make_shard(6)
        bad.arrays["action"][0] = bad.arrays["action"][0][:2]
        writer.write_shard("train", "c", bad)
    assert not (tmp_path / "train" / "c.frames.npy").exists()  # checked before writing


def test_convert_command_writes_a_store_and_reports_it(tmp_path, capsys):
    from seqflows.data.tfrecord import encode_example, write_records

    series = tmp_path / "series"
    series.mkdir()
    for index in range(10):
        np.save(series / f"run{index}.npy", np.random.default_rng(index).normal(size=(12, 3)))
    assert (
        main(
            [
                "convert",
                "series",
                str(series),
                str(tmp_path / "s"),
                "--validation",
                "0.2",
                "--test",
                "0.2",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["frame_shape"] == [3]
    assert {k: v["sequences"] for k, v in report["splits"].items()} == {
        "test": 2,
        "train": 6,
        "validation": 2,
    }
    assert open_dataset(tmp_path / "s", "train")[0].shape == (12, 3)
    # BAIR in its original layout, one record with a corrupt payload.
    folder = tmp_path / "bair" / "softmotion30_44k"
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True)
        frames = {f"{t}/image_aux1/encoded": [bytes(64 * 64 * 3)] for t in range(2)}
        arrays = {
            f"{t}/{k}": np.zeros(n, np.float32)
            for t in range(2)
            for k, n in (("action", 4), ("endeffector_pos", 3))
        }
        payload = encode_example({**frames, **arrays})
        write_records(folder / split / "traj_0_to_1.tfrecords", [payload, payload])
    path = folder / "train" / "traj_0_to_1.tfrecords"
    data = bytearray(path.read_bytes())
    data[-50] ^= 0xFF  # the second record's payload
    path.write_bytes(bytes(data))
    status = main(
        ["convert", "bair", str(tmp_path / "bair"), str(tmp_path / "b"), "--validation", "0"]
    )
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["frame_shape"] == [3, 64, 64]
    assert (
        report["splits"]["train"]["sequences"] == 1 and report["splits"]["test"]["sequences"] == 2
    )
    (skipped,) = report["skipped"]
    assert "traj_0_to_1.tfrecords @ " in skipped and "CRC" in skipped
    assert main(["convert", "kth", str(tmp_path / "nothing"), str(tmp_path / "k")]) == 2
    assert "nothing" in capsys.readouterr().err


def test_malformed_manifests_get_one_line_errors_naming_the_file(tmp_path, capsys):
    convert_shards(StoreWriter(tmp_path, "test", 1, FRAME), TASKS, make_shard)
    manifest = read_manifest(tmp_path)
    path = tmp_path / MANIFEST
    broken = {
        "no 'splits'": {key: value for key, value in manifest.items() if key != "splits"},
        "split 'train' must be a list": {**manifest, "splits": {"train": {"a": 1}}},
        "'lengths' must be": {
            **manifest,
            "splits": {"train": [{**manifest["splits"]["train"][0], "lengths": ["6"]}]},
        },
        "'metadata' must be a list with one entry per sequence": {
            **manifest,
            "splits": {"train": [{**manifest["splits"]["train"][0], "metadata": [{}]}]},
        },
        "'frame_shape' must be": {**manifest, "frame_shape": None},
    }
    for problem, content in broken.items():
        path.write_text(json.dumps(content))
        with pytest.raises(StoreError, match=f"{path}: malformed manifest, .*{problem}"):
            open_dataset(tmp_path, "train")
    path.write_text(json.dumps(broken["no 'splits'"]))
    with pytest.raises(StoreError, match="no 'splits'"):
        StoreWriter(tmp_path, "test", 1, FRAME)  # a resumed conversion reads it too
    pytest.importorskip("lightning")
    run = tmp_path / "run"
    overrides = ["data.dataset=store", f"data.path={tmp_path}", "data.size=8", "data.length=5"]
    assert main(["train", "--out", str(run), "--max-steps", "1", "--no-progress", *overrides]) == 2
    err = capsys.readouterr().err
    assert err == f"seqflows: error: {path}: malformed manifest, no 'splits' object " + (
        "(split name: list of shards)\n"
    )
    assert FORMAT in path.read_text()  # the manifest is left as it was


def test_a_full_disk_names_the_device_and_file_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "config.yaml"
    target.write_text("old")
    for code, words in ((errno.ENOSPC, "no space left"), (errno.EDQUOT, "disk quota exceeded")):

        def full(descriptor, code=code):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "fsync", full)
        with pytest.raises(DiskFullError) as caught:
            write_text_atomically(target, "new")
        monkeypatch.undo()
        message = str(caught.value)
        assert message.startswith(f"{words} on ") and message.endswith(f"while writing {target}")
        assert "mounted on" in message or sys.platform != "linux"  # the device of the folder
        assert caught.value.errno == code and caught.value.filename == str(target)
        assert isinstance(caught.value, OSError) and "\n" not in message
        assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


def test_convert_on_a_full_disk_ends_with_one_line_and_status_2(tmp_path, monkeypatch, capsys):
    series = tmp_path / "series"
    series.mkdir()
    for index in range(4):
        np.save(series / f"run{index}.npy", np.arange(12.0).reshape(6, 2) * index)
    arguments = ["convert", "series", str(series), str(tmp_path / "s"), "--validation", "0"]
    arguments += ["--test", "0"]

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main(arguments) == 2
    monkeypatch.undo()
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    last = captured.err.splitlines()[-1]
    assert last.startswith("seqflows: error: no space left on ")
    assert last.endswith(f"while writing {tmp_path / 's' / 'train' / '000000.frames.npy'}")
    assert not list((tmp_path / "s").rglob("*.tmp"))  # nothing half-written is left
    assert main(arguments) == 0  # space again: the same command completes the store
    report = json.loads(capsys.readouterr().out)
    assert report["splits"] == {"train": {"sequences": 4, "frames": 24}}  # float: no clipping


SLOW_CONVERSION = """
import sys
import time

import numpy as np

from seqflows.data.store import ShardData, StoreWriter, convert_shards


def shard(k):
    time.sleep(float(sys.argv[2]))
    frames = np.full((3, 1, 4, 4), k, np.uint8)
    return ShardData([frames], [{"k": k}], sources=[f"source-{k}"])


if __name__ == "__main__":
    tasks = [("train" if k % 4 else "test", f"shard-{k:02d}", k) for k in range(24)]
    convert_shards(StoreWriter(sys.argv[1], "slow", 1, (1, 4, 4)), tasks, shard, workers=2)
"""


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def running(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (neither gone nor zombies)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def written(store: Path) -> int:
    """Shards in the manifest of ``store`` (0 before the first one)."""
    try:
        return sum(len(shards) for shards in read_manifest(store)["splits"].values())
    except FileNotFoundError:
        return 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signal_number", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_end_with_a_killed_conversion(tmp_path, signal_number):
    (tmp_path / "slow_conversion.py").write_text(SLOW_CONVERSION)

    def conversion(store: Path, delay: float) -> list[str]:
        return [sys.executable, "-m", "slow_conversion", str(store), str(delay)]

    process = subprocess.Popen(
        conversion(tmp_path / "store", 0.25), cwd=tmp_path, stderr=subprocess.PIPE
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and process.poll() is None and time.monotonic() < deadline:
            workers = children(process.pid)
            time.sleep(0.02)
        assert len(workers) == 2, "the conversion did not start its two workers"
        while not written(tmp_path / "store") and time.monotonic() < deadline:
            time.sleep(0.02)  # then the workers are in the middle of their next shards
        os.kill(process.pid, signal_number)
        assert process.wait(timeout=30) != 0
        deadline = time.monotonic() + 5
        while running(workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running(workers) == [], "workers outlived their conversion"
    finally:
        for pid in running(workers):
            os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait()
    assert 0 < written(tmp_path / "store") < 24  # stopped part way, with complete shards only
    if signal_number == signal.SIGKILL:  # running it again gives the store of an uninterrupted run
        for store in ("store", "clean"):
            subprocess.run(conversion(tmp_path / store, 0), cwd=tmp_path, check=True)
        assert read_manifest(tmp_path / "store") == read_manifest(tmp_path / "clean")
        files = sorted(
            path.relative_to(tmp_path / "clean") for path in (tmp_path / "clean").rglob("*.npy")
        )
        assert len(files) == 24
        for file in files:
            assert (tmp_path / "store" / file).read_bytes() == (
                tmp_path / "clean" / file
            ).read_bytes()

"""Convert under faults and hostile inputs (issue 24, items 10 and 12).

A full disk, a destination that cannot be written, Ctrl-C and kill -9 during ``seqflows
convert``; values that overflow float32, conditions far outside the training range, and settings
that are not numbers a seed or a clip can be. Each ends with one line naming the file or the
setting and exit status 2 (130 for Ctrl-C), and leaves nothing half-written.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seqflows.app.cli import main
from test_store import children, running, written

from helpers import TINY_RUN


def one_line_error(capsys, arguments: list[str], status: int = 2) -> str:
    """Runs the command, checks its exit status and that it ends with one line (after the
    progress lines of convert); returns that line."""
    got = main(arguments)
    error = capsys.readouterr().err
    assert got == status, error
    assert "Traceback" not in error and error.endswith("\n"), error
    last = error.splitlines()[-1]
    assert last.startswith("seqflows: "), error
    assert all(line.startswith("convert: ") for line in error.splitlines()[:-1]), error
    return last


# Settings -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.gradient_clip=.nan", "train.gradient_clip must be >= 0 and finite"),
        ("train.gradient_clip=.inf", "train.gradient_clip must be >= 0 and finite"),
        ("train.gradient_clip=-1", "train.gradient_clip must be >= 0 and finite"),
        ("data.seed=-1", "data.seed must be an integer from 0 to 4294967295, got -1"),
        ("train.seed=-1", "train.seed must be an integer from 0 to 4294967295, got -1"),
        ("train.seed=4294967296", "train.seed must be an integer from 0 to 4294967295"),
    ],
)
def test_settings_that_are_no_clip_or_seed_are_refused_naming_them(
    tmp_path: Path, capsys, override: str, message: str
) -> None:
    out = tmp_path / "run"
    arguments = [
        "train",
        "data.size=8",
        *TINY_RUN,
        override,
        "--out",
        str(out),
        "--max-steps",
        "1",
    ]
    error = one_line_error(capsys, arguments)
    assert message in error
    assert not out.exists()


# convert under faults ---------------------------------------------------------------------------


def series_folder(folder: Path, count: int = 4) -> Path:
    """``count`` float series (6, 2), one .npy file each."""
    folder.mkdir()
    for index in range(count):
        np.save(folder / f"run{index}.npy", np.arange(12.0).reshape(6, 2) * index)
    return folder


def convert_series_arguments(tmp_path: Path) -> list[str]:
    src = series_folder(tmp_path / "series")
    return ["convert", "series", str(src), str(tmp_path / "s"), "--validation", "0", "--test", "0"]


def test_a_short_write_is_a_full_disk_and_the_store_stays_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    arguments = convert_series_arguments(tmp_path)

    def short_write(stream, array, *args, **kwargs):
        stream.write(b"\x93NUMPY" + bytes(100))  # what fitted before the disk filled up
        raise OSError("92160 requested and 20352 written")  # numpy's tofile: no errno

    monkeypatch.setattr(np.lib.format, "write_array", short_write)
    error = one_line_error(capsys, arguments)
    monkeypatch.undo()
    shard = tmp_path / "s" / "train" / "000000.frames.npy"
    assert error.startswith("seqflows: error: no space left on ")
    assert error.endswith(f"while writing {shard}")
    assert not list((tmp_path / "s").rglob("*.tmp")) and not shard.exists()
    assert main(arguments) == 0  # space again: the same command completes the store
    assert json.loads(capsys.readouterr().out)["splits"]["train"]["sequences"] == 4


def read_only_below(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Files created under ``folder`` fail as on a read-only file system (tests run as root,
    whom chmod does not stop)."""
    mkstemp = tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).is_relative_to(folder):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


def test_convert_into_a_read_only_folder_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    arguments = convert_series_arguments(tmp_path)
    read_only_below(monkeypatch, tmp_path / "s")
    error = one_line_error(capsys, arguments)
    shard = tmp_path / "s" / "train" / "000000.frames.npy"
    assert error == (
        f"seqflows: error: cannot write {shard}: not writable (read-only file system)"
    )


def test_stale_temporary_files_of_a_killed_conversion_are_removed(tmp_path: Path, capsys) -> None:
    arguments = convert_series_arguments(tmp_path)
    assert main(arguments) == 0
    capsys.readouterr()
    store = tmp_path / "s"
    stale = [
        store / ".manifest.json.k3j_9x2a.tmp",
        store / "train" / ".000001.frames.npy.abcdefgh.tmp",
    ]
    kept = [store / "notes.tmp", store / ".hidden.tmp", store / "train" / "mine.tmp"]
    for path in stale + kept:
        path.write_text("left by kill -9" if path in stale else "the user's")
    assert main(arguments) == 0  # nothing left to convert: only the cleaning
    assert not any(path.exists() for path in stale)
    assert all(path.read_text() == "the user's" for path in kept)


SLOW_FOLDER_CONVERSION = """
import os
import sys
import time

import seqflows.data.folder as folder
from seqflows.app.cli import main

original = folder.convert_folder_item


def slow(argument):
    time.sleep(0.3)
    return original(argument)


folder.convert_folder_item = slow  # what convert_folder hands its workers
options = ["--workers", "2", "--size", "4", "--grayscale", "--validation", "0", "--test", "0"]
sys.exit(main(["convert", "folder", sys.argv[1], sys.argv[2], *options]))
"""


def frame_folders(folder: Path, count: int = 16) -> Path:
    """``count`` folders of two 4x4 PNG frames each."""
    for index in range(count):
        (folder / f"clip{index:02d}").mkdir(parents=True)
        for frame in range(2):
            image = Image.fromarray(np.full((4, 4), 10 * index + frame, np.uint8))
            image.save(folder / f"clip{index:02d}" / f"{frame}.png")
    return folder


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ctrl_c_stops_convert_with_one_line_and_no_worker_left(tmp_path: Path, capsys) -> None:
    src, store = frame_folders(tmp_path / "clips"), tmp_path / "store"
    (tmp_path / "slow.py").write_text(SLOW_FOLDER_CONVERSION)
    command = [sys.executable, str(tmp_path / "slow.py"), str(src), str(store)]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, start_new_session=True, env=environment
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not written(store) and process.poll() is None and time.monotonic() < deadline:
            workers = children(process.pid) or workers
            time.sleep(0.02)
        assert len(workers) == 2 and written(store), "the conversion did not start"
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        _, error = process.communicate(timeout=30)
        assert running(workers) == [] and children(process.pid) == []  # none left, no zombie
    finally:
        for pid in running(workers):
            os.kill(pid, signal.SIGKILL)
        process.kill()
        process.wait()
    assert process.returncode == 130, error
    assert "Traceback" not in error and "KeyboardInterrupt" not in error, error
    *progress, last = error.splitlines()
    assert all(line.startswith("convert: ") for line in progress), error
    assert last == (
        "seqflows: convert stopped by SIGINT; the shards written so far are kept: run the same "
        "command again to resume"
    )
    assert 0 < written(store) < 16
    options = ["--size", "4", "--grayscale", "--validation", "0", "--test", "0"]
    assert main(["convert", "folder", str(src), str(store), *options]) == 0  # resumed
    assert json.loads(capsys.readouterr().out)["splits"]["train"]["sequences"] == 16


# Inputs ---------------------------------------------------------------------------------------


def test_a_csv_cell_too_large_for_the_model_is_refused_naming_its_line_and_column(
    tmp_path: Path, capsys
) -> None:
    rows = ["id,t,a,b"] + [f"m{m},{t},{t * 1.5},{t}" for m in range(6) for t in range(5)]
    rows[14] = "m2,3,4.5,1e308"  # line 15 of the file
    (tmp_path / "x.csv").write_text("\n".join(rows) + "\n")
    arguments = ["convert", "series", str(tmp_path / "x.csv"), str(tmp_path / "s")]
    error = one_line_error(capsys, [*arguments, "--id-column", "id", "--time-column", "t"])
    assert error.startswith(f"seqflows: error: {tmp_path / 'x.csv'}, line 15, column 'b': 1e+308")
    assert "too large (beyond +-1.8e+19" in error
    assert not (tmp_path / "s").exists()


def test_a_training_value_that_overflows_float32_statistics_is_refused(
    tmp_path: Path, capsys
) -> None:
    series = np.cumsum(np.random.default_rng(0).normal(size=(20, 12, 3)), axis=1)
    series = series.astype(np.float32)
    series[3, 5, 1] = 3e38  # finite in float32
    np.save(tmp_path / "big.npy", series)
    out = tmp_path / "run"
    arguments = ["train", "my_time_series", f"data.path={tmp_path / 'big.npy'}", *TINY_RUN]
    error = one_line_error(capsys, [*arguments, "--out", str(out), "--max-steps", "1"])
    assert f"{tmp_path / 'big.npy'} [train]: sequence 3, frame 5, dimension 1 is 3e+38" in error
    assert "too large" in error and not out.exists()


@pytest.fixture(scope="module")
def series_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model of a float series, trained for 2 steps by the command line."""
    pytest.importorskip("lightning")
    folder = tmp_path_factory.mktemp("series")
    series = np.cumsum(np.random.default_rng(1).normal(size=(12, 8, 2)), axis=1)
    np.save(folder / "series.npy", series)
    arguments = ["train", "my_time_series", f"data.path={folder / 'series.npy'}", *TINY_RUN]
    arguments += ["--out", str(folder / "run"), "--max-steps", "2", "--no-progress"]
    assert main(arguments) == 0
    return folder / "run" / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("option, written", [("--output", "result.json"), ("--scores", "")])
def test_evaluate_into_a_read_only_folder_names_the_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
    series_checkpoint: Path,
    option: str,
    written: str,
) -> None:
    capsys.readouterr()
    target = tmp_path / "read-only" / written if written else tmp_path / "read-only"
    read_only_below(monkeypatch, tmp_path / "read-only")
    arguments = ["evaluate", str(series_checkpoint), option, str(target), "--no-progress"]
    error = one_line_error(capsys, arguments)
    assert error.startswith(f"seqflows: error: cannot write {target}")
    assert error.endswith(": not writable (read-only file system)")

"""Hostile use of the commands (issue 24, item 11): each mistake ends with one line that names
the file or setting, exit status 2 (130 for Ctrl-C), and nothing of the user's is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning.pytorch")

from seqflows.app.cli import main  # noqa: E402

from helpers import TINY_BALLS  # noqa: E402

TINY = TINY_BALLS


def train_command(out: Path | str, *extra: str) -> list[str]:
    """``seqflows train`` of a tiny 1-AF for 2 steps into ``out``."""
    return ["train", "bouncing_balls_1af", "--out", str(out), "--max-steps", "2"] + [
        "--no-progress",
        *TINY,
        *extra,
    ]


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's stderr, checked to be one ``seqflows: error:`` line without a traceback."""
    error = capsys.readouterr().err.strip()
    assert error.startswith("seqflows: error: ") and "\n" not in error, error
    return error


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("commands") / "run"
    assert main(train_command(run)) == 0
    return run / "checkpoints" / "last.ckpt"


def test_evaluate_scores_onto_a_file_is_refused_before_scoring(checkpoint, tmp_path, capsys):
    file = tmp_path / "scores.csv"
    file.write_text("mine")
    for scores in (file, file / "more"):
        capsys.readouterr()
        assert main(["evaluate", str(checkpoint), "--scores", str(scores), "--no-progress"]) == 2
        error = one_line_error(capsys)
        assert f"--scores {scores}" in error and "folder" in error
        assert file.read_text() == "mine"
    # A folder that exists already is written into (as every other output is replaced).
    folder = tmp_path / "scores"
    folder.mkdir()
    command = ["evaluate", str(checkpoint), "--scores", str(folder), "--no-progress", "--json"]
    assert main(command) == 0
    assert json.loads(capsys.readouterr().out)["scores"]["folder"] == str(folder)
    assert (folder / "sequences.csv").is_file()


def test_overwrite_refuses_a_link_out_of_the_run_folder_before_removing_anything(
    checkpoint, tmp_path, capsys
):
    outside = tmp_path / "elsewhere"
    (outside / "version_0").mkdir(parents=True)
    (outside / "version_0" / "metrics.csv").write_text("someone else's")
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent.parent, run)
    shutil.rmtree(run / "logs")
    (run / "logs").symlink_to(outside, target_is_directory=True)
    before = sorted(path.relative_to(run) for path in run.rglob("*"))
    capsys.readouterr()

    assert main(train_command(run, "--overwrite")) == 2
    error = one_line_error(capsys)
    assert f"{run / 'logs'} is a symbolic link" in error and str(outside) in error
    # Nothing removed: neither the run (config.yaml, checkpoints) nor what the link points to.
    assert sorted(path.relative_to(run) for path in run.rglob("*")) == before
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert (outside / "version_0" / "metrics.csv").read_text() == "someone else's"


def test_a_model_too_big_for_memory_is_refused_naming_model_hidden(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_command(run, "model.hidden=1000000")) == 2
    error = one_line_error(capsys)
    assert "model.conditioner.hidden=1000000: the 1-AF has " in error and " parameters; " in error
    assert "PB, more than the " in error and "of memory of this machine" in error
    assert not (run / "config.yaml").exists()  # refused before anything was written


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        ("1e39", "model.transforms.0.bound must be at most 1e+38 (the spline's knots span 2 * "),
        (".inf", "model.transforms.0.bound must be at most 1e+38"),
        (".nan", "model.transforms.0.bound must be positive, got nan"),
    ],
)
def test_a_spline_bound_outside_float32_is_refused_naming_model_bound(
    bound, expected, tmp_path, capsys
):
    run = tmp_path / "run"
    assert main(train_command(run, "model.transforms=[spline]", f"model.bound={bound}")) == 2
    assert expected in one_line_error(capsys)
    assert not run.exists()


def test_ctrl_c_during_start_up_is_one_line_and_exit_status_130(tmp_path, capsys, monkeypatch):
    import seqflows.app.train as training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "new" / "run"
    # Before the run folder exists (reading the data), then with it locked (building the
    # training stream): the folder this command created goes again.
    for start_up in ("resolve_data", "build_source"):
        with monkeypatch.context() as patched:
            patched.setattr(training, start_up, interrupted)
            try:
                status = main(train_command(run))
            except KeyboardInterrupt:
                pytest.fail(f"Ctrl-C in {start_up} escaped main() (a traceback)")
        assert status == 130
        assert capsys.readouterr().err == "seqflows: interrupted by SIGINT\n"
        assert not (tmp_path / "new").exists()


def test_a_refused_training_leaves_no_folder_it_created(tmp_path, capsys):
    run = tmp_path / "new" / "run"
    refusals = [
        ("train.batch_size=100000000000",),  # the batch cannot fit in memory
        ("--resume", str(tmp_path / "missing.ckpt")),  # no such checkpoint
    ]
    for refusal in refusals:
        assert main(train_command(run, *refusal)) == 2
        one_line_error(capsys)
        assert not (tmp_path / "new").exists()
    # A folder that was there before is the user's: it stays.
    run.mkdir(parents=True)
    assert main(train_command(run, *refusals[0])) == 2
    one_line_error(capsys)
    assert run.is_dir()


def test_out_that_is_not_utf8_is_refused_before_anything_is_written(tmp_path, capsys):
    run = Path(os.fsdecode(os.fsencode(tmp_path) + b"/run\xff"))
    assert main(train_command(run)) == 2
    error = one_line_error(capsys)
    assert f"--out {tmp_path}/run\\xff: the path is not valid UTF-8" in error
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_command_imports_torch_is_one_line_and_exit_status_130():
    # The command line starts without torch (import seqflows is lazy), so main() is running
    # before the slow imports; during them SIGINT ends the process at once with one line.
    code = (
        "import os, signal, sys\n"
        "import seqflows.app.cli\n"
        "assert 'torch' not in sys.modules, 'torch imported before main()'\n"
        "from seqflows.app.interrupt import exit_on_sigint\n"
        "with exit_on_sigint():\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    import torch\n"
        "    signal.pause()\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 130, completed.stderr
    assert completed.stderr == "seqflows: interrupted by SIGINT\n"

"""The life of a run folder: lock, refusal and --overwrite, interruption by signals and by kills,
resume rules (which settings may change), stale temporary files, and reproduce's subprocesses."""

from __future__ import annotations

import fcntl
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("lightning.pytorch")

from seqflows import FlowModel
from seqflows.app import precision
from seqflows.app.callbacks import AtomicCheckpointIO  # noqa: E402
from seqflows.app.checkpoints import read_checkpoint  # noqa: E402
from seqflows.app.cli import main  # noqa: E402
from seqflows.app.config import ConfigError  # noqa: E402
from seqflows.app.interrupt import StopRequest, run_forwarding_signals  # noqa: E402
from seqflows.app.precision import bf16_native, resolve_precision
from seqflows.app.train import cluster_plugins, train  # noqa: E402
from test_training import TINY, logged, tiny_config  # noqa: E402

SHORT = ("train.max_steps=2", "train.val_every=2", "train.checkpoint_every=2")


def command(config: Path, run: Path, *extra: str) -> list[str]:
    """``seqflows train`` arguments for the tiny configuration."""
    return ["train", str(config), "--out", str(run), "--no-progress", *extra]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(json.dumps(TINY))  # JSON is YAML
    return path


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def assert_same_weights(first: Path, second: Path) -> None:
    expected = weights(first)
    actual = weights(second)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=0, msg=key)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Holds the run lock of ``folder`` as another seqflows train would (flock on .lock)."""
    with open(folder / ".lock", "a+") as stream:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield


class Killed(BaseException):
    """Stands for a kill -9 at the moment a checkpoint file has been written."""


def kill_after_writing(monkeypatch: pytest.MonkeyPatch, name: str, step: int) -> None:
    """Raises :class:`Killed` right after ``name`` is written at ``step``."""
    original = AtomicCheckpointIO.save_checkpoint

    def save(self, checkpoint, path, storage_options=None):
        original(self, checkpoint, path, storage_options)
        if Path(path).name == name and checkpoint["global_step"] == step:
            raise Killed

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", save)


# --- the run folder: refusal, --overwrite, --out a file, lock -----------------------------------


def test_a_folder_that_holds_a_run_is_refused_unless_resumed_or_overwritten(
    tmp_path, config_file, capsys
):
    run = tmp_path / "run"
    assert main(command(config_file, run, *SHORT)) == 0
    last = run / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    (run / "notes.txt").write_text("mine")
    capsys.readouterr()

    assert main(command(config_file, run, *SHORT)) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(run) in error
    assert "holds a run" in error and "--resume" in error and "--overwrite" in error
    assert last.read_bytes() == before  # nothing replaced

    assert main(command(config_file, run, "--overwrite", *SHORT, "train.seed=5")) == 0
    said = capsys.readouterr().err
    assert "--overwrite: removed config.yaml, checkpoints/, logs/" in said
    assert last.read_bytes() != before  # a new run, from another seed
    assert sorted(path.name for path in (run / "logs").iterdir()) == ["version_0"]
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == 5
    assert (run / "notes.txt").read_text() == "mine"  # not the run's: kept

    with pytest.raises(SystemExit) as exit_info:  # argparse: one or the other
        main(command(config_file, run, "--overwrite", "--resume"))
    assert exit_info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_out_that_is_a_file_is_a_one_line_error(tmp_path, config_file, capsys):
    file = tmp_path / "file"
    file.write_text("")
    for out in (file, file / "run"):
        assert main(command(config_file, out, *SHORT)) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("seqflows: error: ") and "\n" not in error and str(out) in error


def test_a_second_run_in_a_locked_folder_fails_at_once_and_a_killed_holder_leaves_no_lock(
    tmp_path, config_file, capsys
):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "with open(sys.argv[1], 'w') as stream:\n"
            "    fcntl.flock(stream, fcntl.LOCK_EX)\n"
            "    stream.write(f'{os.getpid()}\\n'); stream.flush()\n"
            "    print('locked', flush=True); time.sleep(60)",
            str(run / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.perf_counter()
        assert main(command(config_file, run, *SHORT)) == 2
        assert time.perf_counter() - started < 5  # at once, before any training
        error = capsys.readouterr().err.strip()
        assert "\n" not in error and str(run) in error and f"PID {holder.pid}" in error
        assert not (run / "config.yaml").exists()
    finally:
        holder.kill()  # like kill -9: the kernel releases the lock
        holder.wait()
    assert main(command(config_file, run, *SHORT)) == 0
    assert (run / ".lock").read_text().strip() == str(os.getpid())


def test_stale_temporary_files_of_killed_writes_are_removed_on_the_next_start(
    tmp_path, config_file, capsys
):
    run = tmp_path / "run"
    assert main(command(config_file, run, *SHORT)) == 0
    stale = [
        run / "checkpoints" / ".last.ckpt.k1ll3d_9.tmp",
        run / "checkpoints" / ".best.ckpt.abcdefgh.tmp",
        run / ".config.yaml.zz99zz99.tmp",
    ]
    kept = [
        run / ".evaluation.json.abcdefgh.tmp",  # not written by train: may be in flight
        run / "checkpoints" / "notes.tmp",  # not the atomic writer's pattern
    ]
    for path in stale + kept:
        path.write_bytes(b"partial")
    capsys.readouterr()
    assert main(command(config_file, run, "train.max_steps=3", "--resume")) == 0
    assert "removed stale temporary files" in capsys.readouterr().err
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in kept)


def test_only_the_launching_process_takes_the_lock(monkeypatch, tmp_path):
    """The other processes of a data-parallel run (LOCAL_RANK, RANK, ... > 0) start while the
    launching one holds the lock and the folder holds its config.yaml: they neither lock nor
    refuse. (tests/test_training.py trains with 2 gloo processes through the command line.)"""
    from seqflows.app.runs import is_launching_process

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("JSM_NAMESPACE_RANK", raising=False)
    assert is_launching_process()
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert is_launching_process()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not is_launching_process()
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: the launching process's\n")
    with locked(run):
        summary = train(tiny_config(*SHORT), run, progress=False)
    assert summary["steps"] == 2
    assert (run / "config.yaml").read_text() == "name: the launching process's\n"


# --- a kill between last.ckpt and the validation of its step -----------------------------------

DIVERGING = ("train.learning_rate=0.1", "train.gradient_clip=0", "train.val_every=2")


def test_a_run_killed_after_writing_last_ckpt_selects_the_same_best_checkpoint(
    tmp_path, monkeypatch
):
    """At this rate the validation score is best at step 2 and falls afterwards. A kill right
    after last.ckpt of step 2 is written, then a resume (from a moved folder: the best state
    moves with it), must select step 2 as an uninterrupted run does."""
    config = tiny_config(*DIVERGING, "train.checkpoint_every=2")
    whole = train(config, tmp_path / "whole", progress=False)
    best = read_checkpoint(tmp_path / "whole" / "checkpoints" / "best.ckpt")
    assert best["global_step"] == 2  # the premise: the best score is not the last one

    kill_after_writing(monkeypatch, "last.ckpt", 2)
    with pytest.raises(Killed):
        train(config, tmp_path / "killed", progress=False)
    monkeypatch.undo()
    (tmp_path / "killed").rename(tmp_path / "moved")
    resumed = train(config, tmp_path / "moved", resume="last", progress=False)

    assert resumed["best_validation_nats_per_dim"] == whole["best_validation_nats_per_dim"]
    assert Path(resumed["best_checkpoint"]) == tmp_path / "moved" / "checkpoints" / "best.ckpt"
    assert read_checkpoint(resumed["best_checkpoint"])["global_step"] == 2
    assert_same_weights(
        tmp_path / "whole" / "checkpoints" / "best.ckpt",
        tmp_path / "moved" / "checkpoints" / "best.ckpt",
    )
    assert_same_weights(
        tmp_path / "whole" / "checkpoints" / "last.ckpt",
        tmp_path / "moved" / "checkpoints" / "last.ckpt",
    )
    validation = logged(tmp_path / "whole", "val/nats_per_dim")
    assert logged(tmp_path / "moved", "val/nats_per_dim") == validation
    assert sorted(validation) == [1, 3, 5]  # steps 2, 4 and 6, each once


# --- signals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_signal_stops_training_with_a_resumable_checkpoint(
    tmp_path, config_file, capsys, signal_number
):
    """``python -m seqflows train`` gets the signal mid-run: last.ckpt at a step boundary, one line
    saying how to resume, exit status 128 + signal; the same command with --resume then ends
    with the weights of an uninterrupted run (bit for bit)."""
    run = tmp_path / "run"
    overrides = ["train.max_steps=40", "train.checkpoint_every=5", "train.val_every=20"]
    overrides += ["train.log_every=5"]
    arguments = command(config_file, run, *overrides)
    process = subprocess.Popen(
        [sys.executable, "-m", "seqflows", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal_number)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number, err[-3000:]
    # what it says before (the device, the time estimate), then one line about the stop
    said = ("seqflows: training ", "seqflows: about ")
    lines = [line for line in err.splitlines() if line.startswith("seqflows:")]
    lines = [line for line in lines if not line.startswith(said)]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    step = read_checkpoint(last)["global_step"]
    assert 5 <= step < 40
    assert lines[0] == (
        f"seqflows: stopped by {signal.Signals(signal_number).name} at step {step}; {last} "
        "holds the run: run the same command with --resume to continue"
    )
    if signal_number != signal.SIGTERM:
        return
    assert main([*arguments, "--resume"]) == 0
    train(tiny_config(*overrides), tmp_path / "whole", progress=False)
    assert read_checkpoint(last)["global_step"] == 40
    assert_same_weights(tmp_path / "whole" / "checkpoints" / "last.ckpt", last)
    assert logged(run, "train/loss") == logged(tmp_path / "whole", "train/loss")


def test_stop_request_records_the_first_signal_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.signal_number == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)  # more SIGTERMs (SLURM signals every process)
        time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C after a stop request: at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_slurm_runs_without_lightnings_auto_requeue(monkeypatch):
    from lightning.fabric.plugins.environments import SLURMEnvironment

    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    assert cluster_plugins() == []
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "seqflows")
    (plugin,) = cluster_plugins()
    assert isinstance(plugin, SLURMEnvironment) and plugin.auto_requeue is False


@pytest.mark.parametrize("piped", [False, True])
def test_run_forwarding_signals_passes_sigterm_on_and_waits(tmp_path, piped):
    """Also while this process reads the child's lines (``on_line``: reproduce's progress)."""
    ready = tmp_path / "ready"
    child = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
        "print('train: 1/2 steps', flush=True)\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "time.sleep(60)\n"
    )
    lines: list[str] = []
    log = tmp_path / "child.log"
    received = []
    previous = signal.signal(signal.SIGTERM, lambda number, frame: received.append(number))

    def terminate_this_process() -> None:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    try:
        threading.Thread(target=terminate_this_process, daemon=True).start()
        with open(log, "w") as output:
            on_line = lines.append if piped else None
            command = [sys.executable, "-c", child]
            assert run_forwarding_signals(command, stdout=output, on_line=on_line) == 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == []  # the signal went to the child, not to the test's handler
    assert log.read_text() == "train: 1/2 steps\n"  # the child's output in its log either way
    assert lines == (["train: 1/2 steps\n"] if piped else [])


def test_reproduce_stops_with_one_line_when_a_training_fails(tmp_path, capsys):
    """A training process that fails (here: its run folder is locked by another process) stops
    ``python -m reproduction reproduce`` with exit status 2 and one line naming the run, its error
    and log."""
    from reproduction.__main__ import main as reproduction_main

    run = tmp_path / "runs" / "bouncing_balls" / "1af"
    run.mkdir(parents=True)
    arguments = ["reproduce", "--out", str(tmp_path / "results"), "--runs", str(tmp_path / "runs")]
    arguments += ["--models", "1af", "--datasets", "bouncing_balls", "--no-motion"]
    with locked(run):
        assert reproduction_main([*arguments, "train.max_steps=2"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("reproduction: error: training bouncing_balls/1af failed (exit 2: ")
    assert "is in use by another seqflows train" in error and str(run / "train.log") in error
    assert not (tmp_path / "results" / "summary.json").exists()


# --- resume rules -------------------------------------------------------------------------------


def test_a_changed_learning_rate_is_applied_on_resume_and_recorded(tmp_path, config_file, capsys):
    run = tmp_path / "run"
    assert main(command(config_file, run, "train.max_steps=4")) == 0
    capsys.readouterr()
    changed = ["train.learning_rate=1e-3", "train.max_steps=6", "train.val_every=2"]
    # as the issue wrote it: the override after --resume is an override, not a checkpoint
    assert main(command(config_file, run, "--resume", *changed)) == 0
    said = capsys.readouterr().err
    (line,) = [line for line in said.splitlines() if "resumed with changed settings" in line]
    assert "train.learning_rate: 0.01 -> 0.001" in line and "train.max_steps: 4 -> 6" in line
    rates = logged(run, "lr-Adam")
    assert [rates[step] for step in range(6)] == [1e-2] * 4 + [1e-3] * 2
    last = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-3
    assert last["seqflows"]["config"]["train"]["learning_rate"] == 1e-3
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["learning_rate"] == 1e-3 and config["train"]["max_steps"] == 6
    (entry,) = yaml.safe_load((run / "resumes.yaml").read_text())["resumes"]
    assert entry["step"] == 4 and entry["checkpoint"] == str(run / "checkpoints" / "last.ckpt")
    assert entry["changed"] == {
        "train.max_steps": {"before": 4, "after": 6},
        "train.learning_rate": {"before": 0.01, "after": 0.001},
        "train.val_every": {"before": 3, "after": 2},
    }
    assert entry["time"].endswith("+00:00")


def test_a_changed_learning_rate_scales_the_cosine_schedule(tmp_path, monkeypatch):
    config = tiny_config("train.lr_schedule=cosine", "train.checkpoint_every=2")
    kill_after_writing(monkeypatch, "last.ckpt", 2)
    with pytest.raises(Killed):
        train(config, tmp_path, progress=False)
    monkeypatch.undo()
    resumed = tiny_config("train.lr_schedule=cosine", "train.learning_rate=1e-3")
    train(resumed, tmp_path, resume="last", progress=False)
    rates = logged(tmp_path, "lr-Adam")
    for step in range(6):  # T_max stays max_steps = 6; the rate is 1e-2 before the resume
        rate = (1e-2 if step < 2 else 1e-3) * (1 + math.cos(math.pi * step / 6)) / 2
        assert rates[step] == pytest.approx(rate, rel=1e-6), step


def test_settings_that_cannot_change_on_resume_are_refused_with_their_values(
    tmp_path, config_file, capsys
):
    run = tmp_path / "run"
    assert main(command(config_file, run, *SHORT)) == 0
    config_before = (run / "config.yaml").read_text()
    capsys.readouterr()
    refused = ["model.hidden=8", "train.seed=1", "train.batch_size=2", "train.precision=64"]
    assert main(command(config_file, run, *refused, "train.max_steps=4", "--resume")) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "cannot change when a run is resumed" in error
    for change in (
        "model.conditioner.hidden: 4 -> 8",
        "train.seed: 0 -> 1",
        "train.batch_size: 4 -> 2",
    ):
        assert change in error
    assert "train.precision: '32' -> '64'" in error
    assert "max_steps" not in error  # this one may change
    assert (run / "config.yaml").read_text() == config_before
    assert not (run / "resumes.yaml").exists()
    # with the cosine schedule, max_steps is part of the schedule
    cosine = tmp_path / "cosine"
    assert main(command(config_file, cosine, *SHORT, "train.lr_schedule=cosine")) == 0
    capsys.readouterr()
    resume = command(config_file, cosine, "--resume", *SHORT, "train.lr_schedule=cosine")
    assert main([*resume, "train.max_steps=4"]) == 2
    assert "train.max_steps: 2 -> 4" in capsys.readouterr().err


def test_a_run_resumes_at_another_mixed_precision(tmp_path):
    """32, bf16-mixed and 16-mixed all keep float32 weights and optimizer state: e.g. a run
    started on a CPU continues in bf16 on a GPU (here on the CPU)."""
    train(tiny_config(*SHORT), tmp_path, progress=False)
    summary = train(
        tiny_config(*SHORT, "train.max_steps=3", "train.precision=bf16-mixed"),
        tmp_path,
        resume="last",
        progress=False,
    )
    assert summary["steps"] == 3
    (entry,) = yaml.safe_load((tmp_path / "resumes.yaml").read_text())["resumes"]
    assert entry["changed"]["train.precision"] == {"before": "32", "after": "bf16-mixed"}
    last = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert all(value.dtype != torch.bfloat16 for value in last["state_dict"].values())


def test_a_finished_run_is_checked_against_the_configuration_before_nothing_is_trained(
    tmp_path, capsys
):
    train(tiny_config(*SHORT), tmp_path, progress=False)
    with pytest.raises(
        ConfigError, match=r"model\.transforms: \[\{.type.: .affine.*\] -> \[\{.*\}, \{"
    ):
        train(tiny_config(*SHORT, "model.num_transforms=2"), tmp_path, resume="last")
    capsys.readouterr()
    train(tiny_config(*SHORT, "train.learning_rate=1e-3"), tmp_path, resume="last")
    assert "already at step 2" in capsys.readouterr().err


def test_auto_precision_trains_in_bf16_where_the_cpu_has_it(
    tmp_path, config_file, capsys, monkeypatch
):
    """``--precision auto`` resolves once, says what it chose, and trains at that precision."""
    expected = resolve_precision("auto", "cpu")
    run = tmp_path / "run"
    assert main(command(config_file, run, *SHORT, "--precision", "auto")) == 0
    said = capsys.readouterr().err
    assert f"precision {expected} (auto)" in said
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["precision"] == "auto"
    # evaluation is float32 whatever the run trained in: no autocast while scoring
    autocast = []
    scores = FlowModel.scores

    def recording(self, *args, **kwargs):
        autocast.append(torch.is_autocast_enabled("cpu"))
        return scores(self, *args, **kwargs)

    monkeypatch.setattr(FlowModel, "scores", recording)
    assert main(["evaluate", str(run / "checkpoints" / "best.ckpt"), "--no-progress"]) == 0
    assert autocast and not any(autocast)


def test_auto_precision_follows_the_hardware(tmp_path, monkeypatch):
    flags = tmp_path / "cpuinfo"
    flags.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert bf16_native("cpu", flags)
    flags.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f\n")
    assert not bf16_native("cpu", flags)
    assert not bf16_native("cpu", tmp_path / "missing")
    for native in (True, False):
        monkeypatch.setattr(precision, "bf16_native", lambda device, native=native: native)
        assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native else "32")
        assert resolve_precision("auto", "mps") == "32"
        for explicit in ("32", "bf16-mixed", "16-mixed", "64"):
            assert resolve_precision(explicit, "cpu") == explicit


def test_explicit_bf16_on_a_cpu_that_emulates_it_warns_in_one_line(
    tmp_path, config_file, capsys, monkeypatch
):
    """``--precision bf16-mixed`` (or a config's) where bf16 is emulated: one warning line on
    stderr naming the missing instructions and ``auto``; the run still trains in bf16. No
    warning where the CPU has bf16, nor for ``auto`` or float32."""
    warning = "seqflows: warning: precision bf16-mixed: this CPU has no avx512_bf16 or amx_bf16"
    for native in (False, True):
        monkeypatch.setattr(precision, "bf16_native", lambda device, native=native: native)
        run = tmp_path / f"native_{native}"
        assert main(command(config_file, run, *SHORT, "--precision", "bf16-mixed")) == 0
        captured = capsys.readouterr()
        assert "precision bf16-mixed" in captured.err  # train's start line
        lines = [
            line for line in captured.err.splitlines() if line.startswith("seqflows: warning:")
        ]
        if native:
            assert not lines
        else:
            assert len(lines) == 1 and lines[0].startswith(warning), captured.err
            assert "precision auto (or 32) trains in float32 here" in lines[0]
    monkeypatch.setattr(precision, "bf16_native", lambda device: False)
    for chosen in ("auto", "32"):
        run = tmp_path / f"chosen_{chosen}"
        assert main(command(config_file, run, *SHORT, f"train.precision={chosen}")) == 0
        assert "warning: precision" not in capsys.readouterr().err

"""Small models at full speed (issue 27 item 5): the per-step values are logged only where the
loggers write them, and a small vector model trains on one thread; neither changes a result."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning.pytorch")

from seqflows.app.checkpoints import build_model, read_checkpoint  # noqa: E402
from seqflows.app.cli import main  # noqa: E402
from seqflows.app.config import load_config  # noqa: E402
from seqflows.app.datamodule import step_batches  # noqa: E402
from seqflows.app.runtime import (  # noqa: E402
    SMALL_ACTIVATION,
    small_model_threads,
    training_threads,
)
from seqflows.app.task import SequenceTask  # noqa: E402
from seqflows.app.train import train  # noqa: E402

from helpers import TINY_RUN  # noqa: E402

PER_STEP = ("train/loss", "train/nats_per_dim", "train/grad_norm")


@pytest.fixture
def series(tmp_path: Path) -> Path:
    """24 sequences of 12 steps of 3 values (a random walk)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "series.npy"
    np.save(path, np.cumsum(rng.normal(size=(24, 12, 3)), axis=1).astype(np.float32))
    return path


def series_config(path: Path, *overrides: str):
    settings = [f"data.path={path}", "data.length=6", *TINY_RUN, "train.max_steps=7"]
    return load_config("my_time_series", [*settings, *overrides])


def logged(run: Path, column: str) -> dict[int, float]:
    """step -> value of ``column`` in the run's metrics.csv files (each session's, in order)."""
    values = {}
    for session in sorted((run / "logs").glob("version_*"), key=lambda p: int(p.name[8:])):
        with open(session / "metrics.csv", newline="") as stream:
            rows = csv.DictReader(stream)
            values.update({int(row["step"]): float(row[column]) for row in rows if row[column]})
    return values


def test_per_step_values_are_logged_on_the_written_steps_and_the_last(
    series, tmp_path, monkeypatch
):
    """With a log line every 3 steps, Lightning writes the values of steps 3 and 6 (global steps
    2 and 5): those are logged, and the last step's (for the progress), no other."""
    calls: dict[str, list[int]] = {name: [] for name in PER_STEP}
    log = SequenceTask.log

    def counting(self, name, value, **kwargs):
        if name in calls:
            calls[name].append(self.global_step)
        return log(self, name, value, **kwargs)

    monkeypatch.setattr(SequenceTask, "log", counting)
    run = tmp_path / "run"
    train(series_config(series, "train.log_every=3"), run, progress=False)
    for name in PER_STEP:
        assert calls[name] == [2, 5, 6], name
        assert sorted(logged(run, name)) == [2, 5], name  # what the CSV holds


def test_the_log_cadence_changes_no_logged_value_and_no_weight(series, tmp_path):
    """A run that logs every step and one that logs every 3rd: the same values at the common
    steps, to the last digit, and the same weights and optimizer state at the end."""
    every = tmp_path / "every"
    third = tmp_path / "third"
    train(series_config(series, "train.log_every=1"), every, progress=False)
    train(series_config(series, "train.log_every=3"), third, progress=False)
    for name in PER_STEP:
        values = logged(third, name)
        assert values and values == {step: logged(every, name)[step] for step in values}
    first = read_checkpoint(every / "checkpoints" / "last.ckpt")
    second = read_checkpoint(third / "checkpoints" / "last.ckpt")
    for key, weight in first["state_dict"].items():
        assert torch.equal(weight, second["state_dict"][key]), key
    moments = [state["exp_avg"] for state in first["optimizer_states"][0]["state"].values()]
    others = [state["exp_avg"] for state in second["optimizer_states"][0]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(moments, others, strict=True))


def test_training_threads_one_for_a_small_vector_model_only(series, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    config = series_config(series, "model.hidden=64", "train.batch_size=16", "data.length=6")
    model = build_model(config, (3,))
    width = max(p.shape[0] for p in model.parameters())
    assert 16 * 6 * width < SMALL_ACTIVATION
    assert training_threads(config, model, (3,)) == 1
    # the same batch of longer crops reaches the size PyTorch spreads over threads
    length = SMALL_ACTIVATION // (16 * width) + 1
    assert training_threads(config.replace(data={"length": length}), model, (3,)) is None
    assert training_threads(config, model, (1, 8, 8)) is None  # frames keep their threads
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert training_threads(config, model, (3,)) is None  # the user's choice


def test_small_model_threads_restores_the_thread_count(series, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    config = series_config(series)
    model = build_model(config, (3,))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with small_model_threads(config, model, (3,)) as threads:
            assert threads == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_one_thread_trains_a_small_model_to_the_same_numbers(series):
    """The losses and weights of a small vector model on one thread and on two, bit for bit:
    choosing one thread changes no result."""
    config = series_config(series, "model.hidden=64", "train.batch_size=16", "data.length=6")
    data = torch.from_numpy(np.load(series))[:16, :6]
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.manual_seed(0)
            model = build_model(config, (3,)).train()
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            losses = []
            for _ in range(5):
                loss = model.loss(data, torch.Generator().manual_seed(0)).loss
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                losses.append(loss.detach())
            results.append(
                (torch.stack(losses), torch.cat([p.flatten() for p in model.parameters()]))
            )
    finally:
        torch.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def test_train_says_it_runs_a_small_vector_model_on_one_thread(
    series, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        arguments = ["train", "my_time_series", f"data.path={series}", "data.length=6", *TINY_RUN]
        code = main([*arguments, "--max-steps", "2", "--out", str(tmp_path / "run")])
        assert torch.get_num_threads() == 2  # restored after the run
    finally:
        torch.set_num_threads(before)
    error = capsys.readouterr().err
    assert code == 0, error
    start = next(line for line in error.splitlines() if line.startswith("seqflows: training "))
    assert "1 thread (a small vector model; OMP_NUM_THREADS=N chooses)" in start


def test_the_benchmark_times_the_bare_step_and_the_command(tmp_path):
    """benchmarks/train_speed.py on a tiny series: one round, every number positive."""
    import json
    import math
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"
    out = tmp_path / "speed.json"
    command = [sys.executable, str(script), "my_time_series", "--series", "20", "12", "3"]
    command += ["data.length=6", "model.hidden=4", "--from", "49", "--to", "99", "--rounds", "1"]
    done = subprocess.run([*command, "--json", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "round 1: bare" in done.stdout and "median: bare" in done.stdout
    result = json.loads(out.read_text())
    (row,) = result["rounds"]
    for key in ("bare_seconds_per_step", "command_seconds_per_step", "bare_over_command"):
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert result["steps"] == [49, 99] and result["parameters"] > 0
    assert row["steps_per_call"] == 50 and result["steps_per_call"] == [50]  # auto: small
    assert "50 steps per call" in done.stdout


# --- several optimizer steps per call (train.steps_per_call) ------------------------------------


def final_state(run: Path) -> dict:
    checkpoint = read_checkpoint(run / "checkpoints" / "last.ckpt")
    optimizer = checkpoint["optimizer_states"][0]["state"]
    moments = {
        f"{key}.{name}": value for key, state in optimizer.items() for name, value in state.items()
    }
    return {**checkpoint["state_dict"], **moments, "global_step": checkpoint["global_step"]}


def assert_same_state(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key, value in first.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, second[key]), key
        else:
            assert value == second[key], key


def count_calls(monkeypatch) -> list[int]:
    """The steps of each call of the task's training_step, as the run goes."""
    calls: list[int] = []
    step = SequenceTask.training_step

    def counting(self, batch, batch_index):
        calls.append(len(step_batches(batch, self._process_batch_size())))
        return step(self, batch, batch_index)

    monkeypatch.setattr(SequenceTask, "training_step", counting)
    return calls


# a cosine schedule, clipping that bites and logs every 3 steps: the calls of 5 steps are cut
CALLS = ["train.log_every=3", "train.val_every=6", "train.checkpoint_every=6"]
CALLS += ["train.max_steps=12", "train.lr_schedule=cosine", "train.gradient_clip=0.5"]


@pytest.mark.parametrize("precision", ["32", "bf16-mixed"])
def test_several_steps_per_call_give_the_same_losses_and_weights(
    series, tmp_path, monkeypatch, precision
):
    """steps_per_call=1 and 5: the same logged losses, rates, gradient norms and validations,
    and the same weights and Adam moments at the end, bit for bit (same seed; float32, and
    bf16 autocast); the calls of 5 steps end at each logged, validated and checkpointed step."""
    runs = {}
    for steps in (1, 5):
        calls = count_calls(monkeypatch)
        run = tmp_path / f"steps_{steps}"
        settings = [*CALLS, f"train.steps_per_call={steps}", f"train.precision={precision}"]
        train(series_config(series, *settings), run, progress=False)
        runs[steps] = run
        assert calls == ([1] * 12 if steps == 1 else [3] * 4)  # cut at every log line
    for name in (*PER_STEP, "lr-Adam", "val/nats_per_dim"):
        values = logged(runs[5], name)
        assert values and values == logged(runs[1], name), name
    assert sorted(logged(runs[5], "train/loss")) == [2, 5, 8, 11]
    assert_same_state(final_state(runs[1]), final_state(runs[5]))


def test_calls_of_up_to_k_steps_between_the_boundaries(series, tmp_path, monkeypatch):
    """log_every=6: calls of 4 steps, cut at 6 and 12 (logs, validations, checkpoints)."""
    calls = count_calls(monkeypatch)
    settings = [*CALLS, "train.log_every=6", "train.steps_per_call=4"]
    train(series_config(series, *settings), tmp_path / "run", progress=False)
    assert calls == [4, 2, 4, 2]
    assert sorted(logged(tmp_path / "run", "train/loss")) == [5, 11]


@pytest.mark.parametrize("resumed_steps", [1, 2])
def test_a_resumed_run_with_several_steps_per_call_ends_as_an_uninterrupted_one(
    series, tmp_path, monkeypatch, resumed_steps
):
    """Killed after the checkpoint of step 6 and resumed with another steps_per_call (1: by
    Lightning's automatic optimization): the same losses and the same weights and moments at
    step 12 as a run that was not."""
    from test_run_lifecycle import Killed, kill_after_writing

    whole = tmp_path / "whole"
    train(series_config(series, *CALLS, "train.steps_per_call=5"), whole, progress=False)
    split = tmp_path / "split"
    kill_after_writing(monkeypatch, "last.ckpt", 6)
    with pytest.raises(Killed):
        train(series_config(series, *CALLS, "train.steps_per_call=5"), split, progress=False)
    monkeypatch.undo()
    assert read_checkpoint(split / "checkpoints" / "last.ckpt")["global_step"] == 6
    resumed = series_config(series, *CALLS, f"train.steps_per_call={resumed_steps}")
    train(resumed, split, resume="last", progress=False)
    for name in ("train/loss", "lr-Adam"):
        assert logged(split, name) == logged(whole, name), name
    assert_same_state(final_state(whole), final_state(split))


def test_a_checkpoint_of_automatic_optimization_resumes_at_its_step(tmp_path):
    """A checkpoint written before there were several steps per call (its steps counted in
    the automatic optimization's progress) resumes at its step with 2 steps per call (the
    manual optimization's progress), not at 0."""
    from seqflows.app.config import stored_config

    fixture = Path(__file__).parent / "fixtures" / "v0_checkpoint.ckpt"
    checkpoint = read_checkpoint(fixture)
    step = int(checkpoint["global_step"])
    config = stored_config(checkpoint["seqflows"]["config"], str(fixture))
    settings = {"max_steps": step + 4, "log_every": 2, "steps_per_call": 2}
    config = config.replace(train=settings)
    result = train(config, tmp_path / "run", resume=str(fixture), progress=False)
    assert result["steps"] == step + 4
    assert sorted(logged(tmp_path / "run", "train/loss")) == [step + 1, step + 3]


def test_steps_per_call_auto_is_many_for_a_small_vector_model_only(series):
    from seqflows.app.config import ConfigError
    from seqflows.app.runtime import MAX_STEPS_PER_CALL, steps_per_call

    config = series_config(series, "model.hidden=64", "train.batch_size=16", "data.length=20")
    model = build_model(config, (3,))  # the default model
    assert sum(p.numel() for p in model.parameters()) == 5190
    assert steps_per_call(config, model, (3,)) == MAX_STEPS_PER_CALL == 50
    assert steps_per_call(config, model, (1, 8, 8)) == 1  # frames
    assert steps_per_call(config, model, (3,), world_size=2) == 1  # several processes
    wider = series_config(series, "model.hidden=256", "train.batch_size=16", "data.length=20")
    widest = series_config(series, "model.hidden=1024", "train.batch_size=16", "data.length=20")
    assert steps_per_call(wider, build_model(wider, (3,)), (3,)) == 28  # 70k parameters
    assert steps_per_call(widest, build_model(widest, (3,)), (3,)) == 3  # 1.07M
    longest = config.replace(data={"length": 100_000})  # an estimated 0.2 s a step
    assert steps_per_call(longest, model, (3,)) == 1
    chosen = config.replace(train={"steps_per_call": 7})
    assert steps_per_call(chosen, model, (1, 8, 8)) == 7  # the user's choice
    with pytest.raises(ConfigError, match="train.steps_per_call=7 takes one process"):
        steps_per_call(chosen, model, (3,), world_size=2)


@pytest.mark.parametrize("value", ["0", "-2", "many", "2.5"])
def test_a_bad_steps_per_call_is_refused_by_name(series, value):
    from seqflows.app.config import ConfigError

    with pytest.raises(
        ConfigError, match=r"train\.steps_per_call must be an integer >= 1 or auto"
    ):
        series_config(series, f"train.steps_per_call={value}")


def test_train_with_steps_per_call_on_a_tiny_series(series, tmp_path, capsys):
    """The command end to end: exit code, the start line, the progress, the checkpoint."""
    run = tmp_path / "run"
    arguments = ["train", "my_time_series", f"data.path={series}", "data.length=6", *TINY_RUN]
    arguments += ["train.log_every=4", "train.val_every=8", "train.checkpoint_every=8"]
    code = main([*arguments, "train.steps_per_call=4", "--max-steps", "8", "--out", str(run)])
    error = capsys.readouterr().err
    assert code == 0, error
    start = next(line for line in error.splitlines() if line.startswith("seqflows: training "))
    assert "up to 4 steps per call" in start and "steps 0 -> 8" in start
    assert "8/8 steps (100%)" in error
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == 8
    assert sorted(logged(run, "train/loss")) == [3, 7]

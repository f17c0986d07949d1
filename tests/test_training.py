"""Training with Lightning: checkpoints, exact resume, gradient clipping, data parallel (gloo)."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pl = pytest.importorskip("lightning.pytorch")

from seqflows.app.checkpoints import model_from_checkpoint, read_checkpoint  # noqa: E402
from seqflows.app.cli import main  # noqa: E402
from seqflows.app.config import Config  # noqa: E402
from seqflows.app.datamodule import SequenceDataModule  # noqa: E402
from seqflows.app.datasets import evaluation_set  # noqa: E402
from seqflows.app.evaluation import evaluate_model  # noqa: E402
from seqflows.app.task import SequenceTask  # noqa: E402
from seqflows.app.train import train  # noqa: E402

from helpers import flip_weight_bytes  # noqa: E402

TINY = {
    "name": "tiny",
    "data": {
        "dataset": "bouncing_balls",
        "size": 8,
        "num_balls": 1,
        "num_frames": 8,
        "length": 5,
        "validation_sequences": 5,
        "test_sequences": 6,
        "num_workers": 0,
    },
    "model": {"window": 2, "hidden": 4},
    "train": {
        "batch_size": 4,
        "max_steps": 6,
        "learning_rate": 1e-2,
        "val_every": 3,
        "checkpoint_every": 3,
        "log_every": 1,
    },
    "evaluate": {"batch_size": 2},
}


def tiny_config(*overrides: str) -> Config:
    return Config.from_dict(TINY, overrides)


def logged(run: Path, column: str) -> dict[int, float]:
    """step -> value of ``column`` over every logs/version_*/metrics.csv of a run, in order."""
    values = {}
    for path in sorted(run.glob("logs/version_*/metrics.csv")):
        with open(path, newline="") as stream:
            for row in csv.DictReader(stream):
                if row.get(column):
                    values[int(row["step"])] = float(row[column])
    return values


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    train(tiny_config(), run, progress=False)
    return run


def test_run_folder_holds_checkpoints_logs_and_config(trained_run):
    for name in ("config.yaml", "checkpoints/last.ckpt", "checkpoints/best.ckpt"):
        assert (trained_run / name).is_file(), name
    for column in (
        "train/loss",
        "train/grad_norm",
        "val/nats_per_dim",
        "val/corr_noise",
        "train/shift_mean_0",
        "train/scale_mean_0",
        "lr-Adam",
        "time/data_share",
    ):
        assert logged(trained_run, column), column
    assert list(trained_run.glob("logs/version_0/events.out.tfevents.*"))  # TensorBoard


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_model(trained_run):
    path = trained_run / "checkpoints" / "last.ckpt"
    raw = torch.load(path, weights_only=True)  # no arbitrary objects inside
    assert raw["global_step"] == 6
    assert "optimizer_states" in raw and raw["seqflows"]["model_type"] == "flow"
    model, config, _ = model_from_checkpoint(path)
    assert config.model.conditioner.hidden == 4
    task = SequenceTask(config, [1, 8, 8])
    task.load_state_dict(raw["state_dict"])
    task.eval()
    x = evaluation_set(config, "test")[0].unsqueeze(0)
    torch.testing.assert_close(model.log_prob(x), task.model.log_prob(x), rtol=0, atol=0)


def test_validation_score_equals_a_separate_evaluation(trained_run):
    """The logged val/nats_per_dim at the last step is the evaluation of last.ckpt."""
    model, config, _ = model_from_checkpoint(trained_run / "checkpoints" / "last.ckpt")
    result = evaluate_model(model, evaluation_set(config, "validation"), config, "validation", 2)
    assert result["frames_scored"] == 5 * (5 - 2)
    assert logged(trained_run, "val/nats_per_dim")[5] == pytest.approx(result["nats_per_dim"])


def test_evaluate_scores_fixed_crops_of_training_sequences(trained_run, capsys):
    """``seqflows evaluate --split train`` (Table 3): crops drawn from data.seed, not from the
    training stream, and the same crops every time."""
    from seqflows.app.cli import main

    checkpoint = str(trained_run / "checkpoints" / "last.ckpt")
    results = []
    for _ in range(2):
        assert (
            main(["evaluate", checkpoint, "--split", "train", "--sequences", "3", "--json"]) == 0
        )
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["protocol"]["split"] == "train" and results[0]["sequences"] == 3
    assert results[0]["nats_per_dim"] == results[1]["nats_per_dim"]
    test = main(["evaluate", checkpoint, "--sequences", "3", "--json"])
    assert test == 0 and json.loads(capsys.readouterr().out)["nats_per_dim"] != pytest.approx(
        results[0]["nats_per_dim"]
    )


SLVM_1AF = (
    "model.type=slvm",
    "model.num_transforms=1",
    "model.latent_dim=4",
    "model.lstm_hidden=8",
    "model.encoder_features=8",
    "model.conv_width=4",
)


@pytest.mark.parametrize(
    ("model", "stop"),
    [((), 3), ((), 2), (SLVM_1AF, 2)],
    ids=["1-AF, 3 + 3", "1-AF, 2 + 4", "SLVM w/ 1-AF, 2 + 4"],
)
def test_resume_gives_the_losses_of_an_uninterrupted_run(tmp_path, model, stop):
    """Also before half of the run (Lightning restores its count of the epoch's batches), and
    for an SLVM, whose posterior samples are random: they must continue exactly."""
    whole, split = tmp_path / "whole", tmp_path / "split"
    train(tiny_config(*model), whole, progress=False)
    train(tiny_config(*model, f"train.max_steps={stop}"), split, progress=False)
    assert read_checkpoint(split / "checkpoints" / "last.ckpt")["global_step"] == stop
    train(tiny_config(*model), split, resume="last", progress=False)
    losses_whole = logged(whole, "train/loss")
    losses_split = logged(split, "train/loss")
    assert sorted(losses_whole) == sorted(losses_split) == list(range(6))
    assert losses_split == losses_whole  # bit for bit, steps 3-5 after the resume included
    state_whole = read_checkpoint(whole / "checkpoints" / "last.ckpt")["state_dict"]
    state_split = read_checkpoint(split / "checkpoints" / "last.ckpt")["state_dict"]
    for key, value in state_whole.items():
        torch.testing.assert_close(state_split[key], value, rtol=0, atol=0)


def test_cosine_schedule_takes_the_rate_to_zero(tmp_path):
    train(tiny_config("train.lr_schedule=cosine"), tmp_path, progress=False)
    rates = logged(tmp_path, "lr-Adam")
    assert sorted(rates) == list(range(6))
    for step, rate in rates.items():  # the rate used by step s
        assert rate == pytest.approx(1e-2 * (1 + math.cos(math.pi * step / 6)) / 2, rel=1e-6)


class GradientNorms(pl.Callback):
    """Total gradient norm after the optimizer step (clipping has happened by then)."""

    def __init__(self) -> None:
        self.norms = []

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_index):
        grads = [p.grad.flatten() for p in task.parameters() if p.grad is not None]
        self.norms.append(float(torch.cat(grads).norm()))


@pytest.mark.parametrize("limit", [1.0, 0.0])
def test_gradient_clipping_is_applied(tmp_path, limit):
    config = tiny_config("train.max_steps=3", f"train.gradient_clip={limit}")
    task = SequenceTask(config, [1, 8, 8])
    norms = GradientNorms()
    trainer = pl.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[norms],
        use_distributed_sampler=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, datamodule=SequenceDataModule(config))
    assert float(trainer.callback_metrics["train/grad_norm"]) > 10  # sums over pixels: large
    if limit:
        assert max(norms.norms) == pytest.approx(1.0, rel=1e-4)
    else:
        assert min(norms.norms) > 10


def test_resuming_another_model_is_refused(trained_run, tmp_path):
    from seqflows.app.config import ConfigError

    with pytest.raises(
        ConfigError, match=r"model\.transforms: \[\{.type.: .affine.*\] -> \[\{.*\}, \{"
    ):
        train(
            tiny_config("model.num_transforms=2", "train.max_steps=8"),
            tmp_path,
            resume=str(trained_run / "checkpoints" / "last.ckpt"),
            progress=False,
        )


def test_data_parallel_training_with_two_processes(tmp_path):
    """2 CPU processes (gloo): the same global batches, validation reduced as sums, and the
    gradients in the layout of DDP's buckets (no stride warning: no strided copies)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))  # JSON is YAML
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "seqflows",
        "train",
        str(config),
        "--out",
        str(run),
        "--accelerator",
        "cpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--no-progress",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stderr
    assert "Grad strides do not match" not in result.stderr, result.stderr[-3000:]
    # the launching process held the lock; the other one neither took it nor refused the folder
    # (which held the launching process's config.yaml when it started)
    assert (run / ".lock").read_text().strip().isdigit()
    model, loaded, _ = model_from_checkpoint(run / "checkpoints" / "last.ckpt")
    evaluation = evaluate_model(model, evaluation_set(loaded, "validation"), loaded, "validation")
    # 5 validation sequences split 3 + 2 between the processes: a mean of per-process means
    # would differ from the evaluation of all 5 together; sums and counts do not.
    assert logged(run, "val/frames_scored")[5] == 15
    assert logged(run, "val/nats_per_dim")[5] == pytest.approx(evaluation["nats_per_dim"])


def test_kl_warm_up_weights_the_kl_from_zero():
    config = tiny_config(*SLVM_1AF, "train.kl_warmup=4")
    task = SequenceTask(config, [1, 8, 8])
    x = torch.rand(2, 5, 1, 8, 8)
    generator = task._generator(config.train.seed, 0)
    terms = task.model.elbo_terms(x, generator)
    with pytest.warns(UserWarning, match="self.log"):  # no trainer attached: logging is off
        loss = task.step_loss(x)  # global step 0: KL weight 0
    expected = -(terms.log_likelihood + terms.log_abs_det).mean()
    torch.testing.assert_close(loss, expected)


def _refuse_non_json_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _train_command(tmp_path: Path, out: Path, *overrides: str) -> list[str]:
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))  # JSON is YAML
    return ["train", str(config), "--out", str(out), "--no-progress", *overrides]


def test_a_diverging_run_stops_before_writing_non_finite_weights(tmp_path, capsys):
    """SGD at rate 10 without clipping: the weights become NaN within a few steps; that state
    is refused, and the last.ckpt of the step before stays, whole and finite."""
    run = tmp_path / "run"
    command = _train_command(
        tmp_path,
        run,
        "train.optimizer=sgd",
        "train.learning_rate=10",
        "train.gradient_clip=0",
        "train.max_steps=30",
        "train.checkpoint_every=1",
    )
    assert main(command) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    last = run / "checkpoints" / "last.ckpt"
    folder = re.escape(str(last.parent))
    # best.ckpt of a validation step is written before last.ckpt: either may be the one refused
    refused = re.fullmatch(
        rf"seqflows: error: refused to write {folder}/(best|last)\.ckpt: weights\.model\.\S+ "
        r"holds NaN or infinite values at step (\d+) \(the training diverged\); the previous "
        r"\1\.ckpt, if any, is kept\. Lower train\.learning_rate, or try model\.scale_map=soft",
        error,
    )
    assert refused is not None, error
    step = int(refused.group(2))
    assert step > 1  # on this data the divergence takes a few steps
    kept = read_checkpoint(last)  # a checksummed, loadable checkpoint
    assert kept["global_step"] == step - 1
    assert all(torch.isfinite(value).all() for value in kept["state_dict"].values())


def test_finite_divergence_is_warned_about_in_the_log_and_the_summary(tmp_path, capsys):
    """Adam at rate 10: validation scores near -1e20 nats/dim, finite: the run completes, and
    says that it diverged; its summary is valid JSON."""
    assert main(_train_command(tmp_path, tmp_path / "run", "train.learning_rate=10")) == 0
    captured = capsys.readouterr()
    assert "seqflows: training 1-AF" in captured.err  # stdout: the summary alone
    summary = json.loads(captured.out, parse_constant=_refuse_non_json_constants)
    assert [warning.split(" scores")[0] for warning in summary["warnings"]] == [
        "validation at step 3",
        "validation at step 6",
    ]
    assert all("the training has diverged" in warning for warning in summary["warnings"])
    for warning in summary["warnings"]:
        assert f"seqflows: warning: {warning}" in captured.err
    healthy = train(tiny_config(), tmp_path / "healthy", progress=False)
    assert healthy["warnings"] == []


def test_constant_noise_is_not_logged_and_does_not_stop_training():
    """A diverged flow can map every frame to the same noise: its correlation is undefined."""
    from seqflows.objective import LossTerms

    task = SequenceTask(tiny_config(), [1, 8, 8])
    x = torch.rand(2, 5, 1, 8, 8)
    out = task.model.normalize(x)
    out.noise = torch.ones_like(out.noise)
    logged_names = []
    task.log = lambda name, value, **kwargs: logged_names.append(name)
    task._log_parts(LossTerms(loss=torch.zeros(()), objective=torch.zeros(2, 3), flow=out))
    assert "train/corr_noise" not in logged_names and "train/shift_mean_0" in logged_names


def test_resuming_from_a_corrupted_checkpoint_is_refused(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    last = run / "checkpoints" / "last.ckpt"
    flip_weight_bytes(last)
    assert main(_train_command(tmp_path, run, "train.max_steps=8", "--resume")) == 2
    error = capsys.readouterr().err
    assert error.endswith(
        f"seqflows: error: {last}: corrupt checkpoint: the weights do not match the checksum "
        "stored with them (the file changed after it was written)\n"
    )


def test_curves_cover_every_session_of_a_resumed_run(tmp_path, capsys):
    """3 steps, then a resume to 6: visualize and reproduce draw and write both sessions, also
    once their folders are version_9 and version_10 (which sort the other way round as text)."""
    import reproduction as reproduce
    from seqflows.app.metrics_csv import read_metrics_csv

    run = tmp_path / "run"
    train(tiny_config("train.max_steps=3"), run, progress=False)
    train(tiny_config(), run, resume="last", progress=False)
    (run / "logs" / "version_0").rename(run / "logs" / "version_9")
    (run / "logs" / "version_1").rename(run / "logs" / "version_10")
    capsys.readouterr()
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    assert main(["visualize", checkpoint, "--out", str(tmp_path / "figures")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [Path(path).parent.name for path in report["curves_from"]] == [
        "version_9",
        "version_10",
    ]
    assert Path(report["written"]["curves"]).stat().st_size > 1000
    for curves in (
        read_metrics_csv(report["written"]["curves_data"]),
        read_metrics_csv(_reproduced_metrics(reproduce, run, tmp_path / "results")),
    ):
        assert [step for step, _ in curves["train/loss"]] == [0, 1, 2, 3, 4, 5]
        assert [step for step, _ in curves["val/nats_per_dim"]] == [2, 5]
        assert dict(curves["train/loss"]) == logged(run, "train/loss")


def _reproduced_metrics(reproduce, run: Path, out: Path) -> Path:
    """The metrics.csv that ``python -m reproduction reproduce`` writes beside a run's
    evaluation."""
    experiment = reproduce.Experiment(
        "bouncing_balls", "1af", reproduce.CONFIGS / "bouncing_balls_1af.yaml", ()
    )
    from reproduction import run as reproduction

    reproduction._evaluate(experiment, run, out, 2, {"seconds": 1.0}, ["test"])
    return out / "metrics.csv"

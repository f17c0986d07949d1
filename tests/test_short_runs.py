"""Short runs on a user's own data (issue 24, items 1-3): cadences that follow ``--max-steps``
(curves with several points, no Lightning log-interval warning), an estimate of the whole run's
time on stderr once the first steps are timed, and stdout holding the JSON summary only, with
absolute paths."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import yaml

from seqflows.app.cli import main
from seqflows.app.config import Config, default_cadences, load_config
from test_owndata import video_array

from helpers import TINY_RUN

lightning = pytest.importorskip("lightning")
TINY_MODEL = ["data.num_workers=0", "model.hidden=4", "train.batch_size=2"]


def train_recording_warnings(capsys, *arguments: str) -> tuple[str, str, list[str]]:
    """``seqflows train ARGUMENTS``: its stdout, stderr and the messages of every warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = main(["train", *arguments])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return captured.out, captured.err, [str(warning.message) for warning in caught]


def test_unset_cadences_follow_max_steps_and_given_ones_are_kept():
    assert default_cadences(60) == {"log_every": 3, "val_every": 6, "checkpoint_every": 6}
    assert default_cadences(1) == {"log_every": 1, "val_every": 1, "checkpoint_every": 1}
    short = Config.from_dict({}, ["train.max_steps=60"]).train
    assert (short.log_every, short.val_every, short.checkpoint_every) == (3, 6, 6)
    # the defaults of the paper's 100k steps are those of seqflows 0.1
    paper = Config.from_dict({}).train
    assert (paper.log_every, paper.val_every, paper.checkpoint_every) == (50, 1000, 1000)
    given = Config.from_dict({}, ["train.max_steps=60", "train.log_every=7"]).train
    assert (given.log_every, given.val_every) == (7, 6)
    # the own-data configurations leave them unset; the paper's keep their own
    video = load_config("my_video_array", ["data.path=v.npy", "train.max_steps=60"]).train
    assert (video.log_every, video.val_every, video.checkpoint_every) == (3, 6, 6)
    assert load_config("mmnist_1af", ["train.max_steps=60"]).train.val_every == 2000


def test_a_short_run_on_a_video_array_draws_curves_estimates_its_time_and_prints_json_only(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    video_array(Path("videos.npy"))
    out, err, warned = train_recording_warnings(
        capsys,
        "my_video_array",
        "data.path=videos.npy",
        *TINY_MODEL,
        "--out",
        "runs/videos",
        "--max-steps",
        "40",
    )
    summary = json.loads(out)  # stdout: the summary and nothing else
    run = tmp_path.resolve() / "runs" / "videos"
    assert summary["run"] == str(run) and summary["steps"] == 40
    for key in ("last_checkpoint", "best_checkpoint", "log_dir"):  # all absolute
        assert Path(summary[key]).is_absolute() and Path(summary[key]).exists(), key
        assert Path(summary[key]).is_relative_to(run), key
    # What seqflows says goes to stderr, with the estimate once the first steps are timed.
    said = [line for line in err.splitlines() if line.startswith("seqflows: ")]
    assert said[0].startswith("seqflows: read from the data: ")
    assert said[1].startswith("seqflows: training 1-AF")
    estimate = (
        r"^seqflows: about [\d.]+ s a step: the 40 steps of this run take about \d+ (s|min)$"
    )
    assert len([line for line in said if re.match(estimate, line)]) == 1, err
    # Cadences from the 40 steps: a logged point every 2 steps, a validation every 4.
    stored = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (stored["log_every"], stored["val_every"], stored["checkpoint_every"]) == (2, 4, 4)
    from seqflows.app.metrics_csv import read_run_metrics

    curves = read_run_metrics(run)
    assert len(curves["train/loss"]) >= 15 and len(curves["val/nats_per_dim"]) >= 8
    assert not [message for message in warned if "logging interval" in message], warned
    assert "logging interval" not in err


def test_a_given_log_interval_longer_than_the_run_gives_no_lightning_warning(tmp_path, capsys):
    tiny = [item for item in TINY_RUN if not item.startswith("train.log_every")]
    out, err, warned = train_recording_warnings(
        capsys,
        "bouncing_balls_1af",
        *tiny,
        "data.size=8",
        "data.num_frames=8",
        "data.length=6",
        "data.validation_sequences=2",
        "data.test_sequences=2",
        "model.window=1",
        "train.log_every=50",
        "--out",
        str(tmp_path / "run"),
        "--max-steps",
        "3",
        "--no-progress",
    )
    assert json.loads(out)["steps"] == 3
    assert not [message for message in warned if "logging interval" in message], warned
    assert "logging interval" not in err and "seqflows: about" not in err  # --no-progress

"""New data against a trained model (issue 24, items 4 and 6).

From the command line (``evaluate`` with ``data.path=`` another file): the file is checked
against what the checkpoint models before anything else, in those terms; a new file's splits
are its own; a series far outside the model's standardisation gets a warning. In Python: a
loaded model's ``preprocessing`` checks the frames' shape, and its ``inverse`` brings samples
back to the data's units.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import seqflows
from seqflows.app.cli import main
from seqflows.data import Preprocessing
from test_owndata import float_series, video_array

from helpers import TINY_RUN

pytest.importorskip("lightning")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny 1-AF trained on a video array (12 sequences of 8 frames, 8x8: 1 validation and
    1 test sequence) and one trained on a float series (20 sequences of 12 steps, D = 3)."""
    folder = tmp_path_factory.mktemp("new_data")
    videos = video_array(folder / "videos.npy")
    series = folder / "series.npy"
    np.save(series, float_series())
    for name, configuration, path in (
        ("video", "my_video_array", videos),
        ("series", "my_time_series", series),
    ):
        arguments = ["train", configuration, f"data.path={path}", *TINY_RUN, "--no-progress"]
        status = main([*arguments, "--out", str(folder / name), "--max-steps", "2"])
        assert status == 0
    rendered = ["data.size=8", "data.num_frames=8", "data.length=6", "model.window=1"]
    arguments = ["train", "bouncing_balls_1af", *TINY_RUN, *rendered, "--no-progress"]
    assert main([*arguments, "--out", str(folder / "balls"), "--max-steps", "2"]) == 0
    return {
        "folder": folder,
        "balls": folder / "balls" / "checkpoints" / "best.ckpt",
        "videos": videos,
        "series": series,
        "video": folder / "video" / "checkpoints" / "best.ckpt",
        "series_run": folder / "series" / "checkpoints" / "best.ckpt",
    }


def evaluate(capsys, checkpoint: Path, *arguments: str) -> tuple[int, str, str]:
    status = main(["evaluate", str(checkpoint), *arguments, "--no-progress"])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqflows: error: "), err
    return lines[0]


def test_a_video_checkpoint_given_a_series_says_what_each_holds(runs, capsys):
    status, _, err = evaluate(capsys, runs["video"], f"data.path={runs['series']}")
    line = one_error_line(err)
    assert status == 2
    assert line.startswith(f"seqflows: error: {runs['series']}: the checkpoint models video ")
    assert "(C, H, W) = (1, 8, 8)" in line and "series of D = 3 values per step" in line
    assert "model.conditioner" not in line  # a setting that cannot change after training

    status, _, err = evaluate(capsys, runs["series_run"], f"data.path={runs['videos']}")
    line = one_error_line(err)
    assert status == 2
    assert line.startswith(f"seqflows: error: {runs['videos']}: the checkpoint models vector ")
    assert "this file holds video frames (C, H, W) = (1, 8, 8)" in line
    assert "data.mean" not in line


def test_frames_of_another_size_are_refused_at_once_in_the_models_terms(runs, capsys):
    """Two 16x16 sequences: not the training run's 1 + 1 held-out sequences (which leave none
    to train on), not "set data.size=16", but the frame shapes of the model and of the file."""
    bigger = runs["folder"] / "bigger.npy"
    np.save(bigger, np.zeros((2, 8, 16, 16), np.uint8))
    for extra in ([], ["data.size=16"]):
        status, _, err = evaluate(capsys, runs["video"], f"data.path={bigger}", *extra)
        line = one_error_line(err)
        assert status == 2
        assert line.startswith(f"seqflows: error: {bigger}: the checkpoint models video frames ")
        assert "(1, 8, 8)" in line
        assert "this file holds video frames (C, H, W) = (1, 16, 16)" in line
        assert "[test]" not in line and "set data." not in line and "sequences cannot" not in line


def test_a_model_of_rendered_frames_checks_a_file_given_to_it(runs, capsys):
    """bouncing_balls (8x8) given a 16x16 array: the file is read and refused (it was ignored:
    the stored data.dataset kept rendering balls)."""
    bigger = runs["folder"] / "bigger_for_balls.npy"
    np.save(bigger, np.zeros((4, 8, 16, 16), np.uint8))
    status, _, err = evaluate(capsys, runs["balls"], f"data.path={bigger}")
    line = one_error_line(err)
    assert status == 2 and line.startswith(f"seqflows: error: {bigger}: the checkpoint models")
    assert "(1, 8, 8)" in line and "(1, 16, 16)" in line


def test_a_new_files_splits_are_its_own(runs, capsys):
    """30 new sequences: the test split is 10% of them (3), not the training run's 1."""
    new = video_array(runs["folder"] / "new_videos.npy", count=30)
    status, out, err = evaluate(capsys, runs["video"], f"data.path={new}", "--json")
    assert status == 0, err
    result = json.loads(out)
    assert result["sequences"] == 3 and result["protocol"]["path"] == str(new)
    status, out, err = evaluate(
        capsys, runs["video"], f"data.path={new}", "data.test_sequences=5", "--json"
    )
    assert status == 0, err
    assert json.loads(out)["sequences"] == 5  # given on the command line: kept
    status, out, err = evaluate(capsys, runs["video"], "--json")  # the training file: its split
    assert status == 0, err
    assert json.loads(out)["sequences"] == 1


def test_a_series_far_outside_the_standardisation_gets_a_warning(runs, capsys):
    scaled = runs["folder"] / "series_x10.npy"
    np.save(scaled, float_series() * 10)
    status, out, err = evaluate(capsys, runs["series_run"], f"data.path={scaled}", "--json")
    assert status == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("seqflows: warning: ")]
    assert len(warnings) == 1, err
    assert f"{scaled}: far outside the model's standardisation" in warnings[0]
    assert "dimension" in warnings[0] and "mean" in warnings[0] and "sd" in warnings[0]
    assert json.loads(out)["protocol"]["path"] == str(scaled)

    copy = runs["folder"] / "series_copy.npy"  # the training data under another name
    shutil.copy(runs["series"], copy)
    status, _, err = evaluate(capsys, runs["series_run"], f"data.path={copy}", "--json")
    assert status == 0, err
    assert "warning" not in err


def test_a_loaded_models_preprocessing_checks_the_frame_shape(runs, tmp_path):
    model = seqflows.load(runs["video"])
    frames = torch.from_numpy(np.load(runs["videos"])[:2])  # (B, T, H, W): no channel axis
    with pytest.raises(ValueError, match=r"add the channel axis") as caught:
        model.preprocessing(frames, seed=0)
    assert "(2, 8, 8, 8)" in str(caught.value) and "(1, 8, 8)" in str(caught.value)
    score = model.log_prob(model.preprocessing(frames[:, :, None], seed=0))
    assert score.shape == (2, 8 - model.burn_in) and torch.isfinite(score).all()

    folder = model.save_pretrained(tmp_path / "saved")  # a saved folder checks alike
    stored = json.loads((folder / "config.json").read_text())["preprocessing"]
    assert set(stored) == {"noise", "mean", "std"}  # the frame shape is the model's, stored apart
    with pytest.raises(ValueError, match=r"add the channel axis"):
        seqflows.load(folder).preprocessing(frames, seed=0)


def test_a_loaded_series_model_samples_in_the_datas_units(runs):
    model = seqflows.load(runs["series_run"])
    x = torch.from_numpy(float_series()[:4])  # (B, T, 3): walks around 1000, 5 and -300
    z = model.preprocessing(x)
    with torch.no_grad():
        sampled = model.sample(4, 5, context=z[:, : model.burn_in])
    future = model.preprocessing.inverse(sampled)
    assert future.shape == (4, 5, 3) and future.dtype == torch.float64
    assert (future[..., 0] > 500).all() and (future[..., 2] < -100).all()
    torch.testing.assert_close(model.preprocessing.inverse(z), x)
    with pytest.raises(ValueError, match=r"\(4, 5, 2\): the model takes frames \(3,\)"):
        model.preprocessing.inverse(torch.zeros(4, 5, 2))
    with pytest.raises(ValueError, match=r"standardisation has 3 dimensions"):  # shape unknown
        Preprocessing("none", mean=(0.0,) * 3, std=(1.0,) * 3).inverse(torch.zeros(4, 5, 2))
    with pytest.raises(ValueError, match=r"the model takes frames \(3,\)"):
        model.preprocessing(x[..., :2])

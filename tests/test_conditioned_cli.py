"""Conditioned models from the command line: ``seqflows train`` and ``seqflows evaluate`` with
``data.conditions`` on the controlled balls, an .npz of frames and conditions, a CSV series with
covariate columns and a BAIR-like store with actions; bad conditions are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seqflows.app.cli import main
from seqflows.app.config import Config, load_config
from seqflows.app.datasets import evaluation_set, training_set
from seqflows.app.resolution import inferred_settings, resolve_data
from seqflows.data.store import ShardData, StoreWriter, convert_shards, open_dataset

from helpers import TINY_RUN

pytest.importorskip("lightning")

TINY = [*TINY_RUN, "evaluate.batch_size=4"]
TINY_FRAMES = [
    *TINY,
    "data.size=8",
    "data.length=5",
    "model.window=1",
    "data.validation_sequences=2",
    "data.test_sequences=3",
]
TINY_SLVM = [
    "model.latent_dim=2",
    "model.lstm_hidden=4",
    "model.encoder_features=4",
    "model.conv_width=4",
]


def train_and_evaluate(
    capsys: pytest.CaptureFixture, out: Path, config: str, *overrides: str
) -> tuple[str, dict, dict]:
    """``seqflows train`` (2 steps) then ``seqflows evaluate --json`` of its checkpoint: what
    the training says (stderr), the stored configuration and the evaluation's result."""
    command = ["train", config, "--out", str(out), "--max-steps", "2", *overrides]
    assert main(command) == 0, capsys.readouterr().err
    trained = capsys.readouterr().err
    checkpoint = out / "checkpoints" / "last.ckpt"
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)["seqflows"]["config"]
    evaluate = ["evaluate", str(checkpoint), "--json", "--no-progress", "--iwae-samples", "2"]
    assert main(evaluate) == 0, capsys.readouterr().err
    return trained, stored, json.loads(capsys.readouterr().out)


def error_of(capsys: pytest.CaptureFixture, command: list[str]) -> str:
    """The one error line of a command that must fail with exit status 2."""
    assert main(command) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seqflows: error: "), err
    return lines[0]


def test_controlled_balls_train_and_evaluate_with_actions(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    trained, stored, result = train_and_evaluate(
        capsys, out, "controlled_balls_1af", *TINY_FRAMES, "data.num_frames=8"
    )
    assert "seqflows: read from the data: model.condition_dim=2" in trained
    assert "training 1-AF" in trained and "on controlled_balls [1, 8, 8]" in trained
    assert stored["model"]["condition_dim"] == 2 and stored["data"]["conditions"] == ["action"]
    assert result["protocol"]["conditions"] == ["action"] and result["sequences"] == 3
    assert np.isfinite(result["nats_per_dim"]) and result["bound"] == "exact log-likelihood"
    checkpoint = str(out / "checkpoints" / "last.ckpt")
    # Fig. 4's rows of a conditioned model: with the sequence's conditions.
    assert (
        main(["visualize", checkpoint, "--out", str(tmp_path / "figures"), "--frames", "3"]) == 0
    )
    assert (tmp_path / "figures" / "flow_rows.png").stat().st_size > 1000
    capsys.readouterr()
    # The model needs its conditions: evaluating it without them is refused, naming both.
    line = error_of(capsys, ["evaluate", checkpoint, "data.conditions=null"])
    assert "model.condition_dim=2 but the data gives no conditions" in line


def test_unconditioned_twin_of_a_conditioned_config_is_one_override() -> None:
    config = load_config("controlled_balls_1af", ["data.conditions=null", "data.num_frames=14"])
    resolved = resolve_data(config)
    assert resolved.condition_dim == 0 and inferred_settings(config, resolved) == {}
    item = training_set(config, resolved)[0]
    assert isinstance(item, torch.Tensor) and item.shape == (13, 1, 32, 32)
    with_actions = load_config("controlled_balls_1af", ["data.num_frames=14"])
    conditioned = resolve_data(with_actions)
    assert conditioned.condition_dim == 2
    assert inferred_settings(with_actions, conditioned) == {"model.condition_dim": 2}
    frames, actions = training_set(with_actions, conditioned)[0]
    assert frames.shape == (13, 1, 32, 32) and actions.shape == (13, 2)
    # The same crops with and without the conditions: only the items differ.
    plain_item = evaluation_set(config, "test", 2)[1]
    conditioned_item = evaluation_set(with_actions, "test", 2, conditions=True)[1]
    assert torch.equal(plain_item, conditioned_item[0]) and conditioned_item[1].shape == (13, 2)
    # Shipped unconditioned configurations stay as they were.
    plain_config = load_config("bouncing_balls_1af", ["data.num_frames=14"])
    assert resolve_data(plain_config).condition_dim == 0 and plain_config.data.conditions is None


def write_npz(path: Path, steps: int = 6, condition_steps: int | None = None) -> Path:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(12, steps, 1, 8, 8), dtype=np.uint8)
    conditions = rng.normal(size=(12, condition_steps or steps, 3)).astype(np.float32)
    np.savez(path, frames=frames, actions=conditions)
    return path


def test_npz_of_frames_and_conditions_trains_an_slvm(tmp_path, capsys) -> None:
    data = write_npz(tmp_path / "controlled.npz")
    trained, stored, result = train_and_evaluate(
        capsys,
        tmp_path / "run",
        "bouncing_balls_slvm_1af",
        *TINY_FRAMES,
        *TINY_SLVM,
        f"data.path={data}",
        "data.dataset=array",
        "data.conditions=[actions]",
    )
    assert "model.condition_dim=3" in trained and stored["model"]["condition_dim"] == 3
    assert result["bound"] == "IWAE lower bound, K=2" and result["sequences"] == 3
    assert np.isfinite(result["iwae_nats_per_dim"])


def test_csv_covariate_columns_become_conditions(tmp_path, capsys) -> None:
    rows = ["id,time,load,price,temperature"]
    rng = np.random.default_rng(1)
    for sequence in range(20):
        for step in range(8):
            load, price, temperature = rng.normal(size=3)
            rows.append(f"{sequence},{step},{load:.4f},{price:.4f},{temperature:.4f}")
    csv = tmp_path / "series.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    command = ["convert", "series", str(csv), str(store), "--id-column", "id"]
    assert main([*command, "--time-column", "time", "--validation", "0.1", "--test", "0.15"]) == 0
    capsys.readouterr()
    frames, covariates = open_dataset(store, "train", ["temperature"])[0]  # from Python too
    assert frames.shape == (8, 2) and covariates.shape == (8, 1)
    whole = open_dataset(store, "train")[0]
    assert torch.equal(whole[:, :2], frames) and torch.allclose(whole[:, 2:].float(), covariates)
    trained, stored, result = train_and_evaluate(
        capsys,
        tmp_path / "run",
        "my_time_series_covariates",
        *TINY,
        f"data.path={store}",
        "data.conditions=[temperature]",
        "data.length=5",
        "model.window=2",
    )
    assert "model.condition_dim=1" in trained and "on store [2]" in trained
    assert stored["model"]["condition_dim"] == 1 and len(stored["data"]["mean"]) == 2
    assert result["protocol"]["frame_shape"] == [2] and np.isfinite(result["nats_per_dim"])
    # A column that is not in the CSV: the error lists the store's columns and arrays.
    line = error_of(
        capsys,
        ["train", "my_time_series_covariates", f"data.path={store}", "--out", str(tmp_path / "x")],
    )
    assert "no per-frame array 'temperature'" not in line
    assert f"{store} [train]" in line and "'holiday'" in line and "load, price" in line
    every = "data.conditions=[load,price,temperature]"
    out = ["--out", str(tmp_path / "x")]
    line = error_of(
        capsys, ["train", "my_time_series_covariates", f"data.path={store}", every, *out]
    )
    assert "take every column" in line and "at least one must remain" in line


def write_bair_like(root: Path, broken: bool = False) -> Path:
    """A BAIR-like store of 8x8 RGB frames with ``action`` (T, 4) and ``endeffector_pos``
    (T, 3) per frame (``broken``: the training shard's actions cut short afterwards, as a
    damaged file would be: the writer refuses such arrays)."""
    rng = np.random.default_rng(2)

    def shard(split: str) -> ShardData:
        sequences = [rng.integers(0, 256, (8, 3, 8, 8), dtype=np.uint8) for _ in range(4)]
        return ShardData(
            sequences=sequences,
            metadata=[{"id": n} for n in range(4)],
            arrays={
                "action": [rng.normal(size=(8, 4)).astype(np.float32) for _ in range(4)],
                "endeffector_pos": [rng.normal(size=(8, 3)).astype(np.float32) for _ in range(4)],
            },
        )

    tasks = [(split, f"{split}-0", split) for split in ("train", "validation", "test")]
    convert_shards(StoreWriter(root, "bair", 1, (3, 8, 8)), tasks, shard)
    if broken:
        path = root / "train" / "train-0.arrays.npz"
        with np.load(path) as arrays:
            kept = {key: arrays[key] for key in arrays}
        np.savez(path, **{**kept, "action": kept["action"][:7]})
    return root


BAIR_TINY = [
    *TINY,
    "data.size=8",
    "data.length=4",
    "data.eval_length=6",
    "model.window=1",
    "train.val_sequences=2",
]


def test_bair_like_store_with_actions_and_end_effector(tmp_path, capsys) -> None:
    store = write_bair_like(tmp_path / "bair")
    trained, stored, result = train_and_evaluate(
        capsys,
        tmp_path / "run",
        "bair_1af_actions",
        *BAIR_TINY,
        f"data.path={store}",
        "data.conditions=[action,endeffector_pos]",
    )
    assert "model.condition_dim=7" in trained and stored["model"]["condition_dim"] == 7
    assert result["protocol"]["conditions"] == ["action", "endeffector_pos"]
    assert result["sequences"] == 4 and np.isfinite(result["nats_per_dim"])
    config = load_config("bair_slvm_1af_actions", [f"data.path={store}", *BAIR_TINY])
    assert resolve_data(config).condition_dim == 4  # [action]


def test_bad_conditions_are_one_line_errors(tmp_path, capsys) -> None:
    out = ["--out", str(tmp_path / "run")]
    mismatch = write_npz(tmp_path / "mismatch.npz", condition_steps=5)
    line = error_of(
        capsys,
        [
            "train",
            "bouncing_balls_1af",
            "data.dataset=array",
            f"data.path={mismatch}",
            "data.conditions=[actions]",
            *out,
        ],
    )
    assert str(mismatch) in line and "'actions' have shape (12, 5, 3)" in line
    line = error_of(capsys, ["train", "controlled_balls_1af", "model.condition_dim=3", *out])
    assert "controlled_balls" in line and "model.condition_dim=3" in line and "hold 2" in line
    line = error_of(capsys, ["train", "bouncing_balls_1af", "data.conditions=[action]", *out])
    assert "bouncing_balls: data.conditions=['action']" in line and "frames only" in line
    line = error_of(capsys, ["train", "bouncing_balls_1af", "model.condition_dim=2", *out])
    assert "model.condition_dim=2 but the data gives no conditions" in line
    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((12, 6, 1, 8, 8), np.uint8))
    line = error_of(
        capsys,
        [
            "train",
            "bouncing_balls_1af",
            "data.dataset=array",
            f"data.path={frames}",
            "data.conditions=[actions]",
            *out,
        ],
    )
    assert str(frames) in line and "holds frames only" in line
    line = error_of(
        capsys,
        [
            "train",
            "bouncing_balls_1af",
            "data.dataset=array",
            f"data.path={mismatch}",
            "data.conditions=[speed]",
            *out,
        ],
    )
    assert "no array 'speed'" in line and "'actions'" in line
    store = write_bair_like(tmp_path / "bair", broken=True)
    line = error_of(
        capsys,
        ["train", "bair_1af_actions", f"data.path={store}", "data.conditions=[gripper]", *out],
    )
    assert f"{store} [train]" in line and "'gripper'" in line and "action, endeffector_pos" in line
    line = error_of(capsys, ["train", "bair_1af_actions", *BAIR_TINY, f"data.path={store}", *out])
    assert "values of 'action'" in line and "same length" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_config_conditions_are_validated() -> None:
    with pytest.raises(ValueError, match="data.conditions must be a non-empty list"):
        Config.from_dict({"data": {"conditions": []}})
    with pytest.raises(ValueError, match="name a value twice"):
        Config.from_dict({}, ["data.conditions=[action, action]"])
    with pytest.raises(ValueError, match="speed must be >= 0"):
        Config.from_dict({}, ["data.speed=-1"])

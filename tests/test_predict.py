"""``seqflows predict``: per-frame MSE, PSNR and SSIM of predicted futures, as video-prediction
papers report them (mean prediction, best of K samples)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seqflows.app.cli import main
from seqflows.app.prediction import MAX_PSNR, _predict_batch, frame_metrics

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = [
    "data.num_workers=0",
    "data.validation_sequences=2",
    "train.batch_size=2",
    "train.val_every=2",
    "train.checkpoint_every=2",
    "train.log_every=1",
]


def train(folder: Path, config: str | None, *overrides: str) -> str:
    """A model trained 2 steps by the command line; its last checkpoint."""
    pytest.importorskip("lightning")
    arguments = ["train"] + ([str(CONFIGS / config)] if config else [])
    status = main(
        [*arguments, "--out", str(folder), "--max-steps", "2", "--no-progress", *SMALL, *overrides]
    )
    assert status == 0
    return str(folder / "checkpoints" / "last.ckpt")


# The metrics ------------------------------------------------------------------------------


def test_a_perfect_prediction_has_mse_0_ssim_1_and_the_largest_psnr() -> None:
    real = torch.rand(3, 4, 2, 12, 12, generator=torch.Generator().manual_seed(0))
    scores = frame_metrics(real.clone(), real)
    assert scores["mse"].shape == scores["psnr"].shape == scores["ssim"].shape == (3, 4)
    assert torch.all(scores["mse"] == 0)
    torch.testing.assert_close(scores["ssim"], torch.ones(3, 4))
    assert torch.all(scores["psnr"] == MAX_PSNR)  # infinite for an exact frame: capped


def test_a_known_error_gives_the_known_mse_and_psnr() -> None:
    real = 0.2 + 0.5 * torch.rand(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    scores = frame_metrics(real + 0.1, real)  # stays inside [0, 1]
    torch.testing.assert_close(scores["mse"], torch.full((2, 3), 0.01))
    torch.testing.assert_close(scores["psnr"], torch.full((2, 3), 20.0))  # 10 log10(1 / 0.01)
    assert torch.all(scores["ssim"] < 1)
    # Half the frame off by 0.2: MSE 0.02, PSNR 10 log10(50).
    shifted = real.clone()
    shifted[..., :4] += 0.2
    scores = frame_metrics(shifted, real)
    torch.testing.assert_close(scores["mse"], torch.full((2, 3), 0.02))
    torch.testing.assert_close(scores["psnr"], torch.full((2, 3), 10 * math.log10(50)))


def test_predictions_are_clipped_to_the_range_of_frames() -> None:
    real = torch.zeros(1, 2, 1, 8, 8)
    real[..., 4:] = 1.0
    overshoot = real * 1.5 - 0.5  # -0.5 where real is 0, 1.0 where it is 1
    assert torch.all(frame_metrics(overshoot, real)["mse"] == 0)


def test_vectors_get_the_mse_only_and_small_frames_no_ssim() -> None:
    real = torch.zeros(2, 5, 3)
    scores = frame_metrics(real + torch.tensor([0.0, 0.3, 0.0]), real)
    torch.testing.assert_close(scores["mse"], torch.full((2, 5), 0.03))
    assert scores["psnr"] is None and scores["ssim"] is None
    small = frame_metrics(torch.zeros(1, 2, 1, 5, 8), torch.zeros(1, 2, 1, 5, 8))
    assert small["ssim"] is None and torch.all(small["psnr"] == MAX_PSNR)
    with pytest.raises(ValueError, match="must have the same shape"):
        frame_metrics(torch.zeros(1, 2, 1, 8, 8), torch.zeros(1, 3, 1, 8, 8))


class OffsetModel:
    """A stand-in model whose k-th sampled future of every sequence is its last context frame
    plus OFFSETS[k] (temperature 0: plus 0), so every metric is known."""

    OFFSETS = (0.3, -0.1, 0.2, -0.2)
    event_shape = (1, 8, 8)

    def __init__(self) -> None:
        self.drawn = 0  # samples per sequence drawn so far

    def sample(self, num, length, context, generator=None, temperature=1.0):
        G = 2
        last = context[:, -1:].expand(num, length, *self.event_shape)
        if temperature == 0:
            return last.clone()
        offsets = torch.tensor(self.OFFSETS[self.drawn : self.drawn + num // G])
        self.drawn += num // G
        return last + offsets.repeat_interleave(G).view(num, 1, 1, 1, 1)


@pytest.mark.parametrize("per_call", [2, 3, 100])
def test_mean_prediction_best_of_k_and_sample_average(per_call: int) -> None:
    """Two still sequences, four samples off by 0.3, -0.1, 0.2, -0.2: the best sample is off by
    0.1, the average sample by 0.045 in MSE, the mean of the samples by 0.05."""
    observed = torch.full((2, 3, 1, 8, 8), 0.5)
    observed[1] = 0.4
    real = observed[:, -1:].expand(2, 5, 1, 8, 8).clone()
    found, _ = _predict_batch(OffsetModel(), observed, real, 5, 4, per_call, None)
    expected_mse = {
        "best_of_k": 0.01,
        "sample_average": (0.09 + 0.01 + 0.04 + 0.04) / 4,
        "mean_prediction": 0.05**2,
        "temperature_0": 0.0,
    }
    for kind, mse in expected_mse.items():
        torch.testing.assert_close(found[kind]["mse"], torch.full((2, 5), mse), msg=kind)
    torch.testing.assert_close(found["best_of_k"]["psnr"], torch.full((2, 5), 20.0))
    ssim = {kind: float(found[kind]["ssim"].mean()) for kind in expected_mse}
    assert ssim["temperature_0"] == pytest.approx(1.0)
    assert ssim["best_of_k"] > ssim["sample_average"]


# The command ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flow_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 1-AF (window 2) on 8x8 bouncing balls."""
    folder = tmp_path_factory.mktemp("predict")
    return train(
        folder,
        "bouncing_balls_1af.yaml",
        "data.size=8",
        "data.length=4",
        "data.test_sequences=5",
        "model.window=2",
        "model.hidden=4",
    )


def test_predict_reports_every_prediction_per_frame(flow_checkpoint, tmp_path, capsys):
    capsys.readouterr()
    out = tmp_path / "prediction"
    command = ["predict", flow_checkpoint, "--out", str(out), "--samples", "4", "--length", "3"]
    assert main([*command, "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # the progress goes to stderr: stdout stays JSON
    assert captured.err.startswith("predict test: 5/5 sequences (100%)")
    assert json.loads((out / "prediction.json").read_text()) == result
    assert (out / "prediction.png").stat().st_size > 1000
    assert result["written"] == {
        "json": str(out / "prediction.json"),
        "png": str(out / "prediction.png"),
    }
    protocol = result["protocol"]
    assert protocol["sequences"] == 5 and protocol["samples"] == 4
    assert (protocol["context_frames"], protocol["predicted_frames"]) == (2, 3)
    assert result["time_steps"] == [2, 3, 4]
    assert any("LPIPS and FVD are not computed" in note for note in protocol["notes"])
    assert "forecast_scores" not in result and "scores_png" not in result["written"]  # series only
    for kind in ("mean_prediction", "best_of_k", "sample_average", "temperature_0"):
        for metric in ("mse", "psnr", "ssim"):
            per_frame = result[kind]["per_frame"][metric]
            assert len(per_frame) == 3 and all(math.isfinite(value) for value in per_frame)
            assert result[kind]["mean"][metric] == pytest.approx(np.mean(per_frame))
    mean = {kind: result[kind]["mean"] for kind in ("best_of_k", "sample_average")}
    assert mean["best_of_k"]["mse"] <= mean["sample_average"]["mse"]
    assert mean["best_of_k"]["ssim"] >= mean["sample_average"]["ssim"]
    # the mean of the samples is never worse in MSE than the average sample (convexity)
    for frame in range(3):
        assert (
            result["mean_prediction"]["per_frame"]["mse"][frame]
            <= result["sample_average"]["per_frame"]["mse"][frame] + 1e-12
        )
    # Deterministic: the same numbers again.
    assert main([*command, "--out", str(tmp_path / "again"), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {kind: again[kind] for kind in protocol["predictions"]} == {
        kind: result[kind] for kind in protocol["predictions"]
    }
    # The table names each prediction and its metrics.
    assert main([*command, "--context", "3", "--name", "longer"]) == 0
    table = capsys.readouterr().out
    assert "best_of_k" in table and "PSNR" in table and "3 context frames" in table
    assert (out / "longer.json").is_file()


def test_predict_samples_with_batch_norm_folded(flow_checkpoint, tmp_path, capsys, monkeypatch):
    from seqflows import FlowModel
    from seqflows.inference import folded_layers

    seen = []
    original = FlowModel.sample

    def spy(self, *args, **kwargs):
        seen.append(folded_layers(self))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FlowModel, "sample", spy)
    command = ["predict", flow_checkpoint, "--out", str(tmp_path), "--samples", "2"]
    assert main([*command, "--length", "2", "--sequences", "2", "--no-progress"]) == 0
    assert "best_of_k" in capsys.readouterr().out
    assert seen and set(seen) == {8}  # every call: the 1-AF's 8 BatchNorms folded


def test_predict_refuses_what_it_cannot_do(flow_checkpoint, tmp_path, capsys):
    out = str(tmp_path / "p")
    capsys.readouterr()
    assert main(["predict", flow_checkpoint, "--out", out, "--context", "1"]) == 2
    assert "context 1 is too short: this model needs 2 context frames" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["predict", flow_checkpoint, "--out", out, "--samples", "0"])
    assert exited.value.code == 2
    assert "argument --samples: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["predict", flow_checkpoint, "--out", out, "model.window=3"]) == 2
    assert "only data.* and evaluate.* can change" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_predict_vector_series_and_slvms(tmp_path, capsys):
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.integers(-3, 4, size=(16, 10, 3)), axis=1) + 128
    path = tmp_path / "series.npy"
    np.save(path, np.clip(walk, 0, 255).astype(np.uint8))
    vectors = train(
        tmp_path / "vectors",
        None,
        "data.dataset=array",
        f"data.path={path}",
        "data.length=5",
        "data.test_sequences=4",
        "model.conditioner=mlp",
        "model.window=2",
        "model.hidden=8",
    )
    capsys.readouterr()
    out = tmp_path / "vector_prediction"
    assert main(["predict", vectors, "--out", str(out), "--length", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"]["frame_shape"] == [3] and result["time_steps"] == list(range(2, 10))
    assert result["best_of_k"]["mean"]["psnr"] is None
    assert result["mean_prediction"]["per_frame"]["ssim"] is None
    assert len(result["mean_prediction"]["per_frame"]["mse"]) == 8
    notes = result["protocol"]["notes"]
    assert any("vector series get the MSE and the forecast scores" in note for note in notes)
    # uint8 series are not standardised: scored as the model sees them, values / 255
    assert (
        result["protocol"]["forecast_scores"]["units"]
        == "the series' values as the model sees them"
    )
    assert 0 < result["forecast_scores"]["mean"]["crps"] < 1
    # a stored sequence of 10 frames has no crop of 2 + 9
    assert main(["predict", vectors, "--out", str(out), "--length", "9"]) == 2
    assert "cannot crop 11 frames from sequences of 10 frames" in capsys.readouterr().err
    slvm = train(
        tmp_path / "slvm",
        "bouncing_balls_slvm.yaml",
        "data.size=8",
        "data.length=4",
        "data.test_sequences=3",
        "model.window=1",
        "model.latent_dim=4",
        "model.lstm_hidden=8",
        "model.encoder_features=8",
        "model.conv_width=4",
    )
    capsys.readouterr()
    out = tmp_path / "slvm_prediction"
    assert main(["predict", slvm, "--out", str(out), "--samples", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "SLVM" and result["protocol"]["context_frames"] == 1
    assert len(result["best_of_k"]["per_frame"]["ssim"]) == 10

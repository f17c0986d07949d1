"""Proper scores of sampled futures (CRPS, CRPS-sum, energy score, coverage, MAE of the median)
and ``seqflows predict`` on vector series: the scores, rolling origins, the table."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import norm

from seqflows.app.cli import main
from seqflows.app.forecast_scores import forecast_scores, summarize_scores
from seqflows.app.prediction import _windows, forecast_samples

from helpers import TINY_RUN, make_flow

pytest.importorskip("scoringrules")


def gaussian_crps(mu: float, sigma: float, y: np.ndarray) -> np.ndarray:
    """The closed-form CRPS of N(mu, sigma^2) at y (Gneiting et al., 2005)."""
    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / math.sqrt(math.pi))


# The scores -------------------------------------------------------------------------------


def test_the_crps_of_gaussian_samples_is_the_closed_form() -> None:
    """N = 40 forecasts of K = 1000 samples from N(mu, sigma^2) at each of 4 targets: their mean
    CRPS is the closed form within the Monte Carlo error."""
    N, K, mu, sigma = 40, 1000, 1.5, 2.0
    rng = np.random.default_rng(0)
    values = np.array([1.5, -1.0, 4.0, 9.0])  # near and far
    target = np.broadcast_to(values.reshape(1, 4, 1), (N, 4, 1))  # (N, H, D)
    samples = rng.normal(mu, sigma, size=(K, N, 4, 1))
    crps = forecast_scores(samples, target)["crps"].mean((0, 2))  # (H,)
    expected = gaussian_crps(mu, sigma, values)
    # Monte Carlo error: 6 sd of |X - y| (from the samples) over sqrt(N K), and the
    # V-statistic's bias E|X - X'| / 2K
    spread = np.abs(samples - target).std((0, 1, 3))  # (H,)
    tolerance = 6 * spread / math.sqrt(N * K) + sigma / K
    assert np.all(np.abs(crps - expected) < tolerance), (crps, expected, tolerance)
    assert np.all(tolerance < 0.1 * expected)  # tight enough to tell a wrong formula
    assert not np.allclose(expected, np.abs(values - mu), atol=0.1)  # not the mean's error


def test_a_degenerate_forecast_scores_its_error() -> None:
    """K equal samples f: the CRPS is |f - y|, the energy score the Euclidean error ||f - y||,
    the CRPS-sum |sum f - sum y|, the median f."""
    forecast = np.array([[[1.0, 2.0, -2.0], [0.0, 0.0, 0.0]]])  # (N = 1, H = 2, D = 3)
    target = np.array([[[4.0, 6.0, -2.0], [1.0, -1.0, 1.0]]])
    scores = forecast_scores(np.repeat(forecast[None], 5, axis=0), target)
    np.testing.assert_allclose(scores["crps"], np.abs(forecast - target))
    np.testing.assert_allclose(scores["energy"], [[5.0, math.sqrt(3)]])
    np.testing.assert_allclose(scores["crps_sum"], [[7.0, 1.0]])
    np.testing.assert_allclose(scores["median_error"], np.abs(forecast - target))
    assert scores["in_90"].sum() == 1  # only the exact value -2 lies in the point interval


def test_coverage_and_the_median_of_a_known_ensemble() -> None:
    """Samples 0, 1, ..., 100: the central 50% interval is [25, 75], the 90% one [5, 95]."""
    samples = np.arange(101.0).reshape(101, 1, 1, 1) * np.ones((1, 1, 1, 5))
    target = np.array([[[10.0, 50.0, 97.0, 25.0, 4.0]]])
    scores = forecast_scores(samples, target)
    assert scores["in_50"].ravel().tolist() == [0, 1, 0, 1, 0]
    assert scores["in_90"].ravel().tolist() == [1, 1, 0, 1, 0]
    assert scores["median_error"].ravel().tolist() == [40, 0, 47, 25, 46]
    summary = summarize_scores(scores)
    assert summary["mean"]["coverage_50"] == pytest.approx(0.4)
    assert summary["mean"]["coverage_90"] == pytest.approx(0.6)
    assert summary["mean"]["mae_median"] == pytest.approx(158 / 5)


def test_crps_sum_is_the_crps_of_the_summed_samples() -> None:
    rng = np.random.default_rng(1)
    samples = rng.normal(size=(30, 4, 3, 2)) * [1.0, 3.0] + [5.0, -1.0]  # (K, N, H, D)
    target = rng.normal(size=(4, 3, 2)) + [5.0, -1.0]
    scores = forecast_scores(samples, target)
    total, observed = samples.sum(-1), target.sum(-1)  # (K, N, H), (N, H)
    direct = np.abs(total - observed).mean(0) - 0.5 * np.abs(total[:, None] - total[None]).mean(
        (0, 1)
    )  # E|S - s| - E|S - S'| / 2 over the K samples
    np.testing.assert_allclose(scores["crps_sum"], direct, rtol=1e-10)
    summary = summarize_scores(scores)
    normalized = direct.sum() / np.abs(observed).sum()  # GluonTS's normalisation
    assert summary["mean"]["crps_sum_normalized"] == pytest.approx(normalized)
    assert summary["mean"]["crps_sum"] == pytest.approx(direct.mean())
    assert summary["per_step"]["crps_sum_normalized"] == pytest.approx(
        direct.sum(0) / np.abs(observed).sum(0)
    )
    pairwise = np.abs(samples[:, None] - samples[None]).mean((0, 1))  # (N, H, D)
    per_value = np.abs(samples - target).mean(0) - 0.5 * pairwise
    np.testing.assert_allclose(scores["crps"], per_value, rtol=1e-10)
    np.testing.assert_allclose(summary["per_dimension"]["crps"], per_value.mean(0).T)


def test_crps_sum_normalized_is_close_to_gluonts_multivariate_evaluator() -> None:
    """GluonTS's CRPS-sum (m_sum_mean_wQuantileLoss, with TimeGrad's 19 quantile levels) on the
    same samples: the same normalisation of a quantile-loss approximation of the same CRPS."""
    pd = pytest.importorskip("pandas")
    evaluation = pytest.importorskip("gluonts.evaluation")
    forecast = pytest.importorskip("gluonts.model.forecast")
    rng = np.random.default_rng(3)
    samples = rng.normal(size=(200, 5, 6, 3)) * 2 + 10  # (K, N, H, D)
    target = rng.normal(size=(5, 6, 3)) * 2 + 10
    ours = summarize_scores(forecast_scores(samples, target))["mean"]["crps_sum_normalized"]
    start = pd.Period("2020-01-01", freq="h")
    index = pd.period_range(start, periods=6, freq="h")
    series = [pd.DataFrame(values, index=index) for values in target]
    forecasts = [forecast.SampleForecast(samples[:, n], start_date=start) for n in range(5)]
    evaluator = evaluation.MultivariateEvaluator(
        quantiles=(np.arange(20) / 20.0)[1:], target_agg_funcs={"sum": np.sum}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas on GluonTS's masked arrays and DataFrame.sum
        found, _ = evaluator(iter(series), iter(forecasts), num_series=5)
    assert ours == pytest.approx(found["m_sum_mean_wQuantileLoss"], rel=0.1)
    assert ours != pytest.approx(found["m_sum_mean_wQuantileLoss"] * 30, rel=0.5)


def test_missing_targets_are_not_scored() -> None:
    rng = np.random.default_rng(2)
    samples = rng.normal(size=(20, 2, 3, 2))
    target = rng.normal(size=(2, 3, 2))
    gappy = target.copy()
    gappy[0, 1, 0] = np.nan  # one value of a step
    gappy[1, 2, :] = np.nan  # a whole step
    scores = forecast_scores(samples, gappy)
    complete = forecast_scores(samples, target)
    assert np.isnan(scores["crps"][0, 1, 0]) and np.isnan(scores["in_50"][0, 1, 0])
    assert np.isnan(scores["energy"][1, 2]) and np.isnan(scores["crps_sum"][1, 2])
    kept = ~np.isnan(gappy)
    np.testing.assert_allclose(scores["crps"][kept], complete["crps"][kept])
    # A step with one dimension left: its energy score is that dimension's CRPS
    assert scores["energy"][0, 1] == pytest.approx(complete["crps"][0, 1, 1])
    assert scores["crps_sum"][0, 1] == pytest.approx(complete["crps"][0, 1, 1])
    summary = summarize_scores(scores)
    assert summary["observed"] == pytest.approx(9 / 12)
    assert summary["mean"]["crps"] == pytest.approx(complete["crps"][kept].mean())
    assert math.isfinite(summary["mean"]["energy"])
    # An observed mask gives the same as NaN targets.
    masked = forecast_scores(samples, target, observed=kept)
    for name, values in scores.items():
        np.testing.assert_array_equal(values, masked[name], err_msg=name)
    nothing = summarize_scores(forecast_scores(samples, np.full_like(target, np.nan)))
    assert nothing["mean"]["crps"] is None and nothing["per_step"]["energy"] == [None] * 3
    json.dumps(nothing, allow_nan=False)  # strict JSON


def test_forecast_scores_refuse_mismatched_or_non_finite_samples() -> None:
    with pytest.raises(ValueError, match=r"samples \(K, N, H, D\) and target \(N, H, D\)"):
        forecast_scores(np.zeros((3, 2, 4, 2)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        forecast_scores(np.full((3, 1, 1, 1), np.inf), np.zeros((1, 1, 1)))


def test_forecast_samples_are_the_models_samples_per_sequence() -> None:
    model = make_flow((2,), window=2, dtype=torch.float32)
    past = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    futures = forecast_samples(model, past, 5, 4, generator=torch.Generator().manual_seed(1))
    assert futures.shape == (4, 3, 5, 2)
    with torch.no_grad():
        direct = model.sample(
            12, 5, context=past.repeat(4, 1, 1), generator=torch.Generator().manual_seed(1)
        )
    torch.testing.assert_close(futures, direct.unflatten(0, (4, 3)))
    chunked = forecast_samples(
        model, past, 5, 4, generator=torch.Generator().manual_seed(1), per_call=6
    )  # two samples of each sequence per call
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        calls = [
            model.sample(6, 5, context=past.repeat(2, 1, 1), generator=generator) for _ in range(2)
        ]
    torch.testing.assert_close(chunked, torch.cat(calls).unflatten(0, (4, 3)))


def test_rolling_windows_end_with_the_sequence() -> None:
    crops = torch.arange(2 * 9).view(2, 9)  # context 3, 3 windows of 2 frames
    windows = _windows(crops, 3, 2, 3)
    assert windows.tolist() == [
        [0, 1, 2, 3, 4],
        [2, 3, 4, 5, 6],
        [4, 5, 6, 7, 8],
        [9, 10, 11, 12, 13],
        [11, 12, 13, 14, 15],
        [13, 14, 15, 16, 17],
    ]


# The command ------------------------------------------------------------------------------

FRAMES, SPREAD = 20, 50.0  # frames per sequence; the series' scale in its own units


@pytest.fixture(scope="module")
def series_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 1-AF (window 2, MLP) trained 2 steps on 10 random walks of 20 steps, D = 2, around
    1000 with steps of 50: scores in the data's units are of that scale."""
    pytest.importorskip("lightning")
    folder = tmp_path_factory.mktemp("series")
    rng = np.random.default_rng(0)
    walks = 1000 + SPREAD * np.cumsum(rng.normal(size=(10, FRAMES, 2)), axis=1)
    np.save(folder / "walks.npy", walks)
    settings = [
        *TINY_RUN,
        "data.dataset=array",
        f"data.path={folder / 'walks.npy'}",
        "data.length=5",
        "data.validation_sequences=2",
        "data.test_sequences=3",
        "model.conditioner=mlp",
        "model.window=2",
    ]
    run = folder / "run"
    assert main(["train", "--out", str(run), "--max-steps", "2", "--no-progress", *settings]) == 0
    return str(run / "checkpoints" / "last.ckpt")


def predict_json(capsys: pytest.CaptureFixture, *arguments: str) -> dict:
    capsys.readouterr()
    assert main(["predict", *arguments, "--no-progress", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_predict_scores_the_sampled_futures_of_a_series(series_checkpoint, tmp_path, capsys):
    out = tmp_path / "p"
    command = [series_checkpoint, "--out", str(out), "--samples", "8", "--length", "3"]
    result = predict_json(capsys, *command)
    scores = result["forecast_scores"]
    assert set(scores) == {"per_step", "mean", "per_dimension", "observed"}
    names = {
        "crps",
        "crps_sum",
        "crps_sum_normalized",
        "energy",
        "coverage_50",
        "coverage_90",
        "mae_median",
    }
    assert set(scores["per_step"]) == set(scores["mean"]) == names
    assert scores["observed"] == 1.0
    for name in names:
        per_step = scores["per_step"][name]
        assert len(per_step) == 3 and all(math.isfinite(value) for value in per_step)
    for name in ("crps", "crps_sum", "energy", "coverage_50", "coverage_90", "mae_median"):
        assert scores["mean"][name] == pytest.approx(np.mean(scores["per_step"][name]))
    assert 0 <= scores["mean"]["coverage_50"] <= scores["mean"]["coverage_90"] <= 1
    # In the data's units (steps of 50), not the standardised ones (about 1).
    assert scores["mean"]["crps"] > 5 and scores["mean"]["energy"] > 5
    assert 0 < scores["mean"]["crps_sum_normalized"] < 1  # targets near 2000
    crps = np.array(scores["per_dimension"]["crps"])  # (D, H)
    assert crps.shape == (2, 3)
    assert crps.mean(0) == pytest.approx(scores["per_step"]["crps"])
    protocol = result["protocol"]
    assert protocol["forecast_scores"]["units"].startswith("the data's own units")
    assert "GluonTS" in protocol["forecast_scores"]["crps_sum_normalized"]
    assert result["written"]["scores_png"] == str(out / "prediction_scores.png")
    assert (out / "prediction_scores.png").stat().st_size > 1000
    assert json.loads((out / "prediction.json").read_text()) == result
    # The same seed: the same scores.
    again = predict_json(capsys, *command, "--out", str(tmp_path / "again"))
    assert again["forecast_scores"] == scores
    # The table: the image metric, then the forecast scores per step and over all steps.
    assert main(["predict", *command, "--no-progress"]) == 0
    table = capsys.readouterr().out.splitlines()
    header = next(line for line in table if line.startswith("step"))
    assert header.split() == [
        "step",
        "CRPS",
        "CRPS-sum",
        "CRPS-sum/|sum|",
        "energy",
        "cover",
        "50%",
        "cover",
        "90%",
        "MAE",
        "median",
    ]
    rows = table[table.index(header) + 1 : table.index(header) + 5]
    assert [row.split()[0] for row in rows] == ["2", "3", "4", "all"]
    assert float(rows[-1].split()[1]) == pytest.approx(scores["mean"]["crps"], abs=1e-4)
    assert any(line.startswith("forecast scores, in the data's own units") for line in table)


def test_predict_from_rolling_origins(series_checkpoint, tmp_path, capsys):
    out = str(tmp_path / "rolling")
    result = predict_json(
        capsys,
        series_checkpoint,
        "--out",
        out,
        "--samples",
        "4",
        "--length",
        "2",
        "--origins",
        "3",
    )
    protocol = result["protocol"]
    assert protocol["origins"] == 3 and protocol["sequences"] == 3
    assert protocol["context_frames"] == FRAMES - 3 * 2  # every frame before the first origin
    assert result["time_steps"] == [1, 2]
    assert "3 origins 2 frames apart" in protocol["crop"]
    assert len(result["forecast_scores"]["per_step"]["energy"]) == 2
    assert len(result["mean_prediction"]["per_frame"]["mse"]) == 2
    # A shorter context before each origin, given.
    given = predict_json(
        capsys,
        *(series_checkpoint, "--out", out, "--samples", "4", "--length", "2"),
        *("--origins", "3", "--context", "4"),
    )
    assert given["protocol"]["context_frames"] == 4
    assert "each forecast from the 4 frames before its origin" in given["protocol"]["crop"]
    # One origin is the last crop: the same futures, so the same scores.
    one = predict_json(
        capsys,
        *(series_checkpoint, "--out", out, "--samples", "4", "--length", "2"),
        *("--origins", "1", "--context", "4"),
    )
    last = predict_json(
        capsys,
        *(series_checkpoint, "--out", out, "--samples", "4", "--length", "2"),
        *("--context", "4", "evaluate.crop=last"),
    )
    assert one["forecast_scores"] == last["forecast_scores"]
    first = predict_json(
        capsys,
        *(series_checkpoint, "--out", out, "--samples", "4", "--length", "2"),
        *("--context", "4", "evaluate.crop=first"),
    )
    assert first["forecast_scores"] != last["forecast_scores"]


def test_rolling_origins_that_leave_too_little_context_are_refused(
    series_checkpoint, tmp_path, capsys
):
    out = str(tmp_path / "refused")
    capsys.readouterr()
    command = ["predict", series_checkpoint, "--out", out, "--no-progress"]
    assert main([*command, "--origins", "5", "--length", "4"]) == 2
    error = capsys.readouterr().err
    assert "--origins 5 of --length 4 leave 0 frames before the first origin in sequences of " in (
        error
    )
    assert "this model needs 2 context frames" in error
    assert main([*command, "--origins", "3", "--length", "5", "--context", "6"]) == 2
    assert (
        "--context 6 and --origins 3 of --length 5: cannot crop 21 frames from sequences of "
        in (capsys.readouterr().err)
    )
    assert main([*command, "--origins", "2", "--context", "1"]) == 2
    assert "context 1 is too short: this model needs 2 context frames" in capsys.readouterr().err
    assert not Path(out).exists()
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--help"])
    assert exited.value.code == 0
    assert "rolling origins: forecast the last N windows of --length" in " ".join(
        capsys.readouterr().out.split()
    )

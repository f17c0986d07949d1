"""The GluonTS convention (``seqflows[gluonts]``): GluonTS datasets into a series store, a trained
model as a GluonTS Predictor scored by GluonTS's own evaluators, offline on its artificial
datasets; CRPS as GluonTS computes it against seqflows' forecast scores on the same samples."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gluonts")
pytest.importorskip("lightning")

import pandas as pd  # noqa: E402
from gluonts.dataset.artificial import ComplexSeasonalTimeSeries, constant_dataset  # noqa: E402
from gluonts.dataset.common import ListDataset  # noqa: E402
from gluonts.dataset.pandas import PandasDataset  # noqa: E402
from gluonts.evaluation import (  # noqa: E402
    Evaluator,
    MultivariateEvaluator,
    backtest_metrics,
    make_evaluation_predictions,
)
from gluonts.model.forecast import SampleForecast  # noqa: E402

from seqflows import SLVM, FlowModel  # noqa: E402
from seqflows.app.cli import main  # noqa: E402
from seqflows.app.forecast_scores import forecast_scores, summarize_scores  # noqa: E402
from seqflows.app.gluonts import SeqflowsPredictor, convert_gluonts  # noqa: E402
from seqflows.data.store import open_dataset, read_manifest  # noqa: E402
from seqflows.errors import ConfigError, DataError, MissingDependency  # noqa: E402
from seqflows.preprocessing import Preprocessing  # noqa: E402

from helpers import TINY_RUN  # noqa: E402

QUANTILES = (np.arange(20) / 20.0)[1:]  # TimeGrad's 19 quantile levels


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():  # GluonTS's json module, pandas' deprecations, tqdm
        warnings.simplefilter("ignore")
        yield


def _evaluate(evaluator, dataset, predictor):
    forecasts, series = make_evaluation_predictions(
        dataset, predictor, num_samples=predictor.num_samples
    )
    forecasts, series = list(forecasts), list(series)
    found, items = evaluator(iter(series), iter(forecasts), num_series=len(series))
    return forecasts, series, found, items


def _untrained(dimensions: int, data: np.ndarray, seed: int = 0) -> FlowModel:
    """An untrained model whose samples spread widely, standardised with ``data``'s mean and
    standard deviation (data (N, D)) as ``seqflows train`` would."""
    torch.manual_seed(seed)
    model = FlowModel((dimensions,), window=2, conditioner="linear", identity_init=False).eval()
    model.preprocessing = Preprocessing(
        "none", mean=data.mean(0), std=data.std(0), frame_shape=(dimensions,)
    )
    return model


def _store_items(store, split: str, conditions=()) -> list:
    return list(open_dataset(store, split, list(conditions)))


def test_a_gluonts_dataset_becomes_a_store_with_its_covariates(tmp_path) -> None:
    _, train, _ = constant_dataset()  # 10 hourly series of 24 steps, one covariate each
    entries = list(train)
    summary = convert_gluonts(train, tmp_path / "store", validation=0.1, test=0.1)
    assert {split: part["sequences"] for split, part in summary.items()} == {
        "train": 8,
        "validation": 1,
        "test": 1,
    }
    options = read_manifest(tmp_path / "store")["options"]
    assert options["columns"] == ["target", "feat_dynamic_real_0"] and options["freq"] == "h"
    stored = [
        item
        for split in ("train", "validation", "test")
        for item in _store_items(tmp_path / "store", split, ["feat_dynamic_real_0"])
    ]
    expected = sorted(
        (entry["target"].tolist(), entry["feat_dynamic_real"][0].tolist()) for entry in entries
    )
    found = sorted(
        (frames[:, 0].tolist(), covariates[:, 0].tolist()) for frames, covariates in stored
    )
    assert found == expected  # every entry once, values and covariates as they are

    # A multivariate ListDataset (target (D, T)): one column per dimension.
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 2, 9))
    multivariate = ListDataset(
        [{"start": "2021-03-01", "target": v, "item_id": f"s{i}"} for i, v in enumerate(values)],
        freq="D",
        one_dim_target=False,
    )
    convert_gluonts(multivariate, tmp_path / "multi", validation=0.25, test=0.25)
    manifest = read_manifest(tmp_path / "multi")
    assert manifest["options"]["columns"] == ["target_0", "target_1"]
    frames = _store_items(tmp_path / "multi", "train")
    assert len(frames) == 2 and frames[0].shape == (9, 2)
    assert any(np.allclose(frames[0].numpy(), v.T) for v in values)

    # pandas: a PandasDataset, or a DataFrame with a "target" column.
    index = pd.period_range("2022-01-01", periods=12, freq="D")
    frame = pd.DataFrame({"target": np.arange(12.0), "temperature": np.ones(12)}, index=index)
    pandas = PandasDataset(frame, target="target", feat_dynamic_real=["temperature"])
    convert_gluonts(pandas, tmp_path / "pandas", validation=0.0, test=0.0)
    convert_gluonts(frame[["target"]], tmp_path / "frame", validation=0.0, test=0.0)
    (with_covariate,) = _store_items(tmp_path / "pandas", "train")
    np.testing.assert_array_equal(
        with_covariate.numpy(), np.stack([np.arange(12.0), np.ones(12)], 1)
    )
    (alone,) = _store_items(tmp_path / "frame", "train")
    np.testing.assert_array_equal(alone.numpy(), np.arange(12.0)[:, None])
    with pytest.raises(
        DataError, match=r"GluonTS dataset, entry 0: 'target' is no dict of target and start"
    ):
        convert_gluonts(["target"], tmp_path / "e")


def test_bad_gluonts_entries_are_one_line_errors(tmp_path) -> None:
    infinite = np.arange(6.0)
    infinite[3] = np.inf
    entries = [{"start": pd.Period("2020-01-01", "D"), "target": np.ones(6)}] * 2
    with pytest.raises(DataError, match=r"entry 1: target value inf at step 3, dimension 0"):
        convert_gluonts([entries[0], {**entries[0], "target": infinite}], tmp_path / "a")
    wide = {**entries[0], "target": np.ones((2, 6))}
    with pytest.raises(DataError, match=r"entry 1: 2 target dimensions, entry 0 has 1"):
        convert_gluonts([entries[0], wide], tmp_path / "b")
    short = {**entries[0], "feat_dynamic_real": np.ones((1, 4))}
    with pytest.raises(DataError, match=r"feat_dynamic_real of shape \(1, 4\)"):
        convert_gluonts([short], tmp_path / "c")
    holes = {**entries[0], "feat_dynamic_real": np.array([[1.0, 2.0, np.inf, 0, 0, 0, 0]])}
    with pytest.raises(DataError, match=r"feat_dynamic_real value inf at step 2, row 0"):
        convert_gluonts([holes], tmp_path / "f")
    with pytest.raises(ConfigError, match=r"start '2020-01-01' is no pandas.Period; give freq"):
        convert_gluonts([{"start": "2020-01-01", "target": np.ones(6)}], tmp_path / "d")


def test_convert_gluonts_train_and_forecast_from_the_command_line(tmp_path, capsys) -> None:
    """A JSON-lines GluonTS dataset with a covariate: ``seqflows convert gluonts``, ``seqflows
    train`` of the conditioned model, then its GluonTS Predictor scored by GluonTS's Evaluator."""
    rng = np.random.default_rng(1)
    horizon, steps = 3, 10
    covariates = rng.normal(size=(6, steps + horizon))
    targets = np.cumsum(rng.normal(size=(6, steps + horizon)), axis=1) + covariates
    lines = [
        {
            "start": "2020-01-01 00:00",
            "target": target[:steps].tolist(),
            "feat_dynamic_real": [covariate[:steps].tolist()],
            "item_id": f"meter {i}",
        }
        for i, (target, covariate) in enumerate(zip(targets, covariates, strict=True))
    ]
    src = tmp_path / "train.json"
    src.write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = tmp_path / "store"
    command = ["convert", "gluonts", str(src), str(store), "--freq", "H"]
    assert main([*command, "--validation", "0.2", "--test", "0.2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["splits"]["train"]["sequences"] == 4 and report["frame_shape"] == [2]
    status = main(
        [
            "train",
            "my_time_series_covariates",
            *TINY_RUN,
            f"data.path={store}",
            "data.conditions=[feat_dynamic_real_0]",
            "data.length=5",
            "model.window=2",
            "--out",
            str(tmp_path / "run"),
            "--max-steps",
            "2",
            "--no-progress",
        ]
    )
    assert status == 0, capsys.readouterr().err
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    predictor = SeqflowsPredictor(checkpoint, prediction_length=horizon, num_samples=50)
    test = ListDataset(
        [
            {**line, "target": target, "feat_dynamic_real": [covariate]}
            for line, target, covariate in zip(lines, targets, covariates, strict=True)
        ],
        freq="h",
    )
    forecasts, _, found, items = _evaluate(Evaluator(quantiles=QUANTILES), test, predictor)
    assert all(isinstance(forecast, SampleForecast) for forecast in forecasts)
    assert [forecast.item_id for forecast in forecasts] == [f"meter {i}" for i in range(6)]
    assert forecasts[0].samples.shape == (50, horizon)
    assert str(forecasts[0].start_date) == "2020-01-01 10:00"  # after the 10 observed hours
    assert np.isfinite(found["mean_wQuantileLoss"]) and np.isfinite(items["MASE"]).all()
    # The same seed, the same forecasts; the future's covariates are required.
    known = ListDataset(
        [{**line, "feat_dynamic_real": [covariates[0]]} for line in lines[:1]], freq="h"
    )  # the observed hours and the covariates of the forecast ones
    first, again = (next(iter(predictor.predict(known))) for _ in range(2))
    np.testing.assert_array_equal(first.samples, again.samples)
    with pytest.raises(DataError, match=r"feat_dynamic_real has 1 x 10 steps; .* needs 1 x 13"):
        next(iter(predictor.predict(ListDataset(lines[:1], freq="h"))))
    # The command line without --freq: one usage line, exit status 2.
    with pytest.raises(SystemExit) as stopped:
        main(["convert", "gluonts", str(src), str(tmp_path / "other")])
    assert stopped.value.code == 2 and "--freq" in capsys.readouterr().err


def test_a_model_trained_on_constant_series_forecasts_the_constant() -> None:
    """GluonTS's constant_dataset (series i is i everywhere): a linear 1-AF trained briefly
    forecasts each series' constant, and GluonTS's Evaluator and backtest_metrics agree."""
    info, train, test = constant_dataset()
    series = np.stack([entry["target"] for entry in train])[..., None]  # (10, 24, 1)
    model = _untrained(1, series.reshape(-1, 1))
    model.train()
    x = model.preprocessing(series)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(150):
        optimizer.zero_grad()
        loss = -model.log_prob(x).mean()
        loss.backward()
        optimizer.step()
    model.eval()
    horizon = info.prediction_length
    predictor = SeqflowsPredictor(model, prediction_length=horizon, num_samples=100)
    evaluator = Evaluator(quantiles=QUANTILES)
    forecasts, observed, found, _ = _evaluate(evaluator, test, predictor)
    for forecast, entry in zip(forecasts, test, strict=True):
        assert forecast.samples.shape == (100, horizon)
        assert forecast.start_date == entry["start"] + len(entry["target"]) - horizon
        constant = entry["target"][0]
        assert np.abs(np.median(forecast.samples, 0) - constant).max() < 0.2, forecast.item_id
    assert found["mean_wQuantileLoss"] < 0.05 and np.isfinite(found["MSE"])
    backtested, items = backtest_metrics(test, predictor, evaluator)
    assert backtested["mean_wQuantileLoss"] == pytest.approx(found["mean_wQuantileLoss"])
    assert len(items) == 10


def test_gluonts_crps_agrees_with_our_forecast_scores_on_the_same_samples() -> None:
    """GluonTS's quantile-loss CRPS (19 levels) of the Predictor's samples is our CRPS of the
    same samples within the approximation; the CRPS-sum likewise for a multivariate model."""
    generated = ComplexSeasonalTimeSeries(
        num_series=4,
        prediction_length=5,
        freq_str="D",
        length_low=30,
        length_high=40,
        min_val=0,
        max_val=10,
        percentage_unique_timestamps=1.0,
        seasonality=7,
    )
    values = np.concatenate([entry["target"] for entry in generated.train])[:, None]
    predictor = SeqflowsPredictor(_untrained(1, values), prediction_length=5, num_samples=200)
    evaluator = Evaluator(quantiles=QUANTILES)
    forecasts, series, found, _ = _evaluate(evaluator, generated.test, predictor)
    samples = np.stack([forecast.samples for forecast in forecasts], 1)[..., None]  # (K, N, H, 1)
    target = np.stack([s.to_numpy()[-5:] for s in series])  # (N, H, 1)
    ours = forecast_scores(samples, target)["crps"]
    assert found["mean_absolute_QuantileLoss"] == pytest.approx(ours.sum(), rel=0.05)
    assert found["mean_wQuantileLoss"] == pytest.approx(
        ours.sum() / np.abs(target).sum(), rel=0.05
    )
    assert samples.std() > 0.1  # not a degenerate forecast: the approximation is tested

    # Multivariate (target (D, T)): samples (K, H, D), GluonTS's CRPS-sum against ours.
    rng = np.random.default_rng(2)
    steps = np.arange(40)
    targets = np.stack(
        [np.sin(steps / 3 + p) * 5 + 10 + rng.normal(size=(2, 40)) for p in range(3)]
    )
    targets = targets + np.array([0.0, 3.0])[None, :, None]  # (N, D, T)
    data = ListDataset(
        [{"start": "2021-01-01", "target": t} for t in targets], freq="D", one_dim_target=False
    )
    model = _untrained(2, targets.transpose(0, 2, 1).reshape(-1, 2))
    predictor = SeqflowsPredictor(model, prediction_length=4, num_samples=200, context_length=8)
    multivariate = MultivariateEvaluator(quantiles=QUANTILES, target_agg_funcs={"sum": np.sum})
    forecasts, series, found, _ = _evaluate(multivariate, data, predictor)
    assert forecasts[0].samples.shape == (200, 4, 2)
    assert str(forecasts[0].start_date) == "2021-02-06"  # 36 observed days after 2021-01-01
    samples = np.stack([forecast.samples for forecast in forecasts], 1)  # (K, N, H, D)
    ours = summarize_scores(forecast_scores(samples, targets.transpose(0, 2, 1)[:, -4:]))
    assert found["m_sum_mean_wQuantileLoss"] == pytest.approx(
        ours["mean"]["crps_sum_normalized"], rel=0.1
    )
    with pytest.raises(ConfigError, match=r"prediction_length must be at least 1, got 0"):
        SeqflowsPredictor(model, prediction_length=0)
    with pytest.raises(ConfigError, match=r"context_length=1: the model needs at least its"):
        SeqflowsPredictor(model, prediction_length=2, context_length=1)
    with pytest.raises(ConfigError, match=r"a model of frames \(1, 2, 2\); a GluonTS predictor"):
        SeqflowsPredictor(FlowModel((1, 2, 2), window=1), prediction_length=2)
    # A dataset whose target dimension is not the model's: one line naming both.
    with pytest.raises(
        DataError, match=r"item_id '0': target of 1 dimensions, but the model forecasts 2"
    ):
        next(iter(predictor.predict(generated.train)))


def test_without_gluonts_the_extra_is_named(tmp_path, monkeypatch, capsys) -> None:
    model = FlowModel((1,), window=1, conditioner="linear").eval()
    monkeypatch.setitem(sys.modules, "gluonts", None)  # as if not installed
    with pytest.raises(MissingDependency, match=r'pip install "seqflows\[gluonts\]"'):
        SeqflowsPredictor(model, prediction_length=2)
    src = tmp_path / "data.json"
    src.write_text('{"start": "2020-01-01", "target": [1, 2, 3]}\n')
    assert main(["convert", "gluonts", str(src), str(tmp_path / "store"), "--freq", "D"]) == 2
    assert 'pip install "seqflows[gluonts]"' in capsys.readouterr().err
    monkeypatch.undo()
    code = "import sys, seqflows, seqflows.app.cli; print('gluonts' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr  # import seqflows does not need it


def test_the_readme_gluonts_example_runs_as_written(tmp_path, monkeypatch, capsys) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme[readme.index("**From GluonTS.**") :]
    block = re.findall(r"```py\n(.*?)```", block, re.DOTALL)[0]
    (command,) = [line[2:] for line in block.splitlines() if line.startswith("# seqflows train")]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    setup, rest = block.split(f"# {command}\n")
    exec(compile(setup, "README.md", "exec"), namespace)
    command = re.sub(r"--max-steps \d+", "--max-steps 2", command)
    assert main([*shlex.split(command)[1:], "--no-progress", *TINY_RUN]) == 0
    capsys.readouterr()
    exec(compile(rest, "README.md", "exec"), namespace)
    printed = [float(value) for value in capsys.readouterr().out.split()]
    assert len(printed) == 2 and np.isfinite(printed).all()


def test_future_covariates_enter_at_their_step_and_an_slvm_forecasts_too() -> None:
    """The conditions of forecast step h are feat_dynamic_real at T + h: changing the covariate
    of the second forecast step changes that step's samples, not the first's; one beyond the
    horizon changes nothing (the same seed, the same noise)."""
    torch.manual_seed(0)
    model = FlowModel(
        (1,), window=1, conditioner="linear", condition_dim=1, identity_init=False
    ).eval()
    T, H = 8, 3
    covariates = np.linspace(-1, 1, T + H + 2)[None]  # (1, T + H + 2): two steps beyond

    def forecast(changed_step: int | None) -> np.ndarray:
        known = covariates.copy()
        if changed_step is not None:
            known[0, changed_step] += 5.0
        entry = {"start": "2020-01-01", "target": np.sin(np.arange(T)), "feat_dynamic_real": known}
        predictor = SeqflowsPredictor(model, prediction_length=H, num_samples=4, seed=3)
        return next(iter(predictor.predict(ListDataset([entry], freq="D")))).samples

    base = forecast(None)
    second = forecast(T + 1)
    np.testing.assert_array_equal(second[:, 0], base[:, 0])
    assert np.abs(second[:, 1] - base[:, 1]).min() > 1e-3
    np.testing.assert_array_equal(forecast(T + H), base)

    slvm = SLVM((2,), latent_dim=2, lstm_hidden=4, encoder_features=4, hidden=4).eval()
    entry = {"start": "2020-01-01", "target": np.ones((2, 9)), "item_id": "a"}
    data = ListDataset([entry], freq="D", one_dim_target=False)
    (found,) = SeqflowsPredictor(slvm, prediction_length=3, num_samples=7).predict(data)
    assert found.samples.shape == (7, 3, 2) and np.isfinite(found.samples).all()
    assert str(found.start_date) == "2020-01-10" and found.item_id == "a"


def test_a_model_trained_with_gap_masks_forecasts_from_a_target_with_gaps(tmp_path) -> None:
    """A model trained with ``data.gaps`` takes its covariates, then the observation masks of
    its context (NaN: missing) and of the forecast steps, as conditions: the predictor builds
    them from the target's NaN gaps, and a saved model keeps the setting."""
    from seqflows import load
    from seqflows.app.prediction import forecast_samples
    from seqflows.missing import generation_masks

    D, T, H, K = 2, 9, 3, 5
    torch.manual_seed(0)
    model = FlowModel(
        (D,), window=2, conditioner="linear", condition_dim=1 + 2 * D, identity_init=False
    ).eval()
    model.preprocessing = Preprocessing(
        "none", mean=(1.0, -1.0), std=(2.0, 0.5), frame_shape=(D,), gaps=True
    )
    target = np.cos(np.arange(T * D, dtype=float)).reshape(D, T)
    target[0, 3] = target[1, 6] = target[:, 7] = np.nan  # a value, another, a whole step
    covariates = np.linspace(0, 1, T + H)[None]
    entry = {"start": "2020-01-01", "target": target, "feat_dynamic_real": covariates}
    data = ListDataset([entry], freq="D", one_dim_target=False)
    (found,) = SeqflowsPredictor(model, prediction_length=H, num_samples=K, seed=2).predict(data)
    assert found.samples.shape == (K, H, D) and np.isfinite(found.samples).all()

    past = torch.as_tensor(target.T[None])  # (1, T, D), raw with NaN
    masks = generation_masks(past, H)  # (1, T + H, 2 D)
    assert masks[0, 7, D:].sum() == 0 and masks[0, 8, :D].sum() == 0  # step 7: none observed
    conditions = torch.cat([torch.as_tensor(covariates.T[None]), masks.double()], -1).float()
    direct = forecast_samples(
        model,
        model.preprocessing(past),
        H,
        K,
        conditions,
        generator=torch.Generator().manual_seed(2),
    )[:, 0]
    expected = model.preprocessing.inverse(direct).double().numpy()
    np.testing.assert_allclose(found.samples, expected, rtol=1e-6)

    folder = model.save_pretrained(tmp_path / "saved")
    assert load(folder).preprocessing.gaps
    assert not Preprocessing("none", mean=(0.0,), std=(1.0,)).record().get("gaps")

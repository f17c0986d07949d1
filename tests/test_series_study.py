"""``python -m reproduction series``: the SLVM rows (an IWAE bound, futures given the whole
past) and ``--models``, which runs some rows and keeps the others of the summary. Tiny budgets:
the numbers mean nothing, what they are computed from is checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import reproduction.series as series_study
from reproduction.__main__ import main
from reproduction.series import (
    ROWS,
    SeriesConfig,
    load_series,
    model_scores,
    run_series,
    select_rows,
    slvm_model,
    slvm_scores,
)
from seqflows.errors import ConfigError

TINY = SeriesConfig(
    seeds=(0,),
    max_steps=2,
    check_every=1,
    horizon=2,
    samples=3,
    iwae_samples=2,
    validation_samples=2,
)


def test_the_slvm_rows_are_the_likelihood_bases_with_and_without_a_1af() -> None:
    assert select_rows(["SLVM*"]) == [
        "SLVM, diagonal",
        "SLVM, full_covariance",
        "SLVM, maf",
        "SLVM w/ 1-AF linear, diagonal",
        "SLVM w/ 1-AF linear, full_covariance",
    ]
    model = ROWS["SLVM w/ 1-AF linear, full_covariance"]
    assert model.keywords == {"likelihood_base": "full_covariance", "flow": "linear"}
    assert select_rows(["VAR", "1-AF mlp, nsf"]) == ["VAR", "1-AF mlp, nsf"]  # table order
    with pytest.raises(ConfigError, match=r"--models 'SLVM, nsf' matches no row.*SLVM, maf"):
        select_rows(["SLVM, nsf"])


@pytest.mark.parametrize(
    ("likelihood_base", "flow"), [("maf", "linear"), ("full_covariance", None)]
)
def test_the_scores_are_in_the_series_units(likelihood_base: str, flow: str | None) -> None:
    # Twice the series (a power of two: standardised, the same numbers to the bit): the same
    # model, a log-density lower by log 2 per dimension and scores twice as large.
    series, _, train = load_series("interest_inflation")
    series = series[: train + 4]
    once = slvm_scores(series, train, likelihood_base, flow, TINY, 0)
    twice = slvm_scores(2 * series, train, likelihood_base, flow, TINY, 0)
    assert once["log_likelihood_bound"] == "IWAE, K=2"
    assert twice["log_likelihood"] == pytest.approx(once["log_likelihood"] - np.log(2), abs=1e-5)
    for name in ("crps", "crps_sum", "energy_score"):
        assert twice[name] == pytest.approx(2 * once[name], rel=1e-5)


def test_an_slvm_samples_futures_given_the_whole_past_a_flow_given_its_window() -> None:
    series, _, train = load_series("macro")
    x = torch.as_tensor(series[:train], dtype=torch.float32)[None]
    changed = x.clone()
    changed[:, train - 30 : train - 24] += 5.0  # before the origins and the 1-AF's windows of 4
    torch.manual_seed(0)
    slvm = slvm_model(3, "diagonal", "linear", TINY).eval()
    torch.manual_seed(0)
    flow = series_study.flow_model(3, "linear", "full_covariance", TINY).eval()
    config = SeriesConfig(horizon=3, samples=5)
    origins = [train - 20, train]

    def futures(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
        return series_study._sampled_futures(model, x, origins, config, seed=3)

    assert futures(slvm, x).shape == (2, 5, 3, 3)
    np.testing.assert_array_equal(futures(flow, x), futures(flow, changed))
    for origin in range(len(origins)):  # the SLVM's filtering posterior reads the whole past
        assert not np.allclose(futures(slvm, x)[origin], futures(slvm, changed)[origin])
    np.testing.assert_array_equal(futures(slvm, x), futures(slvm, x))  # the seed's stream


def test_a_flow_scores_its_exact_log_likelihood_an_slvm_its_bound() -> None:
    series, _, train = load_series("interest_inflation")
    flow = model_scores(
        series,
        train,
        lambda D, config: series_study.flow_model(D, "linear", "standard", config),
        TINY,
        0,
    )
    assert "log_likelihood_bound" not in flow
    slvm = slvm_scores(series, train, "maf", None, TINY, 0)
    assert slvm["log_likelihood_bound"] == "IWAE, K=2" and np.isfinite(slvm["log_likelihood"])


def _earlier_summary(out: Path) -> None:
    """A summary of an earlier run with one row per data set, made with TINY's settings."""
    row = {name: 1.0 for name in series_study.SCORES}
    row |= {f"{name}_spread": 0.0 for name in series_study.SCORES}
    datasets = {
        name: {"columns": ["a"], "steps": 1, "train": 1, "held_out": 1, "models": {"VAR": row}}
        for name in series_study.DATASETS
    }
    earlier = {"config": TINY.__dict__ | {"seeds": [0]}, "datasets": datasets}
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(earlier))


def test_models_runs_some_rows_and_keeps_the_others(tmp_path: Path) -> None:
    out = tmp_path / "series"
    _earlier_summary(out)
    said: list[str] = []
    threads = torch.get_num_threads()
    results = run_series(out, TINY, said.append, models=["SLVM, diag*", "1-AF linear, maf"])
    assert torch.get_num_threads() == threads  # trained on one thread, the caller's restored
    assert len(said) == 2 * len(series_study.DATASETS)
    stored = json.loads((out / "summary.json").read_text())
    for dataset in stored["datasets"].values():
        assert list(dataset["models"]) == ["VAR", "1-AF linear, maf", "SLVM, diagonal"]
        assert dataset["models"]["VAR"]["log_likelihood"] == 1.0  # kept, not rerun
        assert dataset["train"] > 1  # the data set's own description
    assert stored == json.loads(json.dumps(results))
    table = (out / "table.md").read_text()
    assert "| VAR | 1 (0) |" in table
    assert "| 1-AF linear, maf | >=" not in table
    assert table.count("| SLVM, diagonal | >= ") == len(series_study.DATASETS)
    assert "IWAE, K=2" in table


def test_models_refuses_a_summary_made_with_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "series"
    _earlier_summary(out)
    other = SeriesConfig(**(TINY.__dict__ | {"horizon": 3}))
    with pytest.raises(ConfigError, match=r"horizon: 2 there, 3 now.*without --models"):
        run_series(out, other, models=["SLVM, diagonal"])


def test_the_series_command_runs_the_rows_it_is_given(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(series_study, "SeriesConfig", lambda: TINY)
    out = tmp_path / "series"
    assert main(["series", "--out", str(out), "--models", "SLVM w/ 1-AF linear, diagonal"]) == 0
    printed = capsys.readouterr().out
    assert "| SLVM w/ 1-AF linear, diagonal | >= " in printed and "| VAR |" not in printed
    assert (out / "table.md").read_text() in printed
    assert main(["series", "--out", str(out), "--models", "SLVM, nsf"]) == 2
    assert "--models 'SLVM, nsf' matches no row" in capsys.readouterr().err

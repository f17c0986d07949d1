"""Missing values (NaN gaps) of series: the density of the observed values only (issue 27)."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seqflows import load
from seqflows.app.cli import main
from seqflows.app.evaluation import SequenceScores
from seqflows.data import Preprocessing
from seqflows.errors import DataError
from seqflows.missing import (
    generation_masks,
    observation_conditions,
    require_elementwise,
    split_missing,
)

from helpers import TINY_RUN, VECTOR, make_flow, sequence

NAN = float("nan")


def _with_gap(x: torch.Tensor, *cells: tuple[int, ...]) -> torch.Tensor:
    gapped = x.clone()
    for cell in cells:
        gapped[cell] = NAN
    return gapped


@pytest.mark.parametrize(
    "settings",
    [
        {"num_transforms": 1},
        {"num_transforms": 2},  # 2-AF: the stack is element-wise within a step as well
        {"num_transforms": 2, "transforms": ["affine", "spline"]},
        {"num_transforms": 1, "base": "learned"},
    ],
)
def test_a_missing_value_is_marginalised_exactly(settings):
    """At the last step the density of the observed values is the full density of the step
    integrated over the missing value: numerically, on a fine grid."""
    model = make_flow(VECTOR, window=1, **settings)
    x = sequence(1, model.burn_in + 3, VECTOR)
    last = x.shape[1] - 1
    gapped = _with_gap(x, (0, last, 1))
    grid = torch.linspace(-40, 40, 40001, dtype=torch.float64)
    filled = gapped.nan_to_num(0.0).expand(len(grid), -1, -1).clone()
    filled[:, last, 1] = grid
    with torch.no_grad():
        masked = float(model.log_prob(gapped)[0, -1])
        full = model.log_prob(filled)[:, -1]  # log p(x_t | past) for every value of x_{t,1}
        complete = float(model.log_prob(x)[0, -1])
    marginal = torch.logsumexp(full, 0) + math.log(float(grid[1] - grid[0]))
    assert masked == pytest.approx(float(marginal), abs=1e-6)
    assert masked != pytest.approx(complete, abs=1e-3)


def test_the_gaussian_case_is_the_observed_values_normal_density():
    """1-AF: x_{t,d} ~ N(shift_d, scale_d^2) given the past, so with x_{t,1} missing the score
    of step t is log N(x_{t,0}) + log N(x_{t,2}), with the model's shift and scale."""
    model = make_flow(VECTOR, window=2)
    x = sequence(2, 6, VECTOR)
    gapped = _with_gap(x, (0, 3, 1), (1, 4, 0), (1, 4, 2))
    out = model.normalize(gapped.nan_to_num(0.0))
    normal = torch.distributions.Normal(out.shifts[0], out.scales[0])
    values = x[:, model.burn_in :]
    observed = ~torch.isnan(gapped[:, model.burn_in :])
    expected = torch.where(observed, normal.log_prob(values), 0.0).sum(-1)
    torch.testing.assert_close(model.log_prob(gapped), expected)


def test_future_steps_see_the_filled_value_and_not_the_hidden_one():
    model = make_flow(VECTOR, window=1)
    x = sequence(1, 5, VECTOR)
    other = x.clone()
    other[0, 2, 0] = 7.0  # a different value behind the gap
    gapped, other_gapped = _with_gap(x, (0, 2, 0)), _with_gap(other, (0, 2, 0))
    torch.testing.assert_close(model.log_prob(gapped), model.log_prob(other_gapped))
    filled = x.clone()
    filled[0, 2, 0] = 0.0  # the fill: the training mean after standardisation
    # Step 3 conditions on the filled past exactly as on data holding 0 there.
    torch.testing.assert_close(model.log_prob(gapped)[:, 2:], model.log_prob(filled)[:, 2:])


def test_whole_missing_steps_and_gaps_at_the_start():
    """A wholly missing step scores 0 with no observed value; gaps in the context frames (the
    start of a sequence) are filled and score nothing; the loss weighs observed values."""
    model = make_flow(VECTOR, window=2)
    x = sequence(2, 7, VECTOR)
    gapped = _with_gap(x, (0, 0), (0, 1, 2), (1, 4))  # context gaps, a whole missing step
    terms = model.loss(gapped)
    scored = x.shape[1] - model.burn_in
    assert terms.observed.tolist() == [[3] * scored, [3, 3, 0, 3, 3]]
    assert float(terms.objective[1, 2]) == 0.0
    dims = VECTOR[0]
    expected = -terms.objective.sum() * dims / terms.observed.sum()
    torch.testing.assert_close(terms.loss, expected)
    terms.loss.backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert gradients and all(bool(torch.isfinite(g).all()) for g in gradients)


def test_nothing_observed_gives_a_zero_loss_and_no_nan():
    model = make_flow(VECTOR, window=1)
    gapped = torch.full((1, 4, 3), NAN, dtype=torch.float64)
    terms = model.loss(gapped)
    assert float(terms.loss) == 0.0
    assert terms.observed.sum() == 0


def test_without_gaps_the_scores_are_unchanged():
    model = make_flow(VECTOR, num_transforms=2, window=1)
    x = sequence(2, 6, VECTOR)
    terms = model.loss(x)
    out = model.normalize(x)
    torch.testing.assert_close(terms.objective, model.base.log_prob(out.noise) + out.log_abs_det)
    assert terms.observed is None
    torch.testing.assert_close(out.element_log_abs_det.sum(-1), out.log_abs_det)


def test_infinite_values_are_still_refused():
    model = make_flow(VECTOR, window=1)
    x = _with_gap(sequence(1, 4, VECTOR), (0, 2, 1))
    x[0, 3, 0] = math.inf
    with pytest.raises(DataError, match="frame 3"):
        model.log_prob(x)


def test_split_missing_and_observation_conditions():
    x = torch.tensor([[[1.0, NAN], [NAN, NAN], [2.0, 3.0]]])
    filled, observed = split_missing(x)
    assert filled.tolist() == [[[1.0, 0.0], [0.0, 0.0], [2.0, 3.0]]]
    assert observed.tolist() == [[[True, False], [False, False], [True, True]]]
    assert split_missing(filled)[1] is None
    covariates = torch.full((1, 3, 1), 5.0)
    conditions = observation_conditions(x, covariates)  # [c_t, m_{t-1}, m_t]
    assert conditions.tolist() == [
        [[5.0, 1.0, 1.0, 1.0, 0.0], [5.0, 1.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 1.0, 1.0]]
    ]


def test_a_model_that_ties_the_dimensions_of_a_step_refuses_gaps():
    class WithinStep:
        label = "within-step flow"
        exact_marginals = False

    _, observed = split_missing(torch.tensor([[[NAN, 1.0]]]))
    with pytest.raises(DataError, match="within-step flow ties the dimensions"):
        require_elementwise(WithinStep(), observed)
    require_elementwise(WithinStep(), None)  # complete data: nothing to refuse


def _slvm(num_transforms: int):
    from seqflows import SLVM

    torch.manual_seed(0)
    model = SLVM(
        VECTOR,
        latent_dim=2,
        lstm_hidden=8,
        mlp_hidden=8,
        conditioner="mlp",
        num_transforms=num_transforms,
        window=1,
        identity_init=False,
        init="default",
    )
    return model.double().eval()


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_the_slvm_bound_leaves_the_missing_values_out_of_its_diagonal_likelihood(num_transforms):
    """At the same posterior sample (the same filled input, the same generator), the ELBO of
    sequences with gaps is the complete one without the missing values' log N(v; loc, scale)
    terms (and, with a flow, without their log-determinants); the KL stays."""
    model = _slvm(num_transforms)
    x = sequence(2, 6, VECTOR)
    gapped = _with_gap(x, (0, 4, 1), (1, 3))
    filled = gapped.nan_to_num(0.0)

    def generator() -> torch.Generator:
        return torch.Generator().manual_seed(3)

    with torch.no_grad():
        terms = model.elbo_terms(gapped, generator())
        complete = model.elbo_terms(filled, generator())  # what the networks see: the same
    burn_in = model.burn_in
    observed = ~torch.isnan(gapped[:, burn_in:])
    v = filled[:, burn_in:] if complete.flow is None else complete.flow.noise
    normal = torch.distributions.Normal(complete.likelihood_loc, complete.likelihood_scale)
    expected = torch.where(observed, normal.log_prob(v), 0.0).sum(-1)
    torch.testing.assert_close(terms.log_likelihood, expected)
    torch.testing.assert_close(terms.kl, complete.kl)
    if complete.flow is not None:
        log_det = torch.where(observed, complete.flow.element_log_abs_det, 0.0).sum(-1)
        torch.testing.assert_close(terms.log_abs_det, log_det)
    assert torch.equal(terms.observed, observed.sum(-1))
    # The importance-weighted bound: finite, with the whole missing step scoring no value.
    with torch.no_grad():
        bound = model.iwae(gapped, 4, generator())
        full = model.iwae(x, 4, generator())
    assert torch.isfinite(bound).all() and not torch.allclose(bound, full)
    loss = model.loss(gapped, generator())
    torch.testing.assert_close(
        loss.loss, -loss.objective.sum() * 3 / loss.observed.sum(), rtol=1e-6, atol=1e-9
    )
    context = model.sample(2, 2, context=gapped[:, :5])  # a context with gaps is filled
    assert torch.isfinite(context).all()


# End to end: a CSV series with gaps is converted, trained on and evaluated


def gapped_csv(path: Path, machines: int = 12, steps: int = 10) -> Path:
    """Random walks of 3 sensors; machine m0 starts with 2 missing steps, every machine has a
    whole missing step at t = 5 and pressure is missing at every third step."""
    rng = np.random.default_rng(0)
    rows = ["machine,time,temperature,pressure,flow"]
    for machine in range(machines):
        walk = np.cumsum(rng.normal(size=(steps, 3)), axis=0) + [20.0, 1.0, -3.0]
        for t, values in enumerate(walk.tolist()):
            cells = [f"{value:.4f}" for value in values]
            if t % 3 == 1:
                cells[1] = "NaN"
            if t == 5 or (machine == 0 and t < 2):
                cells = ["", "NA", ""]
            rows.append(f"m{machine},{t},{','.join(cells)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_csv_series_with_gaps_converts_trains_and_evaluates(tmp_path, capsys):
    store = tmp_path / "store"
    convert = ["convert", "series", str(gapped_csv(tmp_path / "sensors.csv")), str(store)]
    convert += ["--id-column", "machine", "--time-column", "time", "--test", "0.25"]
    assert main(convert) == 0, capsys.readouterr().err
    capsys.readouterr()
    run = tmp_path / "run"
    command = ["train", "my_time_series", "data.dataset=store", f"data.path={store}"]
    command += ["--out", str(run), "--max-steps", "2", "--no-progress", *TINY_RUN]
    assert main([*command, "data.length=8"]) == 0
    said = capsys.readouterr().err
    assert "data.gaps=True" in said  # read from the data: masks given to the conditioners
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["gaps"] is True
    assert config["model"]["condition_dim"] == 2 * 3  # m_{t-1} and m_t of the 3 sensors
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    assert load(checkpoint).preprocessing.gaps  # a forecaster (GluonTS) builds the masks
    output = tmp_path / "evaluation.json"
    scores = tmp_path / "scores"
    evaluate = ["evaluate", checkpoint, "--no-progress", "--output", str(output)]
    assert main([*evaluate, "--scores", str(scores)]) == 0
    table = capsys.readouterr().out
    # Per frame: nats per observed value; none for a whole missing step (t = 5).
    with open(scores / "frames.csv", newline="") as stream:
        frames = list(csv.DictReader(stream))
    for row in frames:
        frame, score = int(row["frame"]), float(row["log_likelihood"])
        observed = 0 if frame == 5 else 2 if frame % 3 == 1 else 3
        if observed == 0:
            assert row["nats_per_dim"] == "" and score == 0.0
        else:  # (machine m0's first two steps are context frames: not scored)
            assert float(row["nats_per_dim"]) == pytest.approx(score / observed)
    assert any(int(row["frame"]) == 5 for row in frames)
    result = json.loads(output.read_text())
    assert math.isfinite(result["nats_per_dim"])
    share = result["share_scored"]
    assert result["dims_scored"] == round(share * result["frames_scored"] * 3)
    assert 0.5 < share < 0.9  # whole missing steps and every third pressure value
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in table.splitlines())
    assert rows["share scored"].startswith(f"{share:.4f} of the values of the scored frames")
    assert rows["temporal correlation of x"] == "n/a (gaps)"
    # Generation continues a context with gaps (filled; its masks, then 1 for the new steps).
    figures = tmp_path / "figures"
    sample = ["sample", checkpoint, "--out", str(figures), "--num", "2", "--length", "3"]
    assert main(sample) == 0, capsys.readouterr().err
    written = torch.load(figures / "samples.pt")
    assert torch.isfinite(written["predicted"]).all() and written["context"].isnan().any()
    assert main(["visualize", checkpoint, "--out", str(figures), "--frames", "4"]) == 0
    # Prediction scores the observed values of futures with gaps (steps 4-6: t = 5 is missing).
    forecast = tmp_path / "forecast"
    predict = ["predict", checkpoint, "--out", str(forecast), "--context", "3", "--length", "3"]
    assert main([*predict, "--samples", "4"]) == 0, capsys.readouterr().err
    predicted = json.loads((forecast / "prediction.json").read_text())
    for kind in ("mean_prediction", "sample_average"):
        assert math.isfinite(predicted[kind]["mean"]["mse"])
    assert 0 < predicted["forecast_scores"]["observed"] < 1


def test_the_share_scored_counts_the_observed_values_of_the_scored_frames():
    model = make_flow(VECTOR, window=1)
    scores = SequenceScores(
        model.event_shape,
        preprocessing=Preprocessing("none", mean=(0.0, 0.0, 0.0), std=(1.0, 2.0, 4.0)),
    )
    x = _with_gap(sequence(2, 4, VECTOR), (0, 0, 1), (0, 2, 1), (1, 3))  # (0, 0): context
    scores.update(model, x)
    summary = scores.summary()
    assert summary["frames_scored"] == 6 and summary["dims_scored"] == 18 - 1 - 3
    assert summary["share_scored"] == pytest.approx(14 / 18)
    # The standardisation's log-Jacobian counts the observed values only: -log 2 is missing
    # once, -log 2 - log 4 (the whole step) once.
    log_prob = model.log_prob(x).detach()
    expected = float(log_prob.sum()) - 6 * math.log(8) + math.log(2) + math.log(8)
    assert summary["log_likelihood_sum"] == pytest.approx(expected)
    assert summary["corr_x"] is None
    unscaled = SequenceScores(model.event_shape, preprocessing=Preprocessing("none"))
    unscaled.update(model, x)  # no standardisation: no log-Jacobian to add
    assert unscaled.summary()["log_likelihood_sum"] == pytest.approx(float(log_prob.sum()))


def test_a_sequence_with_too_few_observed_steps_is_refused_with_its_file(tmp_path, capsys):
    series = np.random.default_rng(0).normal(size=(10, 8, 2))
    series[4, 1:] = np.nan  # sequence 4: one step with an observed value
    series[2, :3] = np.nan  # gaps at the start of a sequence are fine
    path = tmp_path / "runs.npy"
    np.save(path, series)
    command = ["train", "data.dataset=array", f"data.path={path}", "model.conditioner=mlp"]
    command += ["data.test_sequences=1", "data.validation_sequences=1"]
    assert main([*command, "--out", str(tmp_path / "run"), "--max-steps", "1", *TINY_RUN]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"{path} [train]: sequence 4 has 1 steps with an observed value (of 8)" in error


def test_generation_conditions_end_with_the_contexts_masks_and_ones_after():
    from seqflows.app.conditions import generation_conditions

    context = torch.tensor([[[1.0, NAN], [NAN, NAN]]])  # (N, c, D) = (1, 2, 2)
    masks = generation_masks(context, 2)
    assert masks.tolist() == [
        [[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]]  # [m_{t-1}, m_t]
    ]
    known = torch.full((1, 4, 1), 3.0)  # the data's own conditions come first
    steps = generation_conditions(5, 1, 2, 2, known, gaps=context)
    torch.testing.assert_close(steps, torch.cat([known, masks], dim=-1))
    assert torch.equal(generation_conditions(4, 1, 2, 2, None, gaps=context), masks)
    model = make_flow((2,), window=1, condition_dim=4)
    generated = model.sample(1, 2, context=context.double(), conditions=masks.double())
    assert generated.shape == (1, 2, 2) and torch.isfinite(generated).all()


def test_gaps_are_read_from_the_training_split_and_can_be_switched_off(tmp_path):
    from seqflows.app.config import Config
    from seqflows.app.resolution import resolve_data, settings_in_effect

    series = np.random.default_rng(0).normal(size=(10, 8, 2))
    path = tmp_path / "runs.npy"
    np.save(path, series)
    settings = [f"data.path={path}", "model.conditioner=mlp", "model.window=1"]
    complete = resolve_data(Config.from_dict({}, settings))
    assert complete.gaps is False and complete.condition_dim == 0
    series[1, 3, 0] = np.nan  # a training sequence (the last 2 are held out)
    np.save(path, series)
    given = Config.from_dict({}, settings)
    gapped = resolve_data(given)
    assert gapped.gaps is True and gapped.condition_dim == 2 * 2
    unmasked = resolve_data(Config.from_dict({}, [*settings, "data.gaps=false"]))
    assert unmasked.gaps is False and unmasked.condition_dim == 0
    # an evaluation of the recorded configuration finds the same
    recorded = settings_in_effect(given, gapped)
    assert recorded.data.gaps is True and resolve_data(recorded, "test").condition_dim == 4


def test_quantised_stores_keep_no_gaps(tmp_path, capsys):
    source = gapped_csv(tmp_path / "sensors.csv", machines=3, steps=4)
    command = ["convert", "series", str(source), str(tmp_path / "store"), "--quantize"]
    assert main([*command, "--id-column", "machine", "--validation", "0", "--test", "0"]) == 2
    error = capsys.readouterr().err
    assert f"{source}, line 2, column 'temperature': a missing value; --quantize" in error


def test_the_slvm_bound_is_scored_on_the_observed_values():
    model = _slvm(0)
    std = (1.0, 2.0, 4.0)
    preprocessing = Preprocessing("none", mean=(0.0, 0.0, 0.0), std=std)
    scores = SequenceScores(VECTOR, iwae_samples=3, preprocessing=preprocessing)
    x = _with_gap(sequence(2, 6, VECTOR), (0, 4, 1), (1, 3))
    scores.update(model, x, torch.Generator().manual_seed(1))
    _, bound = model.scores_and_bound(x, 3, torch.Generator().manual_seed(1))
    observed = ~torch.isnan(x[:, model.burn_in :])
    jacobian = -(observed.double() * torch.tensor(std).log()).sum()
    assert scores.iwae_total == pytest.approx(float(bound.sum() + jacobian))
    summary = scores.summary()
    assert summary["dims_scored"] == int(observed.sum())
    assert summary["iwae_nats_per_dim"] == pytest.approx(scores.iwae_total / int(observed.sum()))

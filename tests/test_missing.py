"""Missing values (NaN gaps) of series: the density of the observed values only (issue 27)."""

from __future__ import annotations

import math

import pytest
import torch

from seqflows.errors import DataError
from seqflows.missing import observation_conditions, require_elementwise, split_missing

from helpers import VECTOR, make_flow, sequence

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


def test_the_slvm_refuses_gaps_with_a_clear_error():
    from seqflows import SLVM

    model = SLVM(VECTOR, latent_dim=2, lstm_hidden=4, mlp_hidden=4, conditioner="mlp").double()
    x = _with_gap(sequence(1, 5, VECTOR), (0, 3, 1))
    with pytest.raises(DataError, match="x has missing values .NaN.; the SLVM"):
        model.loss(x)

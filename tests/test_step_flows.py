"""Within-step bases (seqflows.step_flows): a distribution across the D dimensions of one step."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from seqflows import FlowModel
from seqflows.errors import ConfigError
from seqflows.step_flows import STEP_BASES, make_step_base

from helpers import TINY_BALLS, TINY_RUN, make_flow

D = 3


def random_base(kind: str, seed: int = 0, condition_dim: int = 0):
    """A float64 base whose heads are random (not the identity of its initialisation)."""
    torch.manual_seed(seed)
    base = make_step_base(kind, (D,), window=2, hidden=8, bins=4, bound=3.0,
                          condition_dim=condition_dim).double()  # fmt: skip
    with torch.no_grad():
        for parameter in base.parameters():
            parameter.add_(0.4 * torch.randn_like(parameter))
    return base


@pytest.mark.parametrize("kind", STEP_BASES)
def test_log_det_matches_the_autograd_jacobian(kind):
    base = random_base(kind)
    features = torch.randn(5, 8, dtype=torch.float64)
    y = 1.5 * torch.randn(5, D, dtype=torch.float64)
    _, log_det = base.to_noise(y, features)
    for row in range(5):
        jacobian = torch.autograd.functional.jacobian(
            lambda v, row=row: base.to_noise(v[None], features[row : row + 1])[0][0], y[row]
        )
        _, expected = torch.linalg.slogdet(jacobian)
        assert torch.allclose(log_det[row], expected, atol=1e-10), (kind, row)


@pytest.mark.parametrize("kind", STEP_BASES)
def test_the_noise_map_is_autoregressive_across_dimensions(kind):
    # Full covariance: e = L^{-1}(y - mu) is lower triangular; a masked flow is triangular in
    # its own order (the stack of a forward and a reversed layer is dense), so only the
    # first layer is checked for MAF/NSF through its MADE.
    base = random_base(kind)
    features = torch.randn(1, 8, dtype=torch.float64)
    y = torch.randn(D, dtype=torch.float64)
    if kind == "full_covariance":
        jacobian = torch.autograd.functional.jacobian(
            lambda v: base.to_noise(v[None], features)[0][0], y
        )
        assert torch.count_nonzero(torch.triu(jacobian, diagonal=1)) == 0
        assert torch.count_nonzero(torch.tril(jacobian, diagonal=-1)) > 0
    else:
        made = base.networks[0]
        jacobian = torch.autograd.functional.jacobian(
            lambda v: made(v[None], features)[0].sum(-1), y
        )  # (D outputs, D inputs): row d depends on y_<d only
        assert torch.count_nonzero(torch.triu(jacobian)) == 0
        assert torch.count_nonzero(torch.tril(jacobian, diagonal=-1)) > 0


@pytest.mark.parametrize("kind", STEP_BASES)
def test_round_trip(kind):
    base = random_base(kind)
    features = torch.randn(64, 8, dtype=torch.float64)
    y = 2 * torch.randn(64, D, dtype=torch.float64)  # some outside the spline's [-3, 3]
    noise, _ = base.to_noise(y, features)
    assert torch.allclose(base.from_noise(noise, features), y, atol=1e-10)
    noise = torch.randn(64, D, dtype=torch.float64)
    assert torch.allclose(base.to_noise(base.from_noise(noise, features), features)[0], noise)


def trained_like_flow(kind: str, context: str = "burn_in", condition_dim: int = 0) -> FlowModel:
    """A 1-AF with random weights everywhere, the base included (float64, eval mode)."""
    model = make_flow((D,), window=2, context=context, conditioner="mlp", base=kind,
                      bins=4, bound=3.0, condition_dim=condition_dim)  # fmt: skip
    with torch.no_grad():
        for parameter in model.base.parameters():
            parameter.add_(0.4 * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("context", ["burn_in", "padded"])
@pytest.mark.parametrize("kind", STEP_BASES)
def test_density_of_a_step_does_not_depend_on_later_steps(kind, context):
    model = trained_like_flow(kind, context)
    x = torch.randn(2, 9, D, dtype=torch.float64)
    changed = x.clone()
    changed[:, 6:] += torch.randn(2, 3, D, dtype=torch.float64)
    scored_before = 6 - model.burn_in  # the frames 0..5 that are scored
    before, after = model.log_prob(x), model.log_prob(changed)
    assert torch.equal(before[:, :scored_before], after[:, :scored_before])
    assert not torch.allclose(before[:, scored_before:], after[:, scored_before:])


@pytest.mark.parametrize("kind", STEP_BASES)
def test_time_parallel_density_equals_step_by_step_generation(kind):
    # Sampling draws e_t ~ N(0, I) one step at a time and maps it to x_t given x_<t; the
    # density computed for all steps at once must give back those e_t (and so the density of
    # the base at e_t plus the log-determinants), and each step's density equals that of the
    # step scored as the last of its prefix.
    model = trained_like_flow(kind, condition_dim=2)
    context = torch.randn(3, model.burn_in, D, dtype=torch.float64)
    conditions = torch.randn(3, model.burn_in + 5, 2, dtype=torch.float64)
    generator = torch.Generator().manual_seed(7)
    frames = model.sample(3, 5, context, generator=generator, conditions=conditions)
    x = torch.cat([context, frames], dim=1)
    replay = torch.Generator().manual_seed(7)
    drawn = torch.stack([torch.randn(3, D, generator=replay, dtype=torch.float64)
                         for _ in range(5)], dim=1)  # fmt: skip
    y = model.normalize(x, conditions).noise
    features = model.base.context(x, 5, conditions)
    noise, _ = model.base.to_noise(y.flatten(0, 1), features.flatten(0, 1))
    assert torch.allclose(noise.unflatten(0, (3, 5)), drawn, atol=1e-9)
    parallel = model.log_prob(x, conditions)
    for step in range(5):
        end = model.burn_in + step + 1
        last = model.log_prob(x[:, :end], conditions[:, :end])[:, -1]
        assert torch.allclose(parallel[:, step], last, atol=1e-10)


@pytest.mark.parametrize("kind", STEP_BASES)
def test_an_untrained_within_step_base_is_todays_standard_base(kind):
    standard = make_flow((D,), window=2, conditioner="mlp", dtype=torch.float32)
    model = make_flow((D,), window=2, conditioner="mlp", dtype=torch.float32, base=kind)
    model.transforms.load_state_dict(standard.transforms.state_dict())
    x = torch.randn(4, 10, D)
    expected = standard.log_prob(x)
    assert torch.allclose(model.log_prob(x), expected, atol=1e-6, rtol=0)
    assert torch.allclose(model.loss(x).loss, standard.loss(x).loss, atol=1e-6, rtol=0)


def test_frames_and_a_zero_base_layers_are_refused():
    with pytest.raises(ConfigError, match="vector step"):
        FlowModel((1, 4, 4), base="maf", window=1)
    with pytest.raises(ConfigError, match="base_layers must be at least 1"):
        FlowModel((D,), base="maf", base_layers=0)


VAR_A = torch.tensor([[0.5, 0.2], [-0.3, 0.4]], dtype=torch.float64)
VAR_NOISE = torch.tensor([[1.0, 0.8 * 0.7], [0.8 * 0.7, 0.49]], dtype=torch.float64)
# The mutual information of the two noise components (correlation 0.8): what a factorised base
# loses per step, -log(1 - 0.8^2) / 2 = 0.51 nats.
VAR_MUTUAL_INFORMATION = -0.5 * math.log(1 - 0.8**2)


def simulate_var1(steps: int, sequences: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """x_t = A x_{t-1} + e_t, e_t ~ N(0, S); and the true model's mean log-likelihood of
    x_1.. given x_0 per step."""
    generator = torch.Generator().manual_seed(seed)
    L = torch.linalg.cholesky(VAR_NOISE)
    x = torch.zeros(sequences, steps, 2, dtype=torch.float64)
    x[:, 0] = torch.randn(sequences, 2, generator=generator, dtype=torch.float64)
    for t in range(1, steps):
        e = torch.randn(sequences, 2, generator=generator, dtype=torch.float64) @ L.T
        x[:, t] = x[:, t - 1] @ VAR_A.T + e
    true = torch.distributions.MultivariateNormal(x[:, :-1] @ VAR_A.T, scale_tril=L)
    return x, float(true.log_prob(x[:, 1:]).mean())


def linear_1af(base: str) -> FlowModel:
    torch.manual_seed(0)
    return FlowModel((2,), window=1, conditioner="linear", base=base, hidden=8).double()


def test_the_full_covariance_base_holds_the_true_var1_exactly():
    # Closed form: shift = A x_{t-1}, scale 1 and the base's mean 0 and Cholesky factor L of S
    # (in the head's biases) are the true VAR(1), so the log-likelihood is the true one to
    # rounding; the standard base at its optimum (shift A x_{t-1}, scale sqrt(S_dd)) is a
    # diagonal VAR, below the truth by the mutual information on average.
    x, true = simulate_var1(201, 20)
    model = linear_1af("full_covariance")
    L = torch.linalg.cholesky(VAR_NOISE)
    with torch.no_grad():
        model.transforms[0].conditioner.shift_head.weight.copy_(VAR_A)
        model.base.head.bias.copy_(torch.cat([torch.zeros(2), L.diagonal().log(), L[1, :1]]))
        assert abs(float(model.log_prob(x).mean()) - true) < 1e-12
    standard = linear_1af("standard")
    with torch.no_grad():
        standard.transforms[0].conditioner.shift_head.weight.copy_(VAR_A)
        standard.transforms[0].conditioner.log_scale_head.bias.copy_(
            VAR_NOISE.diagonal().log() / 2
        )
        gap = true - float(standard.log_prob(x).mean())
    assert abs(gap - VAR_MUTUAL_INFORMATION) < 0.03, gap  # 4,000 steps: sampling error ~0.01


def fitted(x: torch.Tensor, base: str) -> float:
    """The mean log-likelihood per step of the linear 1-AF fitted by L-BFGS."""
    model = linear_1af(base)
    optimizer = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model.loss(x).loss
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float(model.log_prob(x).mean())


def var1_maximum_likelihood(x: torch.Tensor) -> float:
    """The largest mean log-likelihood per step of a Gaussian VAR(1) with an intercept on x, in
    closed form: least squares, then the residuals' covariance S: -(D log 2 pi + log|S| + D)/2."""
    previous, current = x[:, :-1].flatten(0, 1), x[:, 1:].flatten(0, 1)
    design = torch.cat([previous, torch.ones_like(previous[:, :1])], dim=1)
    residuals = current - design @ torch.linalg.lstsq(design, current).solution
    covariance = residuals.T @ residuals / len(residuals)
    D = x.shape[-1]
    return float(-0.5 * (D * math.log(2 * math.pi) + torch.logdet(covariance) + D))


def test_the_fitted_full_covariance_base_reaches_the_exact_var1_likelihood():
    # 20 x 200 = 4,000 scored steps. Fitted by L-BFGS, the linear 1-AF with the full-covariance
    # base contains every Gaussian VAR(1), so it reaches at least the closed-form maximum of
    # that family (to the optimizer's 0.002). It exceeds the true model's log-likelihood only
    # by fitting noise with its P = 153 parameters: in expectation (P / 2) / steps = 0.019
    # nats per step at most (Wilks), the tolerance. The standard base is a diagonal VAR at
    # best, below the truth by the mutual information of the noise (0.51 nats per step).
    x, true = simulate_var1(201, 20)
    steps = x.shape[0] * (x.shape[1] - 1)
    parameters = sum(parameter.numel() for parameter in linear_1af("full_covariance").parameters())
    full = fitted(x, "full_covariance")
    assert var1_maximum_likelihood(x) - 0.002 <= full <= true + parameters / 2 / steps, full
    standard = fitted(x, "standard")
    assert abs((true - standard) - VAR_MUTUAL_INFORMATION) < 0.03, (standard, true)


def run_command(capsys, *arguments: str) -> dict:
    from seqflows.app.cli import main

    status = main(list(arguments))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out[captured.out.index("{") :])


@pytest.mark.parametrize(
    ("name", "label"),
    [("my_time_series_full_covariance", "1-AF, full_covariance base"),
     ("my_time_series_maf", "1-AF, maf base")],
)  # fmt: skip
def test_the_shipped_series_configurations_train_evaluate_and_sample(
    tmp_path, capsys, name, label
):
    pytest.importorskip("lightning")
    series = tmp_path / "series.npy"
    walks = np.cumsum(np.random.default_rng(0).normal(size=(20, 12, 3)), axis=1)
    np.save(series, walks)
    run = tmp_path / "run"
    trained = run_command(
        capsys, "train", name, f"data.path={series}", "--out", str(run), "--max-steps", "2",
        "--no-progress", "data.length=6", "model.window=2", *TINY_RUN,
    )  # fmt: skip
    assert trained["steps"] == 2
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    result = run_command(capsys, "evaluate", checkpoint, "--json", "--no-progress")
    assert result["model"] == label and math.isfinite(result["nats_per_dim"])
    sampled = run_command(
        capsys, "sample", checkpoint, "--out", str(tmp_path / "samples"), "--num", "2",
        "--length", "3",
    )  # fmt: skip
    predicted = torch.load(sampled["written"]["pt"], weights_only=True)["predicted"]
    assert predicted.shape == (2, 3, 3) and torch.isfinite(predicted).all()


def test_a_within_step_base_on_frames_is_a_one_line_error(tmp_path, capsys):
    from seqflows.app.cli import main

    status = main(["train", "bouncing_balls_1af", "--out", str(tmp_path), "model.base=maf",
                   *TINY_BALLS])  # fmt: skip
    error = capsys.readouterr().err
    assert status == 2, error
    assert error.startswith("seqflows: error:") and "vector step" in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1

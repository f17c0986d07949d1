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


def simulate_var1(steps: int, sequences: int, seed: int = 0):
    """x_t = A x_{t-1} + e_t, e_t ~ N(0, S), S with correlation 0.8; and the true per-step
    log-likelihood of x_1.. given x_0 (averaged over the scored steps)."""
    generator = torch.Generator().manual_seed(seed)
    A = torch.tensor([[0.5, 0.2], [-0.3, 0.4]], dtype=torch.float64)
    S = torch.tensor([[1.0, 0.8 * 0.7], [0.8 * 0.7, 0.49]], dtype=torch.float64)
    L = torch.linalg.cholesky(S)
    x = torch.zeros(sequences, steps, 2, dtype=torch.float64)
    x[:, 0] = torch.randn(sequences, 2, generator=generator, dtype=torch.float64)
    for t in range(1, steps):
        e = torch.randn(sequences, 2, generator=generator, dtype=torch.float64) @ L.T
        x[:, t] = x[:, t - 1] @ A.T + e
    true = torch.distributions.MultivariateNormal(x[:, :-1] @ A.T, scale_tril=L)
    mutual_information = -0.5 * math.log(1 - 0.8**2)  # of the two noise components
    return x, float(true.log_prob(x[:, 1:]).mean()), mutual_information


def fitted_linear_1af(x: torch.Tensor, base: str) -> float:
    torch.manual_seed(0)
    model = FlowModel((2,), window=1, conditioner="linear", base=base, hidden=8).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(400):
        optimizer.zero_grad()
        model.loss(x).loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float(model.log_prob(x).mean())


def test_the_full_covariance_base_reaches_the_exact_var1_likelihood():
    # 40 x 100 = 3,960 scored steps. The maximum likelihood of a Gaussian VAR(1) exceeds the
    # true parameters' by about (parameters / 2) / steps = (4 + 2 + 3) / 2 / 3960 = 0.001
    # nats per step (Wilks), and the fitted model is at most a few 1e-3 from its optimum: a
    # tolerance of 0.01 nats per step. The standard base is a diagonal-covariance VAR at best,
    # below the truth by the mutual information of the two noise components,
    # -log(1 - 0.8^2) / 2 = 0.51 nats per step.
    x, true, mutual_information = simulate_var1(101, 40)
    full = fitted_linear_1af(x, "full_covariance")
    standard = fitted_linear_1af(x, "standard")
    assert abs(full - true) < 0.01, (full, true)
    assert abs((true - standard) - mutual_information) < 0.02, (standard, true)


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

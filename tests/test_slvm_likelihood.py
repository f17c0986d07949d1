"""The SLVM's full-covariance likelihood p(y_t | z_t) across the dimensions of a step
(latent.likelihood_base, seqflows.latent and seqflows.distributions.full_normal_log_prob)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from seqflows.app.cli import main
from seqflows.distributions import full_normal_log_prob, lower_triangular
from seqflows.errors import ConfigError, DataError
from seqflows.latent import LIKELIHOOD_BASES
from seqflows.slvm import SLVM
from test_step_flows import run_command

from helpers import TINY_BALLS, TINY_RUN

D = 3


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def vector_model(likelihood_base: str = "full_covariance", num_transforms: int = 0) -> SLVM:
    torch.manual_seed(0)
    model = SLVM(
        (D,), latent_dim=4, num_transforms=num_transforms, window=2, lstm_hidden=8,
        mlp_hidden=8, hidden=8, identity_init=False, latent={"likelihood_base": likelihood_base},
    )  # fmt: skip
    return model.eval()


def random_lower_head(model: SLVM, seed: int = 1, size: float = 0.5) -> None:
    """Off-diagonal entries of the likelihood's factor (or a MAF likelihood) that are not zero."""
    torch.manual_seed(seed)
    within = model.latent.likelihood_flow or model.latent.decoder.lower_head
    with torch.no_grad():
        for parameter in within.parameters():
            parameter.add_(size * torch.randn_like(parameter))


def random_factor(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return lower_triangular(0.3 * torch.randn(*shape, D), torch.randn(*shape, D * (D - 1) // 2))


def test_the_log_density_is_the_multivariate_normals():
    factor = random_factor((4, 5)).double()
    loc, x = torch.randn(4, 5, D).double(), torch.randn(4, 5, D).double()
    expected = MultivariateNormal(loc, scale_tril=factor).log_prob(x)
    torch.testing.assert_close(full_normal_log_prob(x, loc, factor), expected)


def test_gaps_are_the_exact_marginal_over_the_observed_dimensions():
    factor = random_factor((40,)).double()
    loc, x = torch.randn(40, D).double(), torch.randn(40, D).double()
    observed = torch.rand(40, D) < 0.6
    observed[0] = False  # a step with nothing observed scores 0
    observed[1] = True
    log_prob = full_normal_log_prob(x.masked_fill(~observed, 0.5), loc, factor, observed)
    for n in range(40):
        kept = observed[n]
        if not kept.any():
            assert log_prob[n] == 0
            continue
        covariance = (factor[n] @ factor[n].T)[kept][:, kept]  # the marginal's covariance
        expected = MultivariateNormal(loc[n][kept], covariance).log_prob(x[n][kept])
        torch.testing.assert_close(log_prob[n], expected)


def test_the_density_is_computed_in_float32_under_mixed_precision():
    factor = random_factor((64,))
    loc, x = torch.randn(64, D), torch.randn(64, D)
    observed = torch.rand(64, D) < 0.7
    expected = full_normal_log_prob(x, loc, factor, observed)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_prob = full_normal_log_prob(x, loc, factor, observed)
    assert log_prob.dtype == torch.float32
    torch.testing.assert_close(log_prob, expected, rtol=0, atol=0)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_the_elbo_scores_y_with_the_full_covariance_gaussian(num_transforms):
    model = vector_model(num_transforms=num_transforms)
    random_lower_head(model)
    x = torch.randn(2, 7, D)
    terms = model.elbo_terms(x, generator(3))
    v = x if model.flow is None else model.flow.normalize(x).noise
    posterior = model.latent.infer(model.latent.encode(v), generator(3))
    loc, log_scale, factor = model.latent.likelihood_parameters(posterior.z)
    assert not torch.allclose(factor, torch.diag_embed(torch.exp(log_scale)))
    torch.testing.assert_close(torch.diagonal(factor, dim1=-2, dim2=-1), torch.exp(log_scale))
    expected = MultivariateNormal(loc, scale_tril=factor).log_prob(v)
    start = expected.shape[1] - terms.log_likelihood.shape[1]
    torch.testing.assert_close(terms.log_likelihood, expected[:, start:])


@pytest.mark.parametrize("likelihood_base", ["full_covariance", "maf"])
@pytest.mark.parametrize("num_transforms", [0, 1])
def test_untrained_it_is_the_diagonal_model_and_the_off_diagonal_changes_the_bound(
    likelihood_base, num_transforms
):
    diagonal = vector_model("diagonal", num_transforms)
    full = vector_model(likelihood_base, num_transforms)
    missing = full.load_state_dict(diagonal.state_dict(), strict=False).missing_keys
    added = "latent.decoder.lower_head." if likelihood_base == "full_covariance" else "latent.lik"
    assert missing and all(key.startswith(added) for key in missing)
    assert "lower_head" not in str(diagonal)  # "diagonal": today's modules, nothing added
    assert "likelihood_flow" not in str(diagonal)
    diagonal, full = diagonal.double(), full.double()  # 1e-6 on sums of ~20 nats: float64
    x = torch.randn(2, 7, D).double()
    elbo = diagonal.elbo(x, generator(1))
    bound = diagonal.bound(x, 4, generator(2))
    torch.testing.assert_close(full.elbo(x, generator(1)), elbo, rtol=0, atol=1e-6)
    torch.testing.assert_close(full.bound(x, 4, generator(2)), bound, rtol=0, atol=1e-6)
    random_lower_head(full)
    assert (full.elbo(x, generator(1)) - elbo).abs().min() > 1e-3
    assert (full.bound(x, 4, generator(2)) - bound).abs().min() > 1e-3
    full.elbo(x, generator(1)).sum().backward()  # and training can move it
    within = full.latent.likelihood_flow or full.latent.decoder.lower_head
    assert all(parameter.grad.abs().sum() > 0 for parameter in within.parameters())


def test_samples_given_a_fixed_latent_have_covariance_l_lt():
    model = vector_model()
    random_lower_head(model, size=0.3)
    latent = model.latent
    with torch.no_grad():  # a prior with a scale of e^-15: the first z is its loc, always
        latent.prior_log_scale.weight.zero_()
        latent.prior_log_scale.bias.fill_(-15.0)
        output, _ = latent.prior_lstm(
            latent.prior_input(torch.zeros(1, 4)), latent.prior_lstm.start(1)
        )
        loc, _, factor = latent.likelihood_parameters(latent.prior_loc(output)[:, None])
    samples = model.sample(40_000, 1, generator=generator(0))[:, 0].double()
    covariance = (factor[0, 0] @ factor[0, 0].T).double()
    assert covariance.tril(-1).abs().max() > 0.1  # the dimensions are correlated
    torch.testing.assert_close(samples.mean(0), loc[0, 0].double(), rtol=0, atol=0.03)
    torch.testing.assert_close(torch.cov(samples.T), covariance, rtol=0.05, atol=0.02)


@pytest.mark.parametrize("likelihood_base", [base for base in LIKELIHOOD_BASES if base != "glow"])
@pytest.mark.parametrize("num_transforms", [0, 1])
def test_the_score_of_a_step_does_not_depend_on_later_steps(likelihood_base, num_transforms):
    model = vector_model(likelihood_base, num_transforms)
    if likelihood_base != "diagonal":
        random_lower_head(model)
    x = torch.randn(1, 8, D)
    changed = x.clone()
    changed[:, 6:] = torch.randn(1, 2, D)
    before, after = model.elbo(x, generator(5)), model.elbo(changed, generator(5))
    last = before.shape[1] - 2  # scored frames before the change
    torch.testing.assert_close(before[:, :last], after[:, :last], rtol=0, atol=0)
    assert not torch.allclose(before[:, last:], after[:, last:])


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_gaps_leave_the_missing_values_out_of_the_bound(num_transforms):
    model = vector_model(num_transforms=num_transforms)
    random_lower_head(model)
    x = torch.randn(2, 7, D)
    gappy = x.clone()
    gappy[0, 5, 1] = gappy[1, 6, :2] = float("nan")
    terms = model.elbo_terms(gappy, generator(3))
    assert torch.isfinite(terms.elbo).all() and torch.isfinite(model.bound(gappy, 3)).all()
    filled = torch.nan_to_num(gappy)
    v = filled if model.flow is None else model.flow.normalize(filled).noise
    posterior = model.latent.infer(model.latent.encode(v), generator(3))
    loc, _, factor = model.latent.likelihood_parameters(posterior.z)
    seen, scored = 7 - v.shape[1], 7 - terms.log_likelihood.shape[1]  # frames before v, scores
    for b, t, kept in ((0, 5, [0, 2]), (1, 6, [2]), (0, 4, [0, 1, 2])):  # t: a frame of x
        covariance = (factor[b, t - seen] @ factor[b, t - seen].T)[kept][:, kept]
        marginal = MultivariateNormal(loc[b, t - seen, kept], covariance)
        expected = marginal.log_prob(v[b, t - seen, kept])
        torch.testing.assert_close(terms.log_likelihood[b, t - scored], expected)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_the_maf_likelihood_is_its_noise_density_and_autograd_log_determinant(num_transforms):
    model = vector_model("maf", num_transforms).double()
    random_lower_head(model)
    x = torch.randn(2, 7, D).double()
    terms = model.elbo_terms(x, generator(3))
    v = x if model.flow is None else model.flow.normalize(x).noise
    posterior = model.latent.infer(model.latent.encode(v), generator(3))
    loc, log_scale, features = model.latent.likelihood_parameters(posterior.z)
    start = v.shape[1] - terms.log_likelihood.shape[1]
    maf = model.latent.likelihood_flow
    standard = MultivariateNormal(torch.zeros(D).double(), torch.eye(D).double())
    for b, t in ((0, start), (1, v.shape[1] - 1)):

        def noise_of(step, b=b, t=t):  # v_t -> e_t, the map whose density the model scores
            residual = (step - loc[b, t]) * torch.exp(-log_scale[b, t])
            return maf.to_noise(residual[None], features[b, t][None])[0][0]

        jacobian = torch.autograd.functional.jacobian(noise_of, v[b, t])
        assert (jacobian - torch.diag(torch.diagonal(jacobian))).abs().max() > 1e-3  # not diagonal
        expected = standard.log_prob(noise_of(v[b, t])) + torch.linalg.slogdet(jacobian)[1]
        torch.testing.assert_close(terms.log_likelihood[b, t - start], expected)


def test_maf_samples_map_back_to_standard_normal_noise_and_gaps_are_refused():
    model = vector_model("maf")
    random_lower_head(model, size=0.3)
    latent = model.latent
    with torch.no_grad():  # a prior with a scale of e^-15: the first z is its loc, always
        latent.prior_log_scale.weight.zero_()
        latent.prior_log_scale.bias.fill_(-15.0)
        start = latent.prior_lstm.start(1)
        output, _ = latent.prior_lstm(latent.prior_input(torch.zeros(1, 4)), start)
        loc, log_scale, features = latent.likelihood_parameters(latent.prior_loc(output)[:, None])
        samples = model.sample(20_000, 1, generator=generator(0))[:, 0]
        residual = (samples - loc[0]) * torch.exp(-log_scale[0])
        noise, _ = latent.likelihood_flow.to_noise(residual, features[0].expand(20_000, -1))
    assert torch.cov(residual.T).tril(-1).abs().max() > 0.05  # the dimensions are dependent
    torch.testing.assert_close(noise.mean(0), torch.zeros(D), rtol=0, atol=0.03)
    torch.testing.assert_close(torch.cov(noise.T), torch.eye(D), rtol=0, atol=0.04)
    gappy = torch.randn(2, 7, D)
    gappy[0, 4, 1] = float("nan")
    with pytest.raises(DataError, match="latent.likelihood_base='maf'"):
        model.elbo(gappy)


@pytest.mark.parametrize("likelihood_base", ["full_covariance", "maf"])
def test_frames_are_refused_naming_the_setting(tmp_path, capsys, likelihood_base):
    with pytest.raises(ConfigError, match=f"latent.likelihood_base='{likelihood_base}'"):
        SLVM((1, 8, 8), latent={"likelihood_base": likelihood_base})
    status = main(["train", "bouncing_balls_slvm", "--out", str(tmp_path),
                   f"model.latent.likelihood_base={likelihood_base}", *TINY_BALLS])  # fmt: skip
    error = capsys.readouterr().err
    assert status == 2, error
    assert error.startswith("seqflows: error:") and "latent.likelihood_base" in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("override", "label"),
    [("model.latent.likelihood_base=full_covariance", "SLVM w/ 1-AF, full-covariance likelihood"),
     ("model.latent.likelihood_base=maf", "SLVM w/ 1-AF, maf likelihood")],
)  # fmt: skip
def test_the_shipped_configuration_trains_evaluates_and_samples(tmp_path, capsys, override, label):
    pytest.importorskip("lightning")
    series = tmp_path / "series.npy"
    walks = np.cumsum(np.random.default_rng(0).normal(size=(20, 12, D)), axis=1)
    np.save(series, walks)
    run = tmp_path / "run"
    trained = run_command(
        capsys, "train", "my_time_series_slvm_full_covariance", f"data.path={series}", "--out",
        str(run), "--max-steps", "2", "--no-progress", "data.length=6", "model.window=2",
        "model.latent_dim=4", "model.lstm_hidden=8", "model.mlp_hidden=8",
        "model.encoder_features=8", "evaluate.iwae_samples=3", override, *TINY_RUN,
    )  # fmt: skip
    assert trained["steps"] == 2
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    result = run_command(capsys, "evaluate", checkpoint, "--json", "--no-progress")
    assert result["model"] == label
    assert math.isfinite(result["nats_per_dim"])
    sampled = run_command(
        capsys, "sample", checkpoint, "--out", str(tmp_path / "samples"), "--num", "2",
        "--length", "3",
    )  # fmt: skip
    predicted = torch.load(sampled["written"]["pt"], weights_only=True)["predicted"]
    assert predicted.shape == (2, 3, D) and torch.isfinite(predicted).all()

"""The flow prior of the SLVM (:mod:`seqflows.latent_prior`): its density, its sampling, the
bounds it gives, and the Gaussian prior left as it was without it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from seqflows.app.figures import model_label
from seqflows.config import build
from seqflows.distributions import normal_kl, normal_log_prob
from seqflows.errors import ConfigError
from seqflows.latent_prior import LatentFlow
from seqflows.saving import load, save_pretrained
from seqflows.slvm import SLVM, SLVMConfig
from seqflows.transforms import SplineAutoregressiveTransform, TransformConfig

KINDS = [["affine"], ["spline"], ["affine", "spline"]]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny matrices: a second thread costs time here (much more on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_flow(kinds: list[str], latent_dim: int = 3, window: int = 2) -> LatentFlow:
    """A float64 latent flow whose heads and initial latents are random (not the identity)."""
    torch.manual_seed(0)
    config = TransformConfig(window=window, hidden=6, identity_init=False, bins=4, bound=2.0)
    flow = LatentFlow(latent_dim, kinds, config).double()
    with torch.no_grad():
        for transform in flow.transforms:
            transform.initial_frames.normal_(0, 1)
    return flow


def small_model(prior_transforms: list[str] | None = None, **settings) -> SLVM:
    """A small vector SLVM w/ 1-AF; with a flow prior whose transforms are random."""
    torch.manual_seed(0)
    model = SLVM(
        (3,),
        latent_dim=4,
        num_transforms=1,
        window=1,
        lstm_hidden=16,
        mlp_hidden=16,
        hidden=8,
        init="default",
        prior_transforms=prior_transforms or [],
        **settings,
    )
    if model.latent.prior_flow is not None and not settings.get("identity_init", True):
        with torch.no_grad():
            for transform in model.latent.prior_flow.transforms:
                transform.initial_frames.normal_(0, 1)
    return model.eval()


# The flow on z ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kinds", KINDS)
def test_log_determinant_is_the_autograd_jacobian(kinds):
    flow = random_flow(kinds)
    z = torch.randn(1, 5, 3, dtype=torch.float64)
    u, log_abs_det = flow.normalize(z)
    assert u.shape == z.shape and log_abs_det.shape == (1, 5)
    jacobian = torch.autograd.functional.jacobian(
        lambda flat: flow.normalize(flat.view(1, 5, 3))[0].flatten(), z.flatten()
    )  # (15, 15): block lower-triangular in time
    for t in range(5):
        block = jacobian[3 * t : 3 * t + 3, 3 * t : 3 * t + 3]
        torch.testing.assert_close(torch.linalg.slogdet(block)[1], log_abs_det[0, t])
    torch.testing.assert_close(torch.linalg.slogdet(jacobian)[1], log_abs_det.sum())
    assert not torch.allclose(u, z)  # random transforms: not a tautology


@pytest.mark.parametrize("kinds", KINDS)
def test_each_step_depends_on_past_latents_only(kinds):
    flow = random_flow(kinds, window=2)
    z = torch.randn(2, 6, 3, dtype=torch.float64)
    u, log_abs_det = flow.normalize(z)
    for step in range(6):
        changed = z.clone()
        changed[:, step] += 1.0
        u_changed, log_abs_det_changed = flow.normalize(changed)
        torch.testing.assert_close(u_changed[:, :step], u[:, :step], rtol=0, atol=0)
        torch.testing.assert_close(log_abs_det_changed[:, :step], log_abs_det[:, :step])
        assert not torch.allclose(u_changed[:, step], u[:, step])
        if step + 1 < 6:  # the next step sees it through the window
            assert not torch.allclose(log_abs_det_changed[:, step + 1], log_abs_det[:, step + 1])


@pytest.mark.parametrize("kinds", KINDS)
@pytest.mark.parametrize("context", [0, 1, 4])
def test_stepwise_generation_inverts_the_time_parallel_normalization(kinds, context):
    flow = random_flow(kinds, window=2)
    z = torch.randn(2, 6, 3, dtype=torch.float64)
    u, _ = flow.normalize(z)
    windows = flow.start(z[:, :context])
    generated = []
    for t in range(context, 6):
        step, windows = flow.generate_step(u[:, t], windows)
        generated.append(step)
        assert all(window.shape[1] == 2 for window in windows)  # constant state per step
    torch.testing.assert_close(torch.stack(generated, 1), z[:, context:])


def test_identity_initialised_flow_is_the_identity():
    flow = LatentFlow(3, ["affine", "spline"], TransformConfig(window=2, hidden=6))
    z = torch.randn(2, 5, 3)
    u, log_abs_det = flow.normalize(z)
    torch.testing.assert_close(u, z, atol=1e-6, rtol=0)
    torch.testing.assert_close(log_abs_det, torch.zeros(2, 5), atol=1e-5, rtol=0)


# The SLVM with the flow prior -----------------------------------------------------------------


def test_no_prior_transforms_is_the_papers_gaussian_prior():
    assert SLVMConfig().prior is None
    baseline, empty = small_model(), small_model([])
    assert baseline.latent.prior_flow is None and model_label(baseline) == "SLVM w/ 1-AF"
    assert baseline.state_dict().keys() == empty.state_dict().keys()
    # The KL term is the analytic one between the posterior and the LSTM Gaussian.
    x = torch.randn(3, 6, 3)
    v = baseline.flow.normalize(x).noise
    posterior = baseline.latent.infer(baseline.latent.encode(v), generator(1))
    loc, log_scale = baseline.latent.prior(posterior.z)
    expected = normal_kl(posterior.loc, posterior.log_scale, loc, log_scale)
    torch.testing.assert_close(baseline.elbo_terms(x, generator(1)).kl, expected)
    torch.testing.assert_close(
        baseline.latent.log_prior(posterior.z), normal_log_prob(posterior.z, loc, log_scale, 1)
    )


def test_a_flow_prior_adds_parameters_and_leaves_the_others_as_they_were():
    baseline, with_prior = small_model(), small_model(["affine", "spline"])
    assert model_label(with_prior) == "SLVM w/ 1-AF, flow prior"
    kinds = with_prior.latent.prior_flow.kinds
    assert kinds == ["affine", "spline"]
    assert isinstance(with_prior.latent.prior_flow.transforms[1], SplineAutoregressiveTransform)
    prior_state = with_prior.state_dict()
    for name, value in baseline.state_dict().items():  # same seed: same initialisation
        torch.testing.assert_close(prior_state[name], value, rtol=0, atol=0)
    extra = set(prior_state) - set(baseline.state_dict())
    assert extra and all(name.startswith("latent.prior_flow.") for name in extra)
    # reference_initialization would overwrite the zero heads: the flow is built after it.
    reference = SLVM((3,), latent_dim=4, lstm_hidden=8, mlp_hidden=8, prior_transforms=["affine"])
    z = torch.randn(2, 5, 4)
    torch.testing.assert_close(reference.latent.prior_flow.normalize(z)[0], z)


def test_the_density_of_z_is_the_gaussians_at_the_normalised_z_plus_the_log_determinant():
    model = small_model(["affine", "spline"], identity_init=False)
    z = torch.randn(2, 5, 4)
    loc, log_scale = model.latent.prior(z)
    u, log_abs_det = model.latent.prior_flow.normalize(z)
    expected = normal_log_prob(u, loc, log_scale, 1) + log_abs_det
    torch.testing.assert_close(model.latent.log_prior(z), expected)
    assert not torch.allclose(expected, normal_log_prob(z, loc, log_scale, 1))
    # log p(z) integrates to one: with a 1-D latent and one step, a quadrature of p(z_1).
    flow_model = SLVM(
        (2,), latent_dim=1, lstm_hidden=4, mlp_hidden=4, hidden=4, init="default",
        prior_transforms=["spline", "affine"], identity_init=False, bins=4, bound=1.0,
    ).eval()  # fmt: skip
    with torch.no_grad():
        for transform in flow_model.latent.prior_flow.transforms:
            transform.initial_frames.normal_(0, 1)
        grid = torch.linspace(-20, 20, 8001).view(-1, 1, 1)
        density = flow_model.latent.log_prior(grid).exp().view(-1)
    assert float(torch.trapezoid(density, dx=40 / 8000)) == pytest.approx(1.0, abs=1e-3)


def test_the_kl_term_is_the_monte_carlo_estimate_at_the_posterior_sample():
    model = small_model(["affine"], identity_init=False)
    x = torch.randn(3, 6, 3)
    terms = model.elbo_terms(x, generator(1))
    v = model.flow.normalize(x).noise
    posterior = model.latent.infer(model.latent.encode(v), generator(1))
    log_q = normal_log_prob(posterior.z, posterior.loc, posterior.log_scale, 1)
    torch.testing.assert_close(terms.kl, log_q - model.latent.log_prior(posterior.z))
    # Summed over the frames, one draw of the ELBO is one draw of the K=1 importance weight.
    torch.testing.assert_close(model.elbo(x, generator(5)).sum(1), model.bound(x, 1, generator(5)))


def test_iwae_with_one_sample_is_the_summed_elbo_in_expectation():
    model = small_model(["affine", "spline"], identity_init=False)
    x = torch.randn(3, 6, 3)
    draws = 1000
    copies = x.repeat(draws, 1, 1)  # independent samples of each sequence in one batch
    with torch.no_grad():
        iwae = model.bound(copies, 1, generator(0)).view(draws, 3)
        elbo = model.elbo(copies, generator(1)).sum(1).view(draws, 3)
    error = torch.sqrt(iwae.var(0) / draws + elbo.var(0) / draws)
    assert torch.all((iwae.mean(0) - elbo.mean(0)).abs() < 4 * error)


def test_iwae_bound_grows_with_the_number_of_samples():
    model = small_model(["affine"], identity_init=False)
    x = torch.randn(2, 6, 3)
    draws = 200
    copies = x.repeat(draws, 1, 1)  # independent bounds of each sequence in one batch
    with torch.no_grad():
        bounds = {k: model.bound(copies, k, generator(k)).view(draws, 2) for k in (1, 4, 32)}
    means = {k: value.mean(0) for k, value in bounds.items()}
    errors = {k: value.std(0) / math.sqrt(draws) for k, value in bounds.items()}
    assert torch.all(means[4] - means[1] > 3 * torch.hypot(errors[1], errors[4]))
    assert torch.all(means[32] - means[4] > 3 * torch.hypot(errors[4], errors[32]))


def test_identity_flow_prior_has_the_gaussian_priors_elbo_in_expectation():
    gaussian, flow = small_model(), small_model(["affine", "spline"])
    flow.load_state_dict(gaussian.state_dict(), strict=False)
    x = torch.randn(3, 6, 3)
    # The same posterior samples: the same log-prior and importance weights exactly...
    torch.testing.assert_close(flow.bound(x, 8, generator(2)), gaussian.bound(x, 8, generator(2)))
    # ... and the ELBO differs only by the KL, estimated instead of computed.
    draws = 1000
    copies = x.repeat(draws, 1, 1)
    with torch.no_grad():
        flow_terms = flow.elbo_terms(copies, generator(3))
        gaussian_terms = gaussian.elbo_terms(copies, generator(3))
    torch.testing.assert_close(flow_terms.log_likelihood, gaussian_terms.log_likelihood)
    assert not torch.allclose(flow_terms.kl, gaussian_terms.kl)
    difference = (flow_terms.elbo - gaussian_terms.elbo).sum(1).view(draws, 3)
    error = difference.std(0) / math.sqrt(draws)
    assert torch.all(difference.mean(0).abs() < 4 * error)


def test_sampling_draws_the_latents_from_the_flow_prior(monkeypatch):
    model = small_model(["affine", "spline"], identity_init=False, prior_window=2)
    latent = model.latent
    drawn = []
    likelihood = latent.likelihood_parameters  # what sampling calls on the new latents
    monkeypatch.setattr(
        latent,
        "likelihood_parameters",
        lambda z, conditions=None: drawn.append(z) or likelihood(z, conditions),
    )
    x = torch.randn(2, 4, 3)
    context_noise = model.flow.normalize(x).noise  # 3 frames past the flow's context
    frames = model.sample(2, 5, context=x, generator=generator(4))
    assert frames.shape == (2, 5, 3) and torch.isfinite(frames).all()
    # Replay the random numbers: the posterior's for the context, then one draw per step.
    replay = generator(4)
    history = latent.infer(latent.encode(context_noise), replay).z
    steps = torch.stack([torch.randn(2, 4, generator=replay) for _ in range(5)], 1)
    z = torch.cat([history, drawn[0]], 1)
    loc, log_scale = latent.prior(z)
    u, _ = latent.prior_flow.normalize(z)
    standardised = (u - loc) * torch.exp(-log_scale)
    torch.testing.assert_close(standardised[:, 3:], steps, atol=1e-4, rtol=1e-4)
    without_context = model.latent.sample(2, 3, None, generator(5))
    assert without_context.shape == (2, 3, 3)


def test_save_and_load_keep_the_flow_prior(tmp_path):
    model = small_model(["spline"], identity_init=False, prior_window=2)
    save_pretrained(model, tmp_path / "model")
    loaded = load(tmp_path / "model")
    assert loaded.config == model.config and loaded.config.prior.kinds == ["spline"]
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(loaded.elbo(x, generator(1)), model.elbo(x, generator(1)))


def test_prior_settings_are_checked_naming_the_key():
    config = build(SLVMConfig, {"prior_transforms": ["affine"], "prior_window": 2})
    assert config.prior.kinds == ["affine"] and config.prior.conditioner.window == 2
    assert config.prior.conditioner.kind == "mlp"
    with pytest.raises(ConfigError, match="x.yaml: model.prior.transforms.0.type must be one of"):
        build(SLVMConfig, {"prior_transforms": ["conv"]}, "x.yaml", "model.")
    with pytest.raises(ConfigError, match="x.yaml: model.prior.conditioner.window must be at le"):
        build(SLVMConfig, {"prior_transforms": ["affine"], "prior_window": 0}, "x.yaml", "model.")
    with pytest.raises(ConfigError, match="prior.conditioner.kind must be 'mlp' or 'linear'"):
        build(SLVMConfig, {"prior_transforms": ["affine"], "prior_conditioner": "conv"})


# The command line ------------------------------------------------------------------------------

TINY_SLVM = [
    "data.num_workers=0",
    "data.validation_sequences=2",
    "data.test_sequences=2",
    "model.hidden=4",
    "model.latent_dim=4",
    "model.lstm_hidden=8",
    "model.encoder_features=8",
    "train.batch_size=2",
    "train.val_every=2",
    "train.checkpoint_every=2",
    "train.log_every=1",
    "evaluate.iwae_samples=2",
    "evaluate.iwae_chunk=2",
]


def run_command(capsys, *arguments: str) -> dict:
    from seqflows.app.cli import main

    status = main(list(arguments))
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return json.loads(captured.out[captured.out.index("{") :])


def test_the_moving_mnist_configuration_trains_evaluates_samples_and_draws(tmp_path, capsys):
    pytest.importorskip("lightning")
    videos = tmp_path / "videos.npy"
    frames = np.zeros((12, 8, 8, 8), np.uint8)  # (N, T, H, W): a square moving right
    for step in range(8):
        frames[:, step, 2:5, step % 6 : step % 6 + 2] = 200
    np.save(videos, frames)
    run = tmp_path / "run"
    data = [  # the shipped settings on a small array of 8x8 videos
        "data.dataset=array",
        f"data.path={videos}",
        "data.size=8",
        "data.num_frames=8",
        "data.length=5",
        "data.eval_length=5",
        "model.window=1",
        "model.conv_width=4",
        "train.val_sequences=2",
    ]
    trained = run_command(
        capsys, "train", "mmnist_slvm_1af_prior", "--out", str(run), "--max-steps", "2",
        "--no-progress", *data, *TINY_SLVM,
    )  # fmt: skip
    assert trained["steps"] == 2
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    result = run_command(capsys, "evaluate", checkpoint, "--json", "--no-progress")
    assert result["model"] == "SLVM w/ 1-AF, flow prior" and result["sequences"] == 2
    assert result["bound"] == "IWAE lower bound, K=2"
    assert math.isfinite(result["elbo_nats_per_dim"]) and math.isfinite(result["nats_per_dim"])
    model = load(checkpoint)
    assert model.config.prior.kinds == ["affine"] and model.config.prior.conditioner.window == 1
    sampled = run_command(
        capsys, "sample", checkpoint, "--out", str(tmp_path / "samples"), "--num", "2",
        "--length", "3",
    )  # fmt: skip
    predicted = torch.load(sampled["written"]["pt"], weights_only=True)["predicted"]
    assert predicted.shape == (2, 3, 1, 8, 8) and torch.isfinite(predicted).all()
    drawn = run_command(capsys, "visualize", checkpoint, "--out", str(tmp_path / "figures"))
    assert all(Path(path).stat().st_size > 0 for path in drawn["written"].values())


def test_the_vector_configuration_trains_and_evaluates(tmp_path, capsys):
    pytest.importorskip("lightning")
    series = tmp_path / "series.npy"
    walks = np.cumsum(np.random.default_rng(0).normal(size=(20, 12, 3)), axis=1)
    np.save(series, walks)
    run = tmp_path / "run"
    trained = run_command(
        capsys, "train", "my_time_series_slvm_prior", f"data.path={series}", "--out", str(run),
        "--max-steps", "2", "--no-progress", "data.length=6", "model.window=2", *TINY_SLVM,
    )  # fmt: skip
    assert trained["steps"] == 2
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    result = run_command(capsys, "evaluate", checkpoint, "--json", "--no-progress")
    assert result["model"] == "SLVM w/ 1-AF, flow prior" and result["sequences"] == 2
    assert math.isfinite(result["nats_per_dim"])
    assert load(checkpoint).latent.prior_flow.transforms[0].window == 2


def test_a_bad_prior_setting_is_a_one_line_error(tmp_path, capsys):
    from seqflows.app.cli import main

    status = main(
        ["train", "mmnist_slvm_1af_prior", "--out", str(tmp_path), "model.prior_transforms=[conv]"]
    )
    error = capsys.readouterr().err
    assert status == 2
    assert error.startswith("seqflows: error:") and "model.prior_transforms" in error
    assert "Traceback" not in error

"""The SLVM's flow within the frame as its likelihood p(y_t | z_t) (latent.likelihood_base=glow,
seqflows.latent with seqflows.frame_flows): identity initialisation, the log-determinant
against autograd, round trips, causality in time, refused combinations and the CLI."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from seqflows.app.cli import main
from seqflows.app.figures import model_label
from seqflows.errors import ConfigError, DataError
from seqflows.frame_flows import InvertibleConv1x1
from seqflows.slvm import SLVM
from test_frame_flows import perturbed
from test_step_flows import run_command

from helpers import TINY_BALLS

SMALL = {"latent_dim": 4, "lstm_hidden": 8, "encoder_features": 8, "conv_width": 4}


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def frame_model(
    likelihood_base: str = "glow",
    num_transforms: int = 1,
    shape: tuple[int, ...] = (1, 8, 8),
    **latent,
) -> SLVM:
    """A small SLVM (w/ M-AF) on frames, in float64; the flow's and the latent model's weights
    are those of the diagonal model of the same seed (the frame flow is built last)."""
    torch.manual_seed(0)
    flow = {"num_transforms": num_transforms, "window": 2, "hidden": 4}
    settings = flow if num_transforms else {}
    model = SLVM(
        shape,
        latent={**SMALL, "likelihood_base": likelihood_base, "glow_hidden": 6, **latent},
        identity_init=False,
        bins=4,
        **settings,
    )
    return model.double().eval()


def exactly_orthogonal(model: SLVM) -> SLVM:
    """``model`` with the 1x1 convolutions of its frame flow at rotations orthogonal to float64
    precision (they are drawn in float32: orthogonal to 1e-7 only)."""
    with torch.no_grad():
        for conv in model.modules():
            if isinstance(conv, InvertibleConv1x1):
                rotation, _ = torch.linalg.qr(conv.weight())
                permutation, lower, upper = torch.linalg.lu(rotation)
                conv.permutation.copy_(permutation)
                conv.sign.copy_(torch.sign(torch.diagonal(upper)))
                conv.lower.copy_(lower)
                conv.upper.copy_(torch.triu(upper, 1))
                conv.log_s.copy_(torch.log(torch.diagonal(upper).abs()))
    return model


def frames(batch: int = 2, length: int = 6, shape: tuple[int, ...] = (1, 8, 8)) -> torch.Tensor:
    return torch.rand(batch, length, *shape, generator=generator(11), dtype=torch.float64)


@pytest.mark.parametrize("coupling", ["affine", "spline"])
@pytest.mark.parametrize("num_transforms", [0, 1])
def test_untrained_it_is_the_diagonal_model_and_training_moves_it(coupling, num_transforms):
    diagonal = frame_model("diagonal", num_transforms)
    glow = frame_model("glow", num_transforms, glow_coupling=coupling)
    missing = glow.load_state_dict(diagonal.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("latent.likelihood_flow.") for key in missing)
    assert "likelihood_flow" not in str(diagonal)  # "diagonal": today's modules, nothing added
    x = frames()
    elbo, bound = diagonal.elbo(x, generator(1)), diagonal.bound(x, 3, generator(2))
    assert elbo.abs().min() > 10  # far from 0: the tolerances below are tight
    # As built, the rotations are orthogonal to float32 precision: 1e-6 nats per dimension.
    per_dimension = 64 * 1e-6
    torch.testing.assert_close(glow.elbo(x, generator(1)), elbo, rtol=0, atol=per_dimension)
    torch.testing.assert_close(glow.bound(x, 3, generator(2)), bound, rtol=0, atol=5 * 64e-6)
    exactly_orthogonal(glow)  # and everything else is the identity exactly
    torch.testing.assert_close(glow.elbo(x, generator(1)), elbo, rtol=0, atol=1e-9)
    torch.testing.assert_close(glow.bound(x, 3, generator(2)), bound, rtol=0, atol=1e-9)
    perturbed(glow.latent.likelihood_flow)
    assert (glow.elbo(x, generator(1)) - elbo).abs().min() > 1e-3
    glow.train().elbo(x, generator(1)).sum().backward()  # training moves the frame flow
    assert all(p.grad.abs().sum() > 0 for p in glow.latent.likelihood_flow.parameters())


def test_the_likelihood_is_the_standardised_residuals_flow_with_the_autograd_log_determinant():
    model = frame_model("glow", 0)  # the smallest frames of the SLVM: 8x8
    perturbed(model.latent.likelihood_flow)
    x = frames()
    terms = model.elbo_terms(x, generator(3), frames="all")
    posterior = model.latent.infer(model.latent.encode(x), generator(3))
    loc, log_scale, context = model.latent.likelihood_parameters(posterior.z)
    assert context.shape == (2, 6, 2, 1, 8, 8)  # the loc and log-scale maps as two frames
    torch.testing.assert_close(context[:, :, 0], loc, rtol=0, atol=0)
    flow = model.latent.likelihood_flow
    for b, t in ((0, 0), (1, 5)):

        def noise_of(flat, b=b, t=t):  # y_t -> eps_t, the map whose density the model scores
            residual = (flat.view(1, 8, 8) - loc[b, t]) * torch.exp(-log_scale[b, t])
            return flow.encode(residual[None], context[b, t][None])[0][0]

        jacobian = torch.autograd.functional.jacobian(noise_of, x[b, t].flatten())
        assert (jacobian - torch.diag(torch.diagonal(jacobian))).abs().max() > 1e-3  # mixed
        noise = noise_of(x[b, t].flatten())
        standard = Normal(torch.zeros(()).double(), torch.ones(()).double())
        expected = standard.log_prob(noise).sum() + torch.linalg.slogdet(jacobian)[1]
        torch.testing.assert_close(terms.log_likelihood[b, t], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("coupling", ["affine", "spline"])
def test_samples_are_finite_and_map_back_to_the_noise_they_came_from(coupling):
    model = frame_model("glow", 1, glow_coupling=coupling)
    perturbed(model.latent.likelihood_flow, 0.05)
    latent = model.latent
    with torch.no_grad():  # a prior with a scale of e^-15: the first z is its loc, always
        latent.prior_log_scale.weight.zero_()
        latent.prior_log_scale.bias.fill_(-15.0)
        output, _ = latent.prior_lstm(
            latent.prior_input(torch.zeros(1, 4).double()), latent.prior_lstm.start(1)
        )
        loc, log_scale, context = latent.likelihood_parameters(latent.prior_loc(output)[:, None])
    y = latent.sample(3, 1, generator=generator(4))  # the frame flow inverted given the maps
    drawn = generator(4)
    torch.randn(3, 4, generator=drawn, dtype=torch.float64)  # z_1's noise, then the frame's:
    drawn = torch.randn(3, 64, generator=drawn, dtype=torch.float64)
    residual = (y[:, 0] - loc[0]) * torch.exp(-log_scale[0])
    noise, _ = latent.likelihood_flow.encode(residual, context[0].expand(3, -1, -1, -1, -1))
    # The inverse maps back to the noise drawn (z_1 is the prior's loc to e^-15: 1e-5).
    torch.testing.assert_close(noise, drawn, rtol=0, atol=1e-5)
    x = torch.rand(3, 2, 1, 8, 8, generator=generator(5), dtype=torch.float64)
    sampled = model.sample(3, 4, context=x, generator=generator(6))
    assert sampled.shape == (3, 4, 1, 8, 8) and torch.isfinite(sampled).all()
    both = torch.cat([x, sampled], dim=1)
    assert torch.isfinite(model.elbo(both)).all() and torch.isfinite(model.bound(both, 2)).all()
    cold = model.sample(3, 1, context=x, generator=generator(6), temperature=0.0)
    assert torch.isfinite(cold).all()


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_the_score_of_a_frame_does_not_depend_on_later_frames(num_transforms):
    model = frame_model("glow", num_transforms)
    perturbed(model.latent.likelihood_flow)
    x = frames(1, 7)
    changed = x.clone()
    changed[:, 5:] = torch.rand(1, 2, 1, 8, 8, dtype=torch.float64)
    before, after = model.elbo(x, generator(5)), model.elbo(changed, generator(5))
    last = before.shape[1] - 2  # scored frames before the change
    torch.testing.assert_close(before[:, :last], after[:, :last], rtol=0, atol=0)
    assert not torch.allclose(before[:, last:], after[:, last:])


def test_refused_combinations_name_the_setting(tmp_path, capsys):
    with pytest.raises(ConfigError, match="latent.likelihood_base='glow'.*frame"):
        SLVM((3,), latent={"likelihood_base": "glow"})
    with pytest.raises(ConfigError, match="latent.likelihood_base='maf'.*'diagonal' or 'glow'"):
        SLVM((1, 8, 8), latent={"likelihood_base": "maf"})
    with pytest.raises(ConfigError, match=r"latent.glow_levels=4 .*multiples of 16.*8x8"):
        SLVM((1, 8, 8), latent={"likelihood_base": "glow", "glow_levels": 4})
    with pytest.raises(ConfigError, match="glow_levels must be at least 1"):
        SLVM((1, 8, 8), latent={"likelihood_base": "glow", "glow_levels": 0})
    model = frame_model("glow", 1)
    gappy = frames()
    gappy[0, 4, 0, 1, 1] = float("nan")
    with pytest.raises(DataError, match="latent.likelihood_base='glow'"):
        model.elbo(gappy)
    status = main(["train", "bouncing_balls_slvm_1af", "--out", str(tmp_path),
                   "model.latent.likelihood_base=maf", *TINY_BALLS])  # fmt: skip
    error = capsys.readouterr().err
    assert status == 2, error
    assert error.startswith("seqflows: error:") and "latent.likelihood_base" in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_the_shipped_configuration_trains_evaluates_and_samples(tmp_path, capsys):
    pytest.importorskip("lightning")
    run = tmp_path / "run"
    trained = run_command(
        capsys, "train", "bouncing_balls_slvm_1af_glow", "--out", str(run), "--max-steps", "2",
        "--no-progress", *TINY_BALLS, "model.latent.latent_dim=4", "model.latent.lstm_hidden=8",
        "model.latent.encoder_features=8", "model.latent.conv_width=4",
        "model.latent.glow_hidden=4", "evaluate.iwae_samples=2",
    )  # fmt: skip
    assert trained["steps"] == 2
    checkpoint = str(run / "checkpoints" / "last.ckpt")
    result = run_command(capsys, "evaluate", checkpoint, "--json", "--no-progress")
    assert result["model"] == "SLVM w/ 1-AF, frame-flow likelihood"
    assert math.isfinite(result["nats_per_dim"]) and result["sequences"] == 6
    sampled = run_command(
        capsys, "sample", checkpoint, "--out", str(tmp_path / "samples"), "--num", "2",
        "--length", "3",
    )  # fmt: skip
    predicted = torch.load(sampled["written"]["pt"], weights_only=True)["predicted"]
    assert predicted.shape == (2, 3, 1, 8, 8) and torch.isfinite(predicted).all()


def test_the_label_names_the_frame_flow_likelihood():
    assert model_label(frame_model("glow", 0)) == "SLVM, frame-flow likelihood"
    assert model_label(frame_model("glow", 1)) == "SLVM w/ 1-AF, frame-flow likelihood"

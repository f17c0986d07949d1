"""The multi-scale coupling flow within the frame (seqflows.frame_flows) and the flow model with
it as the base (``base="glow"``): log-determinants, round trips, causality, time-parallel
densities against step-by-step sampling, identity initialisation, frame sizes, the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from seqflows import FlowModel
from seqflows.app.cli import main
from seqflows.app.figures import model_label
from seqflows.errors import ConfigError
from seqflows.frame_flows import FrameFlow, past_windows, squeeze, unsqueeze

from helpers import TINY_BALLS, sequence

COUPLINGS = ["affine", "spline"]


def perturbed(module: torch.nn.Module, spread: float = 0.1, seed: int = 3) -> torch.nn.Module:
    """``module`` with every parameter moved off its initial value (zero heads included), so
    that nothing is the identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
            parameter.add_(spread * noise)
    return module


def frame_flow(shape: tuple[int, int, int], coupling: str, levels: int = 2) -> FrameFlow:
    torch.manual_seed(0)
    flow = FrameFlow(shape, window=2, levels=levels, hidden=6, coupling=coupling, bins=4)
    return perturbed(flow.double())


def glow_model(coupling: str = "affine", context: str = "burn_in", **settings) -> FlowModel:
    torch.manual_seed(0)
    model = FlowModel(
        (1, 4, 4),
        window=2,
        conditioner="conv",
        hidden=4,
        context=context,
        identity_init=False,
        base="glow",
        glow_coupling=coupling,
        glow_hidden=6,
        bins=4,
        **settings,
    ).double()
    perturbed(model.base)
    return model.eval()


def test_squeeze_is_a_permutation_and_unsqueeze_its_inverse():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float64).reshape(2, 3, 4, 6)
    z = squeeze(x)
    assert z.shape == (2, 12, 2, 3)
    assert torch.equal(z.flatten(1).sort().values, x.flatten(1).sort().values)
    assert torch.equal(z[0, :4, 0, 0], torch.tensor([0.0, 1.0, 6.0, 7.0], dtype=torch.float64))
    assert torch.equal(unsqueeze(z), x)


@pytest.mark.parametrize("coupling", COUPLINGS)
@pytest.mark.parametrize("shape", [(1, 4, 4), (2, 4, 4)])
def test_log_det_matches_the_autograd_jacobian(coupling, shape):
    flow = frame_flow(shape, coupling)
    y = torch.randn(1, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    past = torch.randn(1, 2, *shape, dtype=torch.float64)

    def encode(flat: torch.Tensor) -> torch.Tensor:
        return flow.encode(flat.reshape(1, *shape), past)[0][0]

    jacobian = torch.autograd.functional.jacobian(encode, y.flatten())
    assert jacobian.shape == (math.prod(shape),) * 2
    sign, expected = torch.linalg.slogdet(jacobian)
    _, log_det = flow.encode(y, past)
    assert sign != 0 and abs(float(expected)) > 0.1  # a non-trivial map
    torch.testing.assert_close(log_det[0], expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("coupling", COUPLINGS)
def test_decode_inverts_encode_and_log_prob_is_the_change_of_variables(coupling):
    flow = frame_flow((2, 8, 4), coupling, levels=2)
    y = 2 * torch.randn(5, 2, 8, 4, dtype=torch.float64)
    past = torch.randn(5, 2, 2, 8, 4, dtype=torch.float64)
    noise, log_det = flow.encode(y, past)
    assert noise.shape == (5, 64)
    torch.testing.assert_close(flow.decode(noise, past), y)
    standard = -0.5 * (noise.square() + math.log(2 * math.pi)).sum(1)
    torch.testing.assert_close(flow.log_prob(y, past), standard + log_det)
    # leading (batch, time) dimensions are folded and restored
    folded = flow.log_prob(y.reshape(5, 1, 2, 8, 4), past.reshape(5, 1, 2, 2, 8, 4))
    torch.testing.assert_close(folded, (standard + log_det)[:, None])


def test_the_density_depends_on_the_past_and_within_the_frame():
    flow = frame_flow((1, 4, 4), "affine")
    y, past = torch.randn(1, 1, 4, 4, dtype=torch.float64), torch.randn(1, 2, 1, 4, 4)
    other_past = past + 1.0
    assert not torch.allclose(
        flow.log_prob(y, past.double()), flow.log_prob(y, other_past.double())
    )
    jacobian = torch.autograd.functional.jacobian(
        lambda flat: flow.encode(flat.reshape(1, 1, 4, 4), past.double())[0][0], y.flatten()
    )
    off_diagonal = jacobian - torch.diag(torch.diagonal(jacobian))
    assert off_diagonal.abs().max() > 1e-3  # the pixels of a frame are mixed, not element-wise


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("coupling", COUPLINGS)
def test_an_untrained_glow_base_is_todays_model_with_the_standard_base(coupling, dtype):
    x = sequence(3, 6, (1, 8, 8), dtype=dtype)
    scores = {}
    for base in ("standard", "glow"):
        torch.manual_seed(0)  # the transforms are built first: the same weights for both
        model = FlowModel(
            (1, 8, 8),
            window=2,
            conditioner="conv",
            hidden=4,
            identity_init=False,
            base=base,
            glow_coupling=coupling,
        ).to(dtype)
        scores[base] = model.eval().log_prob(x).detach()
    assert scores["standard"].abs().min() > 10  # far from 0: the tolerances below are tight
    difference = (scores["glow"] - scores["standard"]).abs().max()
    if dtype == torch.float64:  # the rotations are orthogonal to float32 precision: 1e-6 off
        assert difference < 1e-5
    else:  # float32 sums of 64 terms near -90 round at 1e-5: 1e-5 nats per dimension
        assert difference / 64 < 1e-5


@pytest.mark.parametrize("context", ["burn_in", "padded"])
def test_a_frame_density_does_not_depend_on_later_frames(context):
    model = glow_model(context=context)
    x = sequence(2, 7, (1, 4, 4))
    full = model.log_prob(x)
    later = x.clone()
    later[:, 5:] += torch.randn_like(later[:, 5:])
    changed = model.log_prob(later)
    scored_before = 5 - model.burn_in
    torch.testing.assert_close(changed[:, :scored_before], full[:, :scored_before])
    assert not torch.allclose(changed[:, scored_before:], full[:, scored_before:])
    for end in range(model.burn_in + 1, 7):  # each frame scored from its prefix alone
        torch.testing.assert_close(
            model.log_prob(x[:, :end])[:, -1], full[:, end - 1 - model.burn_in]
        )


@pytest.mark.parametrize("coupling", COUPLINGS)
@pytest.mark.parametrize("context", ["burn_in", "padded"])
def test_time_parallel_density_recovers_the_noise_of_step_by_step_sampling(coupling, context):
    model = glow_model(coupling, context)
    batch, length = 2, 4
    given = sequence(batch, model.burn_in, (1, 4, 4)) if model.burn_in else None
    generated = model.sample(
        batch, length, context=given, generator=torch.Generator().manual_seed(7)
    )
    drawn = torch.Generator().manual_seed(7)
    drawn_noise = torch.stack(
        [torch.randn(batch, 16, generator=drawn, dtype=torch.float64) for _ in range(length)], 1
    )
    x = generated if given is None else torch.cat([given, generated], 1)
    out = model.normalize(x)  # every step at once
    past = past_windows(x, model.config.conditioner.window, model.burn_in)
    noise, log_det = model.base.encode(out.noise.flatten(0, 1), past.flatten(0, 1))
    torch.testing.assert_close(noise.reshape(batch, length, 16), drawn_noise)
    standard = -0.5 * (drawn_noise.square() + math.log(2 * math.pi)).sum(-1)
    expected = standard + log_det.reshape(batch, length) + out.log_abs_det
    torch.testing.assert_close(model.log_prob(x), expected)


def test_frames_must_suit_the_squeezes():
    with pytest.raises(ConfigError, match=r"multiples of 4.*6x6"):
        FlowModel((1, 6, 6), base="glow", glow_levels=2)
    with pytest.raises(ConfigError, match=r"multiples of 8.*8x12"):
        FlowModel((1, 8, 12), base="glow", glow_levels=3)
    with pytest.raises(ConfigError, match=r"needs frames \(C, H, W\)"):
        FlowModel((3,), base="glow")
    with pytest.raises(ConfigError, match="glow_levels must be at least 1"):
        FlowModel((1, 8, 8), base="glow", glow_levels=0)


def test_a_glow_model_saves_and_loads_its_settings():
    model = glow_model("spline")
    rebuilt = FlowModel.from_config(model.config, (1, 4, 4)).double().eval()
    rebuilt.load_state_dict(model.state_dict())
    x = sequence(2, 5, (1, 4, 4))
    torch.testing.assert_close(rebuilt.log_prob(x), model.log_prob(x))
    assert model_label(model) == "1-AF + frame flow"


def test_train_and_evaluate_the_shipped_glow_configuration(tmp_path, capsys):
    pytest.importorskip("lightning")
    run = tmp_path / "run"
    command = ["train", "bouncing_balls_1af_glow", "--out", str(run), "--max-steps", "2"]
    assert main([*command, *TINY_BALLS, "model.glow_hidden=4"]) == 0
    trained = capsys.readouterr()
    assert "seqflows: training 1-AF + frame flow" in trained.err
    assert json.loads(trained.out[trained.out.index("{") :])["steps"] == 2
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    assert main(["evaluate", checkpoint, "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "1-AF + frame flow" and result["sequences"] == 6
    assert math.isfinite(result["nats_per_dim"])


def test_the_cli_refuses_a_frame_size_that_does_not_suit_the_squeezes(tmp_path, capsys):
    pytest.importorskip("lightning")
    command = ["train", "bouncing_balls_1af_glow", "--out", str(tmp_path / "run")]
    assert main([*command, *TINY_BALLS, "data.size=6", "--max-steps", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("seqflows: error:") and "6x6" in error and "glow_levels=2" in error

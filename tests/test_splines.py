"""Spline transforms across time (beyond the paper): the spline maths, the transform, its
configuration, and a process where a spline flow beats every affine flow.

The contract tests that every transform kind shares (round trip, log-determinant, causality,
time-parallel density, cached generation, BatchNorm) are in test_flows.py, parametrized by kind.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from seqflows import SLVM, FlowConfig, FlowModel, SLVMConfig, load
from seqflows.app.cli import main
from seqflows.app.config import Config
from seqflows.app.figures import model_label
from seqflows.config import build
from seqflows.errors import ConfigError
from seqflows.splines import RationalQuadraticSpline, spline_parameters
from seqflows.transforms import (
    AffineAutoregressiveTransform,
    AffineConfig,
    SplineAutoregressiveTransform,
    SplineConfig,
    TransformConfig,
    build_transform,
)

from helpers import IMAGE, VECTOR, make_flow, sequence

BINS, BOUND = 6, 3.0


def random_spline(spread: float, dtype: torch.dtype, count: int = 4000, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    raw = spread * torch.randn(count, spline_parameters(BINS), generator=generator)
    return RationalQuadraticSpline.from_raw(raw.to(dtype), BINS, BOUND)


def points(spline: RationalQuadraticSpline, knots: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """One point per spline: uniform on [-B - 1, B + 1] or exactly on a knot, alternately."""
    count = knots.shape[0]
    generator = torch.Generator().manual_seed(seed)
    uniform = torch.rand(count, generator=generator, dtype=knots.dtype) * (2 * BOUND + 2)
    index = torch.randint(0, BINS + 1, (count, 1), generator=generator)
    on_knot = knots.gather(-1, index).squeeze(-1)
    return torch.where(torch.arange(count) % 2 == 0, uniform - BOUND - 1, on_knot)


# The spline ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_spline_with_zero_parameters_is_the_identity(dtype: torch.dtype) -> None:
    spline = RationalQuadraticSpline.from_raw(
        torch.zeros(50, spline_parameters(BINS), dtype=dtype), BINS, BOUND
    )
    x = torch.linspace(-BOUND - 2, BOUND + 2, 50, dtype=dtype)
    y, log_derivative = spline.forward(x)
    ulp = torch.finfo(dtype).eps * BOUND
    torch.testing.assert_close(y, x, rtol=0, atol=4 * ulp)
    torch.testing.assert_close(log_derivative, torch.zeros_like(x), rtol=0, atol=4 * ulp)
    torch.testing.assert_close(spline.inverse(x), x, rtol=0, atol=4 * ulp)


def test_a_spline_is_the_identity_outside_the_bound_and_smooth_at_it() -> None:
    spline = random_spline(2.0, torch.float64, count=6)
    outside = torch.tensor([-9.0, -BOUND - 1e-9, BOUND + 1e-9, 7.0], dtype=torch.float64)
    for value in outside:
        x = value.expand(6)
        y, log_derivative = spline.forward(x)
        assert torch.equal(y, x) and torch.equal(log_derivative, torch.zeros(6).double())
        assert torch.equal(spline.inverse(x), x)
    for end in (-BOUND, BOUND):  # continuous, with slope 1 on both sides
        x = torch.full((6,), end, dtype=torch.float64)
        y, log_derivative = spline.forward(x)
        torch.testing.assert_close(y, x)
        torch.testing.assert_close(log_derivative, torch.zeros_like(x))


def test_the_log_derivative_matches_autograd_at_knots_and_between() -> None:
    spline = random_spline(3.0, torch.float64)
    x = points(spline, spline.x_knots).requires_grad_()
    y, log_derivative = spline.forward(x)
    (derivative,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(torch.log(derivative), log_derivative, rtol=1e-9, atol=1e-9)
    assert torch.all(derivative > 0)  # monotonic


@pytest.mark.parametrize("spread", [1.0, 3.0, 10.0])
def test_the_inverse_is_accurate_in_float32_even_for_extreme_parameters(spread: float) -> None:
    """The float32 inverse against the float64 inverse of the same spline, at knots and between:
    within a few rounding errors of the input (eps B) and of the output (eps B / g'). The root of
    Durkan et al.'s App. A as written (and zuko 1.6's) is off by 10^2 of those, or NaN, here."""
    spline = random_spline(spread, torch.float32)
    exact = RationalQuadraticSpline(
        spline.x_knots.double(), spline.y_knots.double(), spline.derivatives.double(), BOUND
    )
    y = points(spline, spline.y_knots).requires_grad_()
    x = spline.inverse(y)
    reference = exact.inverse(y.detach().double())
    _, log_derivative = exact.forward(reference)
    eps = torch.finfo(torch.float32).eps
    allowed = 8 * eps * BOUND * (1 + torch.exp(-log_derivative))
    assert torch.all((x.double() - reference).abs() <= allowed)
    (gradient,) = torch.autograd.grad(x.sum(), y)  # dx/dy = 1 / g'(x), finite at the knots
    assert torch.isfinite(gradient).all()
    torch.testing.assert_close(
        gradient.double() * torch.exp(log_derivative),
        torch.ones_like(reference),
        rtol=0,
        atol=0.2 if spread == 10.0 else 1e-2,
    )
    y_again, _ = spline.forward(x.detach())  # and forward(inverse(y)) = y, in float32
    scale = 1 + torch.exp(log_derivative)
    assert torch.all((y_again.double() - y.detach().double()).abs() <= 8 * eps * BOUND * scale)


def test_the_parameters_of_a_spline_are_checked() -> None:
    with pytest.raises(ValueError, match="a spline of 4 bins has 11 parameters per element"):
        RationalQuadraticSpline.from_raw(torch.zeros(3, 12), 4, 1.0)


# The transform -------------------------------------------------------------------------------


@pytest.mark.parametrize("event_shape", [IMAGE, VECTOR], ids=str)
def test_zero_spline_parameters_give_the_affine_transform(event_shape: tuple) -> None:
    """The same shift and scale with a spline of zero parameters: the affine transform's y and
    log-determinant (the spline transform generalizes the affine one)."""
    affine = make_flow(event_shape, 1, window=2)
    spline = make_flow(event_shape, 1, window=2, transforms=["spline"])
    conditioner = spline.transforms[0].conditioner
    with torch.no_grad():
        conditioner.extra_head.weight.zero_()
        conditioner.extra_head.bias.zero_()
    spline.load_state_dict(
        {**affine.state_dict(), **{k: v for k, v in spline.state_dict().items() if "extra" in k}}
    )
    x = sequence(2, 6, event_shape)
    with torch.no_grad():
        expected, out = affine.normalize(x), spline.normalize(x)
    torch.testing.assert_close(out.noise, expected.noise)
    torch.testing.assert_close(out.log_abs_det, expected.log_abs_det)
    # 3K - 1 raw parameters per element (channel or dimension), from a third head
    assert conditioner.extra_head.weight.shape[0] == spline_parameters(8) * event_shape[0]


@pytest.mark.parametrize("context", ["burn_in", "padded"])
@pytest.mark.parametrize("num_transforms", [1, 2])
def test_burn_in_and_scored_frames_are_those_of_the_affine_flow(
    num_transforms: int, context: str
) -> None:
    x = sequence(2, 9, VECTOR)
    affine = make_flow(VECTOR, num_transforms, window=3, context=context)
    for transforms in (["spline"] * num_transforms, ["affine", "spline"][:num_transforms]):
        model = make_flow(VECTOR, num_transforms, window=3, context=context, transforms=transforms)
        assert model.burn_in == affine.burn_in
        assert model.log_prob(x).shape == affine.log_prob(x).shape
        assert model.bound(x, scored=2).shape == (2,)
        assert [type(t).kind for t in model.transforms] == transforms


def test_the_transform_kinds_and_their_builder() -> None:
    assert isinstance(
        build_transform("spline", VECTOR, TransformConfig()), SplineAutoregressiveTransform
    )
    affine = build_transform("affine", VECTOR, TransformConfig())
    assert type(affine) is AffineAutoregressiveTransform
    with pytest.raises(ConfigError, match="a transform must be one of"):
        build_transform("cubic", VECTOR, TransformConfig())
    transform = SplineAutoregressiveTransform(IMAGE, bins=3, bound=2.0, hidden=4)
    assert "bins=3, bound=2" in repr(transform)
    assert transform.conditioner.extra_head.out_channels == spline_parameters(3)


# Configuration -------------------------------------------------------------------------------


def test_the_configuration_of_the_transforms() -> None:
    assert FlowConfig().transforms == [AffineConfig()] and FlowConfig().kinds == ["affine"]
    assert FlowConfig.from_settings(num_transforms=2).kinds == ["affine", "affine"]
    config = build(FlowConfig, {"num_transforms": 2, "transforms": ["spline", "affine"]})
    assert config.kinds == ["spline", "affine"]
    assert model_label(FlowModel(VECTOR, config)) == "2-AF (spline, affine)"
    assert model_label(FlowModel(VECTOR, num_transforms=2)) == "2-AF"
    with pytest.raises(ConfigError, match="transforms lists 1 kinds for num_transforms=2"):
        FlowConfig.from_settings(num_transforms=2, transforms=["spline"])
    with pytest.raises(ConfigError, match="transforms.0.type must be one of 'affine', 'spline'"):
        FlowConfig.from_settings(transforms=["cubic"])
    with pytest.raises(ConfigError, match=r"x.yaml: model.transforms.0.type must be one of 'aff"):
        build(FlowConfig, {"transforms": ["cubic"]}, source="x.yaml", prefix="model.")
    with pytest.raises(ConfigError, match="^bins must be at least 2, got 1"):
        SplineConfig(bins=1)
    with pytest.raises(ConfigError, match="^transforms.0.bins must be below 1000"):
        FlowConfig.from_settings(transforms=["spline"], bins=1000)
    with pytest.raises(ConfigError, match="^bound must be positive, got 0.0"):
        SplineConfig(bound=0.0)
    with pytest.raises(ConfigError, match="transforms lists 1 kinds for num_transforms=0"):
        SLVMConfig.from_settings(transforms=["spline"])
    slvm = SLVMConfig.from_settings(num_transforms=1, transforms=["spline"], bins=4)
    assert slvm.flow.kinds == ["spline"] and slvm.flow.transforms == [SplineConfig(bins=4)]
    # An experiment's model section, and a bad value named by its key.
    section = Config.from_dict({"model": {"transforms": ["spline"], "bins": 5}}).model
    assert section.transforms == [SplineConfig(bins=5)]
    # The list of kinds is the stack: two kinds, two transforms (num_transforms follows).
    two = Config.from_dict({"model": {"transforms": ["spline", "spline"]}}).model
    assert two.num_transforms == 2
    with pytest.raises(ConfigError, match="model.transforms lists 2 kinds for num_transforms=1"):
        Config.from_dict({"model": {"transforms": ["spline", "spline"], "num_transforms": 1}})


def test_slvm_with_a_spline_flow() -> None:
    torch.manual_seed(0)
    model = SLVM(
        VECTOR,
        num_transforms=1,
        transforms=["spline"],
        window=1,
        latent_dim=2,
        lstm_hidden=4,
        mlp_hidden=4,
        hidden=4,
        identity_init=False,
    ).eval()
    assert model_label(model) == "SLVM w/ 1-AF (spline)"
    assert isinstance(model.flow.transforms[0], SplineAutoregressiveTransform)
    x = sequence(2, 6, VECTOR, dtype=torch.float32)
    terms = model.elbo_terms(x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(terms.log_abs_det, model.flow.normalize(x).log_abs_det)
    assert model.bound(x, num_samples=3).shape == (2,)
    samples = model.sample(2, 4, context=x[:, :1], generator=torch.Generator().manual_seed(2))
    assert samples.shape == (2, 4, *VECTOR) and torch.isfinite(samples).all()


def test_a_spline_flow_saves_and_loads(tmp_path) -> None:
    model = make_flow(IMAGE, 2, window=1, transforms=["affine", "spline"])
    model.save_pretrained(tmp_path / "model")
    stored = json.loads((tmp_path / "model" / "config.json").read_text())["config"]
    assert [transform["type"] for transform in stored["transforms"]] == ["affine", "spline"]
    loaded = load(tmp_path / "model").double()
    x = sequence(2, 5, IMAGE)
    torch.testing.assert_close(loaded.log_prob(x), model.log_prob(x))


# A process that no affine flow models ---------------------------------------------------------


def bimodal_process(sequences: int, length: int, seed: int) -> torch.Tensor:
    """x_t = 0.5 x_{t-1} + e_t with e_t = +-2 + N(0, 0.3^2): a bimodal innovation."""
    generator = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, (sequences, length, 1), generator=generator) * 2.0 - 1.0
    innovations = 2.0 * signs + 0.3 * torch.randn(sequences, length, 1, generator=generator)
    frames, previous = [], torch.zeros(sequences, 1)
    for t in range(length):
        previous = 0.5 * previous + innovations[:, t]
        frames.append(previous)
    return torch.stack(frames, dim=1)


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread (and do not compete on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_spline_flow_beats_every_affine_flow_on_a_bimodal_process(one_thread) -> None:
    """Given the past, an affine flow's x_t is Gaussian: its expected negative log-likelihood is
    at least the entropy of a Gaussian with the innovation's variance, 0.5 log(2 pi e 4.09) =
    2.12 nats, whatever it learns. The innovation's own entropy is about 0.91 nats. A trained
    1-AF gets to the Gaussian bound; a trained spline 1-AF gets well below it."""
    train, test = bimodal_process(128, 10, seed=0), bimodal_process(512, 10, seed=1)
    gaussian_bound = 0.5 * math.log(2 * math.pi * math.e * (4 + 0.3**2))
    losses = {}
    for kind in ("affine", "spline"):
        torch.manual_seed(0)
        model = FlowModel((1,), window=1, conditioner="linear", transforms=[kind], bound=3.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(60):
            optimizer.zero_grad()
            loss = -model.log_prob(train).mean()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            losses[kind] = -model.eval().log_prob(test).mean().item()
    assert losses["affine"] == pytest.approx(gaussian_bound, abs=0.05)  # trained to its best
    assert losses["spline"] < gaussian_bound - 1.0  # the margin: more than 1 nat per step
    assert losses["spline"] > 0.9 - 0.1  # and not below the process's own entropy


# The command line ----------------------------------------------------------------------------


def test_train_and_evaluate_a_spline_flow_from_its_shipped_configuration(tmp_path, capsys):
    pytest.importorskip("lightning")
    tiny = [
        "data.size=8",
        "data.num_frames=8",
        "data.length=5",
        "data.validation_sequences=2",
        "data.test_sequences=4",
        "data.num_workers=0",
        "model.window=1",
        "model.hidden=4",
        "model.bins=3",
        "train.batch_size=2",
        "train.val_every=2",
        "train.checkpoint_every=2",
        "train.log_every=1",
    ]
    run = tmp_path / "run"
    command = ["train", "bouncing_balls_1af_spline", "--out", str(run), "--max-steps", "2"]
    assert main([*command, *tiny]) == 0
    trained = capsys.readouterr()
    assert "seqflows: training 1-AF (spline)" in trained.err
    assert json.loads(trained.out[trained.out.index("{") :])["steps"] == 2
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    assert main(["evaluate", checkpoint, "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "1-AF (spline)" and result["sequences"] == 4
    assert math.isfinite(result["nats_per_dim"])
    model = load(checkpoint)
    assert isinstance(model.transforms[0], SplineAutoregressiveTransform)
    assert model.config.transforms == [SplineConfig(bins=3)]

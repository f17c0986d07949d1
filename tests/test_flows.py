"""Contract tests of FlowModel and its transforms (Eq. 5-9, 15), affine and spline.

Tests parametrized by ``kind`` run on stacks of affine transforms (the paper), of spline
transforms, and (``"mixed"``) of both, alternating from the outermost.
"""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch

from seqflows import FlowModel
from seqflows.conditioners import LinearConditioner
from seqflows.transforms import AffineAutoregressiveTransform

from helpers import COLOR, IMAGE, VECTOR, WARM_UP_PASSES, make_flow, sequence

SHAPES = [IMAGE, COLOR, VECTOR]
CONTEXTS = ["burn_in", "padded"]
KINDS = ["affine", "spline"]
STACKS = ["affine", "spline", "mixed"]


def stack(kind: str, num_transforms: int) -> list[str] | None:
    """The ``transforms`` setting of a stack of ``kind`` ("mixed": affine, spline, ...)."""
    if kind == "affine":
        return None  # the default: every transform affine
    if kind == "spline":
        return ["spline"] * num_transforms
    return [("affine", "spline")[index % 2] for index in range(num_transforms)]


def ids(value: object) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


# Round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STACKS)
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("event_shape", SHAPES, ids=ids)
@pytest.mark.parametrize("num_transforms", [1, 2, 3])
def test_generate_inverts_normalize(
    num_transforms: int, event_shape: tuple, context: str, kind: str
) -> None:
    # float32 for the affine stack; in float32 a random spline stack amplifies the rounding of
    # each step through the later steps and levels (up to 1e-3 here), so it is checked in
    # float64, and each float32 step on its own in test_each_generation_step_inverts_in_float32.
    dtype = torch.float32 if kind == "affine" else torch.float64
    model = make_flow(
        event_shape,
        num_transforms,
        window=2,
        context=context,
        dtype=dtype,
        transforms=stack(kind, num_transforms),
    )
    x = sequence(3, model.burn_in + 5, event_shape, dtype=dtype)
    with torch.no_grad():
        out = model.normalize(x)
        assert out.noise.shape == (3, 5 if context == "burn_in" else x.shape[1], *event_shape)
        x_again = model.generate(out.noise, context=x[:, : model.burn_in])
    assert x_again.shape == x.shape
    torch.testing.assert_close(x_again, x, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out.noise, x[:, model.burn_in :], atol=1e-2)  # not the identity


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("event_shape", [COLOR, VECTOR], ids=ids)
def test_each_generation_step_inverts_in_float32(event_shape: tuple, kind: str) -> None:
    """Eq. 5 (and x = shift + scale * g^{-1}(y) for a spline) given the true past: exact to
    float32 rounding at every step."""
    transform = make_flow(
        event_shape, 1, window=2, dtype=torch.float32, transforms=stack(kind, 1)
    ).transforms[0]
    x = sequence(64, 6, event_shape, dtype=torch.float32)
    with torch.no_grad():
        y = transform.normalize(x).y
        for t in range(2, 6):
            window = transform.start_window(x[:, :t])
            frame = transform.generate_frame(window, y[:, t - 2])
            torch.testing.assert_close(frame, x[:, t], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", STACKS)
@pytest.mark.parametrize("context", CONTEXTS)
def test_generate_with_longer_context_continues_the_sequence(context: str, kind: str) -> None:
    model = make_flow(
        VECTOR, num_transforms=2, window=2, context=context, transforms=stack(kind, 2)
    )
    x = sequence(2, 9, VECTOR)
    with torch.no_grad():
        noise = model.normalize(x).noise
        tail = noise[:, noise.shape[1] - 3 :]  # noise of the last 3 frames
        again = model.generate(tail, context=x[:, :6])
    torch.testing.assert_close(again, x)


@pytest.mark.parametrize("context", CONTEXTS)
def test_generate_agrees_with_fixed_point_oracle(context: str) -> None:
    """Eq. 5 solved by iterating the time-parallel map T times gives the sequential inverse."""
    transform = make_flow(IMAGE, 1, window=2, context=context).transforms[0]
    x = sequence(2, 6, IMAGE)
    burn_in = transform.burn_in
    with torch.no_grad():
        y = transform.normalize(x).y
        guess = torch.cat([x[:, :burn_in], torch.zeros_like(x[:, burn_in:])], dim=1)
        for _ in range(x.shape[1]):  # after t passes, frame t is exact
            out = transform.normalize(guess)
            frames = out.shift + torch.exp(out.log_scale) * y
            guess = torch.cat([x[:, :burn_in], frames], dim=1)
        generated = transform.generate(y, context=x[:, :burn_in])
    torch.testing.assert_close(generated, guess)
    torch.testing.assert_close(generated, x)


# Log-determinant ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STACKS)
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize(
    "event_shape, num_transforms, window",
    [(IMAGE, 1, 1), (IMAGE, 2, 2), (COLOR, 2, 1), (VECTOR, 1, 3), (VECTOR, 3, 1)],
    ids=ids,
)
def test_log_abs_det_matches_autograd_jacobian(
    event_shape: tuple, num_transforms: int, window: int, context: str, kind: str
) -> None:
    """log|det dy/dx| of the whole flattened sequence map, scored frames only (Eq. 8-9)."""
    model = make_flow(
        event_shape,
        num_transforms,
        window,
        context,
        scale_map="soft",
        transforms=stack(kind, num_transforms),
    )
    x = sequence(2, model.burn_in + 3, event_shape)
    burn_in = model.burn_in
    for b in range(2):
        context_frames = x[b : b + 1, :burn_in]

        def noise_of(
            scored: torch.Tensor, context_frames: torch.Tensor = context_frames
        ) -> torch.Tensor:
            full = torch.cat([context_frames, scored.view(1, -1, *event_shape)], dim=1)
            return model.normalize(full).noise.flatten()

        scored = x[b : b + 1, burn_in:].flatten()
        jacobian = torch.autograd.functional.jacobian(noise_of, scored)
        sign, log_abs_det = torch.linalg.slogdet(jacobian)
        assert sign != 0
        expected = model.normalize(x[b : b + 1]).log_abs_det.sum()
        torch.testing.assert_close(log_abs_det, expected)
        # Triangular structure: each frame's noise only depends on frames up to it.
        frame = math.prod(event_shape)
        blocks = jacobian.view(3, frame, 3, frame)
        assert torch.all(blocks[0, :, 1:] == 0) and torch.all(blocks[1, :, 2:] == 0)


def test_log_prob_is_base_plus_log_abs_det() -> None:
    model = make_flow(IMAGE, 2, window=1, base="learned")
    x = sequence(2, 6, IMAGE)
    out = model.normalize(x)
    normal = torch.distributions.Normal(model.base.loc, torch.exp(model.base.log_scale))
    expected = normal.log_prob(out.noise).flatten(2).sum(-1) + out.log_abs_det
    torch.testing.assert_close(model.log_prob(x), expected)
    torch.testing.assert_close(model(x), expected)
    # log_abs_det is minus the summed log-scales of both transforms on the scored frames.
    manual = -sum(torch.log(scale).flatten(2).sum(-1) for scale in out.scales)
    torch.testing.assert_close(out.log_abs_det, manual)


def test_flow_output_inputs_chain_the_transforms() -> None:
    # Fig. 9 rows: u^0 = x, u^{m+1} = (u^m - shift_m) / scale_m, and the last one is the noise.
    model = make_flow(IMAGE, 2, window=1)
    x = sequence(2, 6, IMAGE)
    out = model.normalize(x)
    torch.testing.assert_close(out.inputs[0], x[:, model.burn_in :])
    outputs = [*out.inputs[1:], out.noise]
    for u, shift, scale, following in zip(
        out.inputs, out.shifts, out.scales, outputs, strict=True
    ):
        torch.testing.assert_close(following, (u - shift) / scale)


# Causality ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STACKS)
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("event_shape", [IMAGE, VECTOR], ids=ids)
def test_changing_a_frame_changes_no_earlier_output(
    event_shape: tuple, context: str, kind: str
) -> None:
    model = make_flow(
        event_shape, num_transforms=2, window=2, context=context, transforms=stack(kind, 2)
    )
    x = sequence(2, model.burn_in + 5, event_shape)
    burn_in = model.burn_in
    with torch.no_grad():
        reference = model.normalize(x)
        for t in range(x.shape[1]):
            changed = x.clone()
            changed[:, t] += 1.0
            out = model.normalize(changed)
            earlier = max(t - burn_in, 0)  # scored frames strictly before t
            for before, after in [
                (reference.noise, out.noise),
                (reference.log_abs_det, out.log_abs_det),
                *zip(reference.shifts, out.shifts, strict=True),
                *zip(reference.scales, out.scales, strict=True),
            ]:
                torch.testing.assert_close(after[:, :earlier], before[:, :earlier], rtol=0, atol=0)
            if t >= burn_in:  # ... and it does change the frame itself
                assert not torch.allclose(
                    out.noise[:, t - burn_in], reference.noise[:, t - burn_in]
                )
            if burn_in <= t + 1 < x.shape[1]:  # ... and the next frame's shift sees it
                next_frame = t + 1 - burn_in
                assert not torch.allclose(
                    out.shifts[0][:, next_frame], reference.shifts[0][:, next_frame]
                )


# Time-parallel density against step-by-step --------------------------------------------------


@pytest.mark.parametrize("kind", STACKS)
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("event_shape", [IMAGE, VECTOR], ids=ids)
def test_time_parallel_normalize_equals_step_by_step(
    event_shape: tuple, context: str, kind: str
) -> None:
    model = make_flow(
        event_shape, num_transforms=2, window=3, context=context, transforms=stack(kind, 2)
    )
    x = sequence(2, model.burn_in + 4, event_shape)
    with torch.no_grad():
        parallel = model.normalize(x)
        u = x
        log_abs_det = 0
        for transform in model.transforms:
            frames, log_dets = [], []
            for t in range(transform.burn_in, u.shape[1]):
                window = transform.start_window(u[:, :t])  # only the past
                frame, log_det = transform.normalize_frame(window, u[:, t])
                frames.append(frame)
                log_dets.append(log_det)
            if transform.kind == "affine":  # Eq. 6 written out
                shift, log_scale = transform.predict(window)
                torch.testing.assert_close(frames[-1], (u[:, -1] - shift) / torch.exp(log_scale))
            u = torch.stack(frames, dim=1)
            log_det = torch.stack(log_dets, dim=1)
            log_abs_det = log_abs_det + log_det[:, log_det.shape[1] - 4 :]
        log_prob = model.base.log_prob(u) + log_abs_det
    torch.testing.assert_close(parallel.noise, u)
    torch.testing.assert_close(model.log_prob(x), log_prob)


def test_cached_window_equals_a_fresh_window() -> None:
    transform = make_flow(IMAGE, 1, window=3).transforms[0]
    x = sequence(2, 7, IMAGE)
    with torch.no_grad():
        window = transform.start_window(x[:, :3])
        for t in range(3, 7):
            window = transform.advance(window, x[:, t])
            torch.testing.assert_close(window, transform.start_window(x[:, : t + 1]))


@pytest.mark.parametrize("kind", STACKS)
def test_generation_encodes_one_frame_per_step(kind: str) -> None:
    """Constant cost per step: each step encodes one frame and decodes one window per level."""
    model = make_flow(IMAGE, num_transforms=2, window=3, transforms=stack(kind, 2))
    encoded, decoded = [], []
    for transform in model.transforms:
        conditioner = transform.conditioner
        conditioner.encoder.register_forward_hook(lambda m, i, o: encoded.append(i[0].shape[0]))
        conditioner.decoder.register_forward_hook(lambda m, i, o: decoded.append(i[0].shape[0]))
    x = sequence(2, 6, IMAGE)
    with torch.no_grad():
        model.generate(torch.randn(2, 20, *IMAGE, dtype=torch.float64), context=x)
    # Context: the outer transform normalizes it once; each level encodes its last 3 frames.
    # Then each level encodes one frame and decodes one window (x 2 sequences) per step.
    assert encoded == [2 * 5] + [2 * 3] + [2] * 19 + [2 * 3] + [2] * 19
    assert decoded == [2 * 3] + [2] * 20 + [2] * 20


# BatchNorm -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_eval_mode_scores_each_sequence_on_its_own(kind: str) -> None:
    model = make_flow(IMAGE, 2, window=2, transforms=stack(kind, 2))
    x = sequence(4, 8, IMAGE)
    with torch.no_grad():
        together = model.log_prob(x)
        alone = torch.cat([model.log_prob(x[b : b + 1]) for b in range(4)])
    torch.testing.assert_close(together, alone)


@pytest.mark.parametrize("kind", KINDS)
def test_train_mode_uses_batch_statistics_and_updates_running_statistics(kind: str) -> None:
    model = make_flow(IMAGE, 1, window=2, transforms=stack(kind, 1))
    batch_norm = model.transforms[0].conditioner.encoder[1]
    x = sequence(4, 8, IMAGE)
    before = batch_norm.running_mean.clone()
    with torch.no_grad():
        model.log_prob(x)  # eval mode: statistics untouched
        torch.testing.assert_close(batch_norm.running_mean, before)
        model.train()
        together = model.log_prob(x)
        alone = model.log_prob(x[:1])
    assert not torch.allclose(batch_norm.running_mean, before)
    # With batch statistics a sequence's density depends on the rest of the batch (documented).
    assert not torch.allclose(together[:1], alone)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("context, conditioning_frames", [("burn_in", 7), ("padded", 9)])
def test_density_encodes_each_frame_once(
    context: str, conditioning_frames: int, kind: str
) -> None:
    """The encoder sees B * (T - 1) frames (+ k initial frames when padded), not k per window."""
    model = make_flow(IMAGE, 1, window=2, context=context, transforms=stack(kind, 1))
    model.train()
    seen = []
    encoder = model.transforms[0].conditioner.encoder
    encoder.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    model.log_prob(sequence(3, 8, IMAGE))
    assert seen == [3 * conditioning_frames]
    assert encoder[1].num_batches_tracked.item() == WARM_UP_PASSES + 1  # make_flow's, this one


def test_generating_in_train_mode_warns() -> None:
    model = make_flow(IMAGE, 1, window=2)
    x = sequence(2, 4, IMAGE)
    model.train()
    with pytest.warns(UserWarning, match="call .eval"):
        model.generate(torch.randn(2, 2, *IMAGE, dtype=torch.float64), context=x[:, :2])
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.generate(torch.randn(2, 2, *IMAGE, dtype=torch.float64), context=x[:, :2])


# Initialisation, parameters, scales -------------------------------------------------------------


@pytest.mark.parametrize("kind", STACKS)
@pytest.mark.parametrize(
    "event_shape, conditioner", [(IMAGE, "conv"), (VECTOR, "mlp"), (VECTOR, "linear")], ids=ids
)
def test_untrained_transform_is_the_identity(
    event_shape: tuple, conditioner: str, kind: str
) -> None:
    model = FlowModel(
        event_shape,
        num_transforms=2,
        window=2,
        conditioner=conditioner,
        hidden=4,
        transforms=stack(kind, 2),
    )
    x = sequence(2, 7, event_shape, dtype=torch.float32)
    out = model.normalize(x)
    torch.testing.assert_close(out.noise, x[:, 4:], rtol=0, atol=1e-6)
    if kind == "affine":
        assert torch.all(out.log_abs_det == 0)
    else:  # a spline with zero parameters is the identity up to rounding
        assert out.log_abs_det.abs().max() < 1e-6
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(x[:, 4:]).flatten(2).sum(-1)
    torch.testing.assert_close(model.log_prob(x), standard)


def test_conv_conditioner_has_the_reference_size() -> None:
    def count(module: torch.nn.Module) -> int:
        return sum(parameter.numel() for parameter in module.parameters())

    # The reference network had 512 more: conv biases that BatchNorm makes redundant.
    assert count(FlowModel((1, 64, 64))) == 334_530  # paper Table 2: 343k
    assert count(FlowModel((3, 64, 64))) == 337_990  # paper Table 2: 363k
    assert count(FlowModel((1, 64, 64), num_transforms=2)) == 2 * 334_530
    assert count(FlowModel((1, 64, 64), normalization="none")) == 335_042 - 16 * 64
    conv_layers = [
        m
        for m in FlowModel((1, 64, 64)).transforms[0].conditioner.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    assert [(m.in_channels, m.out_channels) for m in conv_layers] == (
        [(1, 64)] + [(64, 64)] * 3 + [(192, 64)] + [(64, 64)] * 3 + [(64, 1), (64, 1)]
    )
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for m in conv_layers)
    assert all(m.padding_mode == "zeros" for m in conv_layers)  # the paper's padding


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_padding_of_the_conv_conditioner(padding: str) -> None:
    """A frame that is the same everywhere: replicate padding gives a shift and a scale that
    are the same everywhere too; zero padding makes the border differ (the frame of the noise
    panels). Both keep the flow an exact bijection and cost no parameter."""
    model = make_flow((1, 6, 6), window=1, padding=padding)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 10 and all(m.padding_mode == padding for m in convs)
    x = torch.full((2, 4, 1, 6, 6), 0.7, dtype=torch.float64)
    with torch.no_grad():
        out = model.normalize(x)
        x_again = model.generate(out.noise, context=x[:, :1])
    shift, scale = out.shifts[0], out.scales[0]  # (2, 3, 1, 6, 6)
    border = torch.ones(6, 6, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    for values in (shift, scale):
        interior = values[..., 1:-1, 1:-1]
        spread = (values - interior.mean((-1, -2), keepdim=True)).abs()[..., border].max()
        if padding == "replicate":
            assert spread < 1e-9
        else:
            assert spread > 1e-4
    torch.testing.assert_close(x_again, x)
    zeros = make_flow((1, 6, 6), window=1)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in zeros.parameters())
    assert model.config.conditioner.padding == padding
    assert zeros.config.conditioner.padding == "zeros"
    with pytest.raises(ValueError, match="padding must be one of 'zeros', 'replicate'"):
        FlowModel(IMAGE, padding="reflect")


@pytest.mark.parametrize("kind", STACKS)
@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("base", ["standard", "learned"])
def test_every_parameter_gets_a_gradient(context: str, base: str, kind: str) -> None:
    model = make_flow(IMAGE, 2, window=2, context=context, base=base, transforms=stack(kind, 2))
    model.train()
    (-model.log_prob(sequence(2, 7, IMAGE)).mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    names = {name for name, _ in model.named_parameters()}
    assert ("base.loc" in names) == (base == "learned")  # the reference never registered it
    assert any("initial_frames" in name for name in names) == (context == "padded")


@pytest.mark.parametrize("scale_map", ["clamp", "soft"])
def test_scales_stay_within_bounds(scale_map: str) -> None:
    transform = AffineAutoregressiveTransform(
        (2,), window=1, conditioner="linear", scale_map=scale_map, min_scale=1e-3, max_scale=5.0
    )
    raw = torch.linspace(-50, 50, 1001, dtype=torch.float64)
    log_scale = transform.bound_log_scale(raw)
    assert log_scale.min() >= math.log(1e-3) - 1e-12 and log_scale.max() <= math.log(5.0) + 1e-12
    assert torch.all(log_scale.diff() >= 0)  # monotone
    if scale_map == "clamp":  # the paper: exp then clamp
        torch.testing.assert_close(torch.exp(log_scale), torch.exp(raw).clamp(1e-3, 5.0))
    else:  # smooth, slope 1 at zero, never flat inside the range
        small = torch.tensor([-1e-4, 0.0, 1e-4], dtype=torch.float64, requires_grad=True)
        (gradient,) = torch.autograd.grad(transform.bound_log_scale(small).sum(), small)
        torch.testing.assert_close(gradient, torch.ones(3, dtype=torch.float64))
        assert torch.all(log_scale.diff()[abs(raw[1:]) < 10] > 0)


def test_max_scale_defaults_to_the_reference_value() -> None:
    transform = FlowModel((1, 4, 4)).transforms[0]
    assert transform.max_scale == 10.0 and transform.min_scale == 1e-4


# A Gaussian autoregressive process written as a flow ---------------------------------------------


@pytest.mark.parametrize("context", CONTEXTS)
def test_linear_flow_gives_the_gaussian_ar1_density(context: str) -> None:
    """x_t ~ N(rho x_{t-1} + c, s^2): a 1-AF with a linear conditioner, weights set by hand."""
    rho, offset, s = 0.8, 0.3, 0.5
    model = FlowModel((1,), window=1, conditioner="linear", context=context).double()
    conditioner = model.transforms[0].conditioner
    assert isinstance(conditioner, LinearConditioner)
    with torch.no_grad():
        conditioner.shift_head.weight.fill_(rho)
        conditioner.shift_head.bias.fill_(offset)
        conditioner.log_scale_head.bias.fill_(math.log(s))
        if context == "padded":
            model.transforms[0].initial_frames.fill_(2.0)  # x_{-1} = 2
    x = sequence(5, 8, (1,))
    previous = (
        x[:, :-1]
        if context == "burn_in"
        else torch.cat([torch.full((5, 1, 1), 2.0, dtype=torch.float64), x[:, :-1]], dim=1)
    )
    current = x[:, 1:] if context == "burn_in" else x
    expected = torch.distributions.Normal(rho * previous + offset, s).log_prob(current).sum(-1)
    torch.testing.assert_close(model.log_prob(x), expected)


# Sampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STACKS)
def test_sample_shapes_context_and_reproducibility(kind: str) -> None:
    model = make_flow(IMAGE, 2, window=2, transforms=stack(kind, 2))
    context = sequence(3, 4, IMAGE)
    samples = model.sample(3, 5, context=context, generator=torch.Generator().manual_seed(0))
    again = model.sample(3, 5, context=context, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 5, *IMAGE) and torch.isfinite(samples).all()
    torch.testing.assert_close(samples, again)
    noise = torch.randn(
        3, 5, *IMAGE, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    torch.testing.assert_close(samples, model.generate(noise, context)[:, 4:])
    with pytest.raises(ValueError, match="needs 4 context frames"):
        model.sample(3, 5)
    padded = make_flow(VECTOR, 2, window=2, context="padded")
    assert padded.sample(6, 4).shape == (6, 4, *VECTOR)


@pytest.mark.parametrize("base", ["standard", "learned"])
def test_sampling_temperature_scales_the_noise_about_its_mean(base: str) -> None:
    model = make_flow(VECTOR, 1, window=2, base=base)
    with torch.no_grad():
        if base == "learned":
            model.base.loc.normal_()
            model.base.log_scale.normal_()
    context = sequence(3, 2, VECTOR)
    seed = torch.Generator().manual_seed(1)
    cold = model.sample(3, 4, context=context, generator=seed, temperature=0.0)
    mean = torch.zeros(3, 4, *VECTOR, dtype=torch.float64)
    if base == "learned":
        mean = mean + model.base.loc.detach()
    torch.testing.assert_close(cold, model.generate(mean, context)[:, 2:])
    half = model.sample(3, 4, context=context, generator=seed.manual_seed(2), temperature=0.5)
    full = model.sample(3, 4, context=context, generator=seed.manual_seed(2))
    noise_half = model.normalize(torch.cat([context, half], 1)).noise
    noise_full = model.normalize(torch.cat([context, full], 1)).noise
    torch.testing.assert_close(noise_half - mean, 0.5 * (noise_full - mean))


def test_non_finite_generation_names_the_transform() -> None:
    model = make_flow(VECTOR, 2, window=1)
    with torch.no_grad():
        model.transforms[1].conditioner.shift_head.bias.fill_(float("inf"))
    x = sequence(2, 3, VECTOR)
    with pytest.raises(FloatingPointError, match=r"transform 1 .* step 0"):
        model.generate(torch.randn(2, 3, *VECTOR, dtype=torch.float64), context=x[:, :2])


# Bad input -------------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_error() -> None:
    model = make_flow(IMAGE, 1, window=2)
    with pytest.raises(ValueError, match=r"shaped \(B, T, 1, 3, 2\)"):
        model.log_prob(torch.randn(2, 5, 1, 2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="leave nothing to score"):
        model.log_prob(torch.randn(2, 2, *IMAGE, dtype=torch.float64))
    with pytest.raises(TypeError, match="floating-point"):
        model.log_prob(torch.zeros(2, 5, *IMAGE, dtype=torch.uint8))
    with pytest.raises(ValueError, match="context has 1 frames"):
        model.generate(
            torch.randn(2, 3, *IMAGE, dtype=torch.float64),
            context=torch.zeros(2, 1, *IMAGE, dtype=torch.float64),
        )
    with pytest.raises(ValueError, match="conditioner.kind must be one of"):
        FlowModel(IMAGE, conditioner="transformer")
    with pytest.raises(ValueError, match=r"needs frames shaped \(C, H, W\)"):
        FlowModel(VECTOR, conditioner="conv")
    with pytest.raises(ValueError, match=r"needs vectors shaped \(D,\)"):
        FlowModel(IMAGE, conditioner="mlp")
    with pytest.raises(ValueError, match="context must be one of"):
        FlowModel(IMAGE, context="zeros")
    with pytest.raises(ValueError, match="base must be one of"):
        FlowModel(IMAGE, base="laplace")
    with pytest.raises(ValueError, match="scale_map must be one of"):
        FlowModel(IMAGE, scale_map="softplus")


def test_sizes_below_one_are_refused_naming_the_argument() -> None:
    for arguments, name in [
        ({"hidden": 0}, "hidden"),
        ({"window": 0}, "window"),
        ({"conditioner": "mlp", "hidden": -3}, "hidden"),
    ]:
        shape = VECTOR if arguments.get("conditioner") == "mlp" else IMAGE
        with pytest.raises(ValueError, match=f"^conditioner.{name} must be at least 1, got"):
            FlowModel(shape, **arguments)
    with pytest.raises(ValueError, match="^transforms must hold at least one transform"):
        FlowModel(IMAGE, num_transforms=0)
    with pytest.raises(ValueError, match="event_shape must hold sizes of at least 1"):
        FlowModel((0,), conditioner="mlp")
    model = make_flow(VECTOR, 1, window=1)
    context = sequence(2, 1, VECTOR)
    for length in (0, -1):
        with pytest.raises(ValueError, match=f"^length must be at least 1, got {length}"):
            model.sample(2, length, context=context)
    with pytest.raises(ValueError, match="^num_sequences must be at least 1, got 0"):
        model.sample(0, 3, context=context[:0])


def test_input_of_another_dtype_than_the_model_is_refused() -> None:
    model = make_flow(IMAGE, 1, window=2, dtype=torch.float32)
    x = sequence(2, 4, IMAGE, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"x is torch.float64 but the model's parameters are"):
        model.log_prob(x)
    with pytest.raises(TypeError, match=r"context is torch.float64"):
        model.sample(2, 3, context=x[:, :2])
    assert model.log_prob(x.float()).dtype == torch.float32  # converted, it is scored


@pytest.mark.parametrize("value", [float("inf"), -float("inf")])
def test_non_finite_input_is_refused_before_it_reaches_batchnorm(value: float) -> None:
    model = make_flow(IMAGE, 2, window=1).train()
    statistics = {name: buffer.clone() for name, buffer in model.named_buffers()}
    x = sequence(2, 4, IMAGE)
    x[1, 2, 0, 1, 1] = value
    x[0, 1, 0, 0, 0] = float("nan")  # a missing value (seqflows.missing), filled before
    with pytest.raises(ValueError, match=r"x holds NaN or infinite values .*sequence 1, frame 2"):
        model.log_prob(x)
    for name, buffer in model.named_buffers():  # running statistics untouched
        torch.testing.assert_close(buffer, statistics[name], rtol=0, atol=0)
    x[1, 2, 0, 1, 1] = 0.5
    model.log_prob(x)  # NaN is a gap: filled, so the running statistics stay finite
    assert all(bool(torch.isfinite(buffer).all()) for buffer in model.buffers())
    model.eval()
    assert torch.isfinite(model.log_prob(sequence(2, 4, IMAGE))).all()


# Persistence and precision ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", STACKS)
def test_state_dict_round_trip_with_weights_only_loading(kind: str) -> None:
    transforms = stack(kind, 2)
    model = make_flow(IMAGE, 2, window=2, context="padded", base="learned", transforms=transforms)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = (
        FlowModel(
            IMAGE,
            num_transforms=2,
            window=2,
            hidden=4,
            context="padded",
            base="learned",
            transforms=transforms,
        )
        .double()
        .eval()
    )
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    x = sequence(2, 5, IMAGE)
    torch.testing.assert_close(restored.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast_keeps_the_density_in_float32(kind: str) -> None:
    model = make_flow((1, 8, 8), 1, window=2, dtype=torch.float32, transforms=stack(kind, 1))
    x = sequence(2, 6, (1, 8, 8), dtype=torch.float32)
    with torch.no_grad():
        exact = model.log_prob(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.log_prob(x)
            out = model.normalize(x)
    assert mixed.dtype == torch.float32 and out.noise.dtype == torch.float32
    torch.testing.assert_close(mixed, exact, rtol=0.05, atol=0.5)


def test_bf16_autocast_runs_only_the_conditioner_in_bf16(monkeypatch) -> None:
    """Under autocast the conditioner's convolutions run in bf16, but given their outputs the
    noise, the log-determinant and the base density are float32 maths: they match a float64
    computation from the same outputs to float32 precision (in bf16 they would miss by ~1e-2)."""
    model = make_flow((1, 8, 8), 1, window=2, dtype=torch.float32).eval()
    (transform,) = model.transforms
    recorded = []
    all_steps = transform.conditioner.all_steps

    def recording(
        history: torch.Tensor, conditions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        recorded.append(all_steps(history, conditions))
        return recorded[-1]

    monkeypatch.setattr(transform.conditioner, "all_steps", recording)
    x = sequence(2, 6, (1, 8, 8), dtype=torch.float32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        objective = model.loss(x).objective
    ((shift, raw_log_scale),) = recorded
    assert shift.dtype == raw_log_scale.dtype == torch.bfloat16  # the conditioner ran in bf16
    log_scale = transform.bound_log_scale(raw_log_scale.double())
    noise = (x[:, transform.burn_in :].double() - shift.double()) * torch.exp(-log_scale)
    base = -0.5 * (noise.square() + math.log(2 * math.pi)).flatten(2).sum(-1)
    expected = base - log_scale.flatten(2).sum(-1)
    assert objective.dtype == torch.float32
    torch.testing.assert_close(objective.double(), expected, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("kind", STACKS)
def test_channels_last_model_gives_the_same_density_and_inverse(kind: str) -> None:
    model = make_flow(COLOR, 2, window=2, transforms=stack(kind, 2))
    channels_last = make_flow(COLOR, 2, window=2, transforms=stack(kind, 2)).to(
        memory_format=torch.channels_last
    )
    x = sequence(2, 7, COLOR)
    with torch.no_grad():
        torch.testing.assert_close(channels_last.log_prob(x), model.log_prob(x))
        noise = channels_last.normalize(x).noise
        torch.testing.assert_close(channels_last.generate(noise, x[:, :4]), x)


def record_inputs(module: torch.nn.Module, name: str, calls: list[int]) -> None:
    """Replaces ``module.name`` by a wrapper that appends the batch size of each input."""
    method = getattr(module, name)

    def wrapper(tensor, *args, **kwargs):
        calls.append(tensor.shape[0])
        return method(tensor, *args, **kwargs)

    setattr(module, name, wrapper)


@pytest.mark.parametrize("num_transforms", [1, 2])
def test_generation_costs_the_same_per_step_whatever_the_length(num_transforms):
    """Without timing: each generated step encodes one frame and decodes one window per
    transform (B of each), and what is done once (the context) does not grow with T, so the
    cost per step cannot grow with the length (no history concatenated or re-run)."""
    batch = 2
    model = FlowModel((1, 8, 8), num_transforms=num_transforms, window=2, hidden=4).eval()
    context = torch.rand(batch, model.burn_in + 1, 1, 8, 8)
    calls = {}
    for length in (3, 9):
        encode, decode = [], []
        for transform in model.transforms:
            record_inputs(transform.conditioner, "encode", encode)
            record_inputs(transform.conditioner, "decode", decode)
        model.sample(batch, length, context, torch.Generator().manual_seed(0))
        for transform in model.transforms:  # back to the class's methods
            del transform.conditioner.encode, transform.conditioner.decode
        calls[length] = {"encode": encode, "decode": decode}
    steps = {"decode": lambda length: length, "encode": lambda length: length - 1}
    for kind, per_transform in steps.items():  # the window advances by one encoded frame
        for length, found in calls.items():
            per_step = [size for size in found[kind] if size == batch]
            assert len(per_step) == per_transform(length) * num_transforms, (kind, length)
        # the context's share (the window's start, the inner contexts) is the same for any T
        once = [sorted(size for size in found[kind] if size != batch) for found in calls.values()]
        assert once[0] == once[1] and max(once[1], default=0) <= batch * context.shape[1]

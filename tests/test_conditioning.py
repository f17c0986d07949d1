"""Conditioning on per-step actions or covariates: causality, invertibility, equivalences."""

from __future__ import annotations

import math

import pytest
import torch

from seqflows import SLVM, FlowConfig, FlowModel
from seqflows.config import build
from seqflows.errors import ConfigError

from helpers import IMAGE, VECTOR, conditions_for, make_flow, sequence

A = 2  # size of the conditions
STACK = ["spline", "affine"]  # both kinds of transform in one model
CONDITIONERS = [(IMAGE, "conv"), (VECTOR, "mlp"), (VECTOR, "linear")]
CONDITIONER_IDS = ["conv", "mlp", "linear"]


def conditioned_flow(
    event_shape: tuple, conditioner: str, context: str = "burn_in", **kwargs: object
) -> FlowModel:
    kwargs.setdefault("num_transforms", 2)
    kwargs.setdefault("window", 2)
    return make_flow(
        event_shape, context=context, conditioner=conditioner, condition_dim=A, **kwargs
    )


def conditioned_slvm(num_transforms: int, condition_dim: int = A) -> SLVM:
    torch.manual_seed(0)
    model = SLVM(
        (3,),
        latent_dim=4,
        num_transforms=num_transforms,
        window=2,
        lstm_hidden=8,
        mlp_hidden=8,
        hidden=8,
        conditioner="mlp",
        identity_init=False,
        init="default",
        condition_dim=condition_dim,
    )
    return model.eval()  # float32, as the latent model computes


def is_condition(name: str) -> bool:
    """Whether a parameter or module name is that of a projection of the conditions."""
    return any(
        part == "condition_layer" or part.endswith("_condition") for part in name.split(".")
    )


def condition_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [module for name, module in model.named_modules() if name and is_condition(name)]


# Causality ---------------------------------------------------------------------------------


@pytest.mark.parametrize("context", ["burn_in", "padded"])
@pytest.mark.parametrize("event_shape, conditioner", CONDITIONERS, ids=CONDITIONER_IDS)
def test_changing_a_condition_changes_nothing_before_its_step(
    event_shape: tuple, conditioner: str, context: str
) -> None:
    model = conditioned_flow(event_shape, conditioner, context, transforms=STACK)
    x = sequence(2, model.burn_in + 4, event_shape)
    c = conditions_for(model, x)
    burn_in = model.burn_in
    with torch.no_grad():
        reference = model.normalize(x, c)
        for t in range(x.shape[1]):
            changed = c.clone()
            changed[:, t] += 1.0
            out = model.normalize(x, changed)
            earlier = max(t - burn_in, 0)  # scored frames strictly before t
            for before, after in [
                (reference.noise, out.noise),
                (reference.log_abs_det, out.log_abs_det),
                *zip(reference.shifts, out.shifts, strict=True),
            ]:
                torch.testing.assert_close(after[:, :earlier], before[:, :earlier], rtol=0, atol=0)
            if t >= burn_in:  # c_t is known when x_t is produced: it moves x_t's own shift
                assert not torch.allclose(
                    out.shifts[0][:, t - burn_in], reference.shifts[0][:, t - burn_in]
                )


@pytest.mark.parametrize("event_shape, conditioner", CONDITIONERS, ids=CONDITIONER_IDS)
def test_a_conditioned_density_stays_causal_in_x(event_shape: tuple, conditioner: str) -> None:
    model = conditioned_flow(event_shape, conditioner)
    x = sequence(2, model.burn_in + 4, event_shape)
    c = conditions_for(model, x)
    with torch.no_grad():
        reference = model.normalize(x, c)
        for t in range(x.shape[1]):
            changed = x.clone()
            changed[:, t] += 1.0
            out = model.normalize(changed, c)
            earlier = max(t - model.burn_in, 0)
            torch.testing.assert_close(out.noise[:, :earlier], reference.noise[:, :earlier])
            torch.testing.assert_close(
                out.log_abs_det[:, :earlier], reference.log_abs_det[:, :earlier]
            )


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_slvm_elbo_of_a_step_ignores_later_conditions(num_transforms: int) -> None:
    model = conditioned_slvm(num_transforms)
    x = sequence(2, 7, (3,), torch.float32)
    c = conditions_for(model, x)
    generator = torch.Generator()
    reference = model.elbo(x, generator.manual_seed(0), c)
    scored_start = x.shape[1] - reference.shape[1]
    for t in range(scored_start, x.shape[1]):
        changed = c.clone()
        changed[:, t] -= 2.0
        elbo = model.elbo(x, generator.manual_seed(0), changed)
        index = t - scored_start
        torch.testing.assert_close(elbo[:, :index], reference[:, :index], rtol=0, atol=0)
        assert not torch.allclose(elbo[:, index], reference[:, index])


# Log-determinant, time-parallel against step-by-step ------------------------------------------


@pytest.mark.parametrize("event_shape, conditioner", CONDITIONERS, ids=CONDITIONER_IDS)
def test_conditioned_log_abs_det_matches_autograd_jacobian(
    event_shape: tuple, conditioner: str
) -> None:
    model = conditioned_flow(event_shape, conditioner, transforms=STACK)
    x = sequence(1, model.burn_in + 3, event_shape)
    c = conditions_for(model, x)
    context = x[:, : model.burn_in]

    def noise_of(scored: torch.Tensor) -> torch.Tensor:
        full = torch.cat([context, scored.view(1, -1, *event_shape)], dim=1)
        return model.normalize(full, c).noise.flatten()

    jacobian = torch.autograd.functional.jacobian(noise_of, x[:, model.burn_in :].flatten())
    sign, log_abs_det = torch.linalg.slogdet(jacobian)
    assert sign != 0
    torch.testing.assert_close(log_abs_det, model.normalize(x, c).log_abs_det.sum())
    frame = math.prod(event_shape)
    blocks = jacobian.view(3, frame, 3, frame)
    assert torch.all(blocks[0, :, 1:] == 0) and torch.all(blocks[1, :, 2:] == 0)


@pytest.mark.parametrize("context", ["burn_in", "padded"])
@pytest.mark.parametrize("event_shape, conditioner", CONDITIONERS, ids=CONDITIONER_IDS)
def test_time_parallel_equals_step_by_step_with_conditions(
    event_shape: tuple, conditioner: str, context: str
) -> None:
    model = conditioned_flow(event_shape, conditioner, context, transforms=STACK)
    x = sequence(2, model.burn_in + 4, event_shape)
    c = conditions_for(model, x)
    k = model.config.conditioner.window
    with torch.no_grad():
        parallel = model.normalize(x, c)
        u, levels = x, c
        for transform in model.transforms:
            # The padded mode's initial frames have zero conditions.
            padded = transform.initial_frames is not None
            history = torch.cat([levels.new_zeros(2, k, A), levels], 1) if padded else levels
            offset = k if padded else 0
            frames = []
            for t in range(transform.burn_in, u.shape[1]):
                window = transform.start_window(u[:, :t])  # only the past frames
                step = history[:, offset + t + 1 - k : offset + t + 1]  # c_{t-k+1} .. c_t
                frames.append(transform.normalize_frame(window, u[:, t], step)[0])
            u = torch.stack(frames, dim=1)
            levels = levels[:, levels.shape[1] - u.shape[1] :]
        torch.testing.assert_close(parallel.noise, u)
        # Generation steps through time: it inverts the time-parallel density direction.
        generated = model.generate(parallel.noise, x[:, : model.burn_in], c)
        torch.testing.assert_close(generated, x)
        sampled = model.sample(2, 3, context=x[:, : model.burn_in + 1], conditions=c)
        assert sampled.shape == (2, 3, *event_shape)


# Zero condition weights: the unconditioned model ----------------------------------------------


@pytest.mark.parametrize("context", ["burn_in", "padded"])
@pytest.mark.parametrize("event_shape, conditioner", CONDITIONERS, ids=CONDITIONER_IDS)
def test_zero_condition_weights_give_the_unconditioned_flow(
    event_shape: tuple, conditioner: str, context: str
) -> None:
    plain = make_flow(event_shape, 2, 2, context, conditioner=conditioner)
    conditioned = conditioned_flow(event_shape, conditioner, context)
    missing, unexpected = conditioned.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(is_condition(key) for key in missing)
    layers = condition_layers(conditioned)
    assert len(layers) == 2  # one per transform
    with torch.no_grad():
        for layer in layers:
            layer.weight.zero_()
            layer.bias.zero_()
    x = sequence(2, plain.burn_in + 4, event_shape)
    c = conditions_for(conditioned, x)
    with torch.no_grad():
        torch.testing.assert_close(conditioned.log_prob(x, c), plain.log_prob(x))
        noise = sequence(2, 3, event_shape, seed=5)
        context_frames = x[:, : plain.burn_in + 1]
        torch.testing.assert_close(
            conditioned.generate(noise, context_frames, c[:, : context_frames.shape[1] + 3]),
            plain.generate(noise, context_frames),
        )


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_zero_condition_weights_give_the_unconditioned_slvm(num_transforms: int) -> None:
    plain = conditioned_slvm(num_transforms, condition_dim=0)
    conditioned = conditioned_slvm(num_transforms)
    missing, unexpected = conditioned.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(is_condition(key) for key in missing)
    expected = {"posterior_condition", "prior_condition", "decoder_condition"}
    assert expected <= {key.split(".")[1] for key in missing}
    with torch.no_grad():
        for layer in condition_layers(conditioned):
            layer.weight.zero_()
            layer.bias.zero_()
    x = sequence(2, 7, (3,), torch.float32)
    c = conditions_for(conditioned, x)
    generator = torch.Generator()
    torch.testing.assert_close(
        conditioned.elbo(x, generator.manual_seed(1), c), plain.elbo(x, generator.manual_seed(1))
    )
    torch.testing.assert_close(
        conditioned.bound(x, 3, generator.manual_seed(1), conditions=c),
        plain.bound(x, 3, generator.manual_seed(1)),
    )
    context = x[:, :3]
    torch.testing.assert_close(
        conditioned.sample(2, 4, context, generator.manual_seed(2), conditions=c),
        plain.sample(2, 4, context, generator.manual_seed(2)),
    )


# Generation follows the conditions -------------------------------------------------------------


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_slvm_samples_depend_on_the_future_conditions_only_from_their_step(
    num_transforms: int,
) -> None:
    model = conditioned_slvm(num_transforms)
    x = sequence(2, 4, (3,), torch.float32)
    c = torch.randn(2, 4 + 3, A)
    generator = torch.Generator()
    reference = model.sample(2, 3, x, generator.manual_seed(3), conditions=c)
    changed = c.clone()
    changed[:, -2] += 3.0  # the condition of the second generated frame
    sample = model.sample(2, 3, x, generator.manual_seed(3), conditions=changed)
    torch.testing.assert_close(sample[:, 0], reference[:, 0], rtol=0, atol=0)
    assert not torch.allclose(sample[:, 1], reference[:, 1])


# Configuration, state and errors ---------------------------------------------------------------


def test_unconditioned_models_keep_their_parameters_and_keys() -> None:
    assert FlowConfig().condition_dim == 0
    for model in [FlowModel(IMAGE, hidden=4), SLVM((3,), num_transforms=1, latent_dim=4)]:
        assert not any(is_condition(key) for key in model.state_dict())
        config = type(model.config)(**{**model.config.__dict__, "condition_dim": 3})
        conditioned = type(model)(model.event_shape, config)
        extra = set(conditioned.state_dict()) - set(model.state_dict())
        assert extra and all(is_condition(key) for key in extra)
        assert set(model.state_dict()) <= set(conditioned.state_dict())


def test_condition_dim_is_one_validated_setting() -> None:
    assert build(FlowConfig, {"condition_dim": 4}).condition_dim == 4
    with pytest.raises(ConfigError, match=r"x.yaml: model.condition_dim must be at least 0"):
        build(FlowConfig, {"condition_dim": -1}, source="x.yaml", prefix="model.")


def test_conditions_that_do_not_fit_get_a_clear_error() -> None:
    model = conditioned_flow(VECTOR, "mlp")
    x = sequence(2, 6, VECTOR)
    with pytest.raises(ValueError, match=r"condition_dim=2\): pass conditions"):
        model.log_prob(x)
    with pytest.raises(ValueError, match=r"conditions must be shaped \(B, T, A\) = \(2, 6, 2\)"):
        model.log_prob(x, torch.zeros(2, 5, A, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.log_prob(x, torch.full((2, 6, A), math.nan, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(2, 9, 2\)"):  # context + generated frames
        model.generate(x[:, :3], x[:, :6], torch.zeros(2, 6, A, dtype=torch.float64))
    plain = make_flow(VECTOR, 1, 2)
    with pytest.raises(ValueError, match="not conditioned"):
        plain.log_prob(x, torch.zeros(2, 6, A, dtype=torch.float64))
    with pytest.raises(ValueError, match="not conditioned"):
        conditioned_slvm(1, condition_dim=0).elbo(x, conditions=torch.zeros(2, 6, A))

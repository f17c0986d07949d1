"""BatchNorm statistics per time step (the authors' step loop) against pooled statistics."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from seqflows import FlowModel
from seqflows.conditioners import ConvConditioner
from seqflows.normalization import batch_norm_per_step, run_stack
from seqflows.slvm import SLVM

from helpers import IMAGE, sequence


def test_batch_norm_per_step_equals_one_call_per_step():
    """Output and running statistics equal `steps` separate training-mode calls, in time order."""
    layer = nn.BatchNorm2d(3).double()
    with torch.no_grad():
        layer.weight.normal_(1, 0.3)
        layer.bias.normal_(0, 0.3)
    reference = copy.deepcopy(layer)
    x = sequence(4 * 5, 1, (3, 2, 3)).squeeze(1) * 2 + 1  # 4 steps of 5 rows, step-major
    out = batch_norm_per_step(layer, x, steps=4)
    expected = torch.cat([reference(chunk) for chunk in x.split(5)])
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(layer.running_mean, reference.running_mean)
    torch.testing.assert_close(layer.running_var, reference.running_var)
    assert int(layer.num_batches_tracked) == int(reference.num_batches_tracked) == 4


def test_batch_norm_per_step_keeps_channels_last():
    layer = nn.BatchNorm2d(4)
    x = torch.randn(6, 4, 3, 3).contiguous(memory_format=torch.channels_last)
    out = batch_norm_per_step(layer, x, steps=3)
    assert out.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="cannot be split into 4 time steps"):
        batch_norm_per_step(layer, x, steps=4)


def test_run_stack_without_steps_is_the_stack():
    stack = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU())
    x = torch.randn(4, 2, 5, 5)
    torch.testing.assert_close(run_stack(stack, x), stack(x))


def _conditioner(batch_norm: str) -> ConvConditioner:
    torch.manual_seed(3)
    conditioner = ConvConditioner(
        IMAGE, 2, 4, normalization="batch", identity_init=False, batch_norm=batch_norm
    )
    return conditioner.double()


def test_per_step_statistics_are_the_authors_step_loop():
    """Each step's window frames (B * k, with repeats) and windows (B) share statistics."""
    conditioner = _conditioner("per_step")
    loop = copy.deepcopy(conditioner)
    history = sequence(3, 7, IMAGE)  # S = 5 steps of windows of k = 2
    shift, log_scale = conditioner.all_steps(history)
    expected = [loop(history[:, t : t + 2]) for t in range(5)]  # one training-mode call a step
    torch.testing.assert_close(shift, torch.stack([s for s, _ in expected], 1))
    torch.testing.assert_close(log_scale, torch.stack([v for _, v in expected], 1))
    for ours, theirs in zip(conditioner.modules(), loop.modules(), strict=True):
        if isinstance(ours, nn.BatchNorm2d):
            torch.testing.assert_close(ours.running_mean, theirs.running_mean)
            torch.testing.assert_close(ours.running_var, theirs.running_var)


def test_statistics_choice_does_not_matter_in_eval_mode():
    pooled, per_step = _conditioner("pooled").eval(), _conditioner("per_step").eval()
    history = sequence(2, 6, IMAGE)
    for ours, theirs in zip(pooled.all_steps(history), per_step.all_steps(history), strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("batch_norm, causal", [("per_step", True), ("pooled", False)])
def test_training_mode_density_of_a_frame_ignores_later_frames_only_per_step(
    batch_norm: str, causal: bool
):
    torch.manual_seed(0)
    model = FlowModel(
        IMAGE, num_transforms=2, window=2, hidden=4, identity_init=False, batch_norm=batch_norm
    ).double()
    x = sequence(3, 9, IMAGE)
    later = x.clone()
    later[:, 7:] += 3.0  # change frames 7 and 8 of every sequence
    before = model.log_prob(x)[:, :3]  # scored frames 4, 5, 6 (burn_in 4)
    after = model.log_prob(later)[:, :3]
    assert torch.allclose(before, after) is causal


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_slvm_training_mode_terms_ignore_later_frames_per_step(num_transforms: int):
    torch.manual_seed(0)
    model = SLVM(
        (1, 8, 8),
        latent_dim=3,
        num_transforms=num_transforms,
        window=2,
        lstm_hidden=6,
        encoder_features=5,
        conv_width=2,
        hidden=3,
        identity_init=False,
        batch_norm="per_step",
        burn_in=2 if num_transforms == 0 else None,
    )
    x = sequence(4, 7, (1, 8, 8), dtype=torch.float32)
    later = x.clone()
    later[:, 5:] += 1.0
    terms = model.elbo_terms(x, torch.Generator().manual_seed(1))
    changed = model.elbo_terms(later, torch.Generator().manual_seed(1))
    torch.testing.assert_close(terms.elbo[:, :3], changed.elbo[:, :3])  # frames 2, 3, 4
    assert not torch.allclose(terms.elbo[:, 3:], changed.elbo[:, 3:])
    pooled = copy.deepcopy(model)  # the same weights, pooled statistics
    pooled.latent.batch_norm = "pooled"
    if pooled.flow is not None:
        for transform in pooled.flow.transforms:
            transform.conditioner.batch_norm = "pooled"
    first = pooled.elbo_terms(x, torch.Generator().manual_seed(1)).elbo[:, :3]
    second = pooled.elbo_terms(later, torch.Generator().manual_seed(1)).elbo[:, :3]
    assert not torch.allclose(first, second)  # pooled statistics see the later frames


def test_the_slvm_networks_run_channels_last_on_cpu_with_the_same_outputs():
    from seqflows.layout import cpu_channels_last
    from seqflows.networks import make_frame_networks

    torch.manual_seed(0)
    encoder, decoder = make_frame_networks(
        (2, 16, 16), latent_dim=6, features=5, width=4, hidden=8
    )
    encoder.eval(), decoder.eval()
    layouts = []

    def record(module, inputs, output):
        layouts.append(output.shape[1] > 1 and output.stride(1) == 1)

    for network in (encoder, decoder):
        for layer in network.net:
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                layer.register_forward_hook(record)
    frames, z = torch.randn(3, 2, 16, 16), torch.randn(3, 6)
    with torch.no_grad():
        features = encoder(frames)
        loc, log_scale = decoder(z)
    assert layouts and all(layouts), layouts  # every convolution's output channels-last
    # The same values as NCHW convolutions give.
    with torch.no_grad():
        expected = encoder.net(frames.contiguous()).flatten(1)
        hidden = decoder.net(z[:, :, None, None].contiguous())
    torch.testing.assert_close(features, expected)
    # The two heads, run as one transposed convolution, are the heads.
    torch.testing.assert_close(loc, decoder.loc_head(hidden))
    torch.testing.assert_close(log_scale, decoder.log_scale_head(hidden))
    assert cpu_channels_last(z[:, :, None, None]).stride() == (6, 1, 6, 6)

"""The DC-GAN decoder's layers computed as matrix products (seqflows.networks): the same
functions, gradients and parameters as the transposed convolutions they stand for."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqflows import networks
from seqflows.inference import fold_batch_norm
from seqflows.networks import ConvDecoder, LatentProjection, transposed_conv_by_matmul


@pytest.mark.parametrize("bias", [True, False])
def test_latent_projection_is_the_transposed_convolution_of_a_1x1_image(bias):
    torch.manual_seed(0)
    layer = LatentProjection(6, 5, 4, bias=bias).double()
    z = torch.randn(3, 6, 1, 1, dtype=torch.float64, requires_grad=True)
    out = layer(z)
    expected = F.conv_transpose2d(z, layer.weight, layer.bias, 1, 0)
    torch.testing.assert_close(out, expected)
    assert out.is_contiguous(memory_format=torch.channels_last)  # as the next conv wants
    # Gradients of the input and of every parameter, against the transposed convolution's.
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, [z, *layer.parameters()], grad)
    theirs = torch.autograd.grad(expected, [z, *layer.parameters()], grad)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)
    # Larger inputs are left to the transposed convolution itself.
    wide = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(layer(wide), F.conv_transpose2d(wide, layer.weight, layer.bias))


@pytest.mark.parametrize(
    ("shape", "kernel", "stride", "padding"),
    [
        ((2, 3, 5, 5), 4, 2, 1),
        ((1, 4, 4, 6), 3, 1, 1),
        ((2, 2, 3, 3), 4, 2, 0),
        ((1, 1, 2, 2), 2, 2, 0),
    ],
)
def test_transposed_conv_by_matmul_is_the_transposed_convolution(shape, kernel, stride, padding):
    torch.manual_seed(0)
    images = torch.randn(*shape, dtype=torch.float64)
    weight = torch.randn(shape[1], 2, kernel, kernel, dtype=torch.float64)
    bias = torch.randn(2, dtype=torch.float64)
    for b in (bias, None):
        torch.testing.assert_close(
            transposed_conv_by_matmul(images, weight, b, stride, padding),
            F.conv_transpose2d(images, weight, b, stride, padding),
        )
    cl = images.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        transposed_conv_by_matmul(cl, weight, bias, stride, padding),
        F.conv_transpose2d(images, weight, bias, stride, padding),
    )


def _reference(decoder: ConvDecoder, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder as plain transposed convolutions (its first layer and both heads)."""
    net = copy.deepcopy(decoder.net)
    plain = nn.ConvTranspose2d(1, 1, 1)  # to take the first layer's class
    net[0].__class__ = type(plain)
    hidden = net(z[:, :, None, None])
    return decoder.loc_head(hidden), decoder.log_scale_head(hidden)


def test_the_decoder_equals_its_transposed_convolutions_in_every_mode(monkeypatch):
    torch.manual_seed(0)
    decoder = ConvDecoder((1, 16, 16), latent_dim=6, width=4).double()
    z = torch.randn(5, 6, dtype=torch.float64)
    calls = []
    by_matmul = networks.transposed_conv_by_matmul
    monkeypatch.setattr(
        networks,
        "transposed_conv_by_matmul",
        lambda *args: calls.append(1) or by_matmul(*args),
    )
    # Training, with gradients: the heads are oneDNN's transposed convolution.
    decoder.train()
    zg = z.clone().requires_grad_()
    loc, log_scale = decoder(zg)
    assert not calls
    ref_z = z.clone().requires_grad_()
    ref_loc, ref_log_scale = _reference(decoder, ref_z)
    torch.testing.assert_close(loc, ref_loc)
    torch.testing.assert_close(log_scale, ref_log_scale)
    (loc.sum() + log_scale.square().sum()).backward()
    (ref_loc.sum() + ref_log_scale.square().sum()).backward()
    torch.testing.assert_close(zg.grad, ref_z.grad)
    # Evaluation (no gradients), plain and folded: the heads by matmul, the same values.
    decoder.eval()
    with torch.no_grad():
        expected = _reference(decoder, z)
        for model in (decoder, fold_batch_norm(decoder)):
            calls.clear()
            for ours, theirs in zip(model(z), expected, strict=True):
                torch.testing.assert_close(ours, theirs)
            assert calls == [1]
    # Under autocast the heads stay oneDNN's (bf16 sums as the training run's).
    calls.clear()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        decoder.float()(z.float())
    assert not calls


def test_the_state_dict_is_that_of_transposed_convolutions():
    """Old checkpoints load: the first layer keeps the keys and shapes of nn.ConvTranspose2d."""
    decoder = ConvDecoder((1, 16, 16), latent_dim=6, width=4)
    first = decoder.net[0]
    assert isinstance(first, nn.ConvTranspose2d)
    plain = nn.ConvTranspose2d(6, first.out_channels, 4, 1, 0, bias=False)
    assert {k: v.shape for k, v in first.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }

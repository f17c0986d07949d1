"""Inference copies: BatchNorm folded into the convolutions, the same densities and samples."""

from __future__ import annotations

import pytest
import torch

from seqflows import SLVM, FlowModel
from seqflows.inference import fold_batch_norm, folded_layers


def with_batch_statistics(model):
    """``model`` in eval mode after a few training-mode passes: BatchNorm statistics that are
    not the identity (and weights that are not at their zero-head start)."""
    torch.manual_seed(0)
    for parameter in model.parameters():
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    with torch.no_grad():
        for _ in range(3):
            model.train().loss(2 + 3 * torch.rand(4, 6, 1, 8, 8), torch.Generator().manual_seed(0))
    return model.eval()


@pytest.mark.parametrize("num_transforms, padding", [(1, "zeros"), (2, "replicate")])
def test_folded_flow_gives_the_same_densities_and_samples(num_transforms, padding):
    model = with_batch_statistics(
        FlowModel((1, 8, 8), num_transforms=num_transforms, window=2, hidden=4, padding=padding)
    )
    before = {name: value.clone() for name, value in model.state_dict().items()}
    folded = fold_batch_norm(model)
    assert folded_layers(folded) == 8 * num_transforms and folded_layers(model) == 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    assert not any(parameter.requires_grad for parameter in folded.parameters())
    x = torch.rand(3, 7, 1, 8, 8)
    torch.testing.assert_close(folded.log_prob(x), model.log_prob(x), rtol=1e-5, atol=1e-4)
    context = x[:, : model.burn_in]
    samples = {
        name: candidate.sample(3, 5, context, torch.Generator().manual_seed(1))
        for name, candidate in (("model", model), ("folded", folded))
    }
    torch.testing.assert_close(samples["folded"], samples["model"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_folded_slvm_gives_the_same_elbo_and_samples(num_transforms):
    model = with_batch_statistics(
        SLVM(
            (1, 8, 8),
            num_transforms=num_transforms,
            window=1,
            latent_dim=4,
            lstm_hidden=8,
            encoder_features=8,
            conv_width=4,
            hidden=4,
        )
    )
    folded = fold_batch_norm(model)
    # 8x8 frames: the DC-GAN encoder has 2 BatchNorms, its decoder 1; the flow 8 per transform
    assert folded_layers(folded) == 3 + 8 * num_transforms
    x = torch.rand(2, 5, 1, 8, 8)
    for method in ("elbo", "iwae"):
        arguments = (x, 3) if method == "iwae" else (x,)
        expected = getattr(model, method)(*arguments, generator=torch.Generator().manual_seed(2))
        found = getattr(folded, method)(*arguments, generator=torch.Generator().manual_seed(2))
        torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-3, msg=method)
    context = x[:, : max(model.burn_in, 2)]
    expected = model.sample(2, 4, context, torch.Generator().manual_seed(3))
    found = folded.sample(2, 4, context, torch.Generator().manual_seed(3))
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-4)

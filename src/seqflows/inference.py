r"""Inference copies of models: BatchNorm folded into the convolution that precedes it.

In evaluation mode a BatchNorm layer is a fixed affine map per channel,
gamma * (h - running_mean) / sqrt(running_var + eps) + beta, and the convolution before it is
linear, so the two are one convolution with rescaled filters and a bias
(:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`). Folding saves one pass over every activation
per layer (and the temporary it writes), which matters where a model runs forward only:
evaluation and generation, one frame per step.

:func:`fold_batch_norm` returns such a copy of a model in eval mode and leaves the model alone.
Every ``Conv2d`` or ``ConvTranspose2d`` followed directly by a ``BatchNorm2d`` in an
``nn.Sequential`` is folded: the conv conditioner's encoder and decoder
(:class:`~seqflows.conditioners.ConvConditioner`) and the SLVM's DC-GAN encoder and decoder
(:mod:`seqflows.networks`). The copy computes the same densities and samples to float
tolerance. It is for inference only: its BatchNorm layers are gone, so training it (or calling
``train()`` on it) is not training the model.
"""

from __future__ import annotations

import copy
from typing import TypeVar

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = [
    "fold_batch_norm",
    "folded_layers",
]

Model = TypeVar("Model", bound=nn.Module)


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return (
        isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d))
        and type(norm) is nn.BatchNorm2d
        and norm.running_mean is not None
        and norm.num_features == conv.out_channels
    )


def fold_batch_norm(model: Model) -> Model:
    r"""An inference copy of ``model``: eval mode, every BatchNorm folded into the convolution
    before it (replaced by ``nn.Identity``), no parameter requiring a gradient.

    Arguments:
        model: Any module, e.g. a :class:`~seqflows.flows.FlowModel` or a
            :class:`~seqflows.slvm.SLVM`; it is not changed.

    Returns:
        The copy, of the same class, on the same device and dtype.

    Example:
        >>> import torch
        >>> from seqflows import FlowModel
        >>> model = FlowModel((1, 8, 8), window=2, hidden=4, identity_init=False).eval()
        >>> folded = fold_batch_norm(model)
        >>> folded_layers(folded), folded_layers(model)
        (8, 0)
        >>> x = torch.rand(2, 5, 1, 8, 8)
        >>> torch.allclose(folded.log_prob(x), model.log_prob(x), rtol=1e-4, atol=1e-3)
        True
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for index in range(len(module) - 1):
            conv, norm = module[index], module[index + 1]
            if _foldable(conv, norm):
                transpose = isinstance(conv, nn.ConvTranspose2d)
                module[index] = fuse_conv_bn_eval(conv, norm, transpose=transpose)
                module[index + 1] = nn.Identity()
    for parameter in folded.parameters():
        parameter.requires_grad_(False)
    return folded


def folded_layers(model: nn.Module) -> int:
    r"""The number of ``nn.Identity`` layers that stand where a BatchNorm was folded: 0 for a
    model that :func:`fold_batch_norm` did not make."""
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            layers = list(module)
            count += sum(
                isinstance(layer, nn.Identity)
                and isinstance(previous, (nn.Conv2d, nn.ConvTranspose2d))
                for previous, layer in zip(layers[:-1], layers[1:], strict=True)
            )
    return count

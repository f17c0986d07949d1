r"""Memory layout of image batches for CPU convolutions.

oneDNN, which runs PyTorch's CPU convolutions, takes channels-last activations (N, H, W, C in
memory) as they are, but reorders NCHW ones to and from its own blocked layout around every
convolution, forward and backward, which costs time and large temporary buffers. A convolution's
output follows the layout of its input, so starting a network channels-last keeps every
activation channels-last, whatever the memory format of the weights. On other devices nothing
changes.

The weight gradients of such convolutions come out channels-last too. PyTorch copies a gradient
into its parameter's layout where the two differ in bytes, but not where they differ only in the
strides of a size-1 dimension (one input channel, or a 1 x 1 kernel: the same bytes in both
layouts); distributed data parallel (DDP) compares strides exactly and warns ("Grad strides do
not match bucket view strides"). :func:`cpu_gradient_layout` gives those weights the strides
their gradients have.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["cpu_channels_last", "cpu_gradient_layout"]


def cpu_channels_last(images: Tensor) -> Tensor:
    r"""On CPU, images (N, C, H, W) in channels-last memory (the same values); elsewhere, or
    already so, the images as they are.

    A copy whenever the strides are not channels-last, even where the bytes would not move
    (C = 1, or 1 x 1 images such as a decoder's latents): the strides tell a convolution which
    layout to produce.

    Example:
        >>> images = torch.zeros(2, 3, 4, 5)
        >>> cpu_channels_last(images).stride()
        (60, 1, 15, 3)
    """
    if images.device.type != "cpu":
        return images
    N, C, H, W = images.shape
    if images.stride() == (H * W * C, 1, W * C, C):
        return images
    return torch.empty_like(images, memory_format=torch.channels_last).copy_(images)


def cpu_gradient_layout(module: nn.Module) -> None:
    r"""Gives the CPU weights (O, I, kH, kW) of ``module``'s 2-D convolutions whose two layouts
    hold the same bytes (I = 1, or a 1 x 1 kernel) the channels-last strides of their gradients,
    in place; no value, byte or other parameter changes.

    Called before DDP wraps a model trained on the CPU: DDP's gradient buckets take the strides
    of the parameters, and a gradient whose strides differ is copied with a warning.

    Example:
        >>> conv = nn.Conv2d(1, 4, 3)
        >>> cpu_gradient_layout(conv)
        >>> conv.weight.stride()
        (9, 1, 3, 1)
    """
    for layer in module.modules():
        if not isinstance(layer, nn.Conv2d) or layer.weight.device.type != "cpu":
            continue
        weight = layer.weight
        same_bytes = weight.is_contiguous() and weight.is_contiguous(
            memory_format=torch.channels_last
        )
        if same_bytes:
            weight.data = cpu_channels_last(weight.data)

r"""Memory layout of image batches for CPU convolutions.

oneDNN, which runs PyTorch's CPU convolutions, takes channels-last activations (N, H, W, C in
memory) as they are, but reorders NCHW ones to and from its own blocked layout around every
convolution, forward and backward, which costs time and large temporary buffers. A convolution's
output follows the layout of its input, so starting a network channels-last keeps every
activation channels-last, whatever the memory format of the weights. On other devices nothing
changes.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cpu_channels_last"]


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

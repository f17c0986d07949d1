r"""Frame encoders and decoders of the sequential latent variable model (Appendix B, Fig. 6).

* :class:`ConvEncoder`: the DC-GAN encoder, conv 4x4 stride 2 (64, 128, 256, 512 filters for
  64x64 frames) then conv 4x4 stride 1 without padding to a ``features``-vector; BatchNorm and
  LeakyReLU(0.2) after every layer. (C, H, W) -> (features,).
* :class:`ConvDecoder`: its mirror image from a latent z_t, transposed convs (512, 256, 128, 64
  filters) with BatchNorm and LeakyReLU, then two transposed-conv heads for the loc and the
  log-scale of p(x_t | z_t). (latent,) -> 2 x (C, H, W).
* :class:`MLPEncoder`, :class:`MLPDecoder`: the same roles for vector frames (D,).

Frames of side S = 4 * 2^n use n stride-2 layers: n = 4 for the paper's 64x64; 32x32 frames use
three (64, 128, 256 filters). ``width`` scales every filter count (64 in the paper).
All frames of a batch go through in one call: (N, *event_shape) with N = B * T. With
``checkpoint_activations`` each network keeps only the input of each of its blocks for the
backward pass and recomputes the rest there (:func:`~seqflows.normalization.run_stack`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layout import cpu_channels_last
from .normalization import run_stack

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "make_frame_networks",
]

SLOPE = 0.2  # LeakyReLU negative slope (DC-GAN)


def _stride_two_layers(size: int) -> int:
    """n such that size = 4 * 2^n (n >= 1)."""
    layers, side = 0, size
    while side > 4 and side % 2 == 0:
        side //= 2
        layers += 1
    if side != 4 or layers < 1:
        raise ValueError(
            f"the convolutional encoder needs square frames of side 4 * 2^n (8, 16, 32, 64, 128,"
            f" ...), got {size}"
        )
    return layers


class ConvEncoder(nn.Module):
    r"""DC-GAN encoder of one frame: (N, C, S, S) -> (N, features).

    Arguments:
        event_shape: (C, S, S), S = 4 * 2^n.
        features: Output size (128 in the paper).
        width: Filters of the first layer (64); each stride-2 layer doubles them.
        checkpoint_activations: Recompute the activations in the backward pass.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        features: int,
        width: int,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint_activations = bool(checkpoint_activations)
        channels, height, width_pixels = (int(size) for size in event_shape)
        if height != width_pixels:
            raise ValueError(f"the convolutional encoder needs square frames, got {event_shape}")
        layers: list[nn.Module] = []
        previous = channels
        for index in range(_stride_two_layers(height)):
            filters = width * 2**index
            layers += _conv_block(nn.Conv2d(previous, filters, 4, 2, 1, bias=False), filters)
            previous = filters
        layers += _conv_block(nn.Conv2d(previous, features, 4, 1, 0, bias=False), features)
        self.net = nn.Sequential(*layers)

    def forward(self, frames: Tensor, steps: int | None = None) -> Tensor:
        r"""Features (N, features) of frames (N, C, S, S); ``steps``: BatchNorm statistics per
        time step for step-major frames (:func:`~seqflows.normalization.run_stack`)."""
        frames = cpu_channels_last(frames)  # faster CPU convolutions (seqflows.layout)
        return run_stack(self.net, frames, steps, self.checkpoint_activations).flatten(1)


class ConvDecoder(nn.Module):
    r"""DC-GAN decoder of p(x_t | z_t): (N, latent) -> loc, log_scale, each (N, C, S, S).

    Arguments:
        event_shape: (C, S, S), S = 4 * 2^n.
        latent_dim: Size of z_t (256 in the paper).
        width: Filters of the last hidden layer (64); the earlier ones double going back.
        checkpoint_activations: Recompute the activations in the backward pass.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        latent_dim: int,
        width: int,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint_activations = bool(checkpoint_activations)
        channels, height, _ = (int(size) for size in event_shape)
        count = _stride_two_layers(height)
        filters = [width * 2**index for index in reversed(range(count))]  # 512, 256, 128, 64
        layers: list[nn.Module] = _conv_block(
            nn.ConvTranspose2d(latent_dim, filters[0], 4, 1, 0, bias=False), filters[0]
        )
        for previous, current in zip(filters[:-1], filters[1:], strict=True):
            layers += _conv_block(
                nn.ConvTranspose2d(previous, current, 4, 2, 1, bias=False), current
            )
        self.net = nn.Sequential(*layers)
        self.loc_head = nn.ConvTranspose2d(filters[-1], channels, 4, 2, 1)
        self.log_scale_head = nn.ConvTranspose2d(filters[-1], channels, 4, 2, 1)

    def forward(self, z: Tensor, steps: int | None = None) -> tuple[Tensor, Tensor]:
        r"""Loc and raw log-scale (N, C, S, S) of latents (N, latent); ``steps``: BatchNorm
        statistics per time step for step-major latents."""
        latents = cpu_channels_last(z[:, :, None, None])  # so every activation is (layout)
        hidden = run_stack(self.net, latents, steps, self.checkpoint_activations)
        # The heads run as one transposed convolution (width -> 2C): the same filters and sums,
        # but one with one or two output channels is slow on CPU, so this halves their cost.
        weight = torch.cat([self.loc_head.weight, self.log_scale_head.weight], dim=1)
        bias = torch.cat([self.loc_head.bias, self.log_scale_head.bias])
        head = self.loc_head
        both = F.conv_transpose2d(hidden, weight, bias, head.stride, head.padding)
        loc, log_scale = both.split(self.loc_head.out_channels, dim=1)
        return loc, log_scale


class MLPEncoder(nn.Module):
    r"""Encoder of a vector frame: (N, D) -> (N, features), two LeakyReLU layers."""

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        features: int,
        hidden: int,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint_activations = bool(checkpoint_activations)
        (dim,) = (int(size) for size in event_shape)
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.LeakyReLU(SLOPE),
            nn.Linear(hidden, features),
            nn.LeakyReLU(SLOPE),
        )

    def forward(self, frames: Tensor, steps: int | None = None) -> Tensor:
        r"""Features (N, features) of vectors (N, D); ``steps`` changes nothing (no BatchNorm)."""
        return run_stack(self.net, frames, checkpoint=self.checkpoint_activations)


class MLPDecoder(nn.Module):
    r"""Decoder of p(x_t | z_t) for vectors: (N, latent) -> loc, log_scale, each (N, D)."""

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        latent_dim: int,
        hidden: int,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__()
        self.checkpoint_activations = bool(checkpoint_activations)
        (dim,) = (int(size) for size in event_shape)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.LeakyReLU(SLOPE),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(SLOPE),
        )
        self.loc_head = nn.Linear(hidden, dim)
        self.log_scale_head = nn.Linear(hidden, dim)

    def forward(self, z: Tensor, steps: int | None = None) -> tuple[Tensor, Tensor]:
        r"""Loc and raw log-scale (N, D) of latents (N, latent); ``steps`` changes nothing."""
        hidden = run_stack(self.net, z, checkpoint=self.checkpoint_activations)
        return self.loc_head(hidden), self.log_scale_head(hidden)


def _conv_block(conv: nn.Module, filters: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(filters), nn.LeakyReLU(SLOPE)]


def make_frame_networks(
    event_shape: Sequence[int],
    *,
    latent_dim: int,
    features: int,
    width: int,
    hidden: int,
    checkpoint_activations: bool = False,
) -> tuple[nn.Module, nn.Module]:
    r"""The encoder and decoder for frames of ``event_shape``: convolutional for (C, S, S)
    (``width`` filters first), MLPs (``hidden`` units) for vectors (D,); with
    ``checkpoint_activations`` both recompute their activations in the backward pass."""
    checkpoint = checkpoint_activations
    if len(event_shape) == 3:
        return (
            ConvEncoder(
                event_shape, features=features, width=width, checkpoint_activations=checkpoint
            ),
            ConvDecoder(
                event_shape, latent_dim=latent_dim, width=width, checkpoint_activations=checkpoint
            ),
        )
    if len(event_shape) == 1:
        return (
            MLPEncoder(
                event_shape, features=features, hidden=hidden, checkpoint_activations=checkpoint
            ),
            MLPDecoder(
                event_shape,
                latent_dim=latent_dim,
                hidden=hidden,
                checkpoint_activations=checkpoint,
            ),
        )
    raise ValueError(f"event_shape must be (C, H, W) or (D,), got {tuple(event_shape)}")

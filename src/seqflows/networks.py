r"""Frame encoders and decoders of the sequential latent variable model (Appendix B, Fig. 6).

* :class:`ConvEncoder`: the DC-GAN encoder, conv 4x4 stride 2 (64, 128, 256, 512 filters for
  64x64 frames) then conv 4x4 stride 1 without padding to a ``features``-vector; BatchNorm and
  LeakyReLU(0.2) after every layer. (C, H, W) -> (features,).
* :class:`ConvDecoder`: its mirror image from a latent z_t, transposed convs (512, 256, 128, 64
  filters) with BatchNorm and LeakyReLU, then two transposed-conv heads for the loc and the
  log-scale of p(x_t | z_t). (latent,) -> 2 x (C, H, W). Two of its layers are computed as the
  matrix products they are, because oneDNN's transposed convolutions are slow at their shapes
  (:class:`LatentProjection`, :func:`transposed_conv_by_matmul`); the parameters, state-dict
  keys and results are those of the transposed convolutions.
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

from .errors import ConfigError
from .layout import cpu_channels_last
from .normalization import run_stack

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "LatentProjection",
    "MLPDecoder",
    "MLPEncoder",
    "conv_frame_layers",
    "make_frame_networks",
    "transposed_conv_by_matmul",
]

SLOPE = 0.2  # LeakyReLU negative slope (DC-GAN)


def conv_frame_layers(event_shape: Sequence[int], setting: str | None = None) -> int:
    r"""n, the stride-2 layers with which the convolutional encoder and decoder take frames
    (C, S, S): they halve the frames down to 4 x 4, so S = 4 * 2^n with n >= 1.

    Arguments:
        event_shape: The frame shape (C, H, W).
        setting: What the error names (the app: ``data.size=S``); None: the frame shape.

    Raises:
        ConfigError: Frames that are not square with a side of 4 * 2^n.

    Example:
        >>> conv_frame_layers((1, 64, 64))
        4
    """
    _, height, width = (int(size) for size in event_shape)
    layers, side = 0, height
    while side > 4 and side % 2 == 0:
        side //= 2
        layers += 1
    if height != width or side != 4 or layers < 1:
        where = setting or f"frames of shape {tuple(int(size) for size in event_shape)}"
        raise ConfigError(
            f"{where}: the SLVM's convolutional encoder halves frames down to 4x4, so they must"
            " be square with side 4 * 2^n (8, 16, 32, 64, 128, ...)"
            + ("" if height == width else f"; these are {height}x{width}")
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
        channels = int(event_shape[0])
        layers: list[nn.Module] = []
        previous = channels
        for index in range(conv_frame_layers(event_shape)):
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


class LatentProjection(nn.ConvTranspose2d):
    r"""The decoder's first layer: a transposed convolution, kernel k, stride 1, no padding, of
    a 1 x 1 image (the latent z_t), computed as the matrix product it is.

    On a 1 x 1 input the transposed convolution is a linear map,
    out[n, c, i, j] = sum_l z[n, l] W[l, c, i, j] + b[c], from ``in_channels`` to
    ``out_channels`` x k x k; oneDNN computes it 1.4-2.5x slower than the same matmul
    (training and inference; benchmarks/decoder_layers.py). It is an ``nn.ConvTranspose2d`` in
    everything else (parameters, state-dict keys, BatchNorm folding), and returns
    (N, out_channels, k, k) in channels-last memory on CPU, as the layers after it expect
    (:mod:`seqflows.layout`).

    Arguments:
        in_channels: Size of the latent.
        out_channels: Filters.
        kernel_size: k, the side of the output.
        bias: Whether the layer adds a bias.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, 1, 0, bias=bias)

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        r"""(N, in_channels, 1, 1) -> (N, out_channels, k, k)."""
        if input.shape[-2:] != (1, 1) or output_size is not None:
            return super().forward(input, output_size)
        side_h, side_w = self.kernel_size
        # (in, out, kh, kw) -> (in, kh * kw * out): the output comes out as (N, kh, kw, out).
        weight = self.weight.permute(0, 2, 3, 1).reshape(self.in_channels, -1)
        if self.bias is None:
            projected = input.flatten(1) @ weight
        else:  # addmm: under autocast the bias is cast with the product, as the conv's is
            projected = torch.addmm(self.bias.repeat(side_h * side_w), input.flatten(1), weight)
        images = projected.unflatten(1, (side_h, side_w, self.out_channels)).permute(0, 3, 1, 2)
        # Channels-last strides on CPU, as the convolutions after it want; elsewhere NCHW.
        return images if input.device.type == "cpu" else images.contiguous()


def transposed_conv_by_matmul(
    images: Tensor, weight: Tensor, bias: Tensor | None, stride: int, padding: int
) -> Tensor:
    r"""``F.conv_transpose2d(images, weight, bias, stride, padding)`` computed by its
    definition: every input pixel's contribution W^T x (one batched matmul) summed into the
    output by col2im (``F.fold``).

    oneDNN's transposed convolution with a handful of output channels (the decoder's heads)
    leaves most of the vector units idle; this is about 2x faster forward on CPU at the paper's
    sizes, but its backward (im2col) is slower, so the decoder uses it without gradients only.

    Arguments:
        images: (N, C_in, H, W).
        weight: (C_in, C_out, k, k), as ``nn.ConvTranspose2d`` stores it.
        bias: (C_out,) or None.
        stride: The same in both directions.
        padding: The same on every side.

    Returns:
        (N, C_out, (H - 1) * stride - 2 * padding + k, the same for W).

    Example:
        >>> images, weight = torch.randn(2, 3, 5, 5), torch.randn(3, 2, 4, 4)
        >>> expected = F.conv_transpose2d(images, weight, None, 2, 1)
        >>> torch.allclose(transposed_conv_by_matmul(images, weight, None, 2, 1), expected,
        ...     atol=1e-5)
        True
    """
    batch, _, height, width = images.shape
    out_channels, kernel = weight.shape[1], weight.shape[2]
    # (N, C_out * k * k, H * W): the k x k patch each input pixel adds to the output.
    patches = torch.matmul(weight.flatten(1).T, images.flatten(2))
    size = (
        (height - 1) * stride - 2 * padding + kernel,
        (width - 1) * stride - 2 * padding + kernel,
    )
    output = F.fold(patches, size, kernel, stride=stride, padding=padding)
    if bias is not None:
        output = output + bias.view(1, out_channels, 1, 1)
    return output


def _forward_only_on_cpu(*tensors: Tensor) -> bool:
    """Whether a CPU computation on ``tensors`` needs no gradient and runs outside autocast (the
    decoder's heads then use :func:`transposed_conv_by_matmul`)."""
    if tensors[0].device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return False
    return not (torch.is_grad_enabled() and any(tensor.requires_grad for tensor in tensors))


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
        channels = int(event_shape[0])
        count = conv_frame_layers(event_shape)
        filters = [width * 2**index for index in reversed(range(count))]  # 512, 256, 128, 64
        layers: list[nn.Module] = _conv_block(
            LatentProjection(latent_dim, filters[0], 4, bias=False), filters[0]
        )
        for previous, current in zip(filters[:-1], filters[1:], strict=True):
            layers += _conv_block(
                nn.ConvTranspose2d(previous, current, 4, 2, 1, bias=False), current
            )
        self.net = nn.Sequential(*layers)
        self.loc_head = nn.ConvTranspose2d(filters[-1], channels, 4, 2, 1)
        self.log_scale_head = nn.ConvTranspose2d(filters[-1], channels, 4, 2, 1)

    def joined_heads(self) -> tuple[Tensor, Tensor]:
        r"""The loc and log-scale heads as one transposed convolution (width -> 2C): its weight
        (width, 2C, 4, 4) and bias (2C,). The same filters and sums, but one transposed
        convolution with one or two output channels is slow on CPU, so this halves their cost."""
        weight = torch.cat([self.loc_head.weight, self.log_scale_head.weight], dim=1)
        return weight, torch.cat([self.loc_head.bias, self.log_scale_head.bias])

    def forward(self, z: Tensor, steps: int | None = None) -> tuple[Tensor, Tensor]:
        r"""Loc and raw log-scale (N, C, S, S) of latents (N, latent); ``steps``: BatchNorm
        statistics per time step for step-major latents."""
        # The first layer (LatentProjection) returns channels-last on CPU, so every
        # activation after it is (seqflows.layout).
        hidden = run_stack(self.net, z[:, :, None, None], steps, self.checkpoint_activations)
        weight, bias = self.joined_heads()
        head = self.loc_head
        if _forward_only_on_cpu(hidden, weight):
            # Evaluation and sampling: about 2x faster than oneDNN's at the paper's sizes.
            both = transposed_conv_by_matmul(hidden, weight, bias, head.stride[0], head.padding[0])
        else:  # with gradients, oneDNN's transposed convolution: its backward is the faster
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
    r"""Decoder of p(x_t | z_t) for vectors: (N, latent) -> loc, log_scale, each (N, D).

    With ``strictly_lower`` a third, zero-initialised head gives the D (D - 1) / 2 strictly-lower
    entries (N, D (D - 1) / 2) of a full-covariance likelihood's Cholesky factor
    (:mod:`seqflows.latent`)."""

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        latent_dim: int,
        hidden: int,
        checkpoint_activations: bool = False,
        strictly_lower: bool = False,
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
        self.lower_head = nn.Linear(hidden, dim * (dim - 1) // 2) if strictly_lower else None
        self.zero_lower_head()

    @torch.no_grad()
    def zero_lower_head(self) -> None:
        """Zeros the strictly-lower head (if any): the likelihood starts diagonal."""
        if self.lower_head is not None:
            nn.init.zeros_(self.lower_head.weight)
            nn.init.zeros_(self.lower_head.bias)

    def forward(self, z: Tensor, steps: int | None = None) -> tuple[Tensor, ...]:
        r"""Loc and raw log-scale (N, D) of latents (N, latent), and with ``strictly_lower`` the
        factor's strictly-lower entries (N, D (D - 1) / 2); ``steps`` changes nothing."""
        hidden = run_stack(self.net, z, checkpoint=self.checkpoint_activations)
        heads = [self.loc_head, self.log_scale_head]
        if self.lower_head is not None:
            heads.append(self.lower_head)
        return tuple(head(hidden) for head in heads)


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
    strictly_lower: bool = False,
) -> tuple[nn.Module, nn.Module]:
    r"""The encoder and decoder for frames of ``event_shape``: convolutional for (C, S, S)
    (``width`` filters first), MLPs (``hidden`` units) for vectors (D,); with
    ``checkpoint_activations`` both recompute their activations in the backward pass;
    ``strictly_lower``: the vector decoder's full-covariance head (:class:`MLPDecoder`)."""
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
                strictly_lower=strictly_lower,
            ),
        )
    raise ValueError(f"event_shape must be (C, H, W) or (D,), got {tuple(event_shape)}")

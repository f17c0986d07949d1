r"""Conditioners: networks that map a window of past frames to a shift and a log-scale.

A conditioner computes the parameters of one affine autoregressive transform (Sec. 2.3, Eq. 5-6,
and Sec. 3.2, Eq. 15),

    shift_t, log_scale_t = conditioner(x_{t-k}, ..., x_{t-1}),

in two stages, so that the density direction can encode every frame once and decode every
window in one batched call:

    features = conditioner.encode(frames)          # (N, *event_shape) -> (N, *feature)
    shift, log_scale = conditioner.decode(window)  # (N, k, *feature) -> 2 x (N, *event_shape)

``log_scale`` is the raw network output; the transform bounds it (see
:mod:`seqflows.transforms`). A conditioner built with ``extra=P`` has a third head that gives P
more raw parameters per element (the spline transform's widths, heights and derivatives, see
:mod:`seqflows.splines`): ``decode`` then returns (shift, log_scale, extra), the last with shape
(N, *event_shape, P). Without it (``extra=0``, the affine transform) nothing changes: the same
layers, parameters and outputs.

A conditioner built with ``condition_dim=A`` also takes the conditions of each step's window,
c_{t-k+1}, ..., c_t (N, k, A), the last being the current step's (:mod:`seqflows.conditioning`):
a linear projection of the flattened window (k*A) is added to the decoder's input (conv,
broadcast over H and W), to the first hidden layer (mlp) or to the outputs (linear). With
``condition_dim=0`` (the default) there is no projection and nothing changes.

Three conditioners are provided:

* :class:`ConvConditioner`, the network of Appendix B for frames (C, H, W);
* :class:`MLPConditioner`, an MLP on the flattened window for vectors (D,);
* :class:`LinearConditioner`, shift and log-scale affine in the window for vectors (D,): the exact
  family for Gaussian autoregressive processes (Sec. 3.1).

With ``identity_init=True`` (the default) the output heads start at zero, so an untrained
transform is the identity (shift 0, scale 1). The authors' code used PyTorch's default
initialisation for the heads; pass ``identity_init=False`` to get that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_event_shape
from .conditioning import condition_windows, projection
from .errors import ConfigError
from .layout import cpu_channels_last
from .normalization import run_stack

__all__ = [
    "Conditioner",
    "ConvConditioner",
    "LinearConditioner",
    "MLPConditioner",
]

# Appendix B: 4 conv layers in the per-frame encoder and 4 in the window decoder.
ENCODER_LAYERS, DECODER_LAYERS = 4, 4
MLP_LAYERS = 2  # hidden layers of the MLP conditioner
PADDINGS = ("zeros", "replicate")  # padding_mode of the conv conditioner's convolutions


class Conditioner(nn.Module):
    r"""Base class: ``encode`` each frame once, ``decode`` a window of encoded frames.

    Arguments:
        event_shape: Shape of one frame, (C, H, W) or (D,).
        window: Number k of past frames that condition each step.
        extra: Raw parameters per element beyond the shift and the log-scale (0: none).
        checkpoint_activations: Recompute the hidden layers' activations in the backward pass
            instead of keeping them (:func:`~seqflows.normalization.run_stack`).
        condition_dim: A, the size of each step's conditions (0: unconditioned).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        window: int,
        extra: int = 0,
        checkpoint_activations: bool = False,
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.checkpoint_activations = bool(checkpoint_activations)
        if window < 1:
            raise ValueError(f"window must be a positive number of frames, got {window}")
        if extra < 0:
            raise ValueError(f"extra must be a non-negative number of parameters, got {extra}")
        if condition_dim < 0:
            raise ValueError(f"condition_dim must be at least 0, got {condition_dim}")
        self.event_shape = check_event_shape(event_shape)
        self.window = int(window)
        self.extra = int(extra)
        self.condition_dim = int(condition_dim)

    def encode(self, frames: Tensor) -> Tensor:
        r"""Per-frame features, with shape (N, *feature_shape), of frames (N, *event_shape)."""
        raise NotImplementedError

    def windows(self, features: Tensor, length: int) -> Tensor:
        r"""All ``length`` windows of k consecutive encoded frames, for the density direction.

        Arguments:
            features: Encoded frames, with shape (B, length + k - 1, *feature_shape).
            length: Number of windows.

        Returns:
            Windows (B, length, k, *feature_shape); window t holds frames t .. t + k - 1.
        """
        return torch.stack([features[:, j : j + length] for j in range(self.window)], dim=2)

    def decode(self, window: Tensor, conditions: Tensor | None = None) -> tuple[Tensor, ...]:
        r"""Shift and raw log-scale, each (N, *event_shape), of a window (N, k, *feature_shape),
        and with ``extra`` the extra parameters (N, *event_shape, extra).

        Slot 0 of the window holds the oldest frame x_{t-k}, slot k-1 the newest x_{t-1}.
        ``conditions`` (conditioned only): c_{t-k+1}, ..., c_t, with shape (N, k, A).
        """
        raise NotImplementedError

    def all_steps(self, history: Tensor, conditions: Tensor | None = None) -> tuple[Tensor, ...]:
        r"""Shift and raw log-scale (and the extra parameters) of every step of the density
        direction (Eq. 6), at once.

        Each conditioning frame is encoded once and all windows are decoded in one call.

        Arguments:
            history: Inputs (B, S + k, *event_shape): step s is conditioned on frames
                s .. s + k - 1 and transforms frame s + k (the newest input conditions nothing).
            conditions: Conditions aligned with ``history``, (B, S + k, A) (conditioned only):
                step s also sees those of frames s + 1 .. s + k.

        Returns:
            Shift and raw log-scale of the S steps, each with shape (B, S, *event_shape) (and
            the extra parameters, (B, S, *event_shape, extra)).
        """
        B, length = history.shape[:2]
        steps = length - self.window
        features = self.encode(history[:, :-1].flatten(0, 1))  # each frame once
        features = features.unflatten(0, (B, length - 1))  # (B, S + k - 1, *feature_shape)
        windows = self.windows(features, steps)  # (B, S, k, *feature_shape)
        if conditions is not None:
            conditions = condition_windows(conditions, self.window, steps).flatten(0, 1)
        outputs = self.decode(windows.flatten(0, 1), conditions)  # (B * S, *event_shape) each
        return tuple(output.unflatten(0, (B, steps)) for output in outputs)

    def forward(
        self, window_frames: Tensor, conditions: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        r"""Shift and raw log-scale (and the extra parameters) of a window of raw frames
        (N, k, *event_shape) and, conditioned, its conditions (N, k, A)."""
        N, k = window_frames.shape[:2]
        features = self.encode(window_frames.flatten(0, 1))  # (N * k, *feature_shape)
        return self.decode(features.unflatten(0, (N, k)), conditions)

    def _condition_offset(self, conditions: Tensor | None) -> Tensor | None:
        r"""The projection (N, outputs) of a window of conditions (N, k, A), or None."""
        layer = getattr(self, "condition_layer", None)
        if layer is None and conditions is None:
            return None
        if layer is None or conditions is None:
            raise ValueError(
                f"this conditioner has condition_dim={self.condition_dim} but conditions were "
                f"{'not ' if conditions is None else ''}given"
            )
        return layer(conditions.flatten(1))

    def _zero_heads(self, *heads: nn.Module) -> None:
        for head in heads:
            for parameter in head.parameters():
                nn.init.zeros_(parameter)


def _conv_block(
    in_channels: int, out_channels: int, normalization: str, padding: str
) -> list[nn.Module]:
    batch_norm = normalization == "batch"  # BatchNorm's own shift makes a conv bias redundant
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels, out_channels, 3, padding=1, bias=not batch_norm, padding_mode=padding
        )
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return layers


def _conv_stack(
    in_channels: int, hidden: int, layers: int, normalization: str, padding: str
) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for index in range(layers):
        blocks += _conv_block(
            in_channels if index == 0 else hidden, hidden, normalization, padding
        )
    return nn.Sequential(*blocks)


class ConvConditioner(Conditioner):
    r"""The convolutional conditioner of Appendix B (Fig. 5).

    Encoder, shared by the k frames of the window: ``encoder_layers`` conv 3x3 (C -> hidden, then
    hidden -> hidden), stride 1, padding 1, each followed by BatchNorm and ReLU. The k encoded
    frames are concatenated along channels (oldest first) and decoded by ``decoder_layers`` conv
    3x3 (k*hidden -> hidden, then hidden -> hidden) with BatchNorm and ReLU. Two separate conv 3x3
    heads (hidden -> C) give the shift and the raw log-scale. Full resolution throughout.

    With hidden=64, window=3, C=1 this has 334,530 parameters (337,990 for C=3). The authors'
    network had 512 more (335,042 and 338,502): a bias in every conv that BatchNorm follows, which
    BatchNorm's own shift makes redundant (its gradient is zero), so we leave it out. The paper's
    Table 2 says 343k / 363k.

    Arguments:
        event_shape: Frame shape (C, H, W).
        window: Number k of past frames.
        hidden: Channels of every hidden layer.
        encoder_layers: Conv layers of the per-frame encoder.
        decoder_layers: Conv layers of the window decoder.
        normalization: ``"batch"`` (BatchNorm after every hidden conv, as the paper) or
            ``"none"``.
        identity_init: Zero the heads so that the untrained transform is the identity.
        batch_norm: Training-mode BatchNorm statistics: ``"pooled"`` over all time steps, or
            ``"per_step"`` as the authors' step loop (see :mod:`seqflows.normalization`).
        padding: How every convolution pads the frame's border: ``"zeros"`` (the paper) or
            ``"replicate"`` (the outermost pixels repeated), PyTorch's ``padding_mode``.
        extra: Extra raw parameters per element, from a third conv 3x3 head (hidden -> C*extra).
        checkpoint_activations: Recompute the encoder's and the decoder's activations in the
            backward pass instead of keeping them (less memory, one more forward pass).
        condition_dim: A: a linear map of the window's conditions (k*A -> k*hidden) is added
            to the decoder's input at every pixel (0: unconditioned).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        window: int,
        hidden: int,
        *,
        normalization: str,
        identity_init: bool,
        batch_norm: str,
        padding: str = "zeros",
        encoder_layers: int = ENCODER_LAYERS,
        decoder_layers: int = DECODER_LAYERS,
        extra: int = 0,
        checkpoint_activations: bool = False,
        condition_dim: int = 0,
    ) -> None:
        super().__init__(event_shape, window, extra, checkpoint_activations, condition_dim)
        if len(self.event_shape) != 3:
            raise ConfigError(
                f"the 'conv' conditioner needs frames shaped (C, H, W), got {self.event_shape}"
            )
        if padding not in PADDINGS:
            raise ConfigError(f"padding must be one of {PADDINGS}, got {padding!r}")
        channels = self.event_shape[0]
        self.hidden = int(hidden)
        self.batch_norm = batch_norm
        self.padding = padding
        self.encoder = _conv_stack(channels, hidden, encoder_layers, normalization, padding)
        self.decoder = _conv_stack(window * hidden, hidden, decoder_layers, normalization, padding)
        self.shift_head = nn.Conv2d(hidden, channels, 3, padding=1, padding_mode=padding)
        self.log_scale_head = nn.Conv2d(hidden, channels, 3, padding=1, padding_mode=padding)
        heads = [self.shift_head, self.log_scale_head]
        if self.extra:
            self.extra_head = nn.Conv2d(
                hidden, channels * self.extra, 3, padding=1, padding_mode=padding
            )
            heads.append(self.extra_head)
        if identity_init:
            self._zero_heads(*heads)
        self.condition_layer = projection(window * self.condition_dim, window * self.hidden)

    def encode(self, frames: Tensor) -> Tensor:
        r"""Features (N, hidden, H, W) of frames (N, C, H, W)."""
        frames = cpu_channels_last(frames)
        return run_stack(self.encoder, frames, checkpoint=self.checkpoint_activations)

    def windows(self, features: Tensor, length: int) -> Tensor:
        r"""Windows (B, length, k, hidden, H, W) of features (B, length + k - 1, hidden, H, W).

        Channels-last features give windows laid out in memory as (B, length, H, W, k, hidden),
        so that :meth:`decode` sees the concatenated window as a channels-last view, with no
        layout conversion before the first decoder convolution.
        """
        if not _is_channels_last(features.flatten(0, 1)):
            return super().windows(features, length)
        frames = features.permute(0, 1, 3, 4, 2)  # (B, L, H, W, hidden): a contiguous view
        slots = torch.cat([frames[:, j : j + length] for j in range(self.window)], dim=-1)
        return slots.unflatten(-1, (self.window, self.hidden)).permute(0, 1, 4, 5, 2, 3)

    def decode(self, window: Tensor, conditions: Tensor | None = None) -> tuple[Tensor, ...]:
        r"""Shift and raw log-scale (N, C, H, W) (and the extra parameters (N, C, H, W,
        extra)) of encoded windows (N, k, hidden, H, W) (and their conditions (N, k, A))."""
        channels = _window_channels(window)  # (N, k * hidden, H, W), oldest frame first
        channels = self._conditioned(channels, conditions)
        hidden = run_stack(self.decoder, channels, checkpoint=self.checkpoint_activations)
        return self._heads(hidden)  # from (N, hidden, H, W)

    def _conditioned(self, channels: Tensor, conditions: Tensor | None) -> Tensor:
        r"""Decoder inputs (N, k * hidden, H, W) plus the conditions' projection, per pixel."""
        offset = self._condition_offset(conditions)  # (N, k * hidden)
        return channels if offset is None else channels + offset[:, :, None, None]

    def all_steps(self, history: Tensor, conditions: Tensor | None = None) -> tuple[Tensor, ...]:
        r"""Shift and raw log-scale of every step (B, S, C, H, W) (and the extra parameters,
        (B, S, C, H, W, extra)) from inputs (B, S + k, C, H, W).

        With ``batch_norm="per_step"`` in training mode, BatchNorm normalizes each step with the
        statistics of that step alone: the encoder sees the B * k frames of the step's windows
        (a frame is encoded once per window it sits in), the decoder the step's B windows.
        Otherwise each frame is encoded once and statistics are pooled over all steps.
        """
        if self.batch_norm == "pooled" or not self.training:
            return super().all_steps(history, conditions)
        B, length = history.shape[:2]
        k = self.window
        steps = length - k
        frames = torch.stack([history[:, j : j + steps] for j in range(k)], dim=2)
        frames = frames.transpose(0, 1).flatten(0, 2)  # (S * B * k, C, H, W), step-major
        checkpoint = self.checkpoint_activations
        features = run_stack(self.encoder, cpu_channels_last(frames), steps, checkpoint)
        window = features.unflatten(0, (steps * B, k))  # (S * B, k, hidden, H, W)
        if conditions is not None:  # (S * B, k, A), step-major as the windows
            conditions = condition_windows(conditions, k, steps).transpose(0, 1).flatten(0, 1)
        channels = self._conditioned(_window_channels(window), conditions)
        hidden = run_stack(self.decoder, channels, steps, checkpoint)
        outputs = self._heads(hidden)  # (S * B, C, H, W) each
        return tuple(output.unflatten(0, (steps, B)).transpose(0, 1) for output in outputs)

    def _heads(self, hidden: Tensor) -> tuple[Tensor, ...]:
        r"""Shift and raw log-scale (N, C, H, W) (and the extra parameters (N, C, H, W, extra))
        of decoded windows (N, hidden, H, W)."""
        # The heads run as one convolution (hidden -> 2C): the same filters and sums, but a
        # convolution with one or two output channels is slow on CPU, so this halves their cost.
        heads = [self.shift_head, self.log_scale_head]
        if self.extra:
            heads.append(self.extra_head)
        weight = torch.cat([head.weight for head in heads])
        bias = torch.cat([head.bias for head in heads])
        if self.padding == "zeros":
            both = F.conv2d(hidden, weight, bias, padding=1)
        else:
            both = F.conv2d(F.pad(hidden, (1, 1, 1, 1), mode=self.padding), weight, bias)
        channels = self.event_shape[0]
        if not self.extra:
            shift, log_scale = both.split(channels, dim=1)
            return shift, log_scale
        shift, log_scale, extra = both.split([channels, channels, channels * self.extra], dim=1)
        extra = extra.unflatten(1, (channels, self.extra)).movedim(2, -1)  # (N, C, H, W, P)
        return shift, log_scale, extra


def _is_channels_last(images: Tensor) -> bool:
    """Whether images (N, C, H, W) with C > 1 store the channels innermost."""
    return images.shape[1] > 1 and images.is_contiguous(memory_format=torch.channels_last)


def _window_channels(window: Tensor) -> Tensor:
    r"""A window (N, k, C, H, W) as channels (N, k * C, H, W), slot-major, as ``flatten(1, 2)``.

    On CPU, and for channels-last windows elsewhere, the result is channels-last: a view for a
    window from :meth:`ConvConditioner.windows`, one copy otherwise.
    """
    N, k, C, H, W = window.shape
    if window.device.type == "cpu" or (window.stride(2) == 1 and window.stride(-1) != 1):
        return window.permute(0, 3, 4, 1, 2).reshape(N, H, W, k * C).permute(0, 3, 1, 2)
    return window.flatten(1, 2)


class _VectorConditioner(Conditioner):
    """Vectors (D,): the encoder is the identity and the decoder sees the flattened window."""

    def __init__(
        self,
        event_shape: Sequence[int],
        window: int,
        extra: int = 0,
        checkpoint_activations: bool = False,
        condition_dim: int = 0,
    ) -> None:
        super().__init__(event_shape, window, extra, checkpoint_activations, condition_dim)
        if len(self.event_shape) != 1:
            raise ConfigError(
                f"the {type(self).__name__} needs vectors shaped (D,), got {self.event_shape}; "
                "use the 'conv' conditioner for frames (C, H, W)"
            )
        self.features = self.event_shape[0]

    def encode(self, frames: Tensor) -> Tensor:
        r"""Identity: the features of a vector (N, D) are the vector."""
        return frames

    def decode(self, window: Tensor, conditions: Tensor | None = None) -> tuple[Tensor, ...]:
        r"""Shift and raw log-scale (N, D) (and the extra parameters (N, D, extra)) of a window
        (N, k, D) (and its conditions (N, k, A))."""
        return self._heads(self._body(window.flatten(1), self._condition_offset(conditions)))

    def _body(self, flat_window: Tensor, offset: Tensor | None) -> Tensor:
        return flat_window

    def _make_heads(self, inputs: int, identity_init: bool) -> None:
        self.shift_head = nn.Linear(inputs, self.features)
        self.log_scale_head = nn.Linear(inputs, self.features)
        heads = [self.shift_head, self.log_scale_head]
        if self.extra:
            self.extra_head = nn.Linear(inputs, self.features * self.extra)
            heads.append(self.extra_head)
        if identity_init:
            self._zero_heads(*heads)

    def _heads(self, hidden: Tensor) -> tuple[Tensor, ...]:
        if not self.extra:
            return self.shift_head(hidden), self.log_scale_head(hidden)
        extra = self.extra_head(hidden).unflatten(-1, (self.features, self.extra))
        return self.shift_head(hidden), self.log_scale_head(hidden), extra


class MLPConditioner(_VectorConditioner):
    r"""An MLP on the flattened window (k*D -> hidden -> ... -> hidden), ReLU, linear heads.

    Arguments:
        event_shape: Vector shape (D,).
        window: Number k of past vectors.
        hidden: Units of every hidden layer.
        layers: Number of hidden layers.
        identity_init: Zero the heads so that the untrained transform is the identity.
        extra: Extra raw parameters per element, from a third linear head.
        checkpoint_activations: Recompute the hidden layers' activations in the backward pass.
        condition_dim: A: a linear map of the window's conditions (k*A -> hidden) is added to
            the first hidden layer before its ReLU (0: unconditioned).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        window: int,
        hidden: int,
        *,
        identity_init: bool,
        layers: int = MLP_LAYERS,
        extra: int = 0,
        checkpoint_activations: bool = False,
        condition_dim: int = 0,
    ) -> None:
        super().__init__(event_shape, window, extra, checkpoint_activations, condition_dim)
        blocks: list[nn.Module] = []
        for index in range(layers):
            blocks += [
                nn.Linear(window * self.features if index == 0 else hidden, hidden),
                nn.ReLU(),
            ]
        self.body = nn.Sequential(*blocks)
        self._make_heads(hidden, identity_init)
        self.condition_layer = projection(window * self.condition_dim, hidden)

    def _body(self, flat_window: Tensor, offset: Tensor | None) -> Tensor:
        checkpoint = self.checkpoint_activations
        if offset is None:
            return run_stack(self.body, flat_window, checkpoint=checkpoint)
        first = self.body[0](flat_window) + offset  # the conditions enter before the first ReLU
        return run_stack(self.body[1:], first, checkpoint=checkpoint)


class LinearConditioner(_VectorConditioner):
    r"""Shift and log-scale affine in the window: shift = A w + a, log_scale = B w + b.

    With w = (x_{t-k}, ..., x_{t-1}) flattened, this is exactly a Gaussian autoregressive model
    of order k (Eq. 2) when the log-scale weights are zero, which the motivating example
    (Sec. 3.1, Eq. 10-14) needs.

    Arguments:
        event_shape: Vector shape (D,).
        window: Number k of past vectors.
        identity_init: Zero the heads so that the untrained transform is the identity.
        extra: Extra raw parameters per element, also affine in the window.
        condition_dim: A: every output is also affine in the window's conditions (k*A)
            (0: unconditioned).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        window: int,
        *,
        identity_init: bool,
        extra: int = 0,
        condition_dim: int = 0,
    ) -> None:
        super().__init__(event_shape, window, extra, condition_dim=condition_dim)
        self._make_heads(window * self.features, identity_init)
        outputs = self.features * (2 + self.extra)  # shift, log-scale and the extra parameters
        self.condition_layer = projection(window * self.condition_dim, outputs)

    def decode(self, window: Tensor, conditions: Tensor | None = None) -> tuple[Tensor, ...]:
        r"""Shift and raw log-scale (N, D) (and the extra parameters (N, D, extra)) of a window
        (N, k, D), each affine in the window (and in its conditions (N, k, A))."""
        outputs = self._heads(window.flatten(1))
        offset = self._condition_offset(conditions)
        if offset is None:
            return outputs
        D = self.features
        shift, log_scale = outputs[0] + offset[:, :D], outputs[1] + offset[:, D : 2 * D]
        if not self.extra:
            return shift, log_scale
        extra = outputs[2] + offset[:, 2 * D :].unflatten(-1, (D, self.extra))
        return shift, log_scale, extra

r"""Autoregressive transforms across time: the affine one (Sec. 2.3 and 3.2) and a spline one.

One transform relates a sequence x_{1:T} to a sequence y_{1:T} of the same shape through a window
of k past inputs:

    generate  (Eq. 5):  x_t = shift(x_{t-k:t-1}) + scale(x_{t-k:t-1}) * y_t        sequential
    normalize (Eq. 6):  y_t = (x_t - shift(x_{t-k:t-1})) / scale(x_{t-k:t-1})      time-parallel

    log |det dx/dy| = sum_t sum_i log scale_{t,i}                                   (Eq. 8)
    log |det dy/dx| = - sum_t sum_i log scale_{t,i}                          (what we return)

The paper calls Eq. 5 the forward transform; this library names the two directions by what they
do: ``normalize`` (data to noise, used for the density and training) and ``generate`` (noise to
data, used for sampling and prediction). With x known, every shift and scale is known, so
``normalize`` computes all time steps at once: each frame is encoded once and all windows are
decoded in one batched call. ``generate`` must step through time; it keeps a cache of the k
encoded past frames, so each step encodes one frame and decodes one window whatever T is.

Scale. The raw conditioner output is a log-scale; it is bounded to [log min_scale, log max_scale]
before use, either by a hard clamp (``scale_map="clamp"``: scale = exp(log_scale) clamped to
[min_scale, max_scale], as the paper's code did above) or by a smooth tanh soft-clamp
(``scale_map="soft"``: the log-scale is mapped by log_max * tanh(s / log_max) for s >= 0 and by
|log_min| * tanh(s / |log_min|) for s < 0, which has slope 1 at s = 0 and never stops the
gradient). max_scale = 10 as in the reference code. The floor min_scale = 1e-4, which the
reference code did not have, is far below the 1/256 noise the paper adds to 8-bit frames, so it
never binds on such data, while it keeps y finite when the shift predicts a frame exactly.

Context. With ``context="burn_in"`` (the paper) the first k inputs only condition: the transform
outputs y for frames k..T-1 (T - k frames). With ``context="padded"`` every window starts with k
learned initial frames, so every frame gets a y (a density of the whole sequence).

Spline (beyond the paper). :class:`SplineAutoregressiveTransform` puts an element-wise monotonic
rational-quadratic spline g (:mod:`seqflows.splines`, identity outside [-B, B]) after the
standardisation, its 3K - 1 parameters per element produced by the same conditioner:

    normalize:  r_t = (x_t - shift) / scale,  y_t = g(r_t)
    generate:   x_t = shift + scale * g^{-1}(y_t)
    log |det dy_t/dx_t| = sum_i [log g'(r_{t,i}) - log scale_{t,i}]

with shift, scale and g all functions of x_{t-k:t-1}. With the spline's parameters at zero it
is the affine transform (exactly, up to rounding), so ``identity_init`` makes it the identity.

Shapes: sequences are (B, T, *event_shape), with event_shape (C, H, W) for frames and (D,) for
vectors.

Conditions. With ``condition_dim=A`` > 0 every method that takes a sequence also takes conditions
c (B, T, A) aligned with it: shift and scale of step t then depend on x_{t-k:t-1} and on
c_{t-k+1:t} (:mod:`seqflows.conditioning`); the padded mode's initial frames have zero
conditions. ``generate`` takes the conditions of the context and of the frames to generate.

BatchNorm. The conv conditioner has BatchNorm layers (as in the paper). In training mode they
use the statistics of the current batch. With ``batch_norm="pooled"`` that is all B * (T - 1)
conditioning frames for the encoder and all B * (T - k) windows for the decoder in ``normalize``,
so a frame's y depends on the other frames of the batch, future ones included; with
``batch_norm="per_step"`` each time step has its own statistics (the authors' step loop), and
y_t depends on no later frame (see :mod:`seqflows.normalization`). Either way ``generate`` is not
the exact inverse of a training-mode ``normalize``. In evaluation mode (``model.eval()``) they use
running statistics: the transform is an exact, causal bijection, and ``generate`` inverts
``normalize``. Train with ``train()``; evaluate, sample and invert with ``eval()``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .checks import check_event_shape, check_sequence
from .conditioners import Conditioner, ConvConditioner, LinearConditioner, MLPConditioner
from .conditioning import check_conditions
from .config import check_at_least, check_choices
from .errors import ConfigError, NonFiniteError
from .splines import MAX_BOUND, MIN_BIN, RationalQuadraticSpline, spline_parameters

__all__ = [
    "TRANSFORM_CONFIGS",
    "TRANSFORM_KINDS",
    "AffineAutoregressiveTransform",
    "AffineConfig",
    "ConditionerConfig",
    "SplineConfig",
    "StackConfig",
    "SplineAutoregressiveTransform",
    "TransformConfig",
    "TransformOutput",
    "bound_log_scale",
    "build_conditioner",
    "build_transform",
    "check_transforms",
    "first_spline",
    "transform_settings",
]

CONTEXTS = ("burn_in", "padded")
SCALE_MAPS = ("clamp", "soft")
TRANSFORM_KINDS = ("affine", "spline")  # what a stack's ``transforms`` list may hold


def bound_log_scale(raw: Tensor, min_scale: float, max_scale: float, scale_map: str) -> Tensor:
    r"""Bounds a raw log-scale to [log min_scale, log max_scale].

    ``"clamp"``: log(clamp(exp(raw), min_scale, max_scale)), computed as a clamp of ``raw``.
    ``"soft"``: a smooth tanh soft-clamp with slope 1 at 0 (needs min_scale < 1 < max_scale).
    """
    log_min, log_max = math.log(min_scale), math.log(max_scale)
    if scale_map == "clamp":
        return raw.clamp(log_min, log_max)
    if scale_map == "soft":
        upper = log_max * torch.tanh(raw / log_max)
        lower = -log_min * torch.tanh(raw / -log_min)
        return torch.where(raw >= 0, upper, lower)
    raise ValueError(f"scale_map must be one of {SCALE_MAPS}, got {scale_map!r}")


def check_spline(config: Any) -> None:
    """Raises ConfigError unless ``config.bins`` and ``config.bound`` describe a spline that
    float32 can hold: 2 <= K < 1 / MIN_BIN bins on [-B, B] with 0 < B <= MAX_BOUND."""
    check_at_least(config, 2, "bins")
    if config.bins * MIN_BIN >= 1:
        raise ConfigError(f"bins must be below {round(1 / MIN_BIN)}, got {config.bins}")
    if not config.bound > 0:  # NaN too
        raise ConfigError(f"bound must be positive, got {config.bound}")
    if config.bound > MAX_BOUND:  # infinity too
        raise ConfigError(
            f"bound must be at most {MAX_BOUND:g} (the spline's knots span 2 * bound, in "
            f"float32), got {config.bound}"
        )


@dataclass(frozen=True)
class ConditionerConfig:
    r"""Settings of the conditioner of each transform of a stack: the network that maps the
    past k inputs to the shift and the log-scale (Eq. 5-6, Appendix B).

    Attributes:
        kind: ``"auto"`` (``"conv"`` for frames (C, H, W), ``"mlp"`` for vectors (D,)),
            ``"conv"`` (Appendix B), ``"mlp"`` or ``"linear"`` (:mod:`seqflows.conditioners`).
        window: k, the past inputs that condition each step (3 in the paper).
        hidden: Hidden channels (conv) or units (mlp) (64 in the paper).
        normalization: ``"batch"`` (BatchNorm in the conv conditioner, the paper) or ``"none"``.
        batch_norm: Training-mode BatchNorm statistics: ``"pooled"`` over all time steps, or
            ``"per_step"`` (the authors' step loop; :mod:`seqflows.normalization`).
        identity_init: Zero heads, so that the untrained transform is the identity (the
            authors' code used PyTorch's default initialisation).
        padding: How the conv conditioner pads the frame's border: ``"zeros"`` (the paper) or
            ``"replicate"`` (the outermost pixels repeated).
    """

    kind: Literal["auto", "conv", "mlp", "linear"] = "auto"
    window: int = 3
    hidden: int = 64
    normalization: Literal["batch", "none"] = "batch"
    batch_norm: Literal["pooled", "per_step"] = "pooled"
    identity_init: bool = True
    padding: Literal["zeros", "replicate"] = "zeros"

    def __post_init__(self) -> None:
        check_choices(self)
        check_at_least(self, 1, "window", "hidden")

    def kind_for(self, event_shape: Sequence[int]) -> str:
        """The conditioner for frames of ``event_shape``: ``kind``, or the automatic one."""
        return conditioner_kind(self.kind, event_shape)


@dataclass(frozen=True)
class AffineConfig:
    r"""One affine transform across time (Eq. 5-6): its scale bounds.

    Attributes:
        type: ``"affine"``, the transform's kind.
        min_scale: Floor of the scale (the paper's code had none).
        max_scale: Ceiling of the scale (10 in the paper's code).
        scale_map: ``"clamp"`` (the paper's hard clamp) or ``"soft"`` (smooth tanh soft-clamp).
    """

    type: Literal["affine"] = "affine"
    min_scale: float = 1e-4
    max_scale: float = 10.0
    scale_map: Literal["clamp", "soft"] = "clamp"

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0 < self.min_scale < self.max_scale:
            raise ConfigError(
                f"min_scale and max_scale need 0 < min_scale < max_scale, got {self.min_scale} "
                f"and {self.max_scale}"
            )
        if self.scale_map == "soft" and not self.min_scale < 1 < self.max_scale:
            raise ConfigError("scale_map 'soft' needs min_scale < 1 < max_scale")


@dataclass(frozen=True)
class SplineConfig(AffineConfig):
    r"""One spline transform across time (beyond the paper,
    :class:`SplineAutoregressiveTransform`): the affine settings, and

    Attributes:
        type: ``"spline"``, the transform's kind.
        bins: K, the bins of the spline.
        bound: B: the spline acts on the standardised input in [-B, B], the identity outside.
    """

    type: Literal["spline"] = "spline"  # type: ignore[assignment]
    bins: int = 8
    bound: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_spline(self)


TRANSFORM_CONFIGS: dict[str, type[AffineConfig]] = {"affine": AffineConfig, "spline": SplineConfig}


def first_spline(transforms: Sequence[AffineConfig]) -> SplineConfig:
    """The first spline transform's settings in ``transforms`` (outermost first), else the
    defaults: whose bins and bound the within-step bases' splines take."""
    return next((item for item in transforms if isinstance(item, SplineConfig)), SplineConfig())


@dataclass(frozen=True)
class StackConfig:
    r"""A stack of transforms across time (Eq. 9) and their conditioner: an SLVM's flow
    likelihood or its flow prior.

    Attributes:
        transforms: Each transform's settings, outermost first (:class:`AffineConfig` or
            :class:`SplineConfig`); at least one.
        conditioner: The settings of every transform's conditioner.
    """

    transforms: list[AffineConfig | SplineConfig] = field(default_factory=lambda: [AffineConfig()])
    conditioner: ConditionerConfig = field(default_factory=ConditionerConfig)

    def __post_init__(self) -> None:
        check_transforms(self.transforms)

    @property
    def num_transforms(self) -> int:
        """M, the transforms of the stack."""
        return len(self.transforms)

    @property
    def kinds(self) -> list[str]:
        """The kind of each transform, outermost first."""
        return [transform.type for transform in self.transforms]


def check_transforms(transforms: Sequence[AffineConfig], name: str = "transforms") -> None:
    """Raises ConfigError unless ``transforms`` holds at least one transform configuration."""
    if not transforms:
        raise ConfigError(f"{name} must hold at least one transform")
    for transform in transforms:
        if not isinstance(transform, AffineConfig):
            raise ConfigError(f"{name} must hold transform settings, got {transform!r}")


def transform_settings(
    transform: AffineConfig,
    conditioner: ConditionerConfig,
    condition_dim: int = 0,
    checkpoint_activations: bool = False,
) -> TransformConfig:
    r"""The settings one transform is built from (:func:`build_transform`): its own and its
    conditioner's, with the model's conditions and activation checkpointing."""
    spline = (
        {"bins": transform.bins, "bound": transform.bound}
        if isinstance(transform, SplineConfig)
        else {}
    )
    return TransformConfig(
        window=conditioner.window,
        conditioner=conditioner.kind,
        hidden=conditioner.hidden,
        min_scale=transform.min_scale,
        max_scale=transform.max_scale,
        scale_map=transform.scale_map,
        normalization=conditioner.normalization,
        batch_norm=conditioner.batch_norm,
        identity_init=conditioner.identity_init,
        padding=conditioner.padding,
        checkpoint_activations=checkpoint_activations,
        condition_dim=condition_dim,
        **spline,
    )


@dataclass(frozen=True)
class TransformConfig:
    r"""The resolved settings that one transform and its conditioner are built from (Eq. 5-6,
    App. B): :func:`transform_settings` makes them from a model's nested configuration.

    Attributes:
        window: k, the past inputs that condition each step (3 in the paper).
        conditioner: ``"auto"`` (``"conv"`` for frames (C, H, W), ``"mlp"`` for vectors (D,)),
            ``"conv"`` (Appendix B), ``"mlp"`` or ``"linear"`` (:mod:`seqflows.conditioners`).
        hidden: Hidden channels (conv) or units (mlp) of the conditioner (64 in the paper).
        min_scale: Floor of the scale (the paper's code had none).
        max_scale: Ceiling of the scale (10 in the paper's code).
        scale_map: ``"clamp"`` (the paper's hard clamp) or ``"soft"`` (smooth tanh soft-clamp).
        normalization: ``"batch"`` (BatchNorm in the conv conditioner, the paper) or ``"none"``.
        batch_norm: Training-mode BatchNorm statistics: ``"pooled"`` over all time steps, or
            ``"per_step"`` (the authors' step loop; :mod:`seqflows.normalization`).
        identity_init: Zero heads, so that the untrained transform is the identity (the
            authors' code used PyTorch's default initialisation).
        padding: How the conv conditioner's convolutions pad the frame's border: ``"zeros"``
            (the paper) or ``"replicate"`` (the outermost pixels repeated).
        bins: K, the bins of a spline transform's spline (spline transforms only).
        bound: B: a spline transform's spline acts on the standardised input in [-B, B] and is
            the identity outside (spline transforms only).
        checkpoint_activations: Recompute the activations of the networks (the conditioners;
            an SLVM's encoder and decoder too) in the backward pass instead of keeping them:
            less memory for about one more forward pass of those networks; the same results
            (:mod:`seqflows.normalization`).
        condition_dim: A, the size of the per-step conditions (actions, covariates) that the
            model takes beside the frames (:mod:`seqflows.conditioning`); 0: unconditioned.
    """

    window: int = 3
    conditioner: Literal["auto", "conv", "mlp", "linear"] = "auto"
    hidden: int = 64
    min_scale: float = 1e-4
    max_scale: float = 10.0
    scale_map: Literal["clamp", "soft"] = "clamp"
    normalization: Literal["batch", "none"] = "batch"
    batch_norm: Literal["pooled", "per_step"] = "pooled"
    identity_init: bool = True
    padding: Literal["zeros", "replicate"] = "zeros"
    bins: int = 8
    bound: float = 5.0
    checkpoint_activations: bool = False
    condition_dim: int = 0

    def __post_init__(self) -> None:
        check_choices(self)
        check_at_least(self, 0, "condition_dim")
        check_at_least(self, 1, "window", "hidden")
        check_spline(self)
        if not 0 < self.min_scale < self.max_scale:
            raise ConfigError(
                f"min_scale and max_scale need 0 < min_scale < max_scale, got {self.min_scale} "
                f"and {self.max_scale}"
            )
        if self.scale_map == "soft" and not self.min_scale < 1 < self.max_scale:
            raise ConfigError("scale_map 'soft' needs min_scale < 1 < max_scale")

    def conditioner_kind(self, event_shape: Sequence[int]) -> str:
        """The conditioner for frames of ``event_shape``: ``conditioner``, or the automatic one."""
        return conditioner_kind(self.conditioner, event_shape)


def conditioner_kind(kind: str, event_shape: Sequence[int]) -> str:
    """The conditioner ``kind`` for frames of ``event_shape``: ``"auto"`` is ``"conv"`` for frames
    (C, H, W) and ``"mlp"`` for vectors (D,)."""
    if kind != "auto":
        return kind
    return "conv" if len(event_shape) == 3 else "mlp"


def build_conditioner(
    event_shape: Sequence[int], config: TransformConfig, extra: int = 0
) -> Conditioner:
    r"""The conditioner that ``config`` describes, for frames of ``event_shape``, with ``extra``
    raw parameters per element beyond the shift and the log-scale."""
    kind = config.conditioner_kind(event_shape)
    if kind == "conv":
        return ConvConditioner(
            event_shape,
            config.window,
            config.hidden,
            normalization=config.normalization,
            identity_init=config.identity_init,
            batch_norm=config.batch_norm,
            padding=config.padding,
            extra=extra,
            checkpoint_activations=config.checkpoint_activations,
            condition_dim=config.condition_dim,
        )
    if kind == "mlp":
        return MLPConditioner(
            event_shape,
            config.window,
            config.hidden,
            identity_init=config.identity_init,
            extra=extra,
            checkpoint_activations=config.checkpoint_activations,
            condition_dim=config.condition_dim,
        )
    return LinearConditioner(
        event_shape,
        config.window,
        identity_init=config.identity_init,
        extra=extra,
        condition_dim=config.condition_dim,
    )


@dataclass
class TransformOutput:
    r"""What one transform's normalizing direction (Eq. 6) computes.

    Attributes:
        y: Normalized sequence, with shape (B, T - burn_in, *event_shape).
        shift: shift(x_{t-k:t-1}) of every output frame, same shape as ``y``.
        log_scale: Bounded log scale(x_{t-k:t-1}), same shape as ``y``.
        log_derivative: log g'(r_t) of a spline transform's spline at the standardised input,
            same shape as ``y``; None for the affine transform.
    """

    y: Tensor
    shift: Tensor
    log_scale: Tensor
    log_derivative: Tensor | None = None

    @property
    def log_abs_det(self) -> Tensor:
        r"""log |det dy_t/dx_t| = sum_i [log g'(r_{t,i}) - log scale_{t,i}] per frame (no g'
        for the affine transform), with shape (B, T - burn_in)."""
        log_abs_det = -self.log_scale.flatten(2).sum(-1)
        if self.log_derivative is not None:
            log_abs_det = log_abs_det + self.log_derivative.flatten(2).sum(-1)
        return log_abs_det


class AffineAutoregressiveTransform(nn.Module):
    r"""An affine autoregressive transform across time with a window of k past inputs (Eq. 5, 6).

    Arguments:
        event_shape: Shape of one frame: (C, H, W) or (D,).
        config: The transform's settings (:class:`TransformConfig`); keyword ``settings``
            override its fields (``window=2``, ``hidden=4``, ...).
        context: ``"burn_in"`` (first k inputs only condition) or ``"padded"`` (k learned
            initial frames start every sequence, every frame is transformed).

    Example:
        >>> transform = AffineAutoregressiveTransform((1, 8, 8), window=2, hidden=4).eval()
        >>> x = torch.randn(2, 5, 1, 8, 8)
        >>> out = transform.normalize(x)
        >>> out.y.shape
        torch.Size([2, 3, 1, 8, 8])
        >>> torch.allclose(transform.generate(out.y, context=x[:, :2]), x, atol=1e-5)
        True
    """

    initial_frames: Tensor | None

    def __init__(
        self,
        event_shape: Sequence[int],
        config: TransformConfig | None = None,
        context: str = "burn_in",
        **settings: Any,
    ) -> None:
        super().__init__()
        if context not in CONTEXTS:
            raise ConfigError(f"context must be one of {CONTEXTS}, got {context!r}")
        config = replace(config or TransformConfig(), **settings)
        self.config = config
        self.event_shape = check_event_shape(event_shape)
        self.conditioner = build_conditioner(self.event_shape, config, self._extra_parameters())
        self.context = context
        if context == "padded":
            self.initial_frames = nn.Parameter(torch.zeros(self.window, *self.event_shape))
        else:
            self.register_parameter("initial_frames", None)

    kind = "affine"  # the name of this transform in a stack's ``transforms`` list

    def _extra_parameters(self) -> int:
        """Raw parameters per element that the conditioner gives beyond shift and log-scale."""
        return 0

    @property
    def window(self) -> int:
        """Number k of past inputs that condition each step."""
        return self.config.window

    @property
    def min_scale(self) -> float:
        """Floor of the scale."""
        return self.config.min_scale

    @property
    def max_scale(self) -> float:
        """Ceiling of the scale."""
        return self.config.max_scale

    @property
    def burn_in(self) -> int:
        """Number of leading inputs that only condition (k for burn_in, 0 for padded)."""
        return self.window if self.context == "burn_in" else 0

    def extra_repr(self) -> str:
        return (
            f"event_shape={self.event_shape}, window={self.window}, context={self.context!r}, "
            f"scale=[{self.min_scale:g}, {self.max_scale:g}] ({self.config.scale_map})"
        )

    def bound_log_scale(self, raw: Tensor) -> Tensor:
        """The raw conditioner log-scale bounded to [log min_scale, log max_scale]."""
        return bound_log_scale(raw, self.min_scale, self.max_scale, self.config.scale_map)

    def forward(self, x: Tensor) -> TransformOutput:
        """Same as :meth:`normalize`."""
        return self.normalize(x)

    def normalize(self, x: Tensor, conditions: Tensor | None = None) -> TransformOutput:
        r"""Eq. 6 (Eq. 15 inside a stack) for all time steps at once.

        Arguments:
            x: Input sequence, with shape (B, T, *event_shape).
            conditions: Its conditions (B, T, A), for a conditioned transform only.

        Returns:
            y, shift and log-scale of the frames x_{burn_in:T}, each (B, T - burn_in,
            *event_shape); ``.log_abs_det`` is log |det dy_t/dx_t| per frame.
        """
        self._check_sequence(x, "x")
        T = x.shape[1]
        scored = T - self.burn_in
        if scored < 1:
            raise ValueError(
                f"a sequence of {T} frames has no frame to transform: this transform needs "
                f"more than {self.burn_in} frames ({self.burn_in} are context only)"
            )
        history = self._with_initial_frames(x)  # (B, scored + k, *event_shape)
        conditions = self._history_conditions(conditions, *x.shape[:2])
        shift, raw_log_scale = self.conditioner.all_steps(history, conditions)  # (B, scored, ...)
        dtype = torch.promote_types(x.dtype, torch.float32)  # affine maths in fp32 under autocast
        shift = shift.to(dtype)
        log_scale = self.bound_log_scale(raw_log_scale.to(dtype))
        y = (x[:, self.burn_in :].to(dtype) - shift) * torch.exp(-log_scale)
        return TransformOutput(y=y, shift=shift, log_scale=log_scale)

    def generate(
        self, y: Tensor, context: Tensor | None = None, conditions: Tensor | None = None
    ) -> Tensor:
        r"""Eq. 5, one step at a time: the inverse of :meth:`normalize`.

        Arguments:
            y: Normalized frames to turn into data, with shape (B, T', *event_shape).
            context: Inputs that precede them, with shape (B, c, *event_shape): at least k
                frames for ``burn_in``; any number (or None) for ``padded``.
            conditions: The conditions of the context and of the frames to generate,
                (B, c + T', A), for a conditioned transform only.

        Returns:
            The context followed by the generated frames, with shape (B, c + T', *event_shape).
        """
        self._check_sequence(y, "y")
        context = self._context_or_empty(context, y)
        _warn_if_batch_statistics(self)
        generated = self.generate_frames(y, context, conditions)
        return torch.cat([context.to(y.dtype), generated], dim=1)

    def generate_frames(
        self, y: Tensor, context: Tensor, conditions: Tensor | None = None
    ) -> Tensor:
        r"""The frames that :meth:`generate` appends to ``context``, (B, T', *event_shape)."""
        window = self.start_window(context)
        B, length = context.shape[0], context.shape[1] + y.shape[1]
        conditions = self._history_conditions(conditions, B, length)  # aligned with the history
        newest = context.shape[1] + (self.window if self.initial_frames is not None else 0) - 1
        frames: list[Tensor] = []
        for t in range(y.shape[1]):
            step = None
            if conditions is not None:  # c_{t-k+1} .. c_t of the frame being generated
                step = conditions[:, newest + t + 2 - self.window : newest + t + 2]
            frame = self.generate_frame(window, y[:, t], step)
            frames.append(frame)
            if t + 1 < y.shape[1]:
                window = self.advance(window, frame)
        x = torch.stack(frames, dim=1)
        if x.device.type == "meta":  # shapes only: no values to check
            return x
        finite = torch.isfinite(x.flatten(2)).all(-1).all(0)  # (T',)
        if not bool(finite.all()):
            step = int((~finite).nonzero()[0])
            raise NonFiniteError(
                f"generation produced a non-finite value at step {step} of {y.shape[1]} "
                f"(scale in [{self.min_scale:g}, {self.max_scale:g}]); check the noise and context"
            )
        return x

    def start_window(self, history: Tensor) -> Tensor:
        r"""Encoded window of the last k inputs of ``history`` (B, c, *event_shape).

        Returns:
            Features of the window, with shape (B, k, *feature_shape), oldest first.
        """
        history = self._with_initial_frames(history)
        B, available = history.shape[:2]
        if available < self.window:
            raise ValueError(
                f"generation needs at least {self.window} context frames for a window of "
                f"{self.window}, got {available}"
            )
        recent = history[:, available - self.window :]
        return self.conditioner.encode(recent.flatten(0, 1)).unflatten(0, (B, self.window))

    def predict(self, window: Tensor, conditions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Shift and bounded log-scale (B, *event_shape) of the next frame from a window (and,
        conditioned, the window's conditions c_{t-k+1:t}, (B, k, A))."""
        shift, raw_log_scale = self.conditioner.decode(window, conditions)[:2]
        dtype = torch.promote_types(shift.dtype, torch.float32)
        return shift.to(dtype), self.bound_log_scale(raw_log_scale.to(dtype))

    def generate_frame(
        self, window: Tensor, y: Tensor, conditions: Tensor | None = None
    ) -> Tensor:
        r"""Eq. 5 for one step: the frame x_t (B, *event_shape) of noise y_t after a window
        (and its conditions (B, k, A))."""
        shift, log_scale = self.predict(window, conditions)
        return shift + torch.exp(log_scale) * y.to(shift.dtype)

    def normalize_frame(
        self, window: Tensor, x: Tensor, conditions: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""Eq. 6 for one step: y_t (B, *event_shape) of the frame x_t after a window (and its
        conditions (B, k, A)), and log |det dy_t/dx_t| (B,)."""
        shift, log_scale = self.predict(window, conditions)
        y = (x.to(shift.dtype) - shift) * torch.exp(-log_scale)
        return y, -log_scale.flatten(1).sum(-1)

    def advance(self, window: Tensor, frame: Tensor) -> Tensor:
        r"""Drops the oldest frame of the window and appends ``frame`` (B, *event_shape)."""
        features = self.conditioner.encode(frame)  # one frame encoded per step
        return torch.cat([window[:, 1:], features.unsqueeze(1).to(window.dtype)], dim=1)

    def _history_conditions(
        self, conditions: Tensor | None, batch: int, length: int
    ) -> Tensor | None:
        r"""Conditions (B, T, A) of B inputs of T frames (checked), aligned with their history:
        after zero conditions for the initial frames in ``padded`` mode."""
        check_conditions(conditions, self.config.condition_dim, batch, length)
        if conditions is None or self.initial_frames is None:
            return conditions
        initial = conditions.new_zeros(batch, self.window, conditions.shape[-1])
        return torch.cat([initial, conditions], dim=1)

    def _with_initial_frames(self, x: Tensor) -> Tensor:
        if self.initial_frames is None:
            return x
        initial = self.initial_frames.to(x.dtype).expand(x.shape[0], *self.initial_frames.shape)
        return torch.cat([initial, x], dim=1)

    def _context_or_empty(self, context: Tensor | None, y: Tensor) -> Tensor:
        if context is None:
            if self.burn_in:
                raise ValueError(
                    f"generation with context='burn_in' needs at least {self.burn_in} context "
                    "frames; pass context=... or build the model with context='padded'"
                )
            return y.new_zeros(y.shape[0], 0, *self.event_shape)
        self._check_sequence(context, "context")
        if context.shape[0] != y.shape[0]:
            raise ValueError(f"context has {context.shape[0]} sequences but y has {y.shape[0]}")
        if context.shape[1] < self.burn_in:
            raise ValueError(
                f"context has {context.shape[1]} frames; this transform needs at least "
                f"{self.burn_in}"
            )
        return context

    def _check_sequence(self, x: Tensor, name: str) -> None:
        check_sequence(x, self.event_shape, name)


class SplineAutoregressiveTransform(AffineAutoregressiveTransform):
    r"""A monotonic rational-quadratic spline transform across time (beyond the paper).

    The affine transform (Eq. 5-6) followed, in the density direction, by an element-wise
    monotonic rational-quadratic spline g of the standardised input (Durkan et al. 2019, Eq.
    4-6; :mod:`seqflows.splines`), whose K bin widths, K bin heights and K - 1 inner knot
    derivatives per element come from the same conditioner as the shift and the scale:

        normalize:  y_t = g((x_t - shift) / scale)
        generate:   x_t = shift + scale * g^{-1}(y_t)

    g is the identity outside [-B, B] (linear tails of slope 1), so that the tails of the
    standardised input stay those of the affine transform. The conditioner's output per element
    is 3K + 1 numbers: shift, raw log-scale, then the spline's 3K - 1. All zero (identity_init)
    is the identity. Burn-in, context, caching and scored frames are those of the affine
    transform.

    Arguments: as :class:`AffineAutoregressiveTransform`; ``config.bins`` (K) and
    ``config.bound`` (B) set the spline.

    Example:
        >>> transform = SplineAutoregressiveTransform((3,), window=2, bins=4).eval()
        >>> x = torch.randn(2, 5, 3)
        >>> out = transform.normalize(x)
        >>> torch.allclose(out.y, x[:, 2:], atol=1e-6)  # untrained: the identity
        True
        >>> torch.allclose(transform.generate(out.y, context=x[:, :2]), x, atol=1e-5)
        True
    """

    kind = "spline"

    def _extra_parameters(self) -> int:
        return spline_parameters(self.config.bins)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bins={self.config.bins}, bound={self.config.bound:g}"

    def spline(self, raw: Tensor) -> RationalQuadraticSpline:
        r"""The spline of raw conditioner outputs (..., 3K - 1)."""
        return RationalQuadraticSpline.from_raw(raw, self.config.bins, self.config.bound)

    def normalize(self, x: Tensor, conditions: Tensor | None = None) -> TransformOutput:
        r"""y_t = g((x_t - shift) / scale) for all time steps at once.

        Arguments:
            x: Input sequence, with shape (B, T, *event_shape).
            conditions: Its conditions (B, T, A), for a conditioned transform only.

        Returns:
            y, shift, log-scale and log g' of the frames x_{burn_in:T}, each (B, T - burn_in,
            *event_shape); ``.log_abs_det`` is log |det dy_t/dx_t| per frame.
        """
        self._check_sequence(x, "x")
        T = x.shape[1]
        if T <= self.burn_in:
            return super().normalize(x, conditions)  # which explains the error
        history = self._with_initial_frames(x)
        conditions = self._history_conditions(conditions, *x.shape[:2])
        shift, raw_log_scale, raw_spline = self.conditioner.all_steps(history, conditions)
        dtype = torch.promote_types(x.dtype, torch.float32)  # spline maths in fp32 under autocast
        shift = shift.to(dtype)
        log_scale = self.bound_log_scale(raw_log_scale.to(dtype))
        standardised = (x[:, self.burn_in :].to(dtype) - shift) * torch.exp(-log_scale)
        y, log_derivative = self.spline(raw_spline.to(dtype)).forward(standardised)
        return TransformOutput(
            y=y, shift=shift, log_scale=log_scale, log_derivative=log_derivative
        )

    def predict_spline(
        self, window: Tensor, conditions: Tensor | None = None
    ) -> tuple[Tensor, Tensor, RationalQuadraticSpline]:
        r"""Shift, bounded log-scale (B, *event_shape) and spline of the next frame (from a
        window and, conditioned, its conditions (B, k, A))."""
        shift, raw_log_scale, raw_spline = self.conditioner.decode(window, conditions)
        dtype = torch.promote_types(shift.dtype, torch.float32)
        log_scale = self.bound_log_scale(raw_log_scale.to(dtype))
        return shift.to(dtype), log_scale, self.spline(raw_spline.to(dtype))

    def generate_frame(
        self, window: Tensor, y: Tensor, conditions: Tensor | None = None
    ) -> Tensor:
        r"""x_t = shift + scale * g^{-1}(y_t) for one step, (B, *event_shape)."""
        shift, log_scale, spline = self.predict_spline(window, conditions)
        return shift + torch.exp(log_scale) * spline.inverse(y.to(shift.dtype))

    def normalize_frame(
        self, window: Tensor, x: Tensor, conditions: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""y_t = g((x_t - shift) / scale) (B, *event_shape) for one step, and log |det| (B,)."""
        shift, log_scale, spline = self.predict_spline(window, conditions)
        y, log_derivative = spline.forward((x.to(shift.dtype) - shift) * torch.exp(-log_scale))
        return y, (log_derivative - log_scale).flatten(1).sum(-1)


def build_transform(
    kind: str, event_shape: Sequence[int], config: TransformConfig, context: str = "burn_in"
) -> AffineAutoregressiveTransform:
    r"""The transform of ``kind`` (``"affine"`` or ``"spline"``) that ``config`` describes."""
    classes = {"affine": AffineAutoregressiveTransform, "spline": SplineAutoregressiveTransform}
    if kind not in classes:
        raise ConfigError(f"a transform must be one of {TRANSFORM_KINDS}, got {kind!r}")
    return classes[kind](event_shape, config, context)


def _warn_if_batch_statistics(module: nn.Module) -> None:
    if module.training and any(isinstance(m, _BatchNorm) for m in module.modules()):
        warnings.warn(
            "generating in training mode: BatchNorm uses per-step batch statistics, so the "
            "result is not the inverse of normalize(); call .eval() first",
            stacklevel=3,
        )

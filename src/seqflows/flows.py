r"""Flow-only sequence models: M stacked affine autoregressive transforms on a base (Eq. 9).

With M transforms T_0 (outermost) .. T_{M-1} and a base p(y),

    x = T_0(T_1(... T_{M-1}(y)))                                            generate (Eq. 5)
    u^0 = x,  u^{m+1}_t = (u^m_t - shift_m(u^m_{t-k:t-1})) / scale_m(...)   normalize (Eq. 15)
    log p(x) = log p(y = u^M) + sum_m log |det du^{m+1}/du^m|               (Eq. 7, 9)

The outermost transform conditions on past x, the next one on past u^1 = T_0^{-1}(x), and so on
(for M = 2, the paper's x = T1(T0(y)) with our T_0 being its T1). In ``burn_in`` mode each
transform uses its first k inputs as context only, so the stack needs M*k context frames and
scores frames M*k .. T-1; in ``padded`` mode every frame is scored.

1-AF is ``FlowModel(..., num_transforms=1)`` and 2-AF is ``num_transforms=2``. Beyond the paper,
``transforms=["spline"]`` makes the transform a monotonic rational-quadratic spline transform
(:class:`~seqflows.transforms.SplineAutoregressiveTransform`), and ``transforms=["affine",
"spline"]`` (with ``num_transforms=2``) stacks the two kinds, outermost first; the log-determinant
of each transform is its own (Eq. 9 holds with any invertible transform).

Beyond the paper, ``base="glow"`` replaces the element-wise base by a multi-scale coupling flow
within the frame, conditioned on the k past frames (:mod:`seqflows.frame_flows`): log p(y_t |
x_{t-k:t-1}) for every step at once in the density, y_t drawn step by step in :meth:`sample`.

Beyond the paper, ``condition_dim=A`` makes the model conditional on per-step conditions c
(B, T, A) (actions, covariates) that every method takes beside x: each transform's shift and
scale at step t see c_{t-k+1:t} (:mod:`seqflows.conditioning`), so the model is a density of x
given c, log p(x_t | x_<t, c_<=t).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .checks import (
    check_dtype,
    check_event_shape,
    check_finite,
    check_sample_arguments,
    check_sequence,
)
from .conditioning import check_conditions
from .config import check_at_least
from .distributions import full_precision, make_base
from .errors import ConfigError, DataError, NonFiniteError
from .frame_flows import FrameFlow, last_window, past_windows
from .objective import FlowOutput, FrameScores, LossTerms
from .pretrained import Pretrained
from .transforms import TRANSFORM_KINDS, TransformConfig, build_transform

__all__ = [
    "FlowConfig",
    "FlowModel",
    "FlowOutput",
    "check_transform_kinds",
]


@dataclass(frozen=True)
class FlowConfig(TransformConfig):
    r"""Settings of a flow-only model, M-AF (Eq. 9): those of each transform, and

    Attributes:
        type: ``"flow"``: what a configuration's ``model.type`` says for this model.
        num_transforms: M, the stacked transforms (1-AF, 2-AF, ...).
        context: ``"burn_in"`` (the paper: the first M*k frames only condition) or ``"padded"``
            (learned initial frames; every frame is scored).
        base: ``"standard"`` N(0, I) (what the paper's code effectively used), ``"learned"``
            (a per-dimension loc and log-scale) or, for frames, ``"glow"`` (beyond the paper: a
            multi-scale coupling flow within the frame, :class:`~seqflows.frame_flows.FrameFlow`,
            conditioned on the ``window`` past frames, with ``bins`` and ``bound`` for splines).
        glow_coupling: The ``"glow"`` base's couplings: ``"affine"`` or ``"spline"``.
        glow_levels: The ``"glow"`` base's scales (one squeeze each: the frame's height and
            width must be multiples of 2^glow_levels).
        glow_hidden: Channels of the ``"glow"`` base's networks.
        transforms: The kind of each transform, outermost first: ``"affine"`` (Eq. 5-6, the
            paper) or ``"spline"`` (beyond the paper, with ``bins`` and ``bound``:
            :class:`~seqflows.transforms.SplineAutoregressiveTransform`); one per transform.
            None (the default): every transform is affine.
    """

    type: Literal["flow"] = "flow"
    num_transforms: int = 1
    context: Literal["burn_in", "padded"] = "burn_in"
    base: Literal["standard", "learned", "glow"] = "standard"
    glow_coupling: Literal["affine", "spline"] = "affine"
    glow_levels: int = 2
    glow_hidden: int = 32
    transforms: list[Literal["affine", "spline"]] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_at_least(self, 1, "num_transforms", "glow_levels", "glow_hidden")
        check_transform_kinds(self.transforms, self.num_transforms)

    @property
    def burn_in_frames(self) -> int:
        """The context frames before the first scored one (the model's ``burn_in``): M*k in
        ``burn_in`` mode, 0 in ``padded`` mode."""
        return self.num_transforms * self.window if self.context == "burn_in" else 0

    @property
    def kinds(self) -> list[str]:
        """The kind of each transform, outermost first (``transforms``, or all affine)."""
        return list(self.transforms or ["affine"] * self.num_transforms)

    @property
    def transform(self) -> TransformConfig:
        """The settings every transform of the stack shares."""
        return TransformConfig(
            **{field.name: getattr(self, field.name) for field in fields(TransformConfig)}
        )


def check_transform_kinds(
    kinds: Sequence[str] | None, num_transforms: int, name: str = "transforms"
) -> None:
    """Raises ConfigError unless ``kinds`` is None or names one known kind per transform."""
    if kinds is None:
        return
    for kind in kinds:
        if kind not in TRANSFORM_KINDS:
            listed = ", ".join(repr(item) for item in TRANSFORM_KINDS)
            raise ConfigError(f"{name} must hold {listed}; got {kind!r}")
    if len(kinds) != num_transforms:
        raise ConfigError(
            f"transforms lists {len(kinds)} kinds for num_transforms={num_transforms}: give "
            "one kind per transform, outermost first"
        )


class FlowModel(Pretrained, nn.Module):
    r"""M-AF: ``num_transforms`` affine autoregressive transforms across time on a base.

    Arguments:
        event_shape: Shape of one frame: (C, H, W) for video, (D,) for vectors.
        config: The model's settings (:class:`FlowConfig`: M, the window k, the conditioner,
            the scale bounds, the context and the base); keyword ``settings`` override its
            fields, so ``FlowModel((2,), num_transforms=2)`` builds a 2-AF.

    Example:
        >>> model = FlowModel(event_shape=(2,), num_transforms=2, window=1, conditioner="linear")
        >>> x = torch.randn(4, 10, 2)
        >>> model.log_prob(x).shape  # one value per scored frame
        torch.Size([4, 8])
        >>> out = model.normalize(x)
        >>> torch.allclose(model.generate(out.noise, context=x[:, :model.burn_in]), x, atol=1e-5)
        True
        >>> FlowModel.from_config(model.config, (2,)).config == model.config
        True
    """

    config_class = FlowConfig  # its settings; their type, "flow", names the model in saved files

    def __init__(
        self, event_shape: Sequence[int], config: FlowConfig | None = None, **settings: Any
    ) -> None:
        super().__init__()
        config = replace(config or FlowConfig(), **settings)
        self.config = config
        self.event_shape = check_event_shape(event_shape)
        self.transforms = nn.ModuleList(
            build_transform(kind, self.event_shape, config.transform, config.context)
            for kind in config.kinds
        )
        if config.base == "glow":
            self.base = FrameFlow(
                self.event_shape,
                config.window,
                config.glow_levels,
                config.glow_hidden,
                config.glow_coupling,
                config.bins,
                config.bound,
            )
        else:
            self.base = make_base(config.base, self.event_shape)

    exact = True  # log_prob and bound are exact log-likelihoods (:mod:`seqflows.objective`)

    @classmethod
    def check_frames(cls, event_shape: Sequence[int], size_setting: str = "size") -> None:
        """Checks that frames of ``event_shape`` suit the model: a flow takes any shape."""

    @classmethod
    def from_config(cls, config: FlowConfig, event_shape: Sequence[int]) -> FlowModel:
        """The model that ``config`` describes, for frames of ``event_shape``."""
        return cls(event_shape, config)

    @property
    def label(self) -> str:
        """The paper's name of the model: ``1-AF``, ``2-AF``, ...; with spline transforms the
        kinds follow, outermost first: ``1-AF (spline)``, ``2-AF (affine, spline)``."""
        kinds = self.config.kinds
        label = f"{self.num_transforms}-AF"
        if not all(kind == "affine" for kind in kinds):
            label = f"{label} ({', '.join(kinds)})"
        return f"{label} + frame flow" if self.config.base == "glow" else label

    def loss(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        kl_weight: float = 1.0,
        *,
        conditions: Tensor | None = None,
    ) -> LossTerms:
        r"""The paper's loss: minus the mean exact log-likelihood of the scored frames (Eq. 7-9).

        The base density and the log-determinant are computed in float32 under autocast.
        ``generator`` and ``kl_weight`` are unused (a flow has no latents): see
        :class:`~seqflows.objective.SequenceModel`.

        Arguments:
            x: Sequences, with shape (B, T, *event_shape).
            conditions: Their conditions (B, T, A), for a conditioned model only.

        Returns:
            The loss, the per-frame log-likelihood (B, T - burn_in) and the flow's outputs.
        """
        out = self.normalize(x, conditions)
        with full_precision(x.device):  # float32 density (mixed precision)
            dtype = torch.promote_types(out.noise.dtype, torch.float32)  # float64 stays
            objective = self._base_log_prob(x.to(dtype), out.noise.to(dtype))
            objective = objective + out.log_abs_det.to(dtype)
        return LossTerms(loss=-objective.mean(), objective=objective, flow=out)

    def scores(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        *,
        conditions: Tensor | None = None,
    ) -> FrameScores:
        r"""Exact log p(x_t | x_<t) of each scored frame, (B, T - burn_in), and the noise y."""
        terms = self.loss(x, conditions=conditions)
        return FrameScores(log_prob=terms.objective, noise=terms.flow.noise)

    def rows(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        conditions: Tensor | None = None,
    ) -> tuple[Tensor, list[dict[str, Tensor]]]:
        r"""The rows of Fig. 4 and Fig. 9 of sequences x, on the scored frames.

        Returns:
            The data x_t and, per transform (outermost first), its ``shift``, ``scale`` and
            output (``noise``: u^{m+1}, y for the innermost), each (B, T - burn_in,
            *event_shape).
        """
        out = self.normalize(x, conditions)
        outputs = [*out.inputs[1:], out.noise]
        layers = [
            {"shift": shift, "scale": scale, "noise": output}
            for shift, scale, output in zip(out.shifts, out.scales, outputs, strict=True)
        ]
        return out.inputs[0], layers

    def bound(
        self,
        x: Tensor,
        num_samples: int = 1,
        generator: torch.Generator | None = None,
        chunk: int | None = None,
        scored: int | None = None,
        *,
        conditions: Tensor | None = None,
    ) -> Tensor:
        r"""The exact log-likelihood of the last ``scored`` frames of each sequence, (B,).

        ``num_samples``, ``generator`` and ``chunk`` are unused (exact: nothing to sample).
        """
        return _last_frames(self.scores(x, conditions=conditions).log_prob, scored)

    def scores_and_bound(
        self,
        x: Tensor,
        num_samples: int = 0,
        generator: torch.Generator | None = None,
        chunk: int | None = None,
        scored: int | None = None,
        *,
        conditions: Tensor | None = None,
    ) -> tuple[FrameScores, Tensor | None]:
        r""":meth:`scores` and, with ``num_samples`` >= 1, :meth:`bound` from the same pass: what
        evaluation reports. The exact log-likelihood is both (B, T - burn_in) and (B,); None for
        the bound with ``num_samples`` = 0. ``generator`` and ``chunk`` are unused."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be at least 0, got {num_samples}")
        scores = self.scores(x, conditions=conditions)
        return scores, _last_frames(scores.log_prob, scored) if num_samples else None

    @property
    def num_transforms(self) -> int:
        """Number M of stacked transforms."""
        return len(self.transforms)

    @property
    def burn_in(self) -> int:
        """Frames that are context only: M*k in ``burn_in`` mode, 0 in ``padded`` mode
        (:attr:`FlowConfig.burn_in_frames`)."""
        return self.config.burn_in_frames

    @property
    def condition_dim(self) -> int:
        """A, the size of the per-step conditions the model takes (0: unconditioned)."""
        return self.config.condition_dim

    def forward(self, x: Tensor, conditions: Tensor | None = None) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x, conditions)

    def normalize(self, x: Tensor, conditions: Tensor | None = None) -> FlowOutput:
        r"""Maps data to noise through every transform, all time steps at once (Eq. 15).

        Arguments:
            x: Sequences, with shape (B, T, *event_shape), T > burn_in, of the parameters'
                dtype and finite (NaN or infinite values raise a ValueError before they reach
                the BatchNorm statistics).
            conditions: Their conditions (B, T, A), for a conditioned model only (each
                transform sees those of its input's frames).

        Returns:
            Noise, per-transform shifts and scales, and log |det dy/dx| of the scored frames.
        """
        check_sequence(x, self.event_shape, "x")
        check_dtype(x, self, "x")
        check_finite(x, "x")
        check_conditions(conditions, self.condition_dim, x.shape[0], x.shape[1])
        if x.shape[1] <= self.burn_in:
            raise DataError(
                f"sequences of {x.shape[1]} frames leave nothing to score: this model uses the "
                f"first {self.burn_in} frames as context (num_transforms * window)"
            )
        u = x
        inputs, outputs = [], []
        for transform in self.transforms:
            inputs.append(u)
            outputs.append(transform.normalize(u, _aligned(conditions, u.shape[1])))
            u = outputs[-1].y
        scored = u.shape[1]

        def on_scored_frames(values: Tensor) -> Tensor:
            # Inner transforms output fewer frames in burn_in mode: align all on the scored ones.
            return values[:, values.shape[1] - scored :]

        return FlowOutput(
            noise=u,
            shifts=tuple(on_scored_frames(out.shift) for out in outputs),
            scales=tuple(torch.exp(on_scored_frames(out.log_scale)) for out in outputs),
            log_abs_det=torch.stack([on_scored_frames(out.log_abs_det) for out in outputs]).sum(0),
            inputs=tuple(on_scored_frames(u_m) for u_m in inputs),
        )

    def log_prob(self, x: Tensor, conditions: Tensor | None = None) -> Tensor:
        r"""Exact log-density of each scored frame given its past (Eq. 7-9).

        Arguments:
            x: Sequences, with shape (B, T, *event_shape).
            conditions: Their conditions (B, T, A), for a conditioned model only.

        Returns:
            log p(x_t | x_{<t}) in nats (log p(x_t | x_{<t}, c_{<=t}) conditioned), summed
            over the event dimensions, with shape (B, T - burn_in).
            ``-model.log_prob(x).mean()`` is the training loss.
        """
        out = self.normalize(x, conditions)
        return self._base_log_prob(x, out.noise) + out.log_abs_det

    def _base_log_prob(self, x: Tensor, noise: Tensor) -> Tensor:
        r"""log p(y_t) of the scored frames' noise y (B, T', *event) of sequences x (B, T,
        *event): given the window of past frames x_{t-k:t-1} for the ``"glow"`` base."""
        if isinstance(self.base, FrameFlow):
            first = x.shape[1] - noise.shape[1]
            return self.base.log_prob(noise, past_windows(x, self.config.window, first))
        return self.base.log_prob(noise)

    def generate(
        self, noise: Tensor, context: Tensor | None = None, conditions: Tensor | None = None
    ) -> Tensor:
        r"""Maps noise to data, one time step at a time (Eq. 5): the inverse of :meth:`normalize`.

        Arguments:
            noise: y for the frames after the context, with shape (B, T', *event_shape).
            context: Preceding data frames, with shape (B, c, *event_shape), c >= burn_in;
                None (no context) is allowed in ``padded`` mode.
            conditions: The conditions of the context's frames and of the frames to generate,
                (B, c + T', A), for a conditioned model only.

        Returns:
            The context followed by the generated frames, with shape (B, c + T', *event_shape).
            ``generate(normalize(x).noise, x[:, :burn_in])`` gives back x (in eval mode).
        """
        check_sequence(noise, self.event_shape, "noise")
        check_dtype(noise, self, "noise")
        if context is None:
            if self.burn_in:
                raise ValueError(
                    f"this model needs {self.burn_in} context frames to generate from "
                    "(context='burn_in'); pass context=... or build it with context='padded'"
                )
            context = noise.new_zeros(noise.shape[0], 0, *self.event_shape)
        check_sequence(context, self.event_shape, "context")
        check_dtype(context, self, "context")
        if context.shape[0] != noise.shape[0]:
            raise ValueError(
                f"context has {context.shape[0]} sequences but noise has {noise.shape[0]}"
            )
        if context.shape[1] < self.burn_in:
            raise ValueError(
                f"context has {context.shape[1]} frames; this model needs at least "
                f"{self.burn_in} (num_transforms * window)"
            )
        total = context.shape[1] + noise.shape[1]
        check_conditions(conditions, self.condition_dim, noise.shape[0], total)
        # Context of each level: u^0 = x, u^{m+1} = T_m^{-1}(u^m), for m = 0 .. M-2.
        known = None if conditions is None else conditions[:, : context.shape[1]]  # context's
        contexts = [context]
        for transform in self.transforms[:-1]:
            previous = contexts[-1]
            if previous.shape[1] > transform.burn_in:
                level = _aligned(known, previous.shape[1])
                contexts.append(transform.normalize(previous, level).y)
            else:
                contexts.append(previous[:, :0])
        u = noise
        for index in reversed(range(self.num_transforms)):
            transform = self.transforms[index]
            level = _aligned(conditions, contexts[index].shape[1] + noise.shape[1])
            try:
                u = transform.generate(u, contexts[index], level)[:, contexts[index].shape[1] :]
            except FloatingPointError as error:
                raise NonFiniteError(f"transform {index} (0 = outermost): {error}") from None
        return torch.cat([context.to(u.dtype), u], dim=1)

    @torch.no_grad()
    def sample(
        self,
        num_sequences: int,
        length: int,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        conditions: Tensor | None = None,
    ) -> Tensor:
        r"""Samples ``length`` new frames, after ``context`` when one is given.

        Arguments:
            num_sequences: Number of sequences B.
            length: Number of frames to generate.
            context: Real frames to continue (prediction), with shape (B, c, *event_shape);
                needed (c >= burn_in) in ``burn_in`` mode, optional in ``padded`` mode.
            generator: Random number generator for the base noise.
            temperature: Spread of the base noise around its mean (1: the model; 0: the mean
                noise, so every frame is the flow's prediction shift + scale * mean).
            conditions: For a conditioned model, the conditions of the context's frames and of
                the frames to generate (B, c + length, A): the future ones say what is done
                ("what happens if the robot pushes left instead").

        Returns:
            Generated frames (without the context), with shape (B, length, *event_shape).
        """
        start = check_sample_arguments(self, num_sequences, length, context, conditions)
        reference = next(self.parameters())
        if isinstance(self.base, FrameFlow):  # y_t depends on x_{t-k:t-1}: one step at a time
            frames = reference.new_zeros(num_sequences, 0, *self.event_shape)
            frames = frames if context is None else context
            for _ in range(length):
                past = last_window(frames, self.config.window)
                noise = self.base.sample(past, generator, temperature)[:, None]
                known = None if conditions is None else conditions[:, : frames.shape[1] + 1]
                frames = self.generate(noise, frames, known)
            return frames[:, start:]
        noise = self.base.sample(
            (num_sequences, length),
            generator=generator,
            device=reference.device,
            dtype=reference.dtype,
            temperature=temperature,
        )
        return self.generate(noise, context, conditions)[:, start:]


def _aligned(conditions: Tensor | None, length: int) -> Tensor | None:
    r"""The conditions (B, length, A) of the last ``length`` frames, or None."""
    return None if conditions is None else conditions[:, conditions.shape[1] - length :]


def _last_frames(log_prob: Tensor, scored: int | None) -> Tensor:
    """Per sequence, the sum of the last ``scored`` (None: all) per-frame scores (B, T'): (B,)."""
    available = log_prob.shape[1]
    scored = available if scored is None else scored
    if not 1 <= scored <= available:
        raise ValueError(f"scored must be between 1 and {available}, got {scored}")
    return log_prob[:, available - scored :].sum(1)

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
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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
from .config import check_at_least, check_choices
from .distributions import StandardNormal, full_precision, make_base
from .errors import ConfigError, DataError, NonFiniteError, warn_deprecated
from .flat_settings import AcceptsFlatNames
from .frame_flows import FrameFlow, frame_flow_settings
from .missing import observed_mean, observed_sum, require_elementwise, split_missing
from .objective import FlowOutput, FrameScores, LossTerms
from .pretrained import Pretrained
from .step_flows import STEP_BASES, StepBase, make_step_base
from .transforms import (
    StackConfig,
    TransformConfig,
    TransformOutput,
    build_transform,
    first_spline,
    transform_settings,
)

# The bases that condition y_t on the past frames x_{t-k:t-1}: a density of all steps at once
# given x (steps_log_prob), generation one step at a time (sample_next).
PAST_CONDITIONED = (StepBase, FrameFlow)

__all__ = [
    "FlowConfig",
    "FlowModel",
    "FlowOutput",
]


@dataclass(frozen=True)
class FlowConfig(StackConfig, AcceptsFlatNames):
    r"""Settings of a flow-only model, M-AF (Eq. 9): its transforms and their conditioner
    (:class:`~seqflows.transforms.StackConfig`), and

    Attributes:
        type: ``"flow"``: what a configuration's ``model.type`` says for this model.
        transforms: Each transform's settings, outermost first: M of them (1-AF, 2-AF, ...),
            :class:`~seqflows.transforms.AffineConfig` (Eq. 5-6, the paper) or
            :class:`~seqflows.transforms.SplineConfig` (beyond the paper).
        conditioner: The conditioner of every transform
            (:class:`~seqflows.transforms.ConditionerConfig`: the window k, ...).
        context: ``"burn_in"`` (the paper: the first M*k frames only condition) or ``"padded"``
            (learned initial frames; every frame is scored).
        base: ``"standard"`` N(0, I) (what the paper's code effectively used) or ``"learned"``
            (a per-dimension loc and log-scale); beyond the paper, for vectors (D,), a
            distribution across the D dimensions of one step given the past window
            (:mod:`seqflows.step_flows`): ``"full_covariance"`` (a Gaussian with a Cholesky
            factor), ``"maf"`` or ``"nsf"`` (masked affine or spline flows; the spline's bins
            and bound are those of the first spline transform, else the defaults).
            For frames (C, H, W), ``"glow"``: a multi-scale coupling flow within the frame
            (:class:`~seqflows.frame_flows.FrameFlow`), conditioned on the ``window`` past
            frames.
        base_layers: The masked transforms of a ``"maf"`` or ``"nsf"`` base.
        glow_coupling: The ``"glow"`` base's couplings: ``"affine"`` or ``"spline"`` (with the
            spline settings of the ``"nsf"`` base).
        glow_levels: The ``"glow"`` base's scales (one squeeze each: the frame's height and
            width must be multiples of 2^glow_levels).
        glow_hidden: Channels of the ``"glow"`` base's networks.
        condition_dim: A, the size of the per-step conditions (actions, covariates) that the
            model takes beside the frames (:mod:`seqflows.conditioning`); 0: unconditioned.
        checkpoint_activations: The conditioners recompute their activations in the backward
            pass instead of keeping them: less memory, the same results.

    The flat settings of earlier versions (``num_transforms``, ``window``, ``hidden``, ...)
    are accepted wherever settings are given (:mod:`seqflows.flat_settings`).
    """

    flat_type: ClassVar[str] = "flow"  # the flat names it accepts (seqflows.flat_settings)

    type: Literal["flow"] = "flow"
    context: Literal["burn_in", "padded"] = "burn_in"
    base: Literal["standard", "learned", "full_covariance", "maf", "nsf", "glow"] = "standard"
    base_layers: int = 2
    glow_coupling: Literal["affine", "spline"] = "affine"
    glow_levels: int = 2
    glow_hidden: int = 32
    condition_dim: int = 0
    checkpoint_activations: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choices(self)
        check_at_least(self, 0, "condition_dim")
        check_at_least(self, 1, "base_layers", "glow_levels", "glow_hidden")

    @property
    def flow(self) -> FlowConfig:
        """The flow's settings: these (an SLVM's ``flow`` is its likelihood's, or None)."""
        return self

    @property
    def burn_in_frames(self) -> int:
        """The context frames before the first scored one (the model's ``burn_in``): M*k in
        ``burn_in`` mode, 0 in ``padded`` mode."""
        return self.num_transforms * self.conditioner.window if self.context == "burn_in" else 0

    def check_frames(self, event_shape: Sequence[int], size_setting: str = "size") -> None:
        """Checks that frames of ``event_shape`` suit the model: a flow takes any shape, but
        vectors (D,) no ``"conv"`` conditioner.

        Raises:
            ConfigError: Vectors with a ``"conv"`` conditioner.
        """
        if len(event_shape) == 1 and self.conditioner.kind == "conv":
            raise ConfigError(
                f"vector sequences (D = {event_shape[0]}) need model.conditioner.kind=mlp or "
                "linear (or auto)"
            )

    def size_settings(self) -> dict[str, int]:
        """The settings that size the model's networks, by their nested names."""
        return {"conditioner.hidden": self.conditioner.hidden}

    def transform_settings(self) -> list[TransformConfig]:
        """What each transform is built from, outermost first."""
        return [
            transform_settings(
                transform, self.conditioner, self.condition_dim, self.checkpoint_activations
            )
            for transform in self.transforms
        ]


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
        config = FlowConfig.from_settings(config, **settings) if settings else config
        config = config or FlowConfig()
        self.config = config
        self.event_shape = check_event_shape(event_shape)
        self.transforms = nn.ModuleList(
            build_transform(kind, self.event_shape, transform, config.context)
            for kind, transform in zip(config.kinds, config.transform_settings(), strict=True)
        )
        self.base = _make_base(config, self.event_shape)

    exact = True  # log_prob and bound are exact log-likelihoods (:mod:`seqflows.objective`)

    @property
    def exact_marginals(self) -> bool:
        """Whether a missing value's terms can be left out exactly (:mod:`seqflows.missing`):
        element-wise transforms on a per-value base; not with a within-step base."""
        return not isinstance(self.base, PAST_CONDITIONED)

    @classmethod
    def check_frames(cls, event_shape: Sequence[int], size_setting: str = "size") -> None:
        """Checks that ``event_shape`` suits the model: :meth:`FlowConfig.check_frames`."""
        FlowConfig().check_frames(event_shape, size_setting)

    @classmethod
    def from_config(cls, config: FlowConfig, event_shape: Sequence[int]) -> FlowModel:
        """The model that ``config`` describes, for frames of ``event_shape``."""
        return cls(event_shape, config)

    @property
    def label(self) -> str:
        """Deprecated: ``seqflows.app.figures.model_label(model)``, the paper's name of the
        model (``1-AF``, ``2-AF (affine, spline)``)."""
        warn_deprecated("FlowModel.label", "seqflows.app.figures.model_label(model)")
        kinds = self.config.kinds
        name = f"{self.num_transforms}-AF"
        if not all(kind == "affine" for kind in kinds):
            name = f"{name} ({', '.join(kinds)})"
        return (
            name
            if self.config.base in ("standard", "learned")
            else f"{name}, {self.config.base} base"
        )

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
            x: Sequences, with shape (B, T, *event_shape); NaN cells are missing values, filled
                with 0 in the transforms' inputs and left out of the density
                (:mod:`seqflows.missing`).
            conditions: Their conditions (B, T, A), for a conditioned model only.

        Returns:
            The loss, the per-frame log-likelihood (B, T - burn_in) and the flow's outputs
            (with gaps: the per-frame counts of observed values, and the loss per observed
            value, :func:`~seqflows.missing.observed_mean`).
        """
        x, observed = split_missing(x)
        require_elementwise(self, observed)
        out = self.normalize(x, conditions)
        with full_precision(x.device):  # float32 density (mixed precision)
            dtype = torch.promote_types(out.noise.dtype, torch.float32)  # float64 stays
            if observed is None:
                base = self._base_log_prob(out.noise.to(dtype), x, conditions)
                objective = base + out.log_abs_det.to(dtype)
                return LossTerms(loss=-objective.mean(), objective=objective, flow=out)
            # Gaps: the step density is a product over values (element-wise transforms, a
            # diagonal base), so the missing values' terms are left out (seqflows.missing).
            observed = observed[:, observed.shape[1] - out.noise.shape[1] :]
            terms = self.base.element_log_prob(out.noise.to(dtype))
            terms = terms + out.element_log_abs_det.to(dtype)
            objective = observed_sum(terms, observed, len(self.event_shape))
        counts = observed.flatten(2).sum(-1)  # (B, T - burn_in)
        loss = -observed_mean(objective, counts, observed[0, 0].numel())
        return LossTerms(loss=loss, objective=objective, flow=out, observed=counts)

    def scores(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        *,
        conditions: Tensor | None = None,
    ) -> FrameScores:
        r"""Exact log p(x_t | x_<t) of each scored frame (Eq. 7-9), (B, T - burn_in), with the
        flow's outputs (the noise y, each transform's shift and scale)."""
        terms = self.loss(x, conditions=conditions)
        return FrameScores(
            log_prob=terms.objective,
            noise=terms.flow.noise,
            flow=terms.flow,
            observed=terms.observed,
        )

    def rows(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        conditions: Tensor | None = None,
    ) -> tuple[Tensor, list[dict[str, Tensor]]]:
        r"""Deprecated: ``seqflows.app.figures.figure_rows(model, x, conditions=...)``. The rows
        of Fig. 4 and Fig. 9 of sequences x, on the scored frames.

        Returns:
            The data x_t (NaN where missing) and, per transform (outermost first), its
            ``shift``, ``scale`` and
            output (``noise``: u^{m+1}, y for the innermost), each (B, T - burn_in,
            *event_shape).
        """
        warn_deprecated("FlowModel.rows", "seqflows.app.figures.figure_rows(model, x, ...)")
        out = self.normalize(split_missing(x)[0], conditions)
        outputs = [*out.inputs[1:], out.noise]
        layers = [
            {"shift": shift, "scale": scale, "noise": output}
            for shift, scale, output in zip(out.shifts, out.scales, outputs, strict=True)
        ]
        return x[:, x.shape[1] - out.noise.shape[1] :], layers  # gaps stay NaN

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
            element_log_abs_det=sum(
                on_scored_frames(_element_log_abs_det(out)) for out in outputs
            ),
        )

    def log_prob(self, x: Tensor, conditions: Tensor | None = None) -> Tensor:
        r"""Exact log-density of each scored frame given its past (Eq. 7-9).

        Arguments:
            x: Sequences, with shape (B, T, *event_shape).
            conditions: Their conditions (B, T, A), for a conditioned model only.

        Returns:
            log p(x_t | x_{<t}) in nats (log p(x_t | x_{<t}, c_{<=t}) conditioned), summed
            over the event dimensions (the observed ones, where x has NaN gaps:
            :mod:`seqflows.missing`), with shape (B, T - burn_in).
            ``-model.log_prob(x).mean()`` is the training loss (without gaps).
        """
        return self.loss(x, conditions=conditions).objective

    def _base_log_prob(self, noise: Tensor, x: Tensor, conditions: Tensor | None) -> Tensor:
        r"""log p(y) of the innermost outputs (B, S, *event_shape) of the last S frames of x:
        the bases conditioned on the past (within a step, :mod:`seqflows.step_flows`; within a
        frame, :mod:`seqflows.frame_flows`) see the window of x before each."""
        if isinstance(self.base, PAST_CONDITIONED):
            return self.base.steps_log_prob(noise, x, conditions)
        return self.base.log_prob(noise)

    def generate(
        self, noise: Tensor, context: Tensor | None = None, conditions: Tensor | None = None
    ) -> Tensor:
        r"""Maps noise to data, one time step at a time (Eq. 5): the inverse of :meth:`normalize`.

        Arguments:
            noise: y for the frames after the context, with shape (B, T', *event_shape).
            context: Preceding data frames, with shape (B, c, *event_shape), c >= burn_in
                (NaN gaps are filled with 0, :mod:`seqflows.missing`); None (no context) is
                allowed in ``padded`` mode.
            conditions: The conditions of the context's frames and of the frames to generate,
                (B, c + T', A), for a conditioned model only.

        Returns:
            The context followed by the generated frames, with shape (B, c + T', *event_shape).
            ``generate(normalize(x).noise, x[:, :burn_in])`` gives back x (in eval mode).
        """
        check_sequence(noise, self.event_shape, "noise")
        check_dtype(noise, self, "noise")
        if context is not None:  # gaps (NaN) of the context: filled as for the density
            context = split_missing(context, "context")[0]
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
        if isinstance(self.base, PAST_CONDITIONED):  # y_t depends on x_<t: one step at a time
            x = context
            if x is None:
                x = reference.new_zeros(num_sequences, 0, *self.event_shape)
            for _ in range(length):
                known = None if conditions is None else conditions[:, : x.shape[1] + 1]
                noise = self.base.sample_next(x, known, generator, temperature)
                x = self.generate(noise, x, known)
            return x[:, start:]
        noise = self.base.sample(
            (num_sequences, length),
            generator=generator,
            device=reference.device,
            dtype=reference.dtype,
            temperature=temperature,
        )
        return self.generate(noise, context, conditions)[:, start:]


def _element_log_abs_det(out: TransformOutput) -> Tensor:
    """log |dy_{t,i}/dx_{t,i}| of every value of one transform: log g' - log scale."""
    if out.log_derivative is None:
        return -out.log_scale
    return out.log_derivative - out.log_scale


def _make_base(
    config: FlowConfig, event_shape: tuple[int, ...]
) -> StandardNormal | StepBase | FrameFlow:
    """The base of ``config``: a per-frame one (``standard``, ``learned``) or a within-step one
    that reads the conditioner's window and width (and the first spline transform's bins and
    bound, else the spline defaults; the first transform's scale bounds)."""
    if config.base == "glow":
        settings = frame_flow_settings(config, config.transforms)
        return FrameFlow(event_shape, config.conditioner.window, **settings)
    spline = first_spline(config.transforms)
    if config.base not in STEP_BASES:
        return make_base(config.base, event_shape)
    first = config.transforms[0]
    return make_step_base(
        config.base,
        event_shape,
        config.conditioner.window,
        config.conditioner.hidden,
        layers=config.base_layers,
        bins=spline.bins,
        bound=spline.bound,
        condition_dim=config.condition_dim,
        scale_bounds=(first.min_scale, first.max_scale, first.scale_map),
    )


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

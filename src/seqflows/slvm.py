r"""Sequential latent variable models (Sec. 2.2, 3.3, Appendix A, B, Fig. 6).

:class:`SLVM` is the latent sequence model (:class:`~seqflows.latent.LatentSequenceModel`:
latents z_t with a learned prior and a filtering posterior, Eq. 17-19) on a sequence v_{1:T},
with an optional M-AF (:class:`~seqflows.flows.FlowModel`) in front: the flow maps x to y and
the latent model models y, so that (Eq. 16, 20, 30)

    ELBO_t = E_q[log p(y_t | z_t)] - KL_t + log |det dy_t / dx_t|.

``num_transforms=0`` is the paper's SLVM baseline (sigmoid on the likelihood's loc, 2 LSTM
layers); 1 and 2 are SLVM w/ 1-AF and w/ 2-AF (linear loc, 1 LSTM layer).

Beyond the paper, ``condition_dim=A`` conditions the model on per-step conditions c (B, T, A)
that every method takes beside x: the latent model's prior, posterior and likelihood see them
(:mod:`seqflows.latent`), and the flow's transforms see c_{t-k+1:t}
(:mod:`seqflows.conditioning`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

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
from .errors import ConfigError, DataError, warn_deprecated
from .flat_settings import AcceptsFlatNames
from .flows import FlowConfig, FlowModel, FlowOutput
from .frame_flows import frame_flow_settings
from .latent import LatentConfig, LatentSequenceModel, _at_least_float32, check_likelihood_base
from .latent_prior import PriorFlowConfig
from .missing import observed_mean, observed_sum, require_elementwise, split_missing
from .networks import conv_frame_layers
from .objective import FrameScores, LossTerms
from .pretrained import Pretrained
from .transforms import StackConfig, TransformConfig, transform_settings

__all__ = [
    "ELBOTerms",
    "SLVM",
    "SLVMConfig",
]

# The latent sequence model moved to .latent (issue 25): these names still work from here, with a
# warning (LatentConfig and LatentSequenceModel, which the SLVM uses, without one).
_MOVED_TO_LATENT = (
    "MAX_LOG_SCALE",
    "MIN_LOG_SCALE",
    "Posterior",
    "StackedLSTM",
    "reference_initialization",
)


@dataclass
class ELBOTerms:
    r"""The per-frame terms of the ELBO (Eq. 20) of the scored frames, each (B, T - burn_in).

    Attributes:
        log_likelihood: log p(v_t | z_t) at a posterior sample (v = y with a flow, else x).
        kl: KL(q(z_t | ...) || p(z_t | z_{<t})): analytic for the Gaussian prior, the
            Monte-Carlo estimate log q - log p at the sample with a flow prior.
        log_abs_det: log |det dy_t/dx_t| of the flow (zeros without one).
        flow: The flow's outputs (shift, scale, noise of every transform), or None.
        likelihood_loc: Loc of p(v_t | z_t), (B, T - burn_in, *event_shape).
        likelihood_scale: Scale of p(v_t | z_t), same shape.
        observed: Per-frame counts of observed values of sequences with gaps (NaN), whose terms
            alone the others sum (:mod:`seqflows.missing`); None: all observed.
    """

    log_likelihood: Tensor
    kl: Tensor
    log_abs_det: Tensor
    flow: FlowOutput | None
    likelihood_loc: Tensor
    likelihood_scale: Tensor
    observed: Tensor | None = None

    @property
    def elbo(self) -> Tensor:
        """Per-frame ELBO in nats: log-likelihood - KL + log-determinant, (B, T - burn_in)."""
        return self.log_likelihood - self.kl + self.log_abs_det


def _flow_log_abs_det(flow: FlowOutput, observed: Tensor | None, event_dims: int) -> Tensor:
    """The flow's log |det dy_t/dx_t| per frame (B, T'), over the observed values only when
    ``observed`` (the mask of the same frames) is given: the flow is element-wise in a step."""
    if observed is None:
        return _at_least_float32(flow.log_abs_det)
    return observed_sum(_at_least_float32(flow.element_log_abs_det), observed, event_dims)


TRAIN_FRAMES = ("all", "scored")


def _frame_scores(terms: ELBOTerms) -> FrameScores:
    """The scores (:class:`~seqflows.objective.FrameScores`) that the ELBO terms give."""
    flow = terms.flow
    return FrameScores(
        log_prob=terms.elbo,
        noise=None if flow is None else flow.noise,
        flow=flow,
        likelihood_loc=terms.likelihood_loc,
        likelihood_scale=terms.likelihood_scale,
        observed=terms.observed,
    )


class _Modelled(NamedTuple):
    """What the latent model of an SLVM sees of sequences x (:meth:`SLVM._modelled`)."""

    v: Tensor  # the flow's noise y (B, T - burn_in, ...), or x itself without a flow
    flow: FlowOutput | None  # the flow's outputs, None without a flow
    conditions: Tensor | None  # the conditions of v's frames (B, T', A), or None
    observed: Tensor | None = None  # the mask of v's observed values (gaps), or None: all


DEFAULT_BURN_IN = 3  # the baseline's context frames: those a 1-AF with k = 3 needs


@dataclass(frozen=True)
class SLVMConfig(AcceptsFlatNames):
    r"""Settings of an SLVM (Appendix B, Fig. 6), with an optional M-AF conditional likelihood.

    Attributes:
        type: ``"slvm"``: what a configuration's ``model.type`` says for this model.
        latent: The latent model (:class:`LatentConfig`).
        prior: Beyond the paper: a flow across time on z that the prior's Gaussian is pushed
            through (:class:`~seqflows.latent_prior.PriorFlowConfig`,
            :mod:`seqflows.latent_prior`); the KL term is then estimated at the posterior
            sample. None (the default): the paper's Gaussian prior.
        likelihood: The flow of the conditional likelihood, SLVM w/ M-AF
            (:class:`~seqflows.transforms.StackConfig`: its transforms and conditioner); None:
            the SLVM baseline.
        burn_in: Context frames of the baseline (None: 3, so that it scores the frames a 1-AF
            scores; 0 scores every frame); with a likelihood, always the flow's M*k (leave it
            None).
        train_frames: Frames of the training ELBO: ``"all"`` (every frame the latent model sees:
            the whole crop for the baseline, as the authors trained it; after the flow's
            context with a flow) or ``"scored"`` (the frames after ``burn_in``).
        condition_dim: A, the size of each step's conditions c_t (0: unconditioned).
        checkpoint_activations: Every network (encoder, decoder, the flows' conditioners)
            recomputes its activations in the backward pass instead of keeping them.

    The flat settings of earlier versions (``num_transforms``, ``window``, ``latent_dim``,
    ``prior_transforms``, ...) are accepted wherever settings are given
    (:mod:`seqflows.flat_settings`).
    """

    flat_type: ClassVar[str] = "slvm"  # the flat names it accepts (seqflows.flat_settings)

    type: Literal["slvm"] = "slvm"
    latent: LatentConfig = field(default_factory=LatentConfig)
    prior: PriorFlowConfig | None = None
    likelihood: StackConfig | None = None
    burn_in: int | None = None
    train_frames: Literal["all", "scored"] = "all"
    condition_dim: int = 0
    checkpoint_activations: bool = False

    def __post_init__(self) -> None:
        check_choices(self)
        check_at_least(self, 0, "burn_in", "condition_dim")
        if self.likelihood is not None and self.burn_in not in (None, self.flow_context):
            raise ConfigError(
                f"burn_in={self.burn_in}: with a flow the context is the flow's "
                f"num_transforms * window = {self.flow_context} frames (leave burn_in unset)"
            )

    @property
    def flow_context(self) -> int:
        """M*k: the context frames of the likelihood's flow (0 without one)."""
        if self.likelihood is None:
            return 0
        return self.likelihood.num_transforms * self.likelihood.conditioner.window

    @property
    def burn_in_frames(self) -> int:
        """The context frames before the first scored one (the model's ``burn_in``): the
        flow's M*k with a flow, else ``burn_in`` (None: 3)."""
        if self.likelihood is not None:
            return self.flow_context
        return DEFAULT_BURN_IN if self.burn_in is None else self.burn_in

    @property
    def num_transforms(self) -> int:
        """M, the likelihood's transforms (0: the baseline)."""
        return 0 if self.likelihood is None else self.likelihood.num_transforms

    @property
    def flow(self) -> FlowConfig | None:
        """The likelihood's flow as a flow model's settings (burn-in context, standard base),
        or None for the baseline."""
        if self.likelihood is None:
            return None
        return FlowConfig(
            transforms=self.likelihood.transforms,
            conditioner=self.likelihood.conditioner,
            condition_dim=self.condition_dim,
            checkpoint_activations=self.checkpoint_activations,
        )

    def size_settings(self) -> dict[str, int]:
        """The settings that size the model's networks, by their nested names."""
        sizes = {
            f"latent.{name}": getattr(self.latent, name) for name in ("latent_dim", "lstm_hidden")
        }
        if self.likelihood is not None:
            sizes["likelihood.conditioner.hidden"] = self.likelihood.conditioner.hidden
        return sizes

    def prior_settings(self) -> list[TransformConfig]:
        """What each transform of the flow prior is built from (none: the Gaussian prior)."""
        if self.prior is None:
            return []
        return [
            # The prior's transforms see z only (c_t enters the prior's LSTM): no conditions.
            transform_settings(transform, self.prior.conditioner, 0, self.checkpoint_activations)
            for transform in self.prior.transforms
        ]

    def check_frames(self, event_shape: Sequence[int], size_setting: str = "size") -> None:
        """Checks that frames of ``event_shape`` suit the model: images (C, S, S) need a side S
        of 4 * 2^n (:func:`~seqflows.networks.conv_frame_layers`), the error naming
        ``size_setting=S``; vectors (D,) any D.

        Raises:
            ConfigError: Images of another size; vectors with a ``"conv"`` conditioner; frames
                with a likelihood across a vector's dimensions, vectors with the frame flow
                (``latent.likelihood_base``).
        """
        check_likelihood_base(self.latent.likelihood_base, event_shape)
        if len(event_shape) == 3:
            conv_frame_layers(event_shape, f"{size_setting}={event_shape[1]}")
        if self.flow is not None:
            self.flow.check_frames(event_shape, size_setting)


class SLVM(Pretrained, nn.Module):
    r"""SLVM, optionally with a flow-based conditional likelihood (SLVM w/ M-AF, Sec. 3.3).

    Arguments:
        event_shape: Frame shape: (C, S, S) with S = 4 * 2^n, or (D,) for vector series.
        config: The model's settings (:class:`SLVMConfig`); keyword ``settings`` override its
            fields, so ``SLVM((1, 64, 64), num_transforms=1)`` builds SLVM w/ 1-AF.

    Example:
        >>> model = SLVM(event_shape=(3,), latent_dim=4, num_transforms=1, window=2,
        ...              lstm_hidden=8, mlp_hidden=8, hidden=8)
        >>> x = torch.randn(2, 7, 3)
        >>> model.elbo(x).shape, model.bound(x, num_samples=3).shape
        (torch.Size([2, 5]), torch.Size([2]))
    """

    config_class = SLVMConfig  # its settings; their type, "slvm", names the model in saved files

    def __init__(
        self, event_shape: Sequence[int], config: SLVMConfig | None = None, **settings: Any
    ) -> None:
        super().__init__()
        config = SLVMConfig.from_settings(config, **settings) if settings else config
        config = config or SLVMConfig()
        self.config = config
        self.event_shape = check_event_shape(event_shape)
        image = len(self.event_shape) == 3
        flow = config.flow
        self.flow = None if flow is None else FlowModel(self.event_shape, flow)
        latent = config.latent
        self.latent = LatentSequenceModel(
            self.event_shape,
            latent_dim=latent.latent_dim,
            hidden=latent.lstm_hidden,
            layers=latent.lstm_layers or (1 if flow else 2),
            features=latent.encoder_features,
            width=latent.conv_width,
            mlp_hidden=latent.mlp_hidden,
            loc_map=latent.likelihood_loc or ("sigmoid" if image and not flow else "linear"),
            batch_norm=latent.batch_norm,
            init=latent.init,
            prior_transforms=[] if config.prior is None else config.prior.kinds,
            prior_config=config.prior_settings(),
            checkpoint_activations=config.checkpoint_activations,
            condition_dim=config.condition_dim,
            likelihood_base=latent.likelihood_base,
            frame_flow=frame_flow_settings(latent, [] if flow is None else flow.transforms),
        )

    @classmethod
    def from_config(cls, config: SLVMConfig, event_shape: Sequence[int]) -> SLVM:
        """The model that ``config`` describes, for frames of ``event_shape``."""
        return cls(event_shape, config)

    exact = False  # elbo and bound are lower bounds (:mod:`seqflows.objective`)

    @classmethod
    def check_frames(cls, event_shape: Sequence[int], size_setting: str = "size") -> None:
        """Checks that ``event_shape`` suits the model: :meth:`SLVMConfig.check_frames`."""
        SLVMConfig().check_frames(event_shape, size_setting)

    @property
    def train_frames(self) -> str:
        """The frames of the training ELBO (``SLVMConfig.train_frames``)."""
        return self.config.train_frames

    @property
    def label(self) -> str:
        """Deprecated: ``seqflows.app.figures.model_label(model)``, the paper's name of the model
        (``SLVM``, ``SLVM w/ 1-AF``, ``SLVM w/ 1-AF, flow prior``)."""
        warn_deprecated("SLVM.label", "seqflows.app.figures.model_label(model)")
        with warnings.catch_warnings():  # the flow's own label warns too
            warnings.simplefilter("ignore", DeprecationWarning)
            label = "SLVM" if self.flow is None else f"SLVM w/ {self.flow.label}"
        return label if self.latent.prior_flow is None else f"{label}, flow prior"

    def loss(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        kl_weight: float = 1.0,
        *,
        conditions: Tensor | None = None,
    ) -> LossTerms:
        r"""The paper's loss: minus the mean ELBO (Eq. 20) of the ``train_frames`` frames.

        For the baseline with ``train_frames="all"`` those are every frame of the crop (the
        authors' objective, 13 terms for crops of 13), although evaluation scores the frames
        after ``burn_in`` only; their terms are ``elbo_terms(x, generator, self.train_frames)``.

        Arguments:
            x: Sequences, with shape (B, T, *event_shape).
            generator: Random numbers of the posterior sample.
            kl_weight: Weight of the KL term in the loss (KL warm-up; 1: the ELBO). The
                reported ``objective`` is the ELBO whatever the weight.
            conditions: Their conditions (B, T, A), for a conditioned model only.
        """
        terms = self.elbo_terms(x, generator, self.train_frames, conditions)
        elbo = terms.elbo
        values = terms.likelihood_loc[0, 0].numel()
        loss = -observed_mean(elbo, terms.observed, values)  # gaps: per observed value x D
        if kl_weight != 1.0:
            loss = loss - (1 - kl_weight) * observed_mean(terms.kl, terms.observed, values)
        return LossTerms(
            loss=loss,
            objective=elbo,
            flow=terms.flow,
            kl=terms.kl,
            log_likelihood=terms.log_likelihood,
            observed=terms.observed,
        )

    def scores(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        *,
        conditions: Tensor | None = None,
    ) -> FrameScores:
        r"""The ELBO (Eq. 20) of each scored frame, (B, T - burn_in), at one posterior sample,
        with the flow's outputs (its noise y) or, without a flow, the likelihood p(x_t | z_t)."""
        return _frame_scores(self.elbo_terms(x, generator, conditions=conditions))

    def rows(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        conditions: Tensor | None = None,
    ) -> tuple[Tensor, list[dict[str, Tensor]]]:
        r"""Deprecated: ``seqflows.app.figures.figure_rows(model, x, generator,
        conditions=...)``. The rows of Fig. 4 / Fig. 9 of sequences x, on the scored frames.

        With a flow: the flow's rows (:meth:`~seqflows.flows.FlowModel.rows`: ``shift``,
        ``scale``, ``noise``). Without one, the likelihood p(x_t | z_t) at a posterior sample:
        its ``loc``, its ``scale`` and the standardized ``residual`` (x - loc) / scale, each
        (B, T - burn_in, *event_shape).
        """
        warn_deprecated("SLVM.rows", "seqflows.app.figures.figure_rows(model, x, ...)")
        if self.flow is not None:
            with warnings.catch_warnings():  # the flow's own rows warn too
                warnings.simplefilter("ignore", DeprecationWarning)
                return self.flow.rows(x, generator, conditions)
        terms = self.elbo_terms(x, generator, conditions=conditions)
        data = x[:, self.burn_in :]
        loc, scale = terms.likelihood_loc, terms.likelihood_scale
        return data, [{"loc": loc, "scale": scale, "residual": (data - loc) / scale}]

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
        r"""Importance-weighted bound on log p(x_scored | x_context) of each sequence, (B,).

        log (1/K) sum_k prod_t w_t^k over the scored frames, plus the flow's log-determinant
        (Eq. 20 with K samples: Burda et al., 2016). K = 1 is an unbiased estimate of the summed
        ELBO; the bound grows with K towards the log-likelihood. For the baseline, the latents
        of the context frames come from the posterior: the bound is on the conditional density
        that this defines.

        Arguments:
            x: Sequences, with shape (B, T, *event_shape).
            num_samples: K.
            generator: Random numbers of the samples.
            chunk: Samples per pass (memory); None: all K at once.
            scored: Score only the last ``scored`` frames (the earlier ones are context);
                None: every frame after ``burn_in``.
            conditions: Their conditions (B, T, A), for a conditioned model only.
        """
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        seen = self._modelled(x, conditions)
        return self._bound(
            x, seen, self.latent.encode(seen.v), num_samples, generator, chunk, scored
        )

    @property
    def burn_in(self) -> int:
        """Context frames that are not scored (M*k with a flow): the config's
        :attr:`SLVMConfig.burn_in_frames`."""
        return self.config.burn_in_frames

    @property
    def num_transforms(self) -> int:
        """M, the number of flow transforms (0 for the baseline)."""
        return 0 if self.flow is None else self.flow.num_transforms

    @property
    def condition_dim(self) -> int:
        """A, the size of the per-step conditions the model takes (0: unconditioned)."""
        return self.config.condition_dim

    def _modelled(self, x: Tensor, conditions: Tensor | None) -> _Modelled:
        """What the latent model sees of x: the flow's noise (or x itself), the flow's outputs
        and the conditions of those frames (x checked: shape, dtype, finite values; and the
        conditions)."""
        check_sequence(x, self.event_shape, "x")
        check_conditions(conditions, self.condition_dim, x.shape[0], x.shape[1])
        x, observed = split_missing(x)  # gaps: filled, and left out of the bound
        if x.shape[1] <= self.burn_in:
            raise DataError(
                f"sequences of {x.shape[1]} frames leave nothing to score: this model uses the "
                f"first {self.burn_in} frames as context"
            )
        require_elementwise(self.latent, observed)  # the MAF likelihood ties a step together
        if self.flow is None:
            check_dtype(x, self, "x")
            check_finite(x, "x")
            return _Modelled(x, None, conditions, observed)
        require_elementwise(self.flow, observed)
        out = self.flow.normalize(x, conditions)  # which checks the dtype and the values of x
        latent_conditions = None if conditions is None else conditions[:, self.burn_in :]
        if observed is not None:  # y_{t,d} depends on x_{t,d} and the past: the same mask
            observed = observed[:, self.burn_in :]
        return _Modelled(out.noise, out, latent_conditions, observed)

    def elbo_terms(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        frames: str = "scored",
        conditions: Tensor | None = None,
    ) -> ELBOTerms:
        r"""The terms of Eq. 20 for each scored frame, at one posterior sample.

        Arguments:
            x: Sequences, with shape (B, T, *event_shape).
            generator: Random numbers of the posterior sample.
            frames: ``"scored"``: the frames after ``burn_in``, (B, T - burn_in); ``"all"``:
                every frame the latent model sees, (B, T) for the baseline (its context frames
                included) and (B, T - burn_in) with a flow.
            conditions: Their conditions (B, T, A), for a conditioned model only.
        """
        if frames not in TRAIN_FRAMES:
            raise ValueError(f"frames must be one of {TRAIN_FRAMES}, got {frames!r}")
        return self._elbo_terms(x, self._modelled(x, conditions), generator, frames)

    def _elbo_terms(
        self,
        x: Tensor,
        seen: _Modelled,
        generator: torch.Generator | None,
        frames: str,
        features: Tensor | None = None,
    ) -> ELBOTerms:
        """:meth:`elbo_terms` of x, given what the latent model sees of it (:meth:`_modelled`)
        and, when the caller has them, the encoder's features of that."""
        flow = seen.flow
        log_likelihood, kl, loc, log_scale = self.latent.terms(
            seen.v, generator, features, seen.conditions, seen.observed
        )
        start = 0
        if frames == "scored":  # the baseline models its context frames too: drop them
            start = log_likelihood.shape[1] - (x.shape[1] - self.burn_in)
        observed = None if seen.observed is None else seen.observed[:, start:]
        return ELBOTerms(
            log_likelihood=log_likelihood[:, start:],
            kl=kl[:, start:],
            log_abs_det=(
                _flow_log_abs_det(flow, observed, len(self.event_shape))
                if flow
                else torch.zeros_like(kl[:, start:])
            ),
            flow=flow,
            likelihood_loc=loc[:, start:],
            likelihood_scale=torch.exp(log_scale[:, start:]),
            observed=None if observed is None else observed.flatten(2).sum(-1),
        )

    def elbo(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        conditions: Tensor | None = None,
    ) -> Tensor:
        r"""Per-frame ELBO in nats of the scored frames (Eq. 20), with shape (B, T - burn_in).

        log-likelihood - KL + log-determinant, the per-frame terms of the bound that evaluation
        reports.
        """
        return self.elbo_terms(x, generator, conditions=conditions).elbo

    def training_terms(
        self,
        x: Tensor,
        generator: torch.Generator | None = None,
        conditions: Tensor | None = None,
    ) -> ELBOTerms:
        r"""Deprecated: ``elbo_terms(x, generator, model.train_frames)``, the ELBO terms of the
        frames the loss (:meth:`loss`) trains on."""
        warn_deprecated("SLVM.training_terms", "SLVM.elbo_terms(x, generator, model.train_frames)")
        return self.elbo_terms(x, generator, self.train_frames, conditions)

    def forward(self, x: Tensor, conditions: Tensor | None = None) -> Tensor:
        """Same as :meth:`elbo`."""
        return self.elbo(x, conditions=conditions)

    def iwae(
        self,
        x: Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        chunk: int | None = None,
        scored: int | None = None,
        conditions: Tensor | None = None,
    ) -> Tensor:
        r"""Deprecated: :meth:`bound`, the importance-weighted bound of each sequence, (B,)."""
        warn_deprecated("SLVM.iwae", "SLVM.bound")
        return self.bound(x, num_samples, generator, chunk, scored, conditions=conditions)

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
        r""":meth:`scores` and then :meth:`bound` of the same sequences, what evaluation needs.

        The same numbers as ``scores(x, generator)`` followed by ``bound(x, num_samples,
        generator, chunk, scored)`` (with the same ``conditions``) with the same generator (the
        ELBO's posterior sample is drawn first), but what does not depend on the samples is
        computed once: the flow normalizes x once and the encoder sees the data once.

        Returns:
            The ELBO of each scored frame (B, T - burn_in) with the flow's noise (or None), and
            the importance-weighted bound of each sequence (B,); None with ``num_samples`` = 0
            (then the same as ``scores(x, generator)`` alone).
        """
        if num_samples < 0:
            raise ValueError(f"num_samples must be at least 0, got {num_samples}")
        if num_samples == 0:
            return self.scores(x, generator, conditions=conditions), None
        seen = self._modelled(x, conditions)
        features = self.latent.encode(seen.v)
        terms = self._elbo_terms(x, seen, generator, "scored", features)
        bound = self._bound(x, seen, features, num_samples, generator, chunk, scored)
        return _frame_scores(terms), bound

    def _bound(
        self,
        x: Tensor,
        seen: _Modelled,
        features: Tensor,
        num_samples: int,
        generator: torch.Generator | None,
        chunk: int | None,
        scored: int | None,
    ) -> Tensor:
        """:meth:`bound` of x, given what the latent model sees of it (:meth:`_modelled`) and
        the encoder's features of that."""
        available = x.shape[1] - self.burn_in
        scored = available if scored is None else scored
        if not 1 <= scored <= available:
            raise ValueError(
                f"scored must be between 1 and {available} (frames after the {self.burn_in} "
                f"context frames), got {scored}"
            )
        totals = []
        remaining = num_samples
        while remaining > 0:
            size = remaining if chunk is None else min(chunk, remaining)
            weights = self.latent.log_weights(
                seen.v, size, generator, features, seen.conditions, seen.observed
            )
            totals.append(weights[:, :, weights.shape[2] - scored :].sum(-1))
            remaining -= size
        log_weights = torch.cat(totals, dim=1)  # (B, K)
        bound = torch.logsumexp(log_weights, dim=1) - torch.log(
            log_weights.new_tensor(float(num_samples))
        )
        if seen.flow is not None:
            log_abs_det = _flow_log_abs_det(seen.flow, seen.observed, len(self.event_shape))
            bound = bound + log_abs_det[:, available - scored :].sum(1)
        return bound

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
        r"""Samples ``length`` new frames after ``context`` (real frames: prediction).

        With a flow, y is sampled from the latent model and mapped through the flow step by
        step (Eq. 5), which needs at least M*k context frames; the latent model filters the y of
        any context frames beyond those. Without a flow, the context's latents come from the
        filtering posterior. New latents come from the prior. ``temperature`` scales the
        likelihood's noise (0: its loc; the latents are still sampled). ``conditions``: for a
        conditioned model, those of the context's frames and of the new ones, (B, c + length, A).
        Returns (B, length, *event_shape).
        """
        known = check_sample_arguments(self, num_sequences, length, context, conditions)
        if context is not None:  # gaps (NaN) of the context: filled as for the bound
            context = split_missing(context, "context")[0]
        if self.flow is None:
            return self.latent.sample(
                num_sequences, length, context, generator, temperature, conditions
            )
        if context is None or context.shape[1] < self.flow.burn_in:
            raise ValueError(
                f"this model needs {self.flow.burn_in} context frames (num_transforms * window)"
            )
        # Context frames after the flow's burn-in have noise y: the latent model filters them.
        history = None
        if context.shape[1] > self.burn_in:
            known_conditions = None if conditions is None else conditions[:, :known]
            history = self.flow.normalize(context, known_conditions).noise
        latent_conditions = None if conditions is None else conditions[:, self.burn_in :]
        noise = self.latent.sample(
            num_sequences, length, history, generator, temperature, latent_conditions
        )
        generated = self.flow.generate(noise.to(context.dtype), context, conditions)
        return generated[:, context.shape[1] :]


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_LATENT:
        from . import latent

        message = f"seqflows.slvm.{name} moved to seqflows.latent.{name}"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return getattr(latent, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

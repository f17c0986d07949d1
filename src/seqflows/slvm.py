r"""Sequential latent variable models (Sec. 2.2, 3.3, Appendix A, B, Fig. 6).

:class:`LatentSequenceModel` is the SLVM on a sequence v_{1:T} (the data x, or the flow's noise
y): latents z_t with a learned prior and a filtering approximate posterior,

    p(v_{1:T}, z_{1:T}) = prod_t p(v_t | z_t) p(z_t | z_{<t})                        (Eq. 3, 17)
    q(z_{1:T} | v_{1:T}) = prod_t q(z_t | v_{<=t}, z_{<t})                           (Eq. 19)
    ELBO = sum_t E_q[log p(v_t | z_t)] - KL(q(z_t | v_{<=t}, z_{<t}) || p(z_t | z_{<t}))   (Eq. 18)

Prior: two fully connected ReLU layers on z_{t-1}, an LSTM, linear heads. Posterior: an LSTM on
[encoder(v_t), z_{t-1}], linear heads. Likelihood: a decoder from z_t alone. Every log-scale is
clamped to [-15, 5]; z_0 = 0 and the LSTMs start from learned states (docs/design.md).
The encoder and the decoder see all B*T frames in one call; only the LSTMs step through time.

:class:`SLVM` puts an optional M-AF (:class:`~seqflows.flows.FlowModel`) in front: the flow maps
x to y and the latent model models y, so that (Eq. 16, 20, 30)

    ELBO_t = E_q[log p(y_t | z_t)] - KL_t + log |det dy_t / dx_t|.

``num_transforms=0`` is the paper's SLVM baseline (sigmoid on the likelihood's loc, 2 LSTM
layers); 1 and 2 are SLVM w/ 1-AF and w/ 2-AF (linear loc, 1 LSTM layer).

Beyond the paper, ``condition_dim=A`` conditions the model on per-step conditions c (B, T, A)
that every method takes beside x: the prior p(z_t | z_{<t}, c_{<=t}), the posterior
q(z_t | v_{<=t}, z_{<t}, c_{<=t}) and the likelihood p(v_t | z_t, c_t) each add a linear
projection of c_t to their input (the LSTMs' inputs, the decoder's z_t), and the flow's
transforms see c_{t-k+1:t} (:mod:`seqflows.conditioning`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
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
from .conditioning import check_conditions, projection
from .config import build, check_at_least, check_choices
from .distributions import full_precision, normal_kl, normal_log_prob
from .errors import ConfigError, DataError, warn_deprecated
from .flat_settings import FLAT_NAMES, nest_settings
from .flows import FlowConfig, FlowModel, FlowOutput
from .latent_prior import LatentFlow, PriorFlowConfig
from .missing import observed_mean, observed_sum, require_elementwise, split_missing
from .networks import conv_frame_layers, make_frame_networks
from .objective import FrameScores, LossTerms
from .pretrained import Pretrained
from .transforms import StackConfig, TransformConfig, transform_settings

__all__ = [
    "ELBOTerms",
    "LatentConfig",
    "LatentSequenceModel",
    "Posterior",
    "SLVM",
    "SLVMConfig",
    "StackedLSTM",
    "reference_initialization",
]

MIN_LOG_SCALE, MAX_LOG_SCALE = -15.0, 5.0


@dataclass
class Posterior:
    r"""Latents sampled from the filtering posterior with the distributions they came from.

    Attributes:
        z: Samples, with shape (B, T, latent_dim).
        loc, log_scale: Parameters of q(z_t | v_{<=t}, z_{<t}), same shape.
    """

    z: Tensor
    loc: Tensor
    log_scale: Tensor


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


def _clamp(log_scale: Tensor) -> Tensor:
    return log_scale.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)


def _at_least_float32(x: Tensor) -> Tensor:
    """x in float32 under mixed precision (bfloat16, float16), float64 kept as it is."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


TRAIN_FRAMES = ("all", "scored")


@torch.no_grad()
def reference_initialization(module: nn.Module) -> None:
    r"""The authors' SLVM initialisation, applied in place to every layer of ``module``.

    Weights of linear, convolutional, transposed-convolutional and LSTM layers are drawn from
    Glorot's normal distribution (xavier-normal); biases are zero, except those of linear layers
    followed by a ReLU, which start at 0.1; BatchNorm scales are drawn from N(1, 0.02^2) and
    their shifts are zero. PyTorch's default instead draws uniform weights and biases scaled by
    1/sqrt(fan_in) and starts BatchNorm scales at 1.
    """
    for submodule in module.modules():
        if isinstance(submodule, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_normal_(submodule.weight)
            if submodule.bias is not None:
                nn.init.zeros_(submodule.bias)
        elif isinstance(submodule, nn.LSTMCell):
            nn.init.xavier_normal_(submodule.weight_ih)
            nn.init.xavier_normal_(submodule.weight_hh)
            nn.init.zeros_(submodule.bias_ih)
            nn.init.zeros_(submodule.bias_hh)
        elif isinstance(submodule, nn.modules.batchnorm._BatchNorm) and submodule.affine:
            nn.init.normal_(submodule.weight, 1.0, 0.02)
            nn.init.zeros_(submodule.bias)
    for submodule in module.modules():  # after the zeros above
        if isinstance(submodule, nn.Sequential):
            layers = list(submodule)
            for layer, following in zip(layers[:-1], layers[1:], strict=True):
                if isinstance(layer, nn.Linear) and isinstance(following, nn.ReLU):
                    nn.init.constant_(layer.bias, 0.1)


class StackedLSTM(nn.Module):
    r"""A multi-layer LSTM that advances one time step per call (LSTM cells, layer on layer).

    The posterior feeds each step's sample back in, so it must step through time; cells avoid
    the large per-call cost that ``nn.LSTM`` has for one-step sequences on CPU.

    Arguments:
        input_size: Size of the input of the first layer.
        hidden: Units of every layer.
        num_layers: Layers.
    """

    def __init__(self, input_size: int, hidden: int, num_layers: int) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.cells = nn.ModuleList(
            nn.LSTMCell(input_size if index == 0 else hidden, hidden)
            for index in range(num_layers)
        )
        # Learned initial (h, c) of every layer, initialised at zero.
        self.initial = nn.Parameter(torch.zeros(2, num_layers, 1, hidden))

    def start(self, batch: int) -> list[tuple[Tensor, Tensor]]:
        """The learned initial state of every layer for ``batch`` sequences."""
        return [
            (self.initial[0, index].expand(batch, -1), self.initial[1, index].expand(batch, -1))
            for index in range(self.num_layers)
        ]

    def forward(
        self, step: Tensor, state: list[tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        r"""One time step: input (B, input_size) -> top-layer output (B, hidden), new state."""
        new_state = []
        for cell, layer_state in zip(self.cells, state, strict=True):
            h, c = cell(step, layer_state)
            new_state.append((h, c))
            step = h
        return step, new_state


class LatentSequenceModel(nn.Module):
    r"""The SLVM of Appendix B and Fig. 6 on sequences v with frames of ``event_shape``.

    Arguments:
        event_shape: (C, S, S) with S = 4 * 2^n (convolutional networks) or (D,) (MLPs).
        latent_dim: Size of z_t (256 in the paper).
        hidden: Units of the LSTMs and of the prior's fully connected layers (256).
        layers: LSTM layers of the prior and of the posterior (2 for the SLVM, 1 with a flow).
        features: Size of the encoder's output (128).
        width: Filters of the convolutional networks' first / last layer (64).
        mlp_hidden: Units of the vector encoder and decoder.
        loc_map: ``"sigmoid"`` (the SLVM baseline on [0, 1] frames) or ``"linear"``.
        batch_norm: Training-mode BatchNorm statistics of the encoder and decoder: ``"pooled"``
            over all B * T frames, or ``"per_step"`` (the B frames of each time step, as the
            authors' step loop; see :mod:`seqflows.normalization`).
        init: ``"default"`` (PyTorch's) or ``"reference"`` (the authors' SLVM:
            :func:`reference_initialization`).
        prior_transforms: The kinds of a flow across time on z that the prior's Gaussian is
            pushed through (:class:`~seqflows.latent_prior.LatentFlow`), outermost first; empty:
            the paper's Gaussian prior.
        prior_config: Settings of those transforms, shared or one each (needed with
            ``prior_transforms``).
        checkpoint_activations: The encoder and the decoder recompute their activations in the
            backward pass instead of keeping them (:mod:`seqflows.normalization`).
        condition_dim: A, the size of each step's conditions c_t (0: unconditioned).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        *,
        latent_dim: int,
        hidden: int,
        layers: int,
        features: int,
        width: int,
        mlp_hidden: int,
        loc_map: str,
        batch_norm: str,
        init: str,
        prior_transforms: Sequence[str] = (),
        prior_config: TransformConfig | Sequence[TransformConfig] | None = None,
        checkpoint_activations: bool = False,
        condition_dim: int = 0,
    ) -> None:
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.latent_dim = latent_dim
        self.loc_map = loc_map
        self.batch_norm = batch_norm
        self.encoder, self.decoder = make_frame_networks(
            self.event_shape,
            latent_dim=latent_dim,
            features=features,
            width=width,
            hidden=mlp_hidden,
            checkpoint_activations=checkpoint_activations,
        )
        self.posterior_lstm = StackedLSTM(features + latent_dim, hidden, layers)
        self.posterior_loc = nn.Linear(hidden, latent_dim)
        self.posterior_log_scale = nn.Linear(hidden, latent_dim)
        self.prior_input = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.prior_lstm = StackedLSTM(hidden, hidden, layers)
        self.prior_loc = nn.Linear(hidden, latent_dim)
        self.prior_log_scale = nn.Linear(hidden, latent_dim)
        self.condition_dim = condition_dim  # c_t added, projected, to each network's input:
        self.posterior_condition = projection(condition_dim, features + latent_dim)
        self.prior_condition = projection(condition_dim, hidden)
        self.decoder_condition = projection(condition_dim, latent_dim)
        if init == "reference":
            reference_initialization(self)
        # After the initialisation above, which would undo the flow's identity_init.
        self.prior_flow = (
            LatentFlow(latent_dim, prior_transforms, prior_config or TransformConfig())
            if prior_transforms
            else None
        )

    def _per_step(self) -> bool:
        return self.batch_norm == "per_step" and self.training

    def encode(self, v: Tensor) -> Tensor:
        r"""Encoder features of every frame at once: (B, T, *event_shape) -> (B, T, features)."""
        batch, length = v.shape[:2]
        if self._per_step():  # step-major, one set of BatchNorm statistics per time step
            features = self.encoder(v.transpose(0, 1).flatten(0, 1), steps=length)
            return features.unflatten(0, (length, batch)).transpose(0, 1)
        return self.encoder(v.flatten(0, 1)).unflatten(0, (batch, length))

    def infer(
        self,
        features: Tensor,
        generator: torch.Generator | None = None,
        conditions: Tensor | None = None,
    ) -> Posterior:
        r"""Samples z_{1:T} from the filtering posterior q(z_t | v_{<=t}, z_{<t}) (Eq. 19).

        Arguments:
            features: Encoded frames, with shape (B, T, features).
            generator: Random numbers of the reparameterized samples.
            conditions: c_{1:T} (B, T, A) of a conditioned model (q also sees c_{<=t}).
        """
        batch, length = features.shape[:2]
        features = _at_least_float32(features)
        with full_precision(features.device):
            offsets = _offsets(self.posterior_condition, conditions)  # (B, T, features + latent)
            state = self.posterior_lstm.start(batch)
            z = features.new_zeros(batch, self.latent_dim)
            samples, locs, log_scales = [], [], []
            noise = torch.randn(
                batch,
                length,
                self.latent_dim,
                generator=generator,
                device=features.device,
                dtype=features.dtype,
            )
            for t in range(length):
                step = torch.cat([features[:, t], z], -1)
                if offsets is not None:
                    step = step + offsets[:, t]
                output, state = self.posterior_lstm(step, state)
                loc = self.posterior_loc(output)
                log_scale = _clamp(self.posterior_log_scale(output))
                z = loc + torch.exp(log_scale) * noise[:, t]
                samples.append(z)
                locs.append(loc)
                log_scales.append(log_scale)
        return Posterior(torch.stack(samples, 1), torch.stack(locs, 1), torch.stack(log_scales, 1))

    def prior(self, z: Tensor, conditions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Parameters of p(z_t | z_{<t}) (p(z_t | z_{<t}, c_{<=t}) with conditions (B, T, A))
        for every t at once, given z_{1:T} (B, T, latent)."""
        with full_precision(z.device):
            z = _at_least_float32(z)
            previous = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)  # z_0 = 0
            inputs = self.prior_input(previous)  # all time steps at once
            offsets = _offsets(self.prior_condition, conditions)
            if offsets is not None:
                inputs = inputs + offsets
            state = self.prior_lstm.start(z.shape[0])
            outputs = []
            for t in range(z.shape[1]):
                output, state = self.prior_lstm(inputs[:, t], state)
                outputs.append(output)
            output = torch.stack(outputs, dim=1)
            return self.prior_loc(output), _clamp(self.prior_log_scale(output))

    def log_prior(self, z: Tensor, conditions: Tensor | None = None) -> Tensor:
        r"""log p(z_t | z_{<t}) (with conditions (B, T, A): log p(z_t | z_{<t}, c_{<=t})) of every
        step at once: (B, T, latent) -> (B, T), in float32.

        With a flow prior: the Gaussian density of u = flow^{-1}(z) plus log |det du_t/dz_t|
        (:mod:`seqflows.latent_prior`); the conditions enter through the Gaussian's LSTM only.
        """
        loc, log_scale = self.prior(z, conditions)
        with full_precision(z.device):
            z = _at_least_float32(z)
            if self.prior_flow is None:
                return normal_log_prob(z, loc, log_scale, 1)
            u, log_abs_det = self.prior_flow.normalize(z)
            return normal_log_prob(u, loc, log_scale, 1) + log_abs_det

    def kl(self, posterior: Posterior, conditions: Tensor | None = None) -> Tensor:
        r"""KL_t of every step, (B, T): analytic for the Gaussian prior; with a flow prior the
        Monte-Carlo estimate log q(z_t | v_{<=t}, z_{<t}) - log p(z_t | z_{<t}) at the sample."""
        if self.prior_flow is None:
            prior_loc, prior_log_scale = self.prior(posterior.z, conditions)
            return normal_kl(posterior.loc, posterior.log_scale, prior_loc, prior_log_scale)
        log_posterior = normal_log_prob(posterior.z, posterior.loc, posterior.log_scale, 1)
        return log_posterior - self.log_prior(posterior.z, conditions)

    def likelihood(self, z: Tensor, conditions: Tensor | None = None) -> tuple[Tensor, Tensor]:
        r"""Loc and log-scale of p(v_t | z_t) (p(v_t | z_t, c_t) with conditions (B, T, A)) for
        all frames at once: (B, T, latent) -> 2 x (B, T, *event_shape), in float32."""
        offsets = _offsets(self.decoder_condition, conditions)
        if offsets is not None:
            z = z + offsets.to(z.dtype)
        batch, length = z.shape[:2]
        if self._per_step():  # step-major, one set of BatchNorm statistics per time step
            loc, log_scale = self.decoder(z.transpose(0, 1).flatten(0, 1), steps=length)
            loc = loc.unflatten(0, (length, batch)).transpose(0, 1)
            log_scale = log_scale.unflatten(0, (length, batch)).transpose(0, 1)
        else:
            loc, log_scale = self.decoder(z.flatten(0, 1))
            loc, log_scale = (
                loc.unflatten(0, (batch, length)),
                log_scale.unflatten(0, (batch, length)),
            )
        loc, log_scale = _at_least_float32(loc), _clamp(_at_least_float32(log_scale))
        if self.loc_map == "sigmoid":
            loc = torch.sigmoid(loc)
        return loc, log_scale

    def terms(
        self,
        v: Tensor,
        generator: torch.Generator | None = None,
        features: Tensor | None = None,
        conditions: Tensor | None = None,
        observed: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""Per-frame log p(v_t | z_t) and KL_t (:meth:`kl`) at one posterior sample.

        ``features``: ``encode(v)`` when the caller has it; ``conditions``: (B, T, A) of a
        conditioned model; ``observed``: the mask of v's observed values (gaps,
        :mod:`seqflows.missing`), whose terms alone the diagonal likelihood sums (None: all).

        Returns:
            log_likelihood (B, T), kl (B, T), and the likelihood's loc and log-scale
            (B, T, *event_shape).
        """
        features = self.encode(v) if features is None else features
        posterior = self.infer(features, generator, conditions)
        kl = self.kl(posterior, conditions)
        loc, log_scale = self.likelihood(posterior.z, conditions)
        terms = normal_log_prob(v, loc, log_scale, 0)  # per value: a diagonal Gaussian
        log_likelihood = observed_sum(terms, observed, len(self.event_shape))
        return log_likelihood, kl, loc, log_scale

    def elbo(
        self,
        v: Tensor,
        generator: torch.Generator | None = None,
        conditions: Tensor | None = None,
    ) -> Tensor:
        r"""Per-frame ELBO terms log p(v_t | z_t) - KL_t (Eq. 18-19), with shape (B, T)."""
        log_likelihood, kl, _, _ = self.terms(v, generator, conditions)
        return log_likelihood - kl

    def log_weights(
        self,
        v: Tensor,
        num_samples: int,
        generator: torch.Generator | None = None,
        features: Tensor | None = None,
        conditions: Tensor | None = None,
        observed: Tensor | None = None,
    ) -> Tensor:
        r"""Per-frame log importance weights of ``num_samples`` posterior trajectories.

        log w_t = log p(v_t | z_t) + log p(z_t | z_{<t}) - log q(z_t | v_{<=t}, z_{<t}), with
        the densities evaluated at the samples; summed over t, their log-mean-exp over samples
        is the importance-weighted bound (Burda et al.). ``features``: ``encode(v)`` when the
        caller has it (it does not depend on the samples). ``conditions``: (B, T, A) of a
        conditioned model; ``observed``: as in :meth:`terms`. Returns (B, num_samples, T).
        """
        batch, length = v.shape[:2]
        features = self.encode(v) if features is None else features
        # Sequence-major: the samples of sequence b are rows b * K .. (b + 1) * K - 1.
        if conditions is not None:
            conditions = conditions.repeat_interleave(num_samples, dim=0)
        posterior = self.infer(
            features.repeat_interleave(num_samples, dim=0), generator, conditions
        )
        log_prior = self.log_prior(posterior.z, conditions)
        log_posterior = normal_log_prob(posterior.z, posterior.loc, posterior.log_scale, 1)
        loc, log_scale = self.likelihood(posterior.z, conditions)
        per_sample = (batch, num_samples, length, *self.event_shape)
        terms = normal_log_prob(  # v broadcast over the samples, not copied K times
            v.unsqueeze(1), loc.view(per_sample), log_scale.view(per_sample), 0
        )
        mask = None if observed is None else observed.unsqueeze(1)
        log_likelihood = observed_sum(terms, mask, len(self.event_shape))
        samples = (batch, num_samples, length)
        return log_likelihood + log_prior.view(samples) - log_posterior.view(samples)

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
        r"""Samples ``length`` frames v after optional ``context`` frames.

        The latents of the context come from the posterior (filtering), the new ones from the
        prior; each new frame is the likelihood's loc plus ``temperature`` times its scale times
        standard normal noise. ``conditions``: those of the context's frames and of the new
        ones, (B, c + length, A), for a conditioned model. Returns (B, length, *event_shape),
        without the context.
        """
        known = check_sample_arguments(self, num_sequences, length, context, conditions)
        reference = self.posterior_loc.weight
        device = reference.device
        dtype = torch.promote_types(reference.dtype, torch.float32)
        offsets = _offsets(self.prior_condition, conditions)  # (B, c + length, hidden)
        if context is not None and context.shape[1] > 0:
            known_conditions = None if conditions is None else conditions[:, :known]
            posterior = self.infer(self.encode(context), generator, known_conditions)
            history = posterior.z
        else:
            history = torch.zeros(num_sequences, 0, self.latent_dim, device=device, dtype=dtype)

        def prior_input(previous_z: Tensor, t: int) -> Tensor:  # of step t, from z_{t-1}
            inputs = self.prior_input(previous_z)
            return inputs if offsets is None else inputs + offsets[:, t]

        with full_precision(device):
            state = self.prior_lstm.start(num_sequences)
            start = torch.zeros(num_sequences, 1, self.latent_dim, device=device, dtype=dtype)
            previous = torch.cat([start, history], dim=1)
            for t in range(history.shape[1]):  # the prior's state after z_0 .. z_{c-1}
                _, state = self.prior_lstm(prior_input(previous[:, t], t), state)
            z = previous[:, -1]
            windows = None if self.prior_flow is None else self.prior_flow.start(history)
            latents = []
            for t in range(length):
                output, state = self.prior_lstm(prior_input(z, known + t), state)
                loc = self.prior_loc(output)
                log_scale = _clamp(self.prior_log_scale(output))
                noise = torch.randn(loc.shape, generator=generator, device=device, dtype=dtype)
                z = loc + torch.exp(log_scale) * noise
                if windows is not None:  # flow prior: z_t from u_t through the windows
                    z, windows = self.prior_flow.generate_step(z, windows)
                latents.append(z)
        future = None if conditions is None else conditions[:, known:]
        loc, log_scale = self.likelihood(torch.stack(latents, 1), future)
        noise = torch.randn(loc.shape, generator=generator, device=device, dtype=loc.dtype)
        return loc + temperature * torch.exp(log_scale) * noise


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


def _offsets(layer: nn.Module | None, conditions: Tensor | None) -> Tensor | None:
    r"""A network's projection (B, T, outputs) of conditions (B, T, A) in float32, or None."""
    if layer is None and conditions is None:
        return None
    if layer is None or conditions is None:
        raise ValueError(
            "conditions must be given to a conditioned latent model and only to one, got "
            f"{'none' if conditions is None else 'some'}"
        )
    return layer(conditions.to(layer.weight.dtype))


class _Modelled(NamedTuple):
    """What the latent model of an SLVM sees of sequences x (:meth:`SLVM._modelled`)."""

    v: Tensor  # the flow's noise y (B, T - burn_in, ...), or x itself without a flow
    flow: FlowOutput | None  # the flow's outputs, None without a flow
    conditions: Tensor | None  # the conditions of v's frames (B, T', A), or None
    observed: Tensor | None = None  # the mask of v's observed values (gaps), or None: all


@dataclass(frozen=True)
class LatentConfig:
    r"""Settings of an SLVM's latent model (Appendix B, Fig. 6): the LSTMs, the frame encoder
    and decoder, p(x_t | z_t).

    Attributes:
        latent_dim: Size of z_t (256).
        lstm_hidden: Units of the LSTMs and of the prior's fully connected layers (256).
        lstm_layers: LSTM layers of the prior and the posterior (None: 2 for the baseline, 1
            with a flow, as the paper).
        encoder_features: Size of the frame encoder's output (128).
        conv_width: Filters of the DC-GAN encoder's first (decoder's last) layer (64).
        mlp_hidden: Units of the encoder and decoder of vector frames (256).
        likelihood_loc: ``"sigmoid"`` or ``"linear"`` loc of p(x_t | z_t) (None: sigmoid for
            the baseline on frames, linear otherwise, as the paper).
        init: ``"reference"`` (the authors', :func:`reference_initialization`: it trained
            better here, see docs/results.md) or ``"default"`` (PyTorch's).
        batch_norm: Training-mode BatchNorm statistics of the encoder and decoder:
            ``"pooled"`` over all B * T frames or ``"per_step"`` (:mod:`seqflows.normalization`).
    """

    latent_dim: int = 256
    lstm_hidden: int = 256
    lstm_layers: int | None = None
    encoder_features: int = 128
    conv_width: int = 64
    mlp_hidden: int = 256
    likelihood_loc: Literal["sigmoid", "linear"] | None = None
    init: Literal["default", "reference"] = "reference"
    batch_norm: Literal["pooled", "per_step"] = "pooled"

    def __post_init__(self) -> None:
        check_choices(self)
        check_at_least(
            self,
            1,
            "latent_dim",
            "lstm_hidden",
            "lstm_layers",
            "encoder_features",
            "conv_width",
            "mlp_hidden",
        )


DEFAULT_BURN_IN = 3  # the baseline's context frames: those a 1-AF with k = 3 needs


@dataclass(frozen=True)
class SLVMConfig:
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

    flat_names: ClassVar[frozenset[str]] = FLAT_NAMES["slvm"]  # the aliases it accepts

    @classmethod
    def nest_flat_settings(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` with the flat names of earlier versions nested
        (:func:`~seqflows.flat_settings.nest_settings`)."""
        return nest_settings("slvm", values)

    @classmethod
    def from_settings(cls, config: SLVMConfig | None = None, **settings: Any) -> SLVMConfig:
        r"""``config`` (default: the defaults) with ``settings`` changed, flat names
        (``num_transforms=1``, ``latent_dim=8``) or nested ones (``latent={...}``)."""
        return build(cls, {**asdict(config or cls()), **settings})

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
            ConfigError: Images of another size; vectors with a ``"conv"`` conditioner.
        """
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

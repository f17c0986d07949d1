r"""The latent sequence model of an SLVM (Sec. 2.2, Appendix B, Fig. 6).

:class:`LatentSequenceModel` is the SLVM on a sequence v_{1:T} (the data x, or the flow's noise
y): latents z_t with a learned prior and a filtering approximate posterior,

    p(v_{1:T}, z_{1:T}) = prod_t p(v_t | z_t) p(z_t | z_{<t})                        (Eq. 3, 17)
    q(z_{1:T} | v_{1:T}) = prod_t q(z_t | v_{<=t}, z_{<t})                           (Eq. 19)
    ELBO = sum_t E_q[log p(v_t | z_t)] - KL(q(z_t | v_{<=t}, z_{<t}) || p(z_t | z_{<t}))   (Eq. 18)

Prior: two fully connected ReLU layers on z_{t-1}, an LSTM, linear heads. Posterior: an LSTM on
[encoder(v_t), z_{t-1}], linear heads. Likelihood: a decoder from z_t alone. Every log-scale is
clamped to [-15, 5]; z_0 = 0 and the LSTMs start from learned states (docs/design.md).
The encoder and the decoder see all B*T frames in one call; only the LSTMs step through time.

Beyond the paper, ``condition_dim=A`` conditions it on per-step conditions c (B, T, A): the
prior p(z_t | z_{<t}, c_{<=t}), the posterior q(z_t | v_{<=t}, z_{<t}, c_{<=t}) and the
likelihood p(v_t | z_t, c_t) each add a linear projection of c_t to their input (the LSTMs'
inputs, the decoder's z_t).

Also beyond the paper, ``likelihood_base="full_covariance"`` (vectors (D,) only) ties the
dimensions of a step together given z_t: p(v_t | z_t) = N(loc(z_t), L(z_t) L(z_t)^T) with L lower
triangular, its diagonal the diagonal model's scale and its strictly-lower entries a third head
of the decoder, zero at the start (then it is the diagonal model). Gaps are marginalised exactly
(:func:`~seqflows.distributions.full_normal_log_prob`). ``likelihood_base="maf"`` instead
passes the standardized residual (v_t - loc) / scale through a masked autoregressive flow across
the D dimensions given z_t (:class:`~seqflows.step_flows.MaskedBase`, its context network on
z_t), the identity at the start; it cannot leave a missing value out, so gaps are refused.
For frames (C, H, W), ``likelihood_base="glow"`` passes the standardized residual through a
multi-scale coupling flow within the frame (:class:`~seqflows.frame_flows.FrameFlow`), its
networks conditioned on the decoder's loc and log-scale maps (:meth:`likelihood_parameters`);
the identity at the start too, and gaps refused likewise.

:class:`LatentConfig` holds its settings inside :class:`~seqflows.slvm.SLVMConfig`;
:class:`~seqflows.slvm.SLVM` puts the optional flow in front of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .checks import check_event_shape, check_sample_arguments
from .conditioning import projection
from .config import check_at_least, check_choices
from .distributions import (
    full_normal_log_prob,
    full_precision,
    lower_triangular,
    normal_kl,
    normal_log_prob,
)
from .errors import ConfigError
from .frame_flows import FrameFlow, check_frame_side, frame_flow_settings
from .latent_prior import LatentFlow
from .missing import observed_sum
from .networks import make_frame_networks
from .step_flows import make_step_base
from .transforms import TransformConfig

__all__ = [
    "LIKELIHOOD_BASES",
    "LatentConfig",
    "LatentSequenceModel",
    "Posterior",
    "StackedLSTM",
    "check_likelihood_base",
    "reference_initialization",
]


MIN_LOG_SCALE, MAX_LOG_SCALE = -15.0, 5.0
GLOW_SETTINGS = ("latent.likelihood_base", "latent.glow_levels")  # what frame errors name


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


def _clamp(log_scale: Tensor) -> Tensor:
    return log_scale.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)


def _at_least_float32(x: Tensor) -> Tensor:
    """x in float32 under mixed precision (bfloat16, float16), float64 kept as it is."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


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
        likelihood_base: ``"diagonal"`` (the paper's p(v_t | z_t)), ``"full_covariance"``
            (vectors only: a Gaussian with a lower-triangular factor across the dimensions) or
            ``"maf"`` (vectors only: the diagonal Gaussian's standardized residual through a
            MAF across the dimensions given z_t) or ``"glow"`` (frames only: that residual
            through a flow within the frame given the decoder's loc and log-scale maps).
        frame_flow: The ``"glow"`` likelihood's :class:`~seqflows.frame_flows.FrameFlow`
            settings (``levels``, ``hidden``, ``coupling``, ``bins``, ``bound``:
            :func:`~seqflows.frame_flows.frame_flow_settings`); None: its defaults.
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
        likelihood_base: str = "diagonal",
        frame_flow: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.event_shape = check_event_shape(event_shape)
        self.likelihood_base = likelihood_base
        self.full_covariance = likelihood_base == "full_covariance"
        check_likelihood_base(likelihood_base, self.event_shape)
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
            strictly_lower=self.full_covariance,
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
        if self.full_covariance:  # after the initialisation above: starts diagonal
            self.decoder.zero_lower_head()
        # After it too: the MAF and the frame flow start as the identity. The MAF's context
        # network reads z_t; the frame flow's the decoder's loc and log-scale maps, its two
        # "past frames" (likelihood_parameters).
        self.likelihood_flow: nn.Module | None = None
        if likelihood_base == "maf":
            self.likelihood_flow = make_step_base(
                "maf", self.event_shape, 0, mlp_hidden, condition_dim=latent_dim
            )
        elif likelihood_base == "glow":
            settings = frame_flow or frame_flow_settings(LatentConfig())
            check_frame_side(self.event_shape, settings["levels"], *GLOW_SETTINGS)
            self.likelihood_flow = FrameFlow(self.event_shape, 2, **settings)
        self.exact_marginals = self.likelihood_flow is None  # gaps: refused with the MAF
        self.label = f"An SLVM with latent.likelihood_base={likelihood_base!r}"  # in errors
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
        all frames at once: (B, T, latent) -> 2 x (B, T, *event_shape), in float32. With a full
        covariance the log-scale is that of the factor's diagonal, with the MAF or the frame flow
        that of the residual it standardizes (:meth:`likelihood_parameters`)."""
        loc, log_scale, _ = self.likelihood_parameters(z, conditions)
        return loc, log_scale

    def likelihood_parameters(
        self, z: Tensor, conditions: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        r""":meth:`likelihood`'s loc and log-scale, and what ties a step's dimensions together
        (``within``): with a full covariance the Cholesky factor L (B, T, D, D) of
        p(v_t | z_t) = N(loc, L L^T), diag(L) = exp(log-scale); with the MAF its context
        features (B, T, hidden) of z_t; with the frame flow its context, the loc and log-scale
        maps stacked as two frames (B, T, 2, C, H, W); None for the diagonal likelihood."""
        offsets = _offsets(self.decoder_condition, conditions)
        if offsets is not None:
            z = z + offsets.to(z.dtype)
        batch, length = z.shape[:2]
        if self._per_step():  # step-major, one set of BatchNorm statistics per time step
            outputs = self.decoder(z.transpose(0, 1).flatten(0, 1), steps=length)
            outputs = [out.unflatten(0, (length, batch)).transpose(0, 1) for out in outputs]
        else:
            outputs = [out.unflatten(0, (batch, length)) for out in self.decoder(z.flatten(0, 1))]
        loc, log_scale = _at_least_float32(outputs[0]), _clamp(_at_least_float32(outputs[1]))
        if self.loc_map == "sigmoid":
            loc = torch.sigmoid(loc)
        if self.likelihood_base == "glow":
            return loc, log_scale, torch.stack([loc, log_scale], dim=-4)
        if self.likelihood_flow is not None:
            with full_precision(z.device):
                return loc, log_scale, self.likelihood_flow.context_network(_at_least_float32(z))
        if not self.full_covariance:
            return loc, log_scale, None
        return loc, log_scale, lower_triangular(log_scale, _at_least_float32(outputs[2]))

    def log_likelihood(
        self,
        v: Tensor,
        loc: Tensor,
        log_scale: Tensor,
        within: Tensor | None,
        observed: Tensor | None = None,
    ) -> Tensor:
        r"""Per-frame log p(v_t | z_t) (*) of frames v (*, *event_shape), the leading dims
        broadcast, ``within`` as :meth:`likelihood_parameters` gives it: the diagonal Gaussian
        summed over the observed values (None), the full-covariance Gaussian of the factor L
        (*, D, D) (its exact marginal over the observed values), or with the MAF's features
        (*, hidden) and e the MAF's noise of the standardized residual r = (v - loc) / scale
        (Eq. 7),

            log p(v_t | z_t) = log N(e; 0, I) + log |det de/dr| - sum_d log scale_d,

        or likewise with the frame flow's context (*, 2, C, H, W) and its noise e of r
        (:meth:`~seqflows.frame_flows.FrameFlow.log_prob`, the sum over its pixels).
        """
        if self.likelihood_base == "glow":
            with full_precision(loc.device):
                residual = (v - loc) * torch.exp(-log_scale)  # broadcast: (*, C, H, W)
                frames = residual.shape[:-3]
                log_prob = self.likelihood_flow.log_prob(
                    residual, within.expand(*frames, *within.shape[-4:])
                )
                return log_prob - log_scale.flatten(-3).sum(-1)
        if self.likelihood_flow is not None:
            with full_precision(loc.device):
                residual = (v - loc) * torch.exp(-log_scale)  # broadcast, then one row per frame
                frames = residual.shape[:-1]
                noise, log_det = self.likelihood_flow.to_noise(
                    residual.flatten(0, -2), within.expand(*frames, -1).flatten(0, -2)
                )
                log_normal = normal_log_prob(noise, noise.new_zeros(()), noise.new_zeros(()), 1)
                return (log_normal + log_det).view(frames) - log_scale.sum(-1)
        if within is None:
            terms = normal_log_prob(v, loc, log_scale, 0)  # per value: a diagonal Gaussian
            return observed_sum(terms, observed, len(self.event_shape))
        return full_normal_log_prob(v, loc, within, observed)

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
        loc, log_scale, within = self.likelihood_parameters(posterior.z, conditions)
        log_likelihood = self.log_likelihood(v, loc, log_scale, within, observed)
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
        loc, log_scale, within = self.likelihood_parameters(posterior.z, conditions)
        per_sample = (batch, num_samples, length, *self.event_shape)
        if within is not None:  # L (B, K, T, D, D), or the MAF's features (B, K, T, hidden)
            within = within.unflatten(0, (batch, num_samples))
        mask = None if observed is None else observed.unsqueeze(1)
        log_likelihood = self.log_likelihood(  # v broadcast over the samples, not copied K times
            v.unsqueeze(1), loc.view(per_sample), log_scale.view(per_sample), within, mask
        )
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
        loc, log_scale, within = self.likelihood_parameters(torch.stack(latents, 1), future)
        if self.likelihood_base == "glow":  # each frame's flow inverted given its context
            with full_precision(device):  # (the frames given z_t are independent)
                flow = self.likelihood_flow
                residual = flow.sample(within.flatten(0, 1), generator, temperature)
            return loc + torch.exp(log_scale) * residual.view(loc.shape)
        noise = torch.randn(loc.shape, generator=generator, device=device, dtype=loc.dtype)
        if self.likelihood_flow is not None:  # the MAF's inverse, dimension by dimension
            with full_precision(device):  # (temperature 0: the inverse of e = 0, not the loc)
                steps = self.likelihood_flow.from_noise(
                    temperature * noise.flatten(0, 1), within.flatten(0, 1)
                )
            return loc + torch.exp(log_scale) * steps.view(loc.shape)
        if within is not None:  # correlated dimensions: L e
            with full_precision(device):
                return loc + temperature * (within @ noise[..., None])[..., 0]
        return loc + temperature * torch.exp(log_scale) * noise


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


LIKELIHOOD_BASES = ("diagonal", "full_covariance", "maf", "glow")
FRAME_LIKELIHOOD_BASES = ("diagonal", "glow")  # those of frames (C, H, W); of vectors: not glow


def check_likelihood_base(likelihood_base: str, event_shape: Sequence[int]) -> None:
    """Refuses an unknown likelihood base, one other than ``"diagonal"`` or ``"glow"`` (full
    covariance, MAF) for frames (C, S, S): they model the dimensions of vectors (D,); and
    ``"glow"`` for vectors: it is a flow within the frame.

    Raises:
        ConfigError: Naming the setting ``latent.likelihood_base``.
    """
    if likelihood_base not in LIKELIHOOD_BASES:
        raise ConfigError(
            f"latent.likelihood_base must be one of {LIKELIHOOD_BASES}, got {likelihood_base!r}"
        )
    image = len(event_shape) != 1
    if image and likelihood_base not in FRAME_LIKELIHOOD_BASES:
        raise ConfigError(
            f"latent.likelihood_base={likelihood_base!r} ties the dimensions of a vector step "
            f"(D,) together; frames {tuple(event_shape)} need latent.likelihood_base 'diagonal' "
            "or 'glow'"
        )
    if not image and likelihood_base == "glow":
        raise ConfigError(
            f"latent.likelihood_base='glow' is a flow within the frame (C, H, W); vector steps "
            f"{tuple(event_shape)} need latent.likelihood_base 'diagonal', 'full_covariance' or "
            "'maf'"
        )


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
        likelihood_base: Beyond the paper: ``"diagonal"`` (the paper's p(x_t | z_t), independent
            dimensions given z_t), ``"full_covariance"`` (vector series only: a Gaussian with
            a lower-triangular Cholesky factor from the decoder, diagonal at the start) or
            ``"maf"`` (vector series only: its standardized residual through a masked
            autoregressive flow across the dimensions given z_t, the identity at the start;
            gaps refused) or ``"glow"`` (frames only: that residual through a multi-scale
            coupling flow within the frame conditioned on the decoder's loc and log-scale maps,
            :class:`~seqflows.frame_flows.FrameFlow`, the identity at the start; gaps refused).
        glow_coupling, glow_levels, glow_hidden: The ``"glow"`` likelihood's couplings
            (``"affine"`` or ``"spline"``, with the bins and bound of the likelihood's first
            spline transform, else the defaults), scales and network channels: the names and
            defaults of the flow model's ``base="glow"``
            (:class:`~seqflows.flows.FlowConfig`).
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
    likelihood_base: Literal["diagonal", "full_covariance", "maf", "glow"] = "diagonal"
    glow_coupling: Literal["affine", "spline"] = "affine"
    glow_levels: int = 2
    glow_hidden: int = 32

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
            "glow_levels",
            "glow_hidden",
        )

r"""Within-step bases: a conditional distribution of y_t across the D dimensions of one step.

Beyond the paper. Its flows act element-wise within a time step (Sec. 3.2, third limitation):
given the past, the base p(y_t) of Eq. 7-9 is N(0, I), so the dimensions of one step are
independent given the past and the model matches a VAR with a diagonal noise covariance at best.
Here p(y_t | h_t) is a flow across the D dimensions of y_t (vectors (D,) only), conditioned on
context features of the past,

    h_t = MLP(x_{t-k}, ..., x_{t-1}, c_t)        (k: the model's window; c_t: its conditions)

(two tanh layers: bounded features, so that a window far outside the training data, a crisis
in an economic series, cannot drive the covariance towards a singular one by extrapolation; the
masked networks use tanh for the same reason)

and applied at every step in parallel for densities, one step at a time when generating. The
context is the window of past *data* frames (zeros before the first frame, ``padded`` mode), so
log p(y_t | h_t) depends on x_{<t} (and c_t) only: causal in time, and all steps are scored in
one pass because x is known. Each base maps y_t to a standard normal noise e_t:

    log p(y_t | h_t) = log N(e_t; 0, I) + log |det de_t / dy_t|                  (Eq. 7)

* :class:`FullCovarianceBase` (``"full_covariance"``): y_t = mu(h_t) + L(h_t) e_t with L lower
  triangular, positive diagonal: a Gaussian with covariance L L^T; log |det| = -sum_d log L_dd.
* :class:`MaskedBase` (``"maf"`` and ``"nsf"``): a stack of masked autoregressive transforms
  across the dimensions (MADE masks, Germain et al. 2015; MAF, Papamakarios et al. 2017; NSF,
  Durkan et al. 2019). Transform l maps v to v' with v'_d = (v_d - shift_d) / scale_d (affine) or
  v'_d = g_d(v_d) (a rational-quadratic spline, :mod:`seqflows.splines`), its parameters
  functions of v_{<d} (in the transform's order) and h_t; successive transforms reverse the order.
  The density direction is one pass; generation inverts dimension by dimension (D passes).

Every output head starts at zero: mu = 0, L = I, shift 0, scale 1, the identity spline, so an
untrained base is N(0, I), today's ``"standard"`` base.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .distributions import lower_triangular
from .errors import ConfigError
from .splines import RationalQuadraticSpline, spline_parameters
from .transforms import bound_log_scale

__all__ = [
    "STEP_BASES",
    "FullCovarianceBase",
    "MaskedBase",
    "StepBase",
    "make_step_base",
]

STEP_BASES = ("full_covariance", "maf", "nsf")  # the ``base`` choices that this module builds
_LOG_2PI = math.log(2 * math.pi)


class StepBase(nn.Module):
    r"""A conditional distribution p(y_t | h_t) of vector steps (D,) given context features h_t.

    Subclasses map a step y (N, D) and its features h (N, H) to the noise e (N, D) and
    log |det de/dy| (N,) (:meth:`to_noise`), and back (:meth:`from_noise`).

    Arguments:
        event_shape: (D,).
        window: k, the past data frames in the context.
        hidden: H, the units of the context network (and of the masked networks).
        condition_dim: A, the size of the per-step conditions c_t in the context (0: none).
        scale_bounds: (min_scale, max_scale, scale_map) bounding every scale, as the transforms'.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        window: int,
        hidden: int,
        condition_dim: int = 0,
        scale_bounds: tuple[float, float, str] = (1e-4, 10.0, "clamp"),
    ) -> None:
        super().__init__()
        self.event_shape = tuple(int(size) for size in event_shape)
        if len(self.event_shape) != 1:
            raise ConfigError(
                f"a within-step base ({', '.join(STEP_BASES)}) models the dimensions of a vector "
                f"step (D,); frames {self.event_shape} need base 'standard' or 'learned'"
            )
        self.dim, self.window, self.hidden = self.event_shape[0], window, hidden
        self.condition_dim, self.scale_bounds = condition_dim, scale_bounds
        self.context_network = nn.Sequential(
            nn.Linear(window * self.dim + condition_dim, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
        )  # fmt: skip

    def context(self, x: Tensor, scored: int, conditions: Tensor | None = None) -> Tensor:
        r"""Features h_t (B, S, H) of the last S = ``scored`` frames of x (B, T, D): frame t sees
        x_{t-k:t-1} (zeros before frame 0) and c_t (conditions (B, T, A)), never x_t."""
        T, k = x.shape[1], self.window
        padded = F.pad(x, (0, 0, k, 0))  # frame t of x is frame t + k here
        window = torch.cat([padded[:, T - scored + j : T + j] for j in range(k)], dim=-1)
        if self.condition_dim:
            window = torch.cat([window, conditions[:, T - scored :].to(window.dtype)], dim=-1)
        return self.context_network(window)

    def to_noise(self, y: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        r"""The noise e (N, D) of steps y (N, D) with features (N, H), and log |det de/dy| (N,)."""
        raise NotImplementedError

    def from_noise(self, noise: Tensor, features: Tensor) -> Tensor:
        r"""The steps y (N, D) of noise e (N, D): the inverse of :meth:`to_noise`."""
        raise NotImplementedError

    def log_prob(self, y: Tensor, x: Tensor, conditions: Tensor | None = None) -> Tensor:
        r"""log p(y_t | h_t) in nats (Eq. 7), (B, S), of the innermost outputs y (B, S, D) of
        the last S frames of the data x (B, T, D) (and of its conditions (B, T, A)).

        Computed in the parameters' dtype, returned in float32 at least."""
        dtype = self.context_network[0].weight.dtype
        features = self.context(x.to(dtype), y.shape[1], conditions)
        noise, log_det = self.to_noise(y.to(dtype).flatten(0, 1), features.flatten(0, 1))
        log_prob = -0.5 * (noise.square() + _LOG_2PI).sum(-1) + log_det
        return log_prob.unflatten(0, y.shape[:2]).to(torch.promote_types(dtype, torch.float32))

    def steps_log_prob(self, y: Tensor, x: Tensor, conditions: Tensor | None = None) -> Tensor:
        r"""log p(y_t | x_{t-k:t-1}, c_t), (B, S): :meth:`log_prob`, the interface the bases
        conditioned on the past share (:data:`seqflows.flows.PAST_CONDITIONED`)."""
        return self.log_prob(y, x, conditions)

    def sample_next(
        self,
        x: Tensor,
        conditions: Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        r"""y_t (B, 1, D) of the step after the frames x (B, t, D), given its conditions
        (B, t + 1, A, the last the new step's): e ~ N(0, temperature^2 I) through the base."""
        following = torch.cat([x, x.new_zeros(x.shape[0], 1, self.dim)], dim=1)  # not seen
        features = self.context(following, 1, conditions)[:, 0]
        noise = temperature * torch.randn(
            x.shape[0], self.dim, generator=generator, device=x.device, dtype=x.dtype
        )
        return self.from_noise(noise, features)[:, None]

    def bound_log(self, raw: Tensor) -> Tensor:
        """A raw log-scale bounded as the transforms bound theirs (identity near 0)."""
        return bound_log_scale(raw, *self.scale_bounds)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window={self.window}, hidden={self.hidden}"


class FullCovarianceBase(StepBase):
    r"""y_t ~ N(mu(h_t), L(h_t) L(h_t)^T): mean and lower-triangular Cholesky factor from h_t.

    The diagonal of L is exp of a bounded log-scale; the strictly lower entries are free.
    e = L^{-1} (y - mu), log |det de/dy| = -sum_d log L_dd.
    """

    def __init__(
        self, event_shape: Sequence[int], window: int, hidden: int, **kwargs: Any
    ) -> None:
        super().__init__(event_shape, window, hidden, **kwargs)
        D = self.dim
        self.head = nn.Linear(hidden, 2 * D + D * (D - 1) // 2)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def factors(self, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""mu (N, D), L (N, D, D) and log diag(L) (N, D) of features (N, H)."""
        D = self.dim
        mean, raw_log_diagonal, off_diagonal = self.head(features).split(
            [D, D, D * (D - 1) // 2], dim=-1
        )
        log_diagonal = self.bound_log(raw_log_diagonal)
        return mean, lower_triangular(log_diagonal, off_diagonal), log_diagonal

    def to_noise(self, y: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        mean, factor, log_diagonal = self.factors(features)
        centred = (y - mean)[..., None]
        noise = torch.linalg.solve_triangular(factor, centred, upper=False)[..., 0]
        return noise, -log_diagonal.sum(-1)

    def from_noise(self, noise: Tensor, features: Tensor) -> Tensor:
        mean, factor, _ = self.factors(features)
        return mean + (factor @ noise[..., None])[..., 0]


class MaskedBase(StepBase):
    r"""MAF (``spline=False``) or NSF (``spline=True``) across the D dimensions of a step.

    Each of ``layers`` transforms is a MADE: input y (N, D) through masks so that output d sees
    y_{<d} in the layer's order; h_t enters the first hidden layer unmasked (degree 0), so the
    first dimension is conditioned on the context alone. Two tanh hidden layers of ``hidden``
    units.

    Arguments:
        layers: The masked transforms; even ones keep the order 1..D, odd ones reverse it.
        spline: Rational-quadratic spline transforms with ``bins`` bins on [-``bound``, ``bound``]
            (identity outside) instead of affine ones.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        window: int,
        hidden: int,
        layers: int = 2,
        spline: bool = False,
        bins: int = 8,
        bound: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(event_shape, window, hidden, **kwargs)
        self.spline, self.bins, self.bound = spline, bins, bound
        self.parameters_per_dim = spline_parameters(bins) if spline else 2
        D, P = self.dim, self.parameters_per_dim
        self.networks = nn.ModuleList()
        for index in range(layers):
            order = torch.arange(D).flip(0) if index % 2 else torch.arange(D)
            network = _MADE(D, hidden, P, order)
            self.networks.append(network)

    def _layer(self, network: _MADE, v: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        r"""One transform's output v' (N, D) and log |dv'/dv| per dimension (N, D)."""
        raw = network(v, features)  # (N, D, P), raw_d a function of v_<d and h
        if self.spline:
            return RationalQuadraticSpline.from_raw(raw, self.bins, self.bound).forward(v)
        shift, log_scale = raw[..., 0], self.bound_log(raw[..., 1])
        return (v - shift) * torch.exp(-log_scale), -log_scale

    def to_noise(self, y: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        log_det = y.new_zeros(y.shape[0])
        for network in self.networks:
            y, log_derivatives = self._layer(network, y, features)
            log_det = log_det + log_derivatives.sum(-1)
        return y, log_det

    def from_noise(self, noise: Tensor, features: Tensor) -> Tensor:
        for network in reversed(self.networks):
            v = torch.zeros_like(noise)
            for d in network.order.tolist():  # v_d needs v_<d: one pass per dimension
                raw = network(v, features)[:, d]
                if self.spline:
                    spline = RationalQuadraticSpline.from_raw(raw, self.bins, self.bound)
                    value = spline.inverse(noise[:, d])
                else:
                    value = noise[:, d] * torch.exp(self.bound_log(raw[:, 1])) + raw[:, 0]
                v = v.index_copy(1, torch.tensor([d], device=v.device), value[:, None])
            noise = v
        return noise

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, layers={len(self.networks)}, spline={self.spline}"


class _MADE(nn.Module):
    r"""Masked network: y (N, D) and h (N, H) -> raw parameters (N, D, P), row d a function of
    the y_e with order position below d's, and of h.

    Degrees: input d has its position in ``order`` plus 1 (1..D); hidden units have degrees
    0..D-1 (0: the context only); a hidden unit sees inputs of degree <= its own, output d (degree
    position + 1) sees hidden units of degree below its own.
    """

    def __init__(self, dim: int, hidden: int, parameters: int, order: Tensor) -> None:
        super().__init__()
        self.register_buffer("order", order, persistent=False)
        degree_in = torch.empty(dim, dtype=torch.long)
        degree_in[order] = torch.arange(1, dim + 1)
        degree_hidden = torch.arange(hidden) % dim
        self.register_buffer("mask_in", (degree_in[None] <= degree_hidden[:, None]).float())
        self.register_buffer(
            "mask_hidden", (degree_hidden[None] <= degree_hidden[:, None]).float()
        )
        mask_out = (degree_hidden[None] < degree_in[:, None]).float()  # (D, hidden)
        self.register_buffer("mask_out", mask_out.repeat_interleave(parameters, 0))
        self.input_layer = nn.Linear(dim, hidden)
        self.context_layer = nn.Linear(hidden, hidden, bias=False)
        self.hidden_layer = nn.Linear(hidden, hidden)
        self.output_layer = nn.Linear(hidden, dim * parameters)
        nn.init.zeros_(self.output_layer.weight)
        nn.init.zeros_(self.output_layer.bias)
        self.dim, self.parameters_per_dim = dim, parameters

    def forward(self, y: Tensor, features: Tensor) -> Tensor:
        first = F.linear(y, self.input_layer.weight * self.mask_in, self.input_layer.bias)
        hidden = torch.tanh(first + self.context_layer(features))
        hidden_weight = self.hidden_layer.weight * self.mask_hidden
        hidden = torch.tanh(F.linear(hidden, hidden_weight, self.hidden_layer.bias))
        raw = F.linear(hidden, self.output_layer.weight * self.mask_out, self.output_layer.bias)
        return raw.unflatten(-1, (self.dim, self.parameters_per_dim))


def make_step_base(
    kind: str,
    event_shape: Sequence[int],
    window: int,
    hidden: int,
    *,
    layers: int = 2,
    bins: int = 8,
    bound: float = 5.0,
    condition_dim: int = 0,
    scale_bounds: tuple[float, float, str] = (1e-4, 10.0, "clamp"),
) -> StepBase:
    r"""The within-step base ``kind`` (one of :data:`STEP_BASES`) for vectors ``event_shape``."""
    common = {"condition_dim": condition_dim, "scale_bounds": scale_bounds}
    if kind == "full_covariance":
        return FullCovarianceBase(event_shape, window, hidden, **common)
    if kind in ("maf", "nsf"):
        spline = kind == "nsf"
        return MaskedBase(event_shape, window, hidden, layers, spline, bins, bound, **common)
    raise ValueError(f"a within-step base is one of {STEP_BASES}, got {kind!r}")

r"""Base distributions p(y) of flow-only models (Sec. 2.3, Eq. 7 and 9).

Both are diagonal Gaussians over one frame, applied independently to every frame of a sequence:
``log_prob`` sums over the event dimensions and keeps the leading (batch, time) dimensions.

* :class:`StandardNormal`: N(0, I). This is what the paper's runs effectively used (the learned
  base of the authors' code was never given to the optimizer), so it reproduces the paper.
* :class:`DiagonalNormal`: a learned per-dimension loc and log-scale, initialised at N(0, I).

:func:`normal_log_prob` and :func:`normal_kl` are the diagonal Gaussians' densities that the
models share; :func:`lower_triangular` and :func:`full_normal_log_prob` the full-covariance
Gaussian N(loc, L L^T) of a vector (D,), with its exact marginal over observed dimensions.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "DiagonalNormal",
    "StandardNormal",
    "full_normal_log_prob",
    "full_precision",
    "lower_triangular",
    "make_base",
    "normal_kl",
    "normal_log_prob",
]

_LOG_2PI = math.log(2 * math.pi)


class StandardNormal(nn.Module):
    r"""N(0, I) over frames of shape ``event_shape``.

    Arguments:
        event_shape: Shape of one frame: (C, H, W) or (D,).
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = tuple(int(size) for size in event_shape)

    def log_prob(self, y: Tensor) -> Tensor:
        r"""log N(y; 0, I) in nats, summed over the event dims: (*, *event_shape) -> (*)."""
        return self.element_log_prob(y).flatten(-len(self.event_shape)).sum(-1)

    def element_log_prob(self, y: Tensor) -> Tensor:
        r"""log N(y_i; 0, 1) of every value, in nats: (*, *event_shape), float32 at least (a
        diagonal density: the terms of missing values can be left out, :mod:`seqflows.missing`)."""
        y = y.to(torch.promote_types(y.dtype, torch.float32))
        return -0.5 * (y.square() + _LOG_2PI)

    def sample(
        self,
        batch_shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        r"""Samples with shape (*batch_shape, *event_shape), standard deviation ``temperature``."""
        shape = (*batch_shape, *self.event_shape)
        return temperature * torch.randn(shape, generator=generator, device=device, dtype=dtype)


class DiagonalNormal(StandardNormal):
    r"""N(loc, diag(exp(log_scale))^2) with a learned loc and log-scale per dimension.

    Arguments:
        event_shape: Shape of one frame: (C, H, W) or (D,).
    """

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__(event_shape)
        self.loc = nn.Parameter(torch.zeros(self.event_shape))
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))

    def element_log_prob(self, y: Tensor) -> Tensor:
        r"""log N(y_i; loc_i, scale_i^2) of every value, in nats: (*, *event_shape)."""
        dtype = torch.promote_types(y.dtype, torch.float32)
        loc, log_scale = self.loc.to(dtype), self.log_scale.to(dtype)
        standard = (y.to(dtype) - loc) * torch.exp(-log_scale)
        return -0.5 * (standard.square() + _LOG_2PI) - log_scale

    def sample(
        self,
        batch_shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        temperature: float = 1.0,
    ) -> Tensor:
        r"""Samples with shape (*batch_shape, *event_shape); ``temperature`` scales the spread."""
        noise = super().sample(
            batch_shape, generator, self.loc.device, dtype or self.loc.dtype, temperature
        )
        return (self.loc + torch.exp(self.log_scale) * noise).to(device=device, dtype=dtype)


BASES = ("standard", "learned")


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    r"""Autocast switched off on ``device``: densities, KL and log-determinants computed in
    float32 (at least) under mixed precision. The ``meta`` device, which has no autocast,
    needs nothing switched off."""
    if device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device.type, enabled=False)


def make_base(kind: str, event_shape: Sequence[int]) -> StandardNormal:
    r"""Builds a base: ``"standard"`` (:class:`StandardNormal`, the paper) or ``"learned"``."""
    if kind == "standard":
        return StandardNormal(event_shape)
    if kind == "learned":
        return DiagonalNormal(event_shape)
    raise ValueError(f"base must be one of {BASES}, got {kind!r}")


def normal_log_prob(x: Tensor, loc: Tensor, log_scale: Tensor, event_dims: int) -> Tensor:
    r"""log N(x; loc, exp(log_scale)^2) in nats, summed over the last ``event_dims`` dims.

    Computed in float32 at least (mixed precision): (*, *event) -> (*).
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    x, loc, log_scale = x.to(dtype), loc.to(dtype), log_scale.to(dtype)
    terms = -0.5 * (((x - loc) * torch.exp(-log_scale)).square() + _LOG_2PI) - log_scale
    return terms.flatten(-event_dims).sum(-1) if event_dims else terms


def normal_kl(
    loc_q: Tensor, log_scale_q: Tensor, loc_p: Tensor, log_scale_p: Tensor, event_dims: int = 1
) -> Tensor:
    r"""KL(q || p) between diagonal Gaussians, in nats, summed over the last ``event_dims`` dims.

    KL = log sigma_p - log sigma_q + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) - 1/2.

    Example:
        >>> zero = torch.zeros(3)
        >>> float(normal_kl(zero, zero, zero, zero))
        0.0
    """
    dtype = torch.promote_types(loc_q.dtype, torch.float32)
    loc_q, log_scale_q = loc_q.to(dtype), log_scale_q.to(dtype)
    loc_p, log_scale_p = loc_p.to(dtype), log_scale_p.to(dtype)
    ratio = torch.exp(2 * (log_scale_q - log_scale_p))
    distance = ((loc_q - loc_p) * torch.exp(-log_scale_p)).square()
    terms = log_scale_p - log_scale_q + 0.5 * (ratio + distance) - 0.5
    return terms.flatten(-event_dims).sum(-1)


def lower_triangular(log_diagonal: Tensor, strictly_lower: Tensor) -> Tensor:
    r"""A Cholesky factor L (*, D, D): diagonal exp(log_diagonal) (*, D), strictly-lower entries
    (*, D (D - 1) / 2) row by row (the order of ``torch.tril_indices(D, D, -1)``)."""
    dim = log_diagonal.shape[-1]
    rows, columns = torch.tril_indices(dim, dim, offset=-1, device=log_diagonal.device)
    lower = strictly_lower.new_zeros(*strictly_lower.shape[:-1], dim, dim)
    lower[..., rows, columns] = strictly_lower
    return lower + torch.diag_embed(torch.exp(log_diagonal))


def full_normal_log_prob(
    x: Tensor, loc: Tensor, factor: Tensor, observed: Tensor | None = None
) -> Tensor:
    r"""log N(x; loc, L L^T) in nats of vectors x (*, D), L = ``factor`` (*, D, D) lower
    triangular with a positive diagonal; the leading dims broadcast. Computed in float32 at least.

        log N = -1/2 |L^{-1} (x - loc)|^2 - sum_d log L_dd - D/2 log 2 pi

    ``observed`` (*, D), True where a value is there (gaps, :mod:`seqflows.missing`): the exact
    marginal over the observed dimensions o, N(x_o; loc_o, Sigma_oo) with Sigma = L L^T. It is
    computed as a D-dimensional Gaussian whose covariance keeps Sigma_oo and is the identity on
    the missing dimensions (their residual set to 0), which adds exactly (missing / 2) log 2 pi,
    taken out again. A frame with nothing observed scores 0. Returns (*).
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    residual = x.to(dtype) - loc.to(dtype)
    factor = factor.to(dtype)
    counted = residual.new_ones(()).expand(residual.shape)  # the dimensions of the density
    with full_precision(x.device):  # the matrix products too, under autocast
        if observed is not None:
            counted = observed.to(dtype)
            covariance = factor @ factor.mT * (counted[..., :, None] * counted[..., None, :])
            factor = torch.linalg.cholesky(covariance + torch.diag_embed(1 - counted))
            residual = torch.where(observed, residual, 0.0)
        white = torch.linalg.solve_triangular(factor, residual[..., None], upper=False)[..., 0]
    log_diagonal = torch.log(torch.diagonal(factor, dim1=-2, dim2=-1))
    return -0.5 * (white.square() + counted * _LOG_2PI).sum(-1) - log_diagonal.sum(-1)

r"""Monotonic rational-quadratic splines (Durkan, Bekasov, Murray, Papamakarios, "Neural Spline
Flows", 2019, https://arxiv.org/abs/1906.04032), element-wise, with identity tails.

A spline g maps [-B, B] onto [-B, B] through K bins with knots (x^k, y^k), k = 0 .. K, and
derivatives d^k at the knots; outside [-B, B] it is the identity (the linear tails of Sec. 3.1
of the paper, with d^0 = d^K = 1 so that g is continuously differentiable). In bin k, with
s_k = (y^{k+1} - y^k) / (x^{k+1} - x^k) and xi = (x - x^k) / (x^{k+1} - x^k) in [0, 1]:

    g(x) = y^k + (y^{k+1} - y^k) [s_k xi^2 + d^k xi (1 - xi)] / [s_k + delta_k xi (1 - xi)]
                                                                                        (Eq. 4)
    g'(x) = s_k^2 [d^{k+1} xi^2 + 2 s_k xi (1 - xi) + d^k (1 - xi)^2]
            / [s_k + delta_k xi (1 - xi)]^2                                             (Eq. 5)

with delta_k = d^k + d^{k+1} - 2 s_k. The inverse solves Eq. 4 for xi, a quadratic
a xi^2 + b xi + c = 0 (Appendix A of that paper) with, for eta = (y - y^k) / (y^{k+1} - y^k) and
beta = d^k - eta delta_k,

    a = s_k - beta,   b = beta,   c = -s_k eta                       (divided by y^{k+1} - y^k)
    b^2 - 4 a c = (d^k (1 - eta) - d^{k+1} eta)^2 + 4 s_k^2 eta (1 - eta)                      (*)
    xi = 2 s_k eta / (beta + sqrt(b^2 - 4 a c))        if beta >= 0                            (**)
    xi = (sqrt(b^2 - 4 a c) - beta) / (2 (s_k - beta)) if beta < 0

(*) is the discriminant written as a sum of two non-negative terms, and (**) picks, by the sign
of b, the form of the root in which nothing cancels: the paper's single form 2c / (-b - sqrt(.))
and its discriminant b^2 - 4ac as a difference lose every digit in float32 when a knot
derivative is much larger or smaller than the bin's slope (docs/design.md, "Spline transforms",
gives the measurement), and its discriminant can even come out negative (NaN).

Parameters. The unconstrained parameters of one element are K widths, K heights and K - 1
inner derivatives (3K - 1 numbers): bin widths 2B (m + (1 - K m) softmax(w)) and heights alike
(m = 1e-3, the smallest bin as a fraction of the range), derivatives exp(bound_log(u)) with the
log soft-clamped to [log 1e-3, log 1e3] (a tanh with slope 1 at 0). All zeros is the identity:
equal bins, slopes 1 and derivatives 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MAX_BOUND",
    "MIN_BIN",
    "MIN_DERIVATIVE",
    "RationalQuadraticSpline",
    "spline_parameters",
]

MIN_BIN = 1e-3  # the smallest bin width (and height) as a fraction of the range 2B
MIN_DERIVATIVE = 1e-3  # knot derivatives lie in [MIN_DERIVATIVE, 1 / MIN_DERIVATIVE]
MAX_BOUND = 1e38  # the largest B: the range 2B stays finite in float32 (at most 3.4e38)


def spline_parameters(bins: int) -> int:
    """The unconstrained parameters of one element's spline: K widths, K heights, K - 1
    inner derivatives."""
    return 3 * bins - 1


def _knots(raw: Tensor, bound: float) -> Tensor:
    r"""Knots -B = k^0 < ... < k^K = B (..., K + 1) from unconstrained bin sizes (..., K)."""
    bins = raw.shape[-1]
    fractions = MIN_BIN + (1 - MIN_BIN * bins) * torch.softmax(raw, dim=-1)
    inner = -bound + 2 * bound * torch.cumsum(fractions, dim=-1)[..., :-1]
    ends = inner.new_full((*raw.shape[:-1], 1), bound)
    return torch.cat([-ends, inner, ends], dim=-1)  # the ends exactly at -B and B


def _derivatives(raw: Tensor) -> Tensor:
    r"""Knot derivatives (..., K + 1) from the unconstrained inner ones (..., K - 1): 1 at the
    ends (identity tails), exp of the soft-clamped log inside."""
    limit = -math.log(MIN_DERIVATIVE)
    inner = torch.exp(limit * torch.tanh(raw / limit))
    return F.pad(inner, (1, 1), value=1.0)


@dataclass
class RationalQuadraticSpline:
    r"""An element-wise monotonic rational-quadratic spline on [-B, B], identity outside.

    Arguments:
        x_knots: Knots x^0 = -B < ... < x^K = B, with shape (..., K + 1).
        y_knots: Knots y^0 = -B < ... < y^K = B, same shape.
        derivatives: Derivatives d^0 = 1, d^1 .. d^{K-1} > 0, d^K = 1, same shape.
        bound: B.

    Example:
        >>> raw = torch.randn(4, 3 * 5 - 1, dtype=torch.float64)
        >>> spline = RationalQuadraticSpline.from_raw(raw, bins=5, bound=3.0)
        >>> x = torch.linspace(-4, 4, 4, dtype=torch.float64)
        >>> y, log_derivative = spline.forward(x)
        >>> torch.allclose(spline.inverse(y), x)
        True
    """

    x_knots: Tensor
    y_knots: Tensor
    derivatives: Tensor
    bound: float

    @classmethod
    def from_raw(cls, raw: Tensor, bins: int, bound: float) -> RationalQuadraticSpline:
        r"""The spline of unconstrained parameters (..., 3K - 1): K widths, K heights, K - 1
        inner derivatives, in that order (all zeros: the identity)."""
        if raw.shape[-1] != spline_parameters(bins):
            raise ValueError(
                f"a spline of {bins} bins has {spline_parameters(bins)} parameters per element, "
                f"got {raw.shape[-1]}"
            )
        widths, heights, derivatives = raw.split([bins, bins, bins - 1], dim=-1)
        return cls(_knots(widths, bound), _knots(heights, bound), _derivatives(derivatives), bound)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""g(x) (Eq. 4) and log g'(x) (Eq. 5), each with the shape of x (the knots' shape
        without the last dimension)."""
        inside = (x >= -self.bound) & (x <= self.bound)
        within = x.clamp(-self.bound, self.bound)  # the tails' values are not used
        k = self._bin(self.x_knots, within)
        x0, x1, y0, y1, d0, d1 = self._gather(k)
        width, height = x1 - x0, y1 - y0
        slope = height / width
        xi = (within - x0) / width  # x^k <= x <= x^{k+1}: xi >= 0 and 1 - xi >= 0 exactly
        xi_rest = (x1 - within) / width  # 1 - xi, without the rounding of 1 - xi
        product = xi * xi_rest
        denominator = slope + (d0 + d1 - 2 * slope) * product
        y = y0 + height * (slope * xi**2 + d0 * product) / denominator
        numerator = d1 * xi**2 + 2 * slope * product + d0 * xi_rest**2
        log_derivative = 2 * torch.log(slope) + torch.log(numerator) - 2 * torch.log(denominator)
        return torch.where(inside, y, x), torch.where(inside, log_derivative, 0.0)

    def inverse(self, y: Tensor) -> Tensor:
        r"""g^{-1}(y): the root (**) of the quadratic of Eq. 6, with the shape of y."""
        inside = (y >= -self.bound) & (y <= self.bound)
        within = y.clamp(-self.bound, self.bound)  # the tails' values are not used
        k = self._bin(self.y_knots, within)
        x0, x1, y0, y1, d0, d1 = self._gather(k)
        height = y1 - y0
        slope = height / (x1 - x0)
        eta = (within - y0) / height  # >= 0 exactly, as 1 - eta below: no NaN in the root
        eta_rest = (y1 - within) / height  # 1 - eta
        beta = d0 * eta_rest + (2 * slope - d1) * eta  # = d0 - eta * (d0 + d1 - 2 slope)
        root = torch.sqrt((d0 * eta_rest - d1 * eta) ** 2 + 4 * slope**2 * eta * eta_rest)
        positive = beta >= 0
        # Each form is evaluated where it is used; elsewhere its denominator is 1, not 0, so
        # that neither it nor its gradient is infinite.
        xi = torch.where(
            positive,
            2 * slope * eta / torch.where(positive, beta + root, 1.0),
            (root - beta) / torch.where(positive, 1.0, 2 * (slope - beta)),
        )
        x = x0 + xi * (x1 - x0)
        return torch.where(inside, x, y)

    def _bin(self, knots: Tensor, values: Tensor) -> Tensor:
        r"""The bin k in 0 .. K - 1 of every value (values outside [-B, B]: the end bins)."""
        inner = knots[..., 1:-1].contiguous()  # (..., K - 1)
        flat = inner.reshape(-1, inner.shape[-1])
        k = torch.searchsorted(flat, values.reshape(-1, 1).contiguous(), right=True)
        return k.reshape(*values.shape, 1)

    def _gather(self, k: Tensor) -> tuple[Tensor, ...]:
        both = torch.cat([k, k + 1], dim=-1)
        x0, x1 = self.x_knots.gather(-1, both).unbind(-1)
        y0, y1 = self.y_knots.gather(-1, both).unbind(-1)
        d0, d1 = self.derivatives.gather(-1, both).unbind(-1)
        return x0, x1, y0, y1, d0, d1

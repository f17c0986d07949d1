r"""The motivating example of Sec. 3.1: a particle with momentum under random forces (Eq. 10-14).

    w_t ~ N(0, sigma^2 I)          stochastic force
    u_t = u_{t-1} + w_t            velocity   (Eq. 11)
    x_t = x_{t-1} + u_t            position   (Eq. 10)

with x_0 = u_0 = 0 (Fig. 2); the sequences hold t = 1 .. T. In x the dynamics are second-order
Markov, p(x_t | x_{<t}) = N(x_t; 2 x_{t-1} - x_{t-2}, sigma^2 I) (Eq. 14); the affine
autoregressive transform u_t = x_t - x_{t-1} makes them first-order, and w_t = u_t - u_{t-1}
removes them altogether.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from seqflows.errors import ConfigError

__all__ = [
    "MotionSequences",
    "motion_log_prob",
    "simulate_motion",
]


@dataclass
class MotionSequences:
    r"""Position x, velocity u and force w, each with shape (N, T, D)."""

    x: Tensor
    u: Tensor
    w: Tensor


def simulate_motion(
    num_sequences: int,
    length: int,
    dim: int = 2,
    sigma: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> MotionSequences:
    r"""Samples sequences of Eq. 10-11, starting from x_0 = u_0 = 0.

    Arguments:
        num_sequences: Number of sequences N.
        length: Number of time steps T (t = 1 .. T).
        dim: Dimension D of the particle's position.
        sigma: Standard deviation of the force w_t.
        generator: Random number generator.
        dtype: Floating-point type of the result.

    Returns:
        x, u and w, each with shape (N, T, D).
    """
    if num_sequences < 1 or length < 1 or dim < 1:
        raise ConfigError("num_sequences, length and dim must be positive")
    if sigma <= 0:
        raise ConfigError(f"sigma must be positive, got {sigma}")
    w = sigma * torch.randn(num_sequences, length, dim, generator=generator, dtype=torch.float64)
    u = w.cumsum(dim=1)  # Eq. 11 with u_0 = 0
    x = u.cumsum(dim=1)  # Eq. 10 with x_0 = 0
    return MotionSequences(x=x.to(dtype), u=u.to(dtype), w=w.to(dtype))


def motion_log_prob(x: Tensor, sigma: float) -> Tensor:
    r"""Exact log p(x_t | x_{<t}) of the true process for every frame (Eq. 14).

    Arguments:
        x: Positions from :func:`simulate_motion`, with shape (N, T, D).
        sigma: The standard deviation of the force used to simulate them.

    Returns:
        log N(x_t; 2 x_{t-1} - x_{t-2}, sigma^2 I) in nats, summed over D, with shape (N, T);
        frames before t = 1 are the known zeros x_0 = x_{-1} = 0. Its expectation per dimension
        is -1/2 log(2 pi sigma^2) - 1/2.
    """
    padded = torch.nn.functional.pad(x.double(), (0, 0, 2, 0))  # x_{-1} = x_0 = 0
    force = padded[:, 2:] - 2 * padded[:, 1:-1] + padded[:, :-2]  # w_t, (N, T, D)
    log_density = -0.5 * (force / sigma).square() - math.log(sigma) - 0.5 * math.log(2 * math.pi)
    return log_density.sum(-1)

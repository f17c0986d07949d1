r"""Simulators: what the synthetic datasets share (Sec. 3.1, 4).

A :class:`~seqflows.data.sources.Simulator` renders a new uint8 sequence from a random
generator. :func:`bounce` moves points at constant velocity inside a box with elastic
reflections (Moving MNIST's digits, bouncing balls); :func:`render_sequences` draws a fixed set
of sequences from a simulator, e.g. to write them to a file.
"""

from __future__ import annotations

import numpy as np

from .sources import Simulator

__all__ = [
    "bounce",
    "render_sequences",
]


def bounce(
    start: np.ndarray,
    velocity: np.ndarray,
    num_frames: int,
    low: float | np.ndarray,
    high: float | np.ndarray,
) -> np.ndarray:
    r"""Positions of points moving at constant velocity in a box, bouncing off its walls.

    Each coordinate moves as u_t = start + t velocity, folded into [low, high] by elastic
    reflections (a triangle wave of period 2 (high - low)); consecutive positions are never
    farther apart than the velocity. A coordinate whose walls coincide stays at ``low``.

    Arguments:
        start: Positions at t = 0, in [low, high], with shape (*, D).
        velocity: Displacement per frame, with shape (*, D).
        num_frames: Number of frames T.
        low: Lower walls, a number or per coordinate with shape (D,).
        high: Upper walls, a number or per coordinate with shape (D,).

    Returns:
        Positions, with shape (T, *, D).

    Example:
        >>> bounce(np.array([1.0]), np.array([2.0]), 5, 0.0, 4.0)[:, 0]
        array([1., 3., 3., 1., 1.])
    """
    start = np.asarray(start, dtype=np.float64)
    t = np.arange(num_frames, dtype=np.float64).reshape(-1, *([1] * start.ndim))
    unfolded = start + t * np.asarray(velocity, dtype=np.float64)  # (T, *, D)
    low, width = np.asarray(low, np.float64), np.asarray(high, np.float64) - low
    period = 2 * np.where(width > 0, width, 1.0)
    folded = np.mod(unfolded - low, period)
    folded = np.where(folded > period / 2, period - folded, folded)
    return low + np.where(width > 0, folded, 0.0)


def render_sequences(simulator: Simulator, count: int, seed: int) -> np.ndarray:
    r"""``count`` sequences of a simulator, rendered from one generator seeded with ``seed``.

    Returns:
        uint8 array (count, T, C, H, W); the same ``seed`` gives the same array.
    """
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    rng = np.random.default_rng(seed)
    return np.stack([simulator.render(rng) for _ in range(count)])

r"""Controlled bouncing balls: balls driven by a known per-step action, rendered on the fly.

The synthetic set that makes conditioning measurable (:mod:`seqflows.conditioning`). Each step
t of a sequence has an action a_t = (d_row, d_column), a velocity command in pixels per frame
drawn anew at every step (uniform in [-speed, speed]^2, from the generator), and every ball moves
by it:

    p_0 ~ uniform in the box,   p_t = clip(p_{t-1} + a_t, radius, size - radius)   (t >= 1)

so a ball stops at a wall instead of leaving the frame, and a_0 = 0 (nothing moved the balls
into their first positions). The action a_t is known when frame x_t is produced, so a model
conditioned on c_{<=t} can predict where the balls go, while an unconditioned one cannot: the
actions are independent from step to step. The balls are drawn as in
:class:`~seqflows.data.BouncingBalls` (anti-aliased discs combined by maximum).
"""

from __future__ import annotations

import numpy as np

from .bouncing_balls import BouncingBalls, disc_coverage

__all__ = [
    "ControlledBalls",
    "controlled_centres",
]


def controlled_centres(
    start: np.ndarray, actions: np.ndarray, low: float, high: float
) -> np.ndarray:
    r"""Positions of points moved by per-step actions, each coordinate clipped to [low, high].

    Arguments:
        start: Positions at t = 0, with shape (K, 2).
        actions: Displacement of every point at each step, with shape (T, 2); row 0 is not
            used (the points start at ``start``).
        low: Lower wall.
        high: Upper wall.

    Returns:
        Positions, with shape (T, K, 2).

    Example:
        >>> actions = np.array([[0.0, 0.0], [1.0, -1.0], [3.0, 0.0]])
        >>> controlled_centres(np.array([[2.0, 2.0]]), actions, 1.0, 4.0)[:, 0].tolist()
        [[2.0, 2.0], [3.0, 1.0], [4.0, 1.0]]
    """
    positions = [np.asarray(start, dtype=np.float64)]
    for action in np.asarray(actions, dtype=np.float64)[1:]:
        positions.append(np.clip(positions[-1] + action, low, high))
    return np.stack(positions)


class ControlledBalls(BouncingBalls):
    r"""Renders balls that every step's action moves, with the actions that moved them.

    The balls, settings and checks of :class:`~seqflows.data.BouncingBalls`; only the motion
    differs (:meth:`render_frames`).

    Arguments:
        num_frames: Number of frames T.
        size: Height and width of the frames.
        num_balls: Number of balls (all move by the same action).
        radius: Radius of the balls in pixels; default size / 8.
        speed: The largest commanded displacement per frame and coordinate; default size / 16.
        channels: Number of channels C (all channels hold the same image).

    Example:
        >>> simulator = ControlledBalls(num_frames=4, size=16)
        >>> frames, actions = simulator.render_with_conditions(np.random.default_rng(0))
        >>> frames.shape, frames.dtype, actions.shape, actions.dtype
        ((4, 1, 16, 16), dtype('uint8'), (4, 2), dtype('float32'))
    """

    condition_dim = 2  # A: the action (d_row, d_column) of each step

    def __init__(
        self,
        num_frames: int = 20,
        size: int = 32,
        num_balls: int = 1,
        radius: float | None = None,
        speed: float | None = None,
        channels: int = 1,
    ) -> None:
        super().__init__(num_frames, size, num_balls, radius, speed, channels)

    def actions(self, rng: np.random.Generator) -> np.ndarray:
        r"""Per-step actions, float32 (num_frames, 2): a_0 = 0, then uniform in
        [-speed, speed]^2."""
        actions = rng.uniform(-self.speed, self.speed, size=(self.num_frames, 2))
        actions[0] = 0.0
        return actions.astype(np.float32)

    def render_frames(self, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r"""The frames, uint8 (T, channels, size, size), of balls that start at random places
        drawn from ``rng`` and move by ``actions`` (T, 2): "what if" they were other actions."""
        low, high = self.radius, self.size - self.radius
        start = rng.uniform(low, high, size=(self.num_balls, 2))
        centres = controlled_centres(start, actions, low, high)  # (T, K, 2)
        intensity = disc_coverage(centres, self.radius, self.size).max(axis=1)
        frames = np.rint(255 * intensity).astype(np.uint8)[:, None]
        return np.ascontiguousarray(np.broadcast_to(frames, (len(actions), *self.frame_shape)))

    def render_with_conditions(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        r"""A new sequence and its actions: uint8 (num_frames, channels, size, size) and
        float32 (num_frames, 2), both drawn from ``rng`` alone."""
        actions = self.actions(rng)
        return self.render_frames(actions, rng), actions

    def render(self, rng: np.random.Generator) -> np.ndarray:
        r"""A new sequence, uint8 (num_frames, channels, size, size), without its actions."""
        return self.render_with_conditions(rng)[0]

    def __repr__(self) -> str:
        return (
            f"ControlledBalls(num_frames={self.num_frames}, size={self.size}, "
            f"num_balls={self.num_balls}, radius={self.radius:.3g}, speed={self.speed:.3g}, "
            f"channels={self.channels})"
        )

r"""Bouncing balls: a synthetic video dataset rendered on the fly, with no download.

Balls move in straight lines at a fixed speed and bounce elastically off the walls; they pass
through each other (no ball-ball collisions), so each ball's path is independent of the others.
Each ball is an anti-aliased disc, intensity clip(radius + 1/2 - distance, 0, 1) at every pixel
centre, and overlapping balls are combined by maximum. A small, fully controlled stand-in for
Moving MNIST (Sec. 4) on CPU.
"""

from __future__ import annotations

import numpy as np

from .simulators import bounce
from .sources import Simulator

__all__ = [
    "BouncingBalls",
]


class BouncingBalls(Simulator):
    r"""Renders sequences of balls bouncing in a square box.

    Ball centres start uniformly in [radius, size - radius]^2 (the ball is inside the frame)
    and move in a uniform random direction at ``speed`` pixels per frame; at a wall the centre
    is reflected, so a ball never leaves the frame. The result depends only on the generator.

    Arguments:
        num_frames: Number of frames T.
        size: Height and width of the frames.
        num_balls: Number of balls.
        radius: Radius of the balls in pixels; default size / 8.
        speed: Pixels per frame; default size / 16.
        channels: Number of channels C (all channels hold the same image).

    Example:
        >>> simulator = BouncingBalls(num_frames=4, size=16)
        >>> video = simulator.render(np.random.default_rng(0))
        >>> video.shape, video.dtype, int(video.max())
        ((4, 1, 16, 16), dtype('uint8'), 255)
    """

    def __init__(
        self,
        num_frames: int = 20,
        size: int = 32,
        num_balls: int = 2,
        radius: float | None = None,
        speed: float | None = None,
        channels: int = 1,
    ) -> None:
        if num_frames < 1 or size < 1 or num_balls < 1 or channels < 1:
            raise ValueError(
                "num_frames, size, num_balls and channels must be positive, got "
                f"{num_frames}, {size}, {num_balls}, {channels}"
            )
        radius = size / 8 if radius is None else float(radius)
        speed = size / 16 if speed is None else float(speed)
        if not 0 < radius <= size / 2:
            raise ValueError(f"radius must be in (0, size / 2] = (0, {size / 2}], got {radius}")
        if speed < 0:
            raise ValueError(f"speed must be non-negative, got {speed}")
        self.num_frames = num_frames
        self.size = size
        self.num_balls = num_balls
        self.radius = radius
        self.speed = speed
        self.channels = channels

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """Shape of one frame: (channels, size, size)."""
        return (self.channels, self.size, self.size)

    def centres(self, rng: np.random.Generator) -> np.ndarray:
        r"""The centres of the balls (row, column) in pixels, with shape (T, num_balls, 2)."""
        low, high = self.radius, self.size - self.radius
        start = rng.uniform(low, high, size=(self.num_balls, 2))
        angle = rng.uniform(0, 2 * np.pi, size=self.num_balls)
        velocity = self.speed * np.stack([np.sin(angle), np.cos(angle)], axis=-1)
        return bounce(start, velocity, self.num_frames, low, high)

    def render(self, rng: np.random.Generator) -> np.ndarray:
        r"""A new sequence, uint8 with shape (num_frames, channels, size, size)."""
        centres = self.centres(rng)  # (T, K, 2)
        grid = np.arange(self.size) + 0.5  # pixel centres
        rows = grid[:, None] - centres[..., 0, None, None]  # (T, K, size, 1)
        columns = grid[None, :] - centres[..., 1, None, None]  # (T, K, 1, size)
        distance = np.sqrt(rows**2 + columns**2)  # (T, K, size, size)
        intensity = np.clip(self.radius + 0.5 - distance, 0, 1).max(axis=1)  # (T, size, size)
        frames = np.rint(255 * intensity).astype(np.uint8)[:, None]
        return np.ascontiguousarray(np.broadcast_to(frames, (self.num_frames, *self.frame_shape)))

    def __repr__(self) -> str:
        return (
            f"BouncingBalls(num_frames={self.num_frames}, size={self.size}, "
            f"num_balls={self.num_balls}, radius={self.radius:.3g}, speed={self.speed:.3g}, "
            f"channels={self.channels})"
        )

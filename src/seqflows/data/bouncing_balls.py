r"""Bouncing balls: a synthetic video dataset rendered on the fly, with no download.

Balls move in straight lines at a fixed speed and bounce elastically off the walls; they pass
through each other (no ball-ball collisions), so each ball's path is independent of the others.
Each ball is an anti-aliased disc: a pixel's intensity is the share of its area that the disc
covers (:func:`disc_coverage`, exact), and overlapping balls are combined by maximum. A small,
fully controlled stand-in for Moving MNIST (Sec. 4) on CPU.
"""

from __future__ import annotations

import numpy as np

from .simulators import bounce
from .sources import Simulator

__all__ = [
    "BouncingBalls",
    "disc_coverage",
]


def disc_coverage(centres: np.ndarray, radius: float, size: int) -> np.ndarray:
    r"""The share of each pixel's area that discs cover, in [0, 1], computed exactly.

    Pixel (i, j) is the square [i, i + 1] x [j, j + 1] (row, column), so its centre is at
    (i + 1/2, j + 1/2). With y and x relative to the disc's centre and w(y) = sqrt(r^2 - y^2)
    its half-width at height y, the disc covers clip(x1, -w, w) - clip(x0, -w, w) of the
    columns [x0, x1] at height y; integrating that over the pixel's rows [y0, y1] has a closed
    form (the area under w is (y w(y) + r^2 asin(y / r)) / 2).

    Arguments:
        centres: Disc centres (row, column) in pixels, with shape (*, 2).
        radius: Radius of the discs in pixels.
        size: Height and width of the frame.

    Returns:
        Coverage with shape (*, size, size), float64.

    Example:
        >>> coverage = disc_coverage(np.array([[4.0, 4.0]]), 2.0, 8)
        >>> round(float(coverage.sum()), 6) == round(np.pi * 2.0**2, 6)  # the disc's area
        True
    """
    centres = np.asarray(centres, dtype=np.float64)
    lead = centres.shape[:-1]
    centres = centres.reshape(-1, 2)  # (N, 2)
    r = float(radius)
    # Only the pixels of each disc's bounding box can be covered: compute those (side n).
    n = min(int(np.ceil(2 * r)) + 2, size)
    start = np.clip(np.floor(centres - r).astype(np.int64), 0, size - n)  # (N, 2)
    pixels = start[:, :, None] + np.arange(n)  # (N, 2, n): the box's rows and columns
    y0 = (pixels[:, 0] - centres[:, 0, None])[:, :, None]  # (N, n, 1), relative to the centre
    x0 = (pixels[:, 1] - centres[:, 1, None])[:, None, :]  # (N, 1, n)
    box = _clipped_width_integral(x0 + 1, y0, y0 + 1, r) - _clipped_width_integral(
        x0, y0, y0 + 1, r
    )  # (N, n, n)
    coverage = np.zeros((len(centres), size, size))
    index = np.arange(len(centres))[:, None, None]
    coverage[index, pixels[:, 0, :, None], pixels[:, 1, None, :]] = np.clip(box, 0.0, 1.0)
    return coverage.reshape(*lead, size, size)


def _clipped_width_integral(x: np.ndarray, y0: np.ndarray, y1: np.ndarray, r: float) -> np.ndarray:
    r"""The integral over y in [y0, y1] of clip(x, -w(y), w(y)), w(y) = sqrt(r^2 - y^2) inside
    the disc and 0 outside it (broadcast over x, y0 and y1, y0 <= y1)."""

    def area(y: np.ndarray) -> np.ndarray:  # the integral of w from 0 to y, y clipped to +-r
        y = np.clip(y, -r, r)
        return 0.5 * (y * np.sqrt(np.clip(r * r - y * y, 0.0, None)) + r * r * np.arcsin(y / r))

    magnitude = np.abs(x)
    reach = np.sqrt(np.clip(r * r - magnitude**2, 0.0, None))  # w(y) >= |x| for |y| <= reach
    low, high = np.clip(y0, -reach, reach), np.clip(y1, -reach, reach)
    # min(|x|, w) is |x| where |y| <= reach, w elsewhere
    inner = magnitude * (high - low) + (area(y1) - area(y0)) - (area(high) - area(low))
    return np.sign(x) * inner


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
        coverage = disc_coverage(centres, self.radius, self.size)  # (T, K, size, size)
        intensity = coverage.max(axis=1)  # (T, size, size)
        frames = np.rint(255 * intensity).astype(np.uint8)[:, None]
        return np.ascontiguousarray(np.broadcast_to(frames, (self.num_frames, *self.frame_shape)))

    def __repr__(self) -> str:
        return (
            f"BouncingBalls(num_frames={self.num_frames}, size={self.size}, "
            f"num_balls={self.num_balls}, radius={self.radius:.3g}, speed={self.speed:.3g}, "
            f"channels={self.channels})"
        )

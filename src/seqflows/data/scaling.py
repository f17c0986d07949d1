r"""Scaling: uint8 frames become float32 model input in [0, 1], with noise (Sec. 4, App. B).

The paper's default is x / 255 plus Gaussian noise N(0, (1/256)^2) per pixel, redrawn every time
a sequence is loaded; it is not a dequantization, so its likelihoods have no bits/dim. Uniform
dequantization (x + u) / 256, u ~ U[0, 1), gives bits/dim (see :mod:`seqflows.metrics`).
:func:`check_frames` checks a batch before it reaches a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "NOISES",
    "Preprocessing",
    "check_frames",
    "frames_to_unit_interval",
]

NOISES = ("gaussian", "uniform", "none")


def frames_to_unit_interval(
    frames: Tensor | np.ndarray, noise: str, generator: np.random.Generator
) -> Tensor:
    r"""Scales uint8 frames to [0, 1] and adds noise.

    - ``"gaussian"``: x / 255 + e, e ~ N(0, (1/256)^2) per pixel (the paper's default);
    - ``"uniform"``: (x + u) / 256, u ~ U[0, 1) per pixel, in [x/256, (x+1)/256) (uniform
      dequantization, for bits/dim);
    - ``"none"``: x / 255.

    Arguments:
        frames: uint8 frames, any shape, e.g. (T, C, H, W).
        noise: One of :data:`NOISES`.
        generator: The random generator of the noise.

    Returns:
        float32 frames, with the same shape.

    Example:
        >>> x = torch.full((2, 1, 2, 2), 255, dtype=torch.uint8)
        >>> frames_to_unit_interval(x, "none", np.random.default_rng(0)).max().item()
        1.0
    """
    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}: choose one of {', '.join(NOISES)}")
    x = frames.numpy(force=True) if isinstance(frames, Tensor) else np.asarray(frames)
    if x.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (0..255), got {x.dtype}")
    if noise == "gaussian":
        y = x.astype(np.float32) / 255
        y += generator.standard_normal(x.shape, dtype=np.float32) / 256
    elif noise == "uniform":
        u = generator.random(x.shape, dtype=np.float32)
        y = (x.astype(np.float32) + u) / 256
        # 255 + u can round up to 256 in float32: keep the interval open on the right
        upper = ((x.astype(np.float32) + 1) / 256).astype(np.float32)
        y = np.minimum(y, np.nextafter(upper, np.float32(0)))
    else:
        y = x.astype(np.float32) / 255
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


@dataclass(frozen=True)
class Preprocessing:
    r"""How raw uint8 frames become a model's input: :func:`frames_to_unit_interval`.

    A model trained by ``seqflows train`` carries the one it was trained with
    (``seqflows.load(path).preprocessing``): score new frames the way the model saw its data.

    Attributes:
        noise: ``"gaussian"`` (x / 255 + N(0, (1/256)^2), the paper's), ``"uniform"``
            ((x + u) / 256, dequantization) or ``"none"`` (x / 255).

    Example:
        >>> frames = torch.zeros(1, 3, 1, 4, 4, dtype=torch.uint8)  # (B, T, C, H, W)
        >>> Preprocessing("none")(frames).dtype
        torch.float32
    """

    noise: Literal["gaussian", "uniform", "none"] = "gaussian"

    def __call__(
        self, frames: Tensor | np.ndarray, seed: int | np.random.Generator | None = None
    ) -> Tensor:
        r"""uint8 frames (any shape) as float32 model input; ``seed`` draws the noise."""
        return frames_to_unit_interval(frames, self.noise, np.random.default_rng(seed))


def check_frames(x: Tensor, frame_shape: Sequence[int], name: str) -> None:
    r"""Checks a batch of frames before it reaches a model.

    Arguments:
        x: Frames with shape (*, *frame_shape), e.g. (B, T, C, H, W).
        frame_shape: The frame shape the model expects, e.g. (C, H, W).
        name: What the frames are (e.g. the dataset), for error messages.

    Raises:
        ValueError: If the frame shape differs, a value is not finite, or a value lies outside
        [-0.5, 1.5] (frames are expected in [0, 1], plus noise).
    """
    expected = tuple(int(size) for size in frame_shape)
    got = tuple(x.shape[-len(expected) :]) if x.dim() >= len(expected) else tuple(x.shape)
    if got != expected:
        raise ValueError(
            f"{name}: frames have shape {got} (batch {tuple(x.shape)}), but the model expects "
            f"{expected}; set data.channels / data.size in the config to match the data"
        )
    if x.numel() == 0:
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name}: {bad} of {x.numel()} values are not finite (NaN or inf)")
    low, high = float(x.min()), float(x.max())
    if low < -0.5 or high > 1.5:
        raise ValueError(
            f"{name}: values in [{low:.3g}, {high:.3g}] are out of range: frames are expected "
            f"in [0, 1] (were they scaled by 1/255?)"
        )

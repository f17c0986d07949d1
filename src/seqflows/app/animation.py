r"""Sequences as pixels: frames tiled into one image, and animated GIFs (``seqflows sample``).

* :func:`tile_frames` lays sequences out as one image, a row per sequence, a column per time
  step; the plots of :mod:`seqflows.app.figures` draw frames with the same helpers;
* :func:`save_gif` writes an animated GIF of generated sequences (Fig. 10, 11).

Frames are Tensors with shape (B, T, C, H, W), C = 1 (grayscale) or 3 (RGB), data in [0, 1]
(clipped for display). Pillow is imported inside :func:`save_gif`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["save_gif", "tile_frames"]


def tile_frames(sequences: Tensor, border: int = 1) -> np.ndarray:
    r"""Tiles sequences into one image: one row per sequence, one column per time step.

    Arguments:
        sequences: Frames in [0, 1], with shape (B, T, C, H, W) and C = 1 or 3.
        border: Width in pixels of the white separator between neighbouring frames.

    Returns:
        An RGB image (grayscale repeated), uint8, with shape
        (B * H + (B - 1) * border, T * W + (T - 1) * border, 3).

    Example:
        >>> tile_frames(torch.zeros(2, 3, 1, 4, 5)).shape
        (9, 17, 3)
    """
    frames = _sequences_as_rgb(sequences, "sequences")  # (B, T, H, W, 3)
    return _to_uint8(_tile(frames, border))


def save_gif(
    sequences: Tensor,
    path: str | os.PathLike[str],
    fps: float = 4.0,
    columns: int | None = None,
    border: int = 1,
) -> Path:
    r"""Writes an animated GIF, looping forever, whose frame t tiles frame t of each sequence.

    The B sequences are laid out in a grid, row by row, with ``columns`` columns (default
    ceil(sqrt(B))) and white separators; unused cells are white. Grayscale data is written as
    grayscale (exact); RGB data is quantized to a 256-colour palette per frame, as GIF requires.
    Consecutive identical frames are merged into one longer frame by Pillow, so the playback
    timing is kept but the file may hold fewer than T frames.

    Arguments:
        sequences: Frames in [0, 1], with shape (B, T, C, H, W) and C = 1 or 3.
        path: The ``.gif`` file to write.
        fps: Frames per second (GIF stores durations in 1/100 s).
        columns: Number of sequences per grid row.
        border: Width in pixels of the white separator between sequences.

    Returns:
        ``path``, as a Path.
    """
    from PIL import Image

    frames = _sequences_as_rgb(sequences, "sequences")  # (B, T, H, W, 3)
    B, T = frames.shape[:2]
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if columns is None:
        columns = math.ceil(math.sqrt(B))
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    columns = min(columns, B)
    rows = math.ceil(B / columns)
    grayscale = sequences.shape[2] == 1
    images = []
    for t in range(T):
        cells = np.ones((rows * columns, *frames.shape[2:]))  # (rows * columns, H, W, 3)
        cells[:B] = frames[:, t]
        grid = _tile(cells.reshape(rows, columns, *frames.shape[2:]), border)
        pixels = _to_uint8(grid)  # (rows * H + ..., columns * W + ..., 3)
        images.append(Image.fromarray(pixels[..., 0] if grayscale else pixels))
    path = _prepare(path)
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=1000.0 / fps,
        loop=0,
    )
    return path


def _as_numpy(values: Tensor | np.ndarray) -> np.ndarray:
    """float64 numpy copy of a Tensor of any float dtype (bfloat16 included) or an array."""
    if isinstance(values, Tensor):
        return values.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def _sequences_as_rgb(sequences: Tensor, name: str) -> np.ndarray:
    """(B, T, C, H, W) with C = 1 or 3 -> float (B, T, H, W, 3) clipped to [0, 1]."""
    if sequences.dim() != 5 or sequences.shape[2] not in (1, 3):
        raise ValueError(
            f"{name} must have shape (B, T, C, H, W) with C = 1 or 3, got {tuple(sequences.shape)}"
        )
    if 0 in sequences.shape[:2]:
        raise ValueError(f"{name} must hold at least one frame, got {tuple(sequences.shape)}")
    frames = np.clip(np.nan_to_num(_as_numpy(sequences)), 0.0, 1.0)
    frames = frames.transpose(0, 1, 3, 4, 2)  # (B, T, H, W, C)
    return np.broadcast_to(frames, (*frames.shape[:4], 3))  # (B, T, H, W, 3)


def _tile(frames: np.ndarray, border: int, fill: float = 1.0) -> np.ndarray:
    """(R, K, H, W, D) -> (R * H + (R - 1) * border, K * W + (K - 1) * border, D)."""
    if border < 0:
        raise ValueError(f"border must be non-negative, got {border}")
    R, K, H, W, D = frames.shape
    image = np.full((R * H + (R - 1) * border, K * W + (K - 1) * border, D), fill)
    for r in range(R):
        for k in range(K):
            top, left = r * (H + border), k * (W + border)
            image[top : top + H, left : left + W] = frames[r, k]
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 in [0, 255], rounded and clipped."""
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


def _prepare(path: str | os.PathLike[str]) -> Path:
    """Path(path), with its parent folders created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path

r"""Scaling: frames become float32 model input (Sec. 4, App. B), and real series standardised.

uint8 frames are scaled to [0, 1], with noise. The paper's default is x / 255 plus Gaussian noise
N(0, (1/256)^2) per pixel, redrawn every time a sequence is loaded; it is not a dequantization,
so its likelihoods have no bits/dim. Uniform dequantization (x + u) / 256, u ~ U[0, 1), gives
bits/dim (see :mod:`seqflows.metrics`).

Real-valued vector series (float arrays, (T, D) frames) take no noise and are standardised per
dimension, z = (x - mean) / std, with the mean and standard deviation of the training split
(:func:`series_statistics`). The model's density of z is one of x after the change of variables:
log p(x_t) = log p(z_t) - sum_d log std_d for every frame (:attr:`Preprocessing.log_abs_det`),
so likelihoods are in the series' own units. :func:`check_frames` checks a batch before it
reaches a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..preprocessing import NOISES, Preprocessing, check_standardization, frames_to_unit_interval

__all__ = [
    "MIN_OBSERVED_STEPS",
    "NOISES",
    "Preprocessing",
    "check_frames",
    "check_standardization",
    "first_too_large",
    "frames_to_unit_interval",
    "observed_steps",
    "series_statistics",
]

# Real series must stay within +-1.8e19, the square root of float32's largest value: the squares
# of the float32 statistics of larger values (BatchNorm's running variance) are infinite.
LARGEST_SERIES_VALUE = math.sqrt(float(np.finfo(np.float32).max))
TOO_LARGE = (
    f"too large (beyond +-{LARGEST_SERIES_VALUE:.2g} the squares in the model's float32 "
    "statistics overflow); rescale the series (other units) or drop the value"
)


MIN_OBSERVED_STEPS = 2  # steps with an observed value a sequence needs: a context, a score


def observed_steps(values: np.ndarray) -> int:
    r"""The steps of a sequence (T, D) that hold at least one observed (not NaN) value."""
    return int((~np.isnan(np.asarray(values, np.float64))).any(axis=-1).sum())


def first_too_large(values: np.ndarray) -> tuple[int, ...] | None:
    r"""The index of the first value of ``values`` (any shape) whose magnitude exceeds
    :data:`LARGEST_SERIES_VALUE`, or None when all are within it (NaN is not checked here)."""
    with np.errstate(invalid="ignore"):
        found = np.argwhere(np.abs(np.asarray(values, np.float64)) > LARGEST_SERIES_VALUE)
    return tuple(int(item) for item in found[0]) if len(found) else None


def series_statistics(
    sequences: Iterable[np.ndarray], name: str = "series"
) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-dimension mean and standard deviation of the observed values of real-valued
    sequences (NaN marks a missing value), checked finite.

    Two passes in float64 (the mean, then the squared deviations from it), so that large
    offsets (say, values near 1e6 that vary by 1e-3) lose no precision. A dimension that never
    varies gets the standard deviation 1: it is then only centred.

    Arguments:
        sequences: A re-iterable collection of arrays (T_n, D), e.g. a list or a tuple.
        name: What the sequences are (a file, a split), for error messages.

    Returns:
        mean and std, float64 arrays with shape (D,).

    Raises:
        ValueError: No frames, a dimension without an observed value, or a value that is
            infinite or beyond :data:`LARGEST_SERIES_VALUE` (the message names the sequence,
            the frame and the dimension).

    Example:
        >>> mean, std = series_statistics([np.array([[0.0, 5.0], [2.0, 5.0]])])
        >>> mean.tolist(), std.tolist()
        ([1.0, 5.0], [1.0, 1.0])
    """
    total, count = None, None
    for index, sequence in enumerate(sequences):
        values = np.asarray(sequence, dtype=np.float64)
        bad = np.argwhere(np.isinf(values))
        if len(bad):
            frame, dimension = (int(item) for item in bad[0][-2:])
            raise DataError(
                f"{name}: sequence {index}, frame {frame}, dimension {dimension} is "
                f"{values[tuple(bad[0])]}: values must be finite (fill or drop it; NaN marks a "
                "missing value)"
            )
        large = first_too_large(values)
        if large is not None:
            frame, dimension = large[-2:]
            raise DataError(
                f"{name}: sequence {index}, frame {frame}, dimension {dimension} is "
                f"{values[large]:g}, {TOO_LARGE}"
            )
        values = values.reshape(-1, values.shape[-1])
        summed = np.nansum(values, axis=0)
        observed = (~np.isnan(values)).sum(axis=0)
        total = summed if total is None else total + summed
        count = observed if count is None else count + observed
    if total is None or not count.any():
        raise DataError(f"{name}: no frames to fit a standardisation on")
    if not count.all():
        raise DataError(
            f"{name}: dimension {int(np.argmin(count))} has no observed value (every one is "
            "missing): no standardisation to fit; drop that dimension"
        )
    mean = total / count  # of the observed values (NaN marks a missing one)
    squares = sum(
        np.nansum(((np.asarray(sequence, np.float64) - mean) ** 2).reshape(-1, len(mean)), axis=0)
        for sequence in sequences
    )
    std = np.sqrt(squares / count)
    return mean, np.where(std > 0, std, 1.0)


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
        raise DataError(
            f"{name}: frames have shape {got} (batch {tuple(x.shape)}), but the model expects "
            f"{expected}; set data.channels / data.size in the config to match the data"
        )
    if x.numel() == 0:
        return
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise DataError(f"{name}: {bad} of {x.numel()} values are not finite (NaN or inf)")
    low, high = float(x.min()), float(x.max())
    if low < -0.5 or high > 1.5:
        raise DataError(
            f"{name}: values in [{low:.3g}, {high:.3g}] are out of range: frames are expected "
            f"in [0, 1] (were they scaled by 1/255?)"
        )

r"""Moving MNIST (Srivastava et al., 2015): the standard file and an on-the-fly simulator (Sec. 4).

The standard file ``mnist_test_seq.npy`` holds 10,000 sequences of 20 frames, 64 x 64, uint8,
time-major: shape (20, 10000, 64, 64). The authors trained on sequences 0-8999 and evaluated on
9000-9999 (:func:`moving_mnist_split`); we carve a validation split (for model selection) out
of the end of the training part, so that the test split is never used to select.

The variant made by :class:`MovingMNIST` (name it in configs and results): two 28 x 28 MNIST
digits in 64 x 64 frames, 20 frames, each digit moving in a straight line at a fixed speed
(0.1 of the free range, 3.6 pixels, per frame, as in Srivastava et al.) with deterministic
elastic bounces off the walls, combined by pixel-wise maximum.

References:
    | Unsupervised Learning of Video Representations using LSTMs (Srivastava et al., 2015)
    | https://arxiv.org/abs/1502.04681
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import DataError
from .simulators import bounce
from .sources import ArraySource, Simulator, load_array, picklable_array, unpickled_array

__all__ = [
    "MOVING_MNIST_SHAPE",
    "MOVING_MNIST_SPLITS",
    "MOVING_MNIST_URL",
    "MovingMNIST",
    "downscale_digits",
    "load_moving_mnist_file",
    "moving_mnist_split",
]

MOVING_MNIST_URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"
MOVING_MNIST_SHAPE = (20, 10000, 64, 64)  # (T, N, H, W), time-major
MOVING_MNIST_SPLITS = ("train", "validation", "test")


def moving_mnist_split(split: str, validation: int = 500, num_sequences: int = 10000) -> range:
    r"""The sequences of a split of the standard file.

    The first 90% (0-8999) are the training part, whose last ``validation`` sequences form the
    validation split; the last 10% (9000-9999) are the test split.

    Example:
        >>> moving_mnist_split("validation")
        range(8500, 9000)
    """
    if split not in MOVING_MNIST_SPLITS:
        choices = ", ".join(MOVING_MNIST_SPLITS)
        raise ValueError(f"unknown split {split!r}: choose one of {choices}")
    train = num_sequences * 9 // 10
    if not 0 <= validation < train or (split == "validation" and validation == 0):
        raise ValueError(
            f"validation must be in 1..{train - 1} (taken from the {train} training sequences), "
            f"got {validation}"
        )
    if split == "train":
        return range(0, train - validation)
    if split == "validation":
        return range(train - validation, train)
    return range(train, num_sequences)


class _TimeMajorView:
    """Sequences start .. stop - 1 of a (T, N, H, W) array, seen as (N, T, 1, H, W), lazily."""

    def __init__(self, array: np.ndarray, start: int, stop: int) -> None:
        self.array, self.start, self.stop = array, start, stop
        self.dtype = array.dtype
        frames, _, height, width = array.shape
        self.shape = (stop - start, frames, 1, height, width)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, n: int) -> np.ndarray:
        if not 0 <= n < len(self):
            raise IndexError(f"sequence {n} out of range 0..{len(self) - 1}")
        return self.array[:, self.start + n, None]  # (T, 1, H, W), read from the file

    def __getstate__(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "array": picklable_array(self.array),
        }  # the file name, not the data

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, array=unpickled_array(state["array"]))


def load_moving_mnist_file(
    path: str | os.PathLike,
    split: str,
    validation: int = 500,
    expected_sequences: int = 10000,
) -> ArraySource:
    r"""A split of the standard Moving MNIST file, memory-mapped (nothing is loaded up front).

    Arguments:
        path: The file ``mnist_test_seq.npy`` (see :data:`MOVING_MNIST_URL`).
        split: "train", "validation" or "test" (see :func:`moving_mnist_split`).
        validation: Number of validation sequences, taken from the end of the training part.
        expected_sequences: Number of sequences the file must hold (10,000; tests use less).

    Returns:
        A source of uint8 sequences with shape (N, 20, 1, 64, 64).
    """
    try:
        array = load_array(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            f"{error}: download the Moving MNIST file from {MOVING_MNIST_URL}"
        ) from None
    expected = (MOVING_MNIST_SHAPE[0], expected_sequences, *MOVING_MNIST_SHAPE[2:])
    if tuple(array.shape) != expected or array.dtype != np.uint8:
        raise DataError(
            f"{path}: expected the standard Moving MNIST file, uint8 with shape {expected} "
            f"(time-major: frames, sequences, height, width), got {array.dtype} {array.shape}"
        )
    indices = moving_mnist_split(split, validation, expected_sequences)
    view = _TimeMajorView(array, indices.start, indices.stop)
    return ArraySource(view, name=f"{os.fspath(path)} ({split})")


class MovingMNIST(Simulator):
    r"""Renders Moving MNIST sequences: digits moving in straight lines, bouncing off the walls.

    Each digit (drawn uniformly from ``digits``) starts at a uniform random position in
    [0, size - 28]^2 and moves in a uniform random direction at ``speed`` pixels per frame;
    at a wall the position and the velocity are reflected, so a digit never leaves the frame.
    Digits are combined by pixel-wise maximum. The result depends only on the generator.

    Arguments:
        digits: uint8 digit images, with shape (N, 28, 28) (other sizes up to ``size`` work).
        num_frames: Number of frames T.
        size: Height and width of the frames, at least the digits' size.
        num_digits: Number of digits per sequence.
        speed: Pixels per frame; default 0.1 (size - 28), Srivastava et al.'s step length.

    Example:
        >>> simulator = MovingMNIST(np.full((3, 28, 28), 255, np.uint8), num_frames=5)
        >>> simulator.render(np.random.default_rng(0)).shape
        (5, 1, 64, 64)
    """

    def __init__(
        self,
        digits: np.ndarray,
        num_frames: int = 20,
        size: int = 64,
        num_digits: int = 2,
        speed: float | None = None,
    ) -> None:
        digits = np.asarray(digits)
        if digits.ndim != 3 or digits.dtype != np.uint8 or len(digits) == 0:
            raise ValueError(
                f"digits must be uint8 images with shape (N, 28, 28), got {digits.dtype} "
                f"{digits.shape}"
            )
        if size < max(digits.shape[1:]):
            raise ValueError(f"size must be at least {max(digits.shape[1:])}, got {size}")
        if num_frames < 1 or num_digits < 1:
            raise ValueError(
                f"num_frames and num_digits must be positive, got {num_frames}, {num_digits}"
            )
        self.digits = digits
        self.num_frames = num_frames
        self.size = size
        self.num_digits = num_digits
        self.speed = 0.1 * (size - max(digits.shape[1:])) if speed is None else float(speed)
        if self.speed < 0:
            raise ValueError(f"speed must be non-negative, got {speed}")

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """Shape of one frame: (1, size, size)."""
        return (1, self.size, self.size)

    def render(self, rng: np.random.Generator) -> np.ndarray:
        r"""A new sequence, uint8 with shape (num_frames, 1, size, size)."""
        _, height, width = self.digits.shape
        free = np.array([self.size - height, self.size - width], dtype=np.float64)
        chosen = rng.integers(0, len(self.digits), size=self.num_digits)
        start = rng.uniform(0, 1, size=(self.num_digits, 2)) * free
        angle = rng.uniform(0, 2 * np.pi, size=self.num_digits)
        velocity = self.speed * np.stack([np.sin(angle), np.cos(angle)], axis=-1)
        corners = bounce(start, velocity, self.num_frames, 0.0, free)  # (T, K, 2)
        corners = np.rint(corners).astype(np.int64)
        frames = np.zeros((self.num_frames, self.size, self.size), dtype=np.uint8)
        for t in range(self.num_frames):
            for k in range(self.num_digits):
                top, left = corners[t, k]
                window = frames[t, top : top + height, left : left + width]
                np.maximum(window, self.digits[chosen[k]], out=window)
        return frames[:, None]

    def __repr__(self) -> str:
        return (
            f"MovingMNIST(num_frames={self.num_frames}, size={self.size}, "
            f"num_digits={self.num_digits}, speed={self.speed:.3g})"
        )


def downscale_digits(digits: np.ndarray, factor: int) -> np.ndarray:
    r"""Digits shrunk by an integer ``factor``: the mean of each factor x factor block, rounded.

    With ``factor=2`` and 32 x 32 frames, :class:`MovingMNIST` renders the standard data at half
    resolution: 14 x 14 digits in 32 x 32 frames, moving 1.8 pixels per frame (the same
    geometry, in the same units of the frame, as 28 x 28 digits in 64 x 64 frames).

    Arguments:
        digits: uint8 images (N, H, W), with H and W divisible by ``factor``.
        factor: Positive integer.

    Returns:
        uint8 images (N, H / factor, W / factor).
    """
    digits = np.asarray(digits)
    if factor < 1 or digits.ndim != 3 or digits.shape[1] % factor or digits.shape[2] % factor:
        raise ValueError(
            f"cannot shrink digits of shape {digits.shape} by a factor {factor}: the factor must "
            "be a positive integer that divides their height and width"
        )
    count, height, width = digits.shape
    blocks = digits.reshape(count, height // factor, factor, width // factor, factor)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)

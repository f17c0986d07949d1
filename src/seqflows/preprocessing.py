r"""How raw frames become a model's input (:class:`Preprocessing`): the part of the data's
scaling that a trained model carries (``model.preprocessing``) and saves beside its weights.

uint8 frames are scaled to [0, 1], with noise (:func:`frames_to_unit_interval`); real-valued
series are standardised per dimension, z = (x - mean) / std. The data layer
(:mod:`seqflows.data.scaling`) fits the standardisation and re-exports these names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from .errors import DataError

__all__ = [
    "NOISES",
    "Preprocessing",
    "check_standardization",
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
        raise DataError(f"frames must be uint8 (0..255), got {x.dtype}")
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


def check_standardization(mean: Sequence[float], std: Sequence[float], noise: str | None) -> None:
    r"""Checks a per-dimension standardisation z = (x - mean) / std of a real-valued series:
    one finite mean and one positive, finite std per dimension, and no pixel noise (``noise``
    ``"none"``, or None while it is not known yet).

    Raises:
        ValueError: Naming what is wrong.
    """
    if len(mean) != len(std) or not mean:
        raise ValueError(
            f"mean and std need one value per dimension, got {len(mean)} and {len(std)}"
        )
    if not all(math.isfinite(value) for value in mean) or not all(
        0 < value < math.inf for value in std
    ):
        raise ValueError("mean must be finite and std positive and finite in every dimension")
    if noise not in (None, "none"):
        raise ValueError(
            f"noise {noise!r} is pixel noise for uint8 frames; standardised real series take "
            "noise 'none'"
        )


@dataclass(frozen=True)
class Preprocessing:
    r"""How raw frames become a model's input.

    uint8 frames: :func:`frames_to_unit_interval` with ``noise``. Real-valued vector series
    (float frames (D,)): standardised per dimension, z = (x - mean) / std, with ``mean`` and
    ``std`` fitted on the training split (:func:`~seqflows.data.scaling.series_statistics`),
    and no noise.

    A model trained by ``seqflows train`` carries the one it was trained with
    (``seqflows.load(path).preprocessing``): score new frames the way the model saw its data,
    and add :attr:`log_abs_det` per frame to get the log-density of the series in its own units.

    Attributes:
        noise: ``"gaussian"`` (x / 255 + N(0, (1/256)^2), the paper's), ``"uniform"``
            ((x + u) / 256, dequantization) or ``"none"`` (x / 255; real values as they are).
        mean: Per-dimension mean of a real-valued series (D values), or None.
        std: Per-dimension standard deviation (D positive values), or None.
        frame_shape: The model's frame shape, (C, H, W) or (D,), that inputs are checked
            against (a loaded model's preprocessing has it), or None: not checked. Not part of
            the stored record (:meth:`record`): the model's event shape is stored beside it.
        gaps: Whether the model was trained with observation masks (``data.gaps``): its last
            2 D conditions per step are the masks of :func:`~seqflows.missing.generation_masks`
            (the data's own conditions come first), which a forecast given raw series with
            NaN gaps must build.

    Example:
        >>> frames = torch.zeros(1, 3, 1, 4, 4, dtype=torch.uint8)  # (B, T, C, H, W)
        >>> Preprocessing("none")(frames).dtype
        torch.float32
        >>> series = Preprocessing("none", mean=(10.0, 0.0), std=(2.0, 4.0))
        >>> series(np.array([[12.0, 1.0]])).tolist(), round(series.log_abs_det, 4)
        ([[1.0, 0.25]], -2.0794)
    """

    noise: Literal["gaussian", "uniform", "none"] = "gaussian"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    frame_shape: tuple[int, ...] | None = None
    gaps: bool = False

    def __post_init__(self) -> None:
        if self.noise not in NOISES:
            raise ValueError(f"unknown noise {self.noise!r}: choose one of {', '.join(NOISES)}")
        if self.frame_shape is not None:
            object.__setattr__(self, "frame_shape", tuple(int(n) for n in self.frame_shape))
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std standardise together: give both or neither")
        if self.mean is None:
            return
        object.__setattr__(self, "mean", tuple(float(value) for value in self.mean))
        object.__setattr__(self, "std", tuple(float(value) for value in self.std))
        check_standardization(self.mean, self.std, self.noise)

    def record(self) -> dict[str, object]:
        """The stored record (checkpoints, ``config.json``): noise, mean, std (and gaps, when
        the model takes observation masks)."""
        record: dict[str, object] = {"noise": self.noise, "mean": self.mean, "std": self.std}
        return {**record, "gaps": True} if self.gaps else record

    def check_shape(self, shape: Sequence[int], what: str = "frames") -> None:
        r"""Checks that ``shape`` ends in :attr:`frame_shape` (nothing to check without it).

        Raises:
            ValueError: Naming the shape given, the one expected and, for one-channel video
                given as (B, T, H, W), the missing channel axis.
        """
        if self.frame_shape is None:
            return
        shape, expected = tuple(shape), self.frame_shape
        if len(shape) > len(expected) and shape[-len(expected) :] == expected:
            return
        hint = ""
        if len(expected) == 3 and expected[0] == 1 and shape[-2:] == expected[1:]:
            hint = "; add the channel axis: x[:, :, None] (or x.unsqueeze(2))"
        raise DataError(
            f"{what} of shape {shape}: the model takes frames {expected}, as (B, T, "
            f"{', '.join(map(str, expected))}){hint}"
        )

    @property
    def standardizes(self) -> bool:
        """Whether this standardises a real-valued series (``mean`` and ``std`` are set)."""
        return self.mean is not None

    @property
    def log_abs_det(self) -> float:
        r"""log |det dz/dx| of one frame, -sum_d log std_d (0 without standardisation): the
        log-density of a frame in its own units is the model's log p(z_t) plus this."""
        if self.std is None:
            return 0.0
        return -math.fsum(math.log(value) for value in self.std)

    def __call__(
        self, frames: Tensor | np.ndarray, seed: int | np.random.Generator | None = None
    ) -> Tensor:
        r"""Frames (any shape, ending in the frame shape) as float32 model input; ``seed``
        draws the noise of uint8 frames.

        Raises:
            ValueError: uint8 frames for a standardisation, real values with pixel noise, or
                a frame size other than the standardisation's dimensions.
        """
        x = frames.numpy(force=True) if isinstance(frames, Tensor) else np.asarray(frames)
        self.check_shape(x.shape)
        if x.dtype == np.uint8:
            if self.standardizes:
                raise DataError(
                    "this preprocessing standardises real-valued series; got uint8 frames"
                )
            return frames_to_unit_interval(x, self.noise, np.random.default_rng(seed))
        if x.dtype.kind != "f":
            raise DataError(f"frames must be uint8 or real-valued (float), got {x.dtype}")
        if self.noise != "none":
            raise DataError(
                f"real-valued frames take no pixel noise (noise 'none'), not {self.noise!r}"
            )
        if not self.standardizes:
            return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        if x.shape[-1:] != mean.shape:
            raise DataError(
                f"frames of shape {x.shape[-1:]}: the standardisation has {len(mean)} dimensions"
            )
        z = (x.astype(np.float64) - mean) / std
        return torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))

    def inverse(self, z: Tensor) -> Tensor:
        r"""Model values back in the data's units: mean + std * z for a standardised series
        (float64); anything else (frames scaled to [0, 1]) is returned as it is.

        Arguments:
            z: Model input or output, with shape (*, D): e.g. ``model.sample(...)`` (B, L, D).

        Raises:
            ValueError: ``z`` does not end in :attr:`frame_shape` (or, for a standardisation,
                in its D dimensions).
        """
        self.check_shape(z.shape, "values")
        if not self.standardizes:
            return z
        if z.shape[-1:] != (len(self.mean),):
            raise DataError(
                f"values of shape {tuple(z.shape)}: the standardisation has {len(self.mean)} "
                "dimensions"
            )
        mean = torch.tensor(self.mean, dtype=torch.float64, device=z.device)
        std = torch.tensor(self.std, dtype=torch.float64, device=z.device)
        return mean + std * z.double()

r"""Reading videos and folders of frames, and preparing their frames for a store (Sec. 4).

:func:`read_video` decodes any file FFmpeg reads (through PyAV) and :func:`read_frame_folder`
reads a folder of images (through Pillow), both as uint8 RGB (T, H, W, 3). Images of more than
8 bits are scaled, not clipped: 16-bit grey (PNG, TIFF, PGM of any maximum, which Pillow maps to
0..65535) becomes ``round(value * 255 / 65535)``; 16-bit colour PNGs are decoded by Pillow to
their high byte, ``floor(value / 256)``, which differs from that rounding by at most one level;
32-bit integer pixels beyond 0..65535 and floating-point pixels are refused (their range is not
known), as are images that claim more pixels than Pillow's decompression-bomb limit;
:func:`prepare_frames` turns them into the frames of a store, uint8 (T, C, H, W): optional
grayscale, then one of two resizes:

- ``"squash"`` resizes the whole frame to the target size, ignoring the aspect ratio. This is
  the authors' KTH protocol (160 x 120 squashed to 64 x 64, no crop).
- ``"crop"`` takes the largest centred crop with the target's aspect ratio, then resizes it.

Grayscale is the ITU-R BT.601 luma, Y = 0.299 R + 0.587 G + 0.114 B, rounded and clipped to
0..255, computed before resizing. Resizing is per frame with Pillow's area filter
(``Image.Resampling.BOX``: each output pixel is the area-weighted mean of the input pixels it
covers, like OpenCV's ``INTER_AREA``) when both sides shrink or keep their size, and Pillow's
bilinear filter when a side grows. The conversion to uint8 is clean: unlike the image writer the
authors used (which stretched each frame's own min..max to 0..255), no frame is stretched, so
pixel values may differ slightly from theirs.

PyAV and Pillow are imported inside the functions, so importing :mod:`seqflows.data` needs
neither.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "RESIZES",
    "VIDEO_SUFFIXES",
    "natural_key",
    "prepare_frames",
    "read_frame_folder",
    "read_video",
]

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (
    ".3gp",
    ".avi",
    ".flv",
    ".gif",
    ".m4v",
    ".mkv",
    ".mov",
    ".mp4",
    ".mpeg",
    ".mpg",
    ".ogv",
    ".webm",
    ".wmv",
)
RESIZES = ("crop", "squash")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def natural_key(name: str) -> tuple:
    """A sort key that orders the numbers inside names by value: ``frame2`` before ``frame10``.

    Example:
        >>> sorted(["frame10.png", "frame2.png", "Frame1.png"], key=natural_key)
        ['Frame1.png', 'frame2.png', 'frame10.png']
    """
    parts = re.split(r"(\d+)", name)
    return tuple(
        (0, int(part), part) if part.isdigit() else (1, part.lower(), part) for part in parts
    )


def read_video(path: str | os.PathLike) -> np.ndarray:
    r"""All frames of the first video stream of a file, decoded with PyAV.

    Arguments:
        path: Any file FFmpeg reads (.avi, .mp4, .mov, .mkv, .webm, .gif, ...).

    Returns:
        uint8 RGB frames, with shape (T, H, W, 3).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a readable video (corrupt, truncated, no video stream, no
            frames, frames of changing size); the message names the file.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{path}: unreadable video (no video stream)")
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except av.FFmpegError as error:
        raise DataError(f"{path}: unreadable video ({error})") from None
    if not frames:
        raise DataError(f"{path}: unreadable video (no frames)")
    shapes = sorted({frame.shape for frame in frames})
    if len(shapes) > 1:
        raise DataError(f"{path}: frames of changing size {shapes[0][:2]} and {shapes[1][:2]}")
    return np.stack(frames)


def read_frame_folder(path: str | os.PathLike) -> np.ndarray:
    r"""The image files of one folder, in natural order (``frame2`` before ``frame10``), as RGB.

    Files whose suffix is not in :data:`IMAGE_SUFFIXES` and hidden files are ignored.

    Arguments:
        path: A folder of frames of one sequence.

    Returns:
        uint8 RGB frames, with shape (T, H, W, 3); high-bit-depth images scaled to 8 bits (see
        the module's description).

    Raises:
        FileNotFoundError: No such folder.
        ValueError: No images, an unreadable image (also: floating-point pixels, or more pixels
            than Pillow's decompression-bomb limit), or frames of mixed sizes; the message names
            the folder (and the file or the two sizes, as (H, W)).
    """
    from PIL import Image

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no such frame folder: {path}")
    files = sorted(
        (
            file
            for file in path.iterdir()
            if file.is_file()
            and not file.name.startswith(".")
            and file.suffix.lower() in IMAGE_SUFFIXES
        ),
        key=lambda file: natural_key(file.name),
    )
    if not files:
        raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    frames = []
    for file in files:
        try:
            with Image.open(file) as image:
                frames.append(_rgb8(image))
        except (OSError, ValueError, Image.DecompressionBombError) as error:  # OSError: no image
            raise DataError(f"{path}: unreadable image {file.name} ({error})") from None
        if frames[-1].shape != frames[0].shape:
            raise DataError(
                f"{path}: frames of mixed sizes: {files[0].name} is {frames[0].shape[:2]}, "
                f"{file.name} is {frames[-1].shape[:2]} (H, W)"
            )
    return np.stack(frames)


def _rgb8(image: Any) -> np.ndarray:
    """A Pillow image as uint8 RGB (H, W, 3); high-bit-depth grey scaled (not clipped)."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        values = np.asarray(image)  # (H, W): uint16, or int32 for mode I
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                f"32-bit integer pixels from {values.min()} to {values.max()}, beyond 16 bits; "
                "save the frames as 8- or 16-bit images"
            )
        grey = np.rint(values * (255 / 65535)).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode == "F":
        raise DataError("floating-point pixels; save the frames as 8- or 16-bit images")
    return np.asarray(image.convert("RGB"))


def _crop_box(height: int, width: int, target: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred (left, top, right, bottom) box with the aspect ratio of target."""
    target_height, target_width = target
    if width * target_height > height * target_width:  # too wide: crop the sides
        crop_height, crop_width = height, max(1, round(height * target_width / target_height))
    else:  # too tall (or exact): crop top and bottom
        crop_height, crop_width = max(1, round(width * target_height / target_width)), width
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return left, top, left + crop_width, top + crop_height


def prepare_frames(
    frames: np.ndarray,
    size: int | tuple[int, int],
    grayscale: bool = False,
    resize: str = "squash",
) -> np.ndarray:
    r"""Frames for a store: optional BT.601 grayscale, then a squash or crop resize per frame.

    Arguments:
        frames: uint8 RGB frames, with shape (T, H, W, 3).
        size: The target size, ``S`` for (S, S) or (H', W').
        grayscale: Whether to keep only the luma Y = 0.299 R + 0.587 G + 0.114 B (rounded).
        resize: ``"squash"`` (whole frame, aspect ratio ignored) or ``"crop"`` (largest
            centred crop with the target aspect ratio, then resized).

    Returns:
        uint8 frames, with shape (T, C, H', W'), C = 1 if grayscale else 3.

    Example:
        >>> frames = np.zeros((2, 120, 160, 3), np.uint8)
        >>> prepare_frames(frames, 64, grayscale=True).shape
        (2, 1, 64, 64)
    """
    from PIL import Image

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames must be uint8 RGB (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}"
        )
    if resize not in RESIZES:
        raise ValueError(f"unknown resize {resize!r}: choose one of {', '.join(RESIZES)}")
    target = (size, size) if isinstance(size, int) else tuple(int(side) for side in size)
    if len(target) != 2 or min(target) < 1:
        raise ValueError(f"size must be a positive int or (H, W), got {size!r}")
    if grayscale:
        luma = np.rint(frames @ _LUMA)  # (T, H, W)
        frames = np.clip(luma, 0, 255).astype(np.uint8)[..., None]  # (T, H, W, 1)
    num_frames, height, width, channels = frames.shape
    if resize == "crop":
        box = _crop_box(height, width, target)
    else:
        box = (0, 0, width, height)
    grows = target[0] > box[3] - box[1] or target[1] > box[2] - box[0]
    resample = Image.Resampling.BILINEAR if grows else Image.Resampling.BOX
    out = np.empty((num_frames, *target, channels), np.uint8)  # (T, H', W', C)
    if box == (0, 0, width, height) and target == (height, width):
        out[:] = frames  # nothing to resize
    else:
        for t in range(num_frames):
            image = Image.fromarray(frames[t, ..., 0] if channels == 1 else frames[t])
            resized = image.resize((target[1], target[0]), resample=resample, box=box)
            out[t] = np.asarray(resized).reshape(*target, channels)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))  # (T, C, H', W')

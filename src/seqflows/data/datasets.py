r"""Datasets: reproducible float32 crops of sequences (Sec. 4, Appendix B).

Randomness. Every item draws from its own generator :func:`item_rng` (seed, stream, index), so
an item is the same tensor whatever the DataLoader workers, the number of processes or the
point where training resumed. The training stream (:class:`TrainingSequences`) is endless:
item i is a random temporal crop of length L of the sequence that epoch i // N puts at place
i % N (a stored source), or of a sequence rendered for item i (a simulator). Evaluation sets
(:class:`FixedSequences`) are deterministic: crops and noise come from a fixed seed (the
authors redrew both at every evaluation).

Sequences come from a :class:`~seqflows.data.sources.Source`; crops become model input with a
:class:`~seqflows.data.scaling.Preprocessing` (uint8 frames: scaled to [0, 1] with noise; real
series: standardised); :mod:`.samplers` split the items across processes.

Conditions. With ``conditions=True`` an item is a pair (frames, conditions): the per-step
conditions (actions, covariates) of the same crop, float32 (L, A), read with
``source.read_conditions(n, start, stop)`` (a stored source) or rendered with the sequence by
``source.render_with_conditions(rng)`` (a simulator), so that frames and conditions stay aligned.
Without it items are the frames alone, as before.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import DataError
from .scaling import NOISES, Preprocessing
from .sources import Simulator, Source, StoredSource

__all__ = [
    "FixedSequences",
    "TrainingSequences",
    "item_rng",
]

CROPS = ("random", "first", "last")
STREAM_LENGTH = 2**31 - 1  # nominal length of the endless training stream


def item_rng(seed: int, stream: str, index: int) -> np.random.Generator:
    r"""The random generator of one item of one stream: default_rng([seed, crc32(stream), index]).

    Arguments:
        seed: The experiment's seed (non-negative).
        stream: The stream's name, e.g. "train", "validation", "test" or "permutation".
        index: The item's index in the stream (non-negative).

    Example:
        >>> a = item_rng(0, "train", 5).random()
        >>> a == item_rng(0, "train", 5).random() != item_rng(0, "test", 5).random()
        True
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got {seed} and {index}")
    return np.random.default_rng([int(seed), zlib.crc32(stream.encode()), int(index)])


def _check_source(source: Source, length: int) -> int:
    """Validates a source and a crop length; returns the frames of its shortest sequence."""
    if not isinstance(getattr(source, "stored", None), bool):
        raise TypeError(
            f"source must be a seqflows.data.Source (a StoredSource such as ArraySource or "
            f"StoreSource, or a Simulator), got {type(source).__name__}"
        )
    available = int(source.num_frames)
    if length < 1 or length > available:
        raise DataError(
            f"{source.name}: cannot crop {length} frames from sequences of {available} frames"
        )
    return available


def _check_conditioned(source: Source, conditions: bool) -> bool:
    """Refuses ``conditions=True`` for a source whose sequences have no conditions."""
    if conditions and getattr(source, "condition_dim", 0) < 1:
        raise DataError(
            f"{source.name}: conditions were asked for but the sequences have none (give the "
            "source conditions, e.g. an .npz with 'frames' and 'conditions')"
        )
    return bool(conditions)


def _with_conditions(
    source: Source,
    n: int | None,
    rng: np.random.Generator,
    length: int,
    crop: str,
) -> tuple[np.ndarray, int, Tensor]:
    """A crop of stored sequence n (or of a sequence rendered with ``rng`` when n is None),
    its start and its conditions, float32 (length, A)."""
    if n is not None:
        frames, start = _read_crop(source, n, rng, length, crop)
        return frames, start, torch.from_numpy(source.read_conditions(n, start, start + length))
    frames, conditions = source.render_with_conditions(rng)
    if len(conditions) != len(frames):
        raise ValueError(
            f"{source.name}: rendered {len(frames)} frames but {len(conditions)} conditions"
        )
    start = _crop_start(rng, len(frames), length, crop)
    stop = start + length
    return frames[start:stop], start, torch.as_tensor(conditions[start:stop], dtype=torch.float32)


def _crop_start(rng: np.random.Generator, available: int, length: int, crop: str) -> int:
    if crop == "random":
        return int(rng.integers(0, available - length + 1))
    return 0 if crop == "first" else available - length


def _read_crop(
    source: StoredSource, n: int, rng: np.random.Generator, length: int, crop: str
) -> tuple[np.ndarray, int]:
    """A crop of stored sequence n and its start; only the crop's frames are read."""
    start = _crop_start(rng, source.lengths[n], length, crop)
    frames = source.read(n, start, start + length)
    if frames.dtype.kind == "f" and np.isinf(frames).any():  # NaN: a missing value
        frame, dimension = (int(index) for index in np.argwhere(np.isinf(frames))[0][:2])
        raise DataError(
            f"{source.name}: sequence {n}, frame {start + frame}, dimension {dimension} is "
            f"{frames[frame, dimension]}: values must be finite (fill or drop it; NaN marks a "
            "missing value)"
        )
    return frames, start


def _preprocessing(noise: str, preprocessing: Preprocessing | None) -> Preprocessing:
    if preprocessing is not None:
        return preprocessing
    if noise not in NOISES:
        raise ValueError(f"unknown noise {noise!r}: choose one of {', '.join(NOISES)}")
    return Preprocessing(noise)


def _render_crop(
    source: Simulator, rng: np.random.Generator, length: int, crop: str
) -> tuple[np.ndarray, int]:
    """A crop of a sequence rendered with ``rng`` and its start (drawn after the sequence)."""
    frames = source.render(rng)
    start = _crop_start(rng, len(frames), length, crop)
    return frames[start : start + length], start


class TrainingSequences(Dataset):
    r"""The endless, reproducible training stream: item i is a random crop of one sequence.

    For a :class:`~seqflows.data.sources.StoredSource` of N sequences, epoch e = i // N visits
    the sequences in the order ``item_rng(seed, "permutation", e).permutation(N)``: item i is
    sequence perm[i % N], so that every sequence appears exactly once per epoch. For a
    :class:`~seqflows.data.sources.Simulator`, item i is a new sequence rendered with
    ``item_rng(seed, "train", i)``. Either way, the crop start (uniform in 0 .. T_n - length)
    and the noise are drawn from ``item_rng(seed, "train", i)``, so item i is the same tensor in
    every worker, process and resumed run.

    Arguments:
        source: A stored source (e.g. an :class:`~seqflows.data.ArraySource`) or a simulator.
        length: Number of frames L of each crop.
        noise: One of :data:`NOISES` (see :func:`~seqflows.data.scaling.frames_to_unit_interval`).
        seed: The experiment's seed.
        num_items: Nominal length of the dataset; default 2^31 - 1 (endless).
        preprocessing: How crops become model input (default ``Preprocessing(noise)``; e.g. the
            standardisation of a real-valued series); it replaces ``noise``.
        conditions: Items are (frames, conditions (length, A)) pairs (see the module's notes).

    Example:
        >>> from seqflows.data import ArraySource
        >>> source = ArraySource(np.zeros((3, 10, 1, 4, 4), dtype=np.uint8))
        >>> data = TrainingSequences(source, length=6, seed=1)
        >>> data[7].shape, data[7].dtype
        (torch.Size([6, 1, 4, 4]), torch.float32)
    """

    def __init__(
        self,
        source: Source,
        length: int,
        noise: str = "gaussian",
        seed: int = 0,
        num_items: int | None = None,
        preprocessing: Preprocessing | None = None,
        conditions: bool = False,
    ) -> None:
        self.available = _check_source(source, length)
        self.conditions = _check_conditioned(source, conditions)
        self.preprocessing = _preprocessing(noise, preprocessing)
        if num_items is not None and num_items < 1:
            raise ValueError(f"num_items must be positive, got {num_items}")
        self.source = source
        self.length = length
        self.noise = self.preprocessing.noise
        self.seed = seed
        self.num_items = num_items
        self._permutation: tuple[int, np.ndarray] | None = None  # (epoch, order): last asked

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame."""
        return tuple(self.source.frame_shape)

    def __len__(self) -> int:
        return STREAM_LENGTH if self.num_items is None else self.num_items

    def permutation(self, epoch: int) -> np.ndarray:
        """The order in which epoch ``epoch`` visits the sequences of a stored source."""
        if self._permutation is None or self._permutation[0] != epoch:
            order = item_rng(self.seed, "permutation", epoch).permutation(len(self.source))
            self._permutation = (epoch, order)
        return self._permutation[1]

    def __getitem__(self, i: int) -> Tensor | tuple[Tensor, Tensor]:
        r"""Item i, float32 with shape (length, *frame_shape) (and its conditions (length, A)
        with ``conditions``)."""
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range 0..{len(self) - 1}")
        rng = item_rng(self.seed, "train", i)
        sequence = None
        if self.source.stored:
            epoch, place = divmod(i, len(self.source))
            sequence = int(self.permutation(epoch)[place])
        if self.conditions:
            crop, _, conditions = _with_conditions(
                self.source, sequence, rng, self.length, "random"
            )
            return self.preprocessing(crop, rng), conditions
        if sequence is not None:
            crop, _ = _read_crop(self.source, sequence, rng, self.length, "random")
        else:
            crop, _ = _render_crop(self.source, rng, self.length, "random")
        return self.preprocessing(crop, rng)


class FixedSequences(Dataset):
    r"""A deterministic evaluation set: item j is the same tensor at every call.

    For a stored source, item j is a crop of sequence j (j < count <= N). For a simulator,
    item j is rendered with ``item_rng(seed, stream, j)``. The crop ("random": start uniform in
    0 .. T_j - length; "first"; "last": the last ``length`` frames) and the noise are drawn from
    ``item_rng(seed, stream, j)``.

    Arguments:
        source: A stored source (e.g. an :class:`~seqflows.data.ArraySource`) or a simulator.
        length: Number of frames L of each crop.
        noise: One of :data:`NOISES` (see :func:`~seqflows.data.scaling.frames_to_unit_interval`).
        seed: The experiment's seed.
        stream: The name of the random stream, e.g. "validation" or "test".
        count: Number of items; default N for a stored source, required for a simulator.
        crop: "random", "first" or "last".
        preprocessing: How crops become model input (default ``Preprocessing(noise)``); it
            replaces ``noise``.
        conditions: Items are (frames, conditions (length, A)) pairs (see the module's notes).

    Example:
        >>> import torch
        >>> from seqflows.data import ArraySource
        >>> source = ArraySource(np.zeros((3, 10, 2), dtype=np.uint8))
        >>> data = FixedSequences(source, length=4, crop="last")
        >>> len(data), data.raw(0)[1], torch.equal(data[2], data[2])
        (3, 6, True)
    """

    def __init__(
        self,
        source: Source,
        length: int,
        noise: str = "gaussian",
        seed: int = 0,
        stream: str = "test",
        count: int | None = None,
        crop: str = "random",
        preprocessing: Preprocessing | None = None,
        conditions: bool = False,
    ) -> None:
        self.available = _check_source(source, length)
        self.conditions = _check_conditioned(source, conditions)
        self.preprocessing = _preprocessing(noise, preprocessing)
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}: choose one of {', '.join(CROPS)}")
        if source.stored:
            count = len(source) if count is None else count
            if not 1 <= count <= len(source):
                raise ValueError(
                    f"{source.name}: count must be in 1..{len(source)} (the number of sequences)"
                    f", got {count}"
                )
        elif count is None or count < 1:
            raise ValueError(
                f"count (a positive number of sequences to render) is required "
                f"for a simulator source, got {count}"
            )
        self.source = source
        self.length = length
        self.noise = self.preprocessing.noise
        self.seed = seed
        self.stream = stream
        self.count = count
        self.crop = crop

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame."""
        return tuple(self.source.frame_shape)

    def __len__(self) -> int:
        return self.count

    def _raw(self, j: int) -> tuple[np.ndarray, int, np.random.Generator]:
        j = int(j)
        if not 0 <= j < self.count:
            raise IndexError(f"item {j} out of range 0..{self.count - 1}")
        rng = item_rng(self.seed, self.stream, j)
        if self.source.stored:
            crop, start = _read_crop(self.source, j, rng, self.length, self.crop)
        else:
            crop, start = _render_crop(self.source, rng, self.length, self.crop)
        return crop, start, rng

    def raw(self, j: int) -> tuple[np.ndarray, int]:
        r"""Item j as stored (uint8 frames, or a real series), (length, *frame_shape), without
        noise, and the crop's start."""
        frames, start, _ = self._raw(j)
        return frames, start

    def start(self, j: int) -> int:
        r"""The first frame of item j's crop in its sequence (a stored source reads nothing)."""
        if not self.source.stored:
            return self._raw(j)[1]
        if not 0 <= j < self.count:
            raise IndexError(f"item {j} out of range 0..{self.count - 1}")
        rng = item_rng(self.seed, self.stream, j)
        return _crop_start(rng, self.source.lengths[j], self.length, self.crop)

    def __getitem__(self, j: int) -> Tensor | tuple[Tensor, Tensor]:
        r"""Item j, float32 with shape (length, *frame_shape) (and its conditions (length, A)
        with ``conditions``)."""
        if self.conditions:
            return self.with_conditions(j)
        frames, _, rng = self._raw(j)
        return self.preprocessing(frames, rng)

    def with_conditions(self, j: int) -> tuple[Tensor, Tensor]:
        r"""Item j, (length, *frame_shape), and the conditions of its frames, (length, A): the
        frames of ``self[j]`` whatever ``conditions`` says."""
        j = int(j)
        if not 0 <= j < self.count:
            raise IndexError(f"item {j} out of range 0..{self.count - 1}")
        _check_conditioned(self.source, True)
        rng = item_rng(self.seed, self.stream, j)
        n = j if self.source.stored else None
        frames, _, conditions = _with_conditions(self.source, n, rng, self.length, self.crop)
        return self.preprocessing(frames, rng), conditions

r"""Sequence datasets: uint8 frames in, reproducible float32 crops out (Sec. 4, Appendix B).

Sources. A source holds or makes uint8 sequences: an :class:`ArraySource` wraps an array of
sequences (N, T, C, H, W) (memory-mapped or not), and a :class:`Simulator` (Moving MNIST,
bouncing balls) renders a new sequence (T, C, H, W) from a random generator.

Scaling. Frames become float32 in [0, 1] with :func:`frames_to_unit_interval`. The paper's
default is x / 255 plus Gaussian noise N(0, (1/256)^2) per pixel, redrawn every time a sequence
is loaded; it is not a dequantization, so its likelihoods have no bits/dim. Uniform
dequantization (x + u) / 256, u ~ U[0, 1), gives bits/dim (see :mod:`seqflows.metrics`).

Randomness. Every item draws from its own generator :func:`item_rng` (seed, stream, index), so
an item is the same tensor whatever the DataLoader workers, the number of processes or the
point where training resumed. The training stream (:class:`TrainingSequences`) is endless:
item i is a random temporal crop of length L of the sequence that epoch i // N puts at place
i % N. :class:`StreamSampler` hands each process its share of every global batch, and
:class:`EvaluationSampler` splits a fixed set (:class:`FixedSequences`) across processes
without the padding of ``DistributedSampler`` (which would count some sequences twice).

Evaluation is deterministic: crops and noise come from a fixed seed (the authors redrew both at
every evaluation).
"""

from __future__ import annotations

import mmap
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

__all__ = [
    "NOISES",
    "ArraySource",
    "EvaluationSampler",
    "FixedSequences",
    "Simulator",
    "StreamSampler",
    "TrainingSequences",
    "bounce",
    "check_frames",
    "frames_to_unit_interval",
    "item_rng",
    "load_array",
    "split_indices",
]

NOISES = ("gaussian", "uniform", "none")
CROPS = ("random", "first", "last")
STREAM_LENGTH = 2**31 - 1  # nominal length of the endless training stream


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


class _MappedFile(NamedTuple):
    """A read-only memory map of a whole file, pickled as the file's name, not its data."""

    filename: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int
    order: str

    def open(self) -> np.memmap:
        return np.memmap(self.filename, self.dtype, "r", self.offset, self.shape, self.order)


def _picklable(array: Any) -> Any:
    """A memory map of a file becomes a :class:`_MappedFile` (e.g. for spawned DataLoader
    workers, which would otherwise receive a copy of the whole array); anything else is kept."""
    if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename:
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        return _MappedFile(array.filename, array.dtype, array.shape, array.offset, order)
    return array


def _unpickled(array: Any) -> Any:
    return array.open() if isinstance(array, _MappedFile) else array


class ArraySource:
    r"""A collection of uint8 sequences held in an array (in memory or memory-mapped).

    Arguments:
        array: uint8 sequences with shape (N, T, C, H, W), (N, T, H, W) (one channel is added)
            or (N, T, D) (vector series). Any array-like object with ``shape``, ``dtype`` and
            integer indexing along N is accepted, e.g. a lazy view of a file.
        name: What the array is (e.g. the file path), for error messages.

    Example:
        >>> source = ArraySource(np.zeros((4, 10, 8, 8), dtype=np.uint8), name="zeros")
        >>> len(source), source.num_frames, source.frame_shape
        (4, 10, (1, 8, 8))
        >>> source[0].shape
        (10, 1, 8, 8)
    """

    def __init__(self, array: Any, name: str = "array") -> None:
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            array = np.asarray(array)
        shape = tuple(int(size) for size in array.shape)
        dtype = np.dtype(array.dtype)
        if dtype != np.uint8:
            hint = ""
            if dtype.kind == "f":
                hint = (
                    "; frames in [0, 1] must be converted first, e.g. multiply by 255 and cast: "
                    "(x * 255).round().astype(np.uint8)"
                )
            raise ValueError(f"{name}: sequences must have dtype uint8, got {dtype}{hint}")
        if len(shape) not in (3, 4, 5):
            raise ValueError(
                f"{name}: sequences must have shape (N, T, C, H, W), (N, T, H, W) or (N, T, D), "
                f"got {shape}"
            )
        if min(shape) < 1:
            raise ValueError(f"{name}: empty array of sequences, shape {shape}")
        self.array = array
        self.name = name
        self._shape = shape

    @property
    def num_sequences(self) -> int:
        """Number of sequences N."""
        return self._shape[0]

    @property
    def num_frames(self) -> int:
        """Number of frames T of every sequence."""
        return self._shape[1]

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame: (C, H, W), or (D,) for vector series."""
        if len(self._shape) == 4:
            return (1, *self._shape[2:])
        return self._shape[2:]

    def __len__(self) -> int:
        return self.num_sequences

    def __getitem__(self, n: int) -> np.ndarray:
        r"""Sequence n, a contiguous uint8 copy with shape (T, *frame_shape)."""
        n = int(n)
        if not -self.num_sequences <= n < self.num_sequences:
            raise IndexError(f"{self.name}: sequence {n} out of range 0..{len(self) - 1}")
        sequence = np.array(self.array[n % self.num_sequences], dtype=np.uint8, copy=True)
        return sequence.reshape(self.num_frames, *self.frame_shape)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "array": _picklable(self.array)}  # memory maps: by file name

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, array=_unpickled(state["array"]))

    def __repr__(self) -> str:
        return f"ArraySource({self.name!r}, shape={self._shape})"


def load_array(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    r"""Loads an array from a .npy file (memory-mapped, read-only) or from a .npz archive.

    Arguments:
        path: The file.
        key: For a .npz archive holding several arrays, the one to take.

    Returns:
        The array; a read-only memory map for a .npy file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    try:
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                keys = list(loaded.keys())
                if key is None and len(keys) != 1:
                    raise KeyError(f"{path}: holds the arrays {keys}, choose one with key=")
                if key is not None and key not in keys:
                    raise KeyError(f"{path}: no array {key!r}, it holds {keys}")
                return loaded[keys[0] if key is None else key]
        return loaded
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"{path}: the file is corrupt or truncated, or not a numpy array file ({error})"
        ) from error


@runtime_checkable
class Simulator(Protocol):
    r"""Anything that renders random uint8 sequences, e.g. Moving MNIST or bouncing balls.

    ``render(rng)`` returns a new sequence, uint8 with shape (num_frames, *frame_shape), that
    depends only on the state of ``rng``.
    """

    num_frames: int

    @property
    def frame_shape(self) -> tuple[int, ...]: ...

    def render(self, rng: np.random.Generator) -> np.ndarray: ...


def bounce(
    start: np.ndarray,
    velocity: np.ndarray,
    num_frames: int,
    low: float | np.ndarray,
    high: float | np.ndarray,
) -> np.ndarray:
    r"""Positions of points moving at constant velocity in a box, bouncing off its walls.

    Each coordinate moves as u_t = start + t velocity, folded into [low, high] by elastic
    reflections (a triangle wave of period 2 (high - low)); consecutive positions are never
    farther apart than the velocity. A coordinate whose walls coincide stays at ``low``.

    Arguments:
        start: Positions at t = 0, in [low, high], with shape (*, D).
        velocity: Displacement per frame, with shape (*, D).
        num_frames: Number of frames T.
        low: Lower walls, a number or per coordinate with shape (D,).
        high: Upper walls, a number or per coordinate with shape (D,).

    Returns:
        Positions, with shape (T, *, D).

    Example:
        >>> bounce(np.array([1.0]), np.array([2.0]), 5, 0.0, 4.0)[:, 0]
        array([1., 3., 3., 1., 1.])
    """
    start = np.asarray(start, dtype=np.float64)
    t = np.arange(num_frames, dtype=np.float64).reshape(-1, *([1] * start.ndim))
    unfolded = start + t * np.asarray(velocity, dtype=np.float64)  # (T, *, D)
    low, width = np.asarray(low, np.float64), np.asarray(high, np.float64) - low
    period = 2 * np.where(width > 0, width, 1.0)
    folded = np.mod(unfolded - low, period)
    folded = np.where(folded > period / 2, period - folded, folded)
    return low + np.where(width > 0, folded, 0.0)


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


def _stored(source: Any) -> bool:
    """Whether ``source`` holds its sequences (ArraySource, a store split) or renders them."""
    return isinstance(source, ArraySource) or hasattr(source, "lengths")


def _check_source(source: Any, length: int) -> int:
    """Validates a source and a crop length; returns the frames of its shortest sequence."""
    if not (_stored(source) or isinstance(source, Simulator)):
        raise TypeError(
            f"source must be an ArraySource, a store split or a simulator (with frame_shape, "
            f"num_frames and render(rng)), got {type(source).__name__}"
        )
    name = source.name if _stored(source) else repr(source)
    available = int(source.num_frames)
    if length < 1 or length > available:
        raise ValueError(
            f"{name}: cannot crop {length} frames from sequences of {available} frames"
        )
    return available


def _read_crop(
    source: Any, n: int, rng: np.random.Generator, length: int, crop: str = "random"
) -> tuple[np.ndarray, int]:
    """A crop of stored sequence n and its start; from a store only its frames are read."""
    if hasattr(source, "read"):  # a store split: sequences of their own lengths
        start = _crop_start(rng, source.lengths[n], length, crop)
        return source.read(n, start, start + length), start
    frames = source[n]
    start = _crop_start(rng, len(frames), length, crop)
    return frames[start : start + length], start


def _crop_start(rng: np.random.Generator, available: int, length: int, crop: str) -> int:
    if crop == "random":
        return int(rng.integers(0, available - length + 1))
    return 0 if crop == "first" else available - length


class TrainingSequences(Dataset):
    r"""The endless, reproducible training stream: item i is a random crop of one sequence.

    For an :class:`ArraySource` of N sequences, epoch e = i // N visits the sequences in the
    order ``item_rng(seed, "permutation", e).permutation(N)``: item i is sequence
    perm[i % N], so that every sequence appears exactly once per epoch. For a simulator, item
    i is a new sequence rendered with ``item_rng(seed, "train", i)``. Either way, the crop
    start (uniform in 0 .. T - length) and the noise are drawn from ``item_rng(seed, "train",
    i)``, so item i is the same tensor in every worker, process and resumed run.

    Arguments:
        source: An :class:`ArraySource` or a :class:`Simulator`.
        length: Number of frames L of each crop.
        noise: One of :data:`NOISES` (see :func:`frames_to_unit_interval`).
        seed: The experiment's seed.
        num_items: Nominal length of the dataset; default 2^31 - 1 (endless).

    Example:
        >>> source = ArraySource(np.zeros((3, 10, 1, 4, 4), dtype=np.uint8))
        >>> data = TrainingSequences(source, length=6, seed=1)
        >>> data[7].shape, data[7].dtype
        (torch.Size([6, 1, 4, 4]), torch.float32)
    """

    def __init__(
        self,
        source: ArraySource | Simulator,
        length: int,
        noise: str = "gaussian",
        seed: int = 0,
        num_items: int | None = None,
    ) -> None:
        self.available = _check_source(source, length)
        if noise not in NOISES:
            raise ValueError(f"unknown noise {noise!r}: choose one of {', '.join(NOISES)}")
        if num_items is not None and num_items < 1:
            raise ValueError(f"num_items must be positive, got {num_items}")
        self.source = source
        self.length = length
        self.noise = noise
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
        """The order in which epoch ``epoch`` visits the sequences of an ArraySource."""
        if self._permutation is None or self._permutation[0] != epoch:
            order = item_rng(self.seed, "permutation", epoch).permutation(len(self.source))
            self._permutation = (epoch, order)
        return self._permutation[1]

    def __getitem__(self, i: int) -> Tensor:
        r"""Item i, float32 with shape (length, *frame_shape)."""
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range 0..{len(self) - 1}")
        rng = item_rng(self.seed, "train", i)
        if _stored(self.source):
            epoch, place = divmod(i, len(self.source))
            sequence = int(self.permutation(epoch)[place])
            crop, _ = _read_crop(self.source, sequence, rng, self.length)
        else:
            frames = self.source.render(rng)
            start = _crop_start(rng, len(frames), self.length, "random")
            crop = frames[start : start + self.length]
        return frames_to_unit_interval(crop, self.noise, rng)


class FixedSequences(Dataset):
    r"""A deterministic evaluation set: item j is the same tensor at every call.

    For an :class:`ArraySource`, item j is a crop of sequence j (j < count <= N). For a
    simulator, item j is rendered with ``item_rng(seed, stream, j)``. The crop ("random":
    start uniform in 0 .. T - length; "first"; "last": the last ``length`` frames) and the
    noise are drawn from ``item_rng(seed, stream, j)``.

    Arguments:
        source: An :class:`ArraySource` or a :class:`Simulator`.
        length: Number of frames L of each crop.
        noise: One of :data:`NOISES` (see :func:`frames_to_unit_interval`).
        seed: The experiment's seed.
        stream: The name of the random stream, e.g. "validation" or "test".
        count: Number of items; default N for an ArraySource, required for a simulator.
        crop: "random", "first" or "last".

    Example:
        >>> source = ArraySource(np.zeros((3, 10, 2), dtype=np.uint8))
        >>> data = FixedSequences(source, length=4, crop="last")
        >>> len(data), data.raw(0)[1], torch.equal(data[2], data[2])
        (3, 6, True)
    """

    def __init__(
        self,
        source: ArraySource | Simulator,
        length: int,
        noise: str = "gaussian",
        seed: int = 0,
        stream: str = "test",
        count: int | None = None,
        crop: str = "random",
    ) -> None:
        self.available = _check_source(source, length)
        if noise not in NOISES:
            raise ValueError(f"unknown noise {noise!r}: choose one of {', '.join(NOISES)}")
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}: choose one of {', '.join(CROPS)}")
        if _stored(source):
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
        self.noise = noise
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
        if _stored(self.source):
            crop, start = _read_crop(self.source, j, rng, self.length, self.crop)
            return crop, start, rng
        frames = self.source.render(rng)
        start = _crop_start(rng, len(frames), self.length, self.crop)
        return frames[start : start + self.length], start, rng

    def raw(self, j: int) -> tuple[np.ndarray, int]:
        r"""Item j without noise: uint8 frames (length, *frame_shape) and the crop's start."""
        frames, start, _ = self._raw(j)
        return frames, start

    def __getitem__(self, j: int) -> Tensor:
        r"""Item j, float32 with shape (length, *frame_shape)."""
        frames, _, rng = self._raw(j)
        return frames_to_unit_interval(frames, self.noise, rng)


class StreamSampler(Sampler[int]):
    r"""This process's indices of the training stream, for steps start_step .. num_steps - 1.

    At step s, process ``rank`` of ``world_size`` takes the items
    (s * world_size + rank) * batch_size + j, j < batch_size: the global batch of step s is
    the same whatever the number of processes, and setting ``start_step`` to the step reached
    continues the stream exactly. (With Lightning, keep it from substituting a
    ``DistributedSampler``: ``Trainer(use_distributed_sampler=False)``.)

    Arguments:
        batch_size: Batch size per process.
        num_steps: Total number of optimisation steps.
        start_step: First step to produce (for resuming); settable.
        rank: Index of this process.
        world_size: Number of processes.

    Example:
        >>> list(StreamSampler(batch_size=2, num_steps=2, rank=1, world_size=2))
        [2, 3, 6, 7]
    """

    def __init__(
        self,
        batch_size: int,
        num_steps: int,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or num_steps < 0:
            raise ValueError(
                f"batch_size must be positive and num_steps non-negative, got {batch_size} and "
                f"{num_steps}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size - 1, got {rank} of {world_size}")
        self.batch_size = batch_size
        self.num_steps = num_steps
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step

    @property
    def start_step(self) -> int:
        """First step produced."""
        return self._start_step

    @start_step.setter
    def start_step(self, step: int) -> None:
        if not 0 <= step <= self.num_steps:
            raise ValueError(f"start_step must be in 0..{self.num_steps}, got {step}")
        self._start_step = int(step)

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.num_steps):
            first = (step * self.world_size + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)

    def __len__(self) -> int:
        return (self.num_steps - self.start_step) * self.batch_size


def split_indices(count: int, rank: int, world_size: int) -> list[int]:
    r"""Process ``rank``'s share of ``count`` items: rank, rank + W, rank + 2W, ..., no padding.

    Example:
        >>> split_indices(5, 1, 2)
        [1, 3]
    """
    if count < 0 or not 0 <= rank < world_size:
        raise ValueError(
            f"need count >= 0 and 0 <= rank < world_size, got {count}, {rank}, {world_size}"
        )
    return list(range(rank, count, world_size))


class EvaluationSampler(Sampler[int]):
    r"""Process ``rank``'s share of an evaluation set (:func:`split_indices`), without padding:
    every item is counted exactly once over all processes, so reduce sums, not means.

    Example:
        >>> list(EvaluationSampler(5, rank=0, world_size=2))
        [0, 2, 4]
    """

    def __init__(self, count: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = split_indices(count, rank, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


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

r"""Sources: where sequences come from, behind one protocol (Sec. 4, Appendix B).

A :class:`Source` is what the datasets (:mod:`.datasets`) take sequences from. It is one of two
kinds, and says which in ``stored``:

* a :class:`StoredSource` holds a fixed collection of sequences and reads a crop of one without
  reading the rest: an :class:`ArraySource` wraps an array of sequences (N, T, C, H, W), in
  memory or memory-mapped (:func:`load_array`); a :class:`~seqflows.data.store.StoreSource`
  reads one split of a converted dataset, whose sequences may differ in length;
* a :class:`Simulator` renders a new sequence (T, C, H, W) from a random generator
  (:class:`~seqflows.data.BouncingBalls`, :class:`~seqflows.data.MovingMNIST`).

A source of your own subclasses :class:`StoredSource` or :class:`Simulator` (which set
``stored``) and provides the other members.

Frames are uint8 (video, quantised series); vector series (D,) may also be real-valued
(``dtype`` float16, float32 or float64), kept as they are. Sources keep their dtype until a crop
is read; :mod:`.scaling` turns crops into model input. A memory-mapped array is pickled as its
file name (:func:`picklable_array`), so DataLoader workers reopen the file instead of receiving a
copy of it.
"""

from __future__ import annotations

import mmap
import os
import zipfile
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..errors import DataError

__all__ = [
    "ArraySource",
    "MappedFile",
    "Simulator",
    "Source",
    "StoredSource",
    "load_array",
    "load_conditioned_array",
    "picklable_array",
    "unpickled_array",
]


class Source(Protocol):
    r"""What every source of sequences offers the datasets.

    A source is either stored (``stored`` is True: a :class:`StoredSource`, read by
    ``read(n, start, stop)``) or a simulator (``stored`` is False: a :class:`Simulator`, which
    renders a new sequence with ``render(rng)``). The datasets branch on ``stored``, never on the
    methods an object happens to have.

    Attributes:
        name: What the sequences are (a file, a store split, a simulator), for error messages.
        frame_shape: Shape of one frame: (C, H, W), or (D,) for vector series.
        num_frames: Frames that every sequence has, so the longest crop that fits in all of them:
            the length of the shortest sequence.
        stored: True for a :class:`StoredSource`, False for a :class:`Simulator`.
        dtype: The dtype of the frames: uint8, or a float dtype for real-valued vector series.
    """

    name: str
    frame_shape: tuple[int, ...]
    num_frames: int
    stored: bool
    dtype: np.dtype = np.dtype(np.uint8)


class StoredSource(Source, Protocol):
    r"""A fixed collection of N sequences, each of its own length.

    Attributes:
        lengths: The number of frames T_n of each sequence n < N.
    """

    stored: bool = True
    lengths: Sequence[int]

    def __len__(self) -> int:
        """Number of sequences N."""
        ...

    def read(self, n: int, start: int, stop: int) -> np.ndarray:
        r"""Frames start .. stop - 1 of sequence n, without reading its other frames.

        Returns:
            A copy (of the source's ``dtype``), with shape (stop - start, *frame_shape).
        """
        ...


class Simulator(Source, Protocol):
    r"""Renders new uint8 sequences of ``num_frames`` frames, e.g. Moving MNIST or bouncing balls.

    ``render(rng)`` returns a new sequence, uint8 with shape (num_frames, *frame_shape), that
    depends only on the state of ``rng``. A simulator's ``name`` is its ``repr``.
    """

    stored: bool = False

    @property
    def name(self) -> str:
        """The simulator's ``repr``, for error messages."""
        return repr(self)

    def render(self, rng: np.random.Generator) -> np.ndarray:
        r"""A new sequence drawn with ``rng``, uint8 with shape (num_frames, *frame_shape)."""
        ...


class MappedFile(NamedTuple):
    """A read-only memory map of a whole file, pickled as the file's name, not its data."""

    filename: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int
    order: str

    def open(self) -> np.memmap:
        """The memory map, opened again."""
        return np.memmap(self.filename, self.dtype, "r", self.offset, self.shape, self.order)


def picklable_array(array: Any) -> Any:
    r"""A memory map of a file becomes a :class:`MappedFile` (e.g. for spawned DataLoader
    workers, which would otherwise receive a copy of the whole array); anything else is kept.

    :func:`unpickled_array` undoes it: use the pair in ``__getstate__`` and ``__setstate__``.
    """
    if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and array.filename:
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        return MappedFile(array.filename, array.dtype, array.shape, array.offset, order)
    return array


def unpickled_array(array: Any) -> Any:
    """A :class:`MappedFile` opened again as a memory map; anything else is kept."""
    return array.open() if isinstance(array, MappedFile) else array


class ArraySource(StoredSource):
    r"""A collection of sequences held in an array (in memory or memory-mapped).

    Arguments:
        array: uint8 sequences with shape (N, T, C, H, W), (N, T, H, W) (one channel is added)
            or (N, T, D) (vector series); vector series may also be real-valued (float16,
            float32 or float64), kept as they are. Any array-like object with ``shape``,
            ``dtype`` and integer indexing along N is accepted, e.g. a lazy view of a file.
        name: What the array is (e.g. the file path), for error messages.
        offset: Index of its first sequence in the array it was cut from (a split of a file),
            for reports: sequence n is ``offset + n`` there.
        conditions: Per-step conditions of the sequences (actions, covariates), with shape
            (N, T, A), real-valued and finite, or None (:mod:`seqflows.conditioning`).

    Example:
        >>> source = ArraySource(np.zeros((4, 10, 8, 8), dtype=np.uint8), name="zeros")
        >>> len(source), source.num_frames, source.frame_shape
        (4, 10, (1, 8, 8))
        >>> source[0].shape, source.read(0, 2, 5).shape
        ((10, 1, 8, 8), (3, 1, 8, 8))
        >>> ArraySource(np.zeros((2, 5, 3), dtype=np.float32)).dtype
        dtype('float32')
    """

    def __init__(
        self, array: Any, name: str = "array", offset: int = 0, conditions: Any = None
    ) -> None:
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            array = np.asarray(array)
        shape = tuple(int(size) for size in array.shape)
        dtype = np.dtype(array.dtype)
        if len(shape) not in (3, 4, 5):
            raise DataError(
                f"{name}: sequences must have shape (N, T, C, H, W), (N, T, H, W) or (N, T, D), "
                f"got {shape}"
                + (" (one series: add a dimension, x[..., None])" if len(shape) == 2 else "")
            )
        real_series = dtype.kind == "f" and dtype.itemsize >= 2 and len(shape) == 3
        if dtype != np.uint8 and not real_series:
            hint = "; real-valued vector series (N, T, D) may be float"
            if dtype.kind == "f":
                hint = (
                    "; frames in [0, 1] must be converted first, e.g. multiply by 255 and cast: "
                    "(x * 255).round().astype(np.uint8) (real-valued vector series (N, T, D) are "
                    "taken as they are)"
                )
            elif dtype.kind in "iub":
                hint = (
                    "; cast integer vector series (N, T, D) to float (x.astype(np.float32)): "
                    "real values are taken as they are"
                )
            raise DataError(f"{name}: sequences must have dtype uint8, got {dtype}{hint}")
        if min(shape) < 1:
            raise DataError(f"{name}: empty array of sequences, shape {shape}")
        self.array = array
        self.name = name
        self.offset = int(offset)
        self.dtype = dtype
        self._shape = shape
        self.lengths = (shape[1],) * shape[0]  # every sequence has T frames
        self.conditions = None if conditions is None else _checked_conditions(conditions, self)

    @property
    def condition_dim(self) -> int:
        """A, the size of each step's conditions (0: the sequences have none)."""
        return 0 if self.conditions is None else int(self.conditions.shape[-1])

    def read_conditions(self, n: int, start: int, stop: int) -> np.ndarray:
        r"""Conditions of frames start .. stop - 1 of sequence n, float32 (stop - start, A)."""
        if self.conditions is None:
            raise DataError(f"{self.name}: the sequences have no conditions")
        self.read(n, start, start)  # the checks of n, start and stop
        return np.array(self.conditions[int(n) % self.num_sequences, start:stop], np.float32)

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
        r"""Sequence n, a contiguous copy with shape (T, *frame_shape)."""
        return self.read(n, 0, self.num_frames)

    def read(self, n: int, start: int, stop: int) -> np.ndarray:
        r"""Frames start .. stop - 1 of sequence n (a memory map reads only those), a contiguous
        copy (of the array's dtype) with shape (stop - start, *frame_shape)."""
        n = int(n)
        if not -self.num_sequences <= n < self.num_sequences:
            raise IndexError(f"{self.name}: sequence {n} out of range 0..{len(self) - 1}")
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(
                f"{self.name}: frames {start}..{stop} out of range for sequences of "
                f"{self.num_frames} frames"
            )
        sequence = np.asarray(self.array[n % self.num_sequences])  # a view where it can be
        sequence = sequence.reshape(self.num_frames, *self.frame_shape)
        return np.array(sequence[start:stop], dtype=self.dtype, copy=True)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "array": picklable_array(self.array)}  # memory maps: by file name

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, array=unpickled_array(state["array"]))

    def __repr__(self) -> str:
        return f"ArraySource({self.name!r}, shape={self._shape})"


def load_conditioned_array(path: str | os.PathLike) -> ArraySource:
    r"""The sequences of an .npz archive holding ``frames`` (N, T, ...) and their per-step
    ``conditions`` (N, T, A), as an :class:`ArraySource` with conditions.

    Raises:
        ValueError: A missing array (naming the file and what it holds), conditions that do
            not match the frames (a length mismatch), or a bad file.
    """
    frames = load_array(path, "frames")
    return ArraySource(frames, name=os.fspath(path), conditions=load_array(path, "conditions"))


def _checked_conditions(conditions: Any, source: ArraySource) -> np.ndarray:
    """Conditions (N, T, A) of a source's sequences, as float32, or a clear ValueError."""
    conditions = np.asarray(conditions)
    N, T = source.num_sequences, source.num_frames
    if conditions.ndim != 3 or conditions.shape[:2] != (N, T):
        raise DataError(
            f"{source.name}: conditions must have shape (N, T, A) = ({N}, {T}, A) to match the "
            f"{N} sequences of {T} frames, got {conditions.shape}"
        )
    if conditions.dtype.kind not in "fiub" or conditions.shape[-1] < 1:
        raise DataError(
            f"{source.name}: conditions must be numbers with at least one per step, got "
            f"{conditions.dtype} {conditions.shape}"
        )
    conditions = conditions.astype(np.float32)
    if not np.isfinite(conditions).all():
        n, t = (int(index) for index in np.argwhere(~np.isfinite(conditions))[0][:2])
        raise DataError(f"{source.name}: conditions of sequence {n}, frame {t} are not finite")
    return conditions


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
        raise DataError(error.args[0]) from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(
            f"{path}: the file is corrupt or truncated, or not a numpy array file ({error})"
        ) from error

r"""Process-level settings for fast training on CPU, and what fits in this machine's memory.

glibc's malloc returns every freed block larger than 32 MiB to the kernel, so the activations of
each training step are page-faulted in again: 20-30 % of a conv flow's CPU step (see
benchmarks/README.md). :func:`retain_freed_memory` (from the core,
:func:`seqflows.allocator.retain_freed_memory`, re-exported here) makes malloc keep and reuse freed
memory, at the cost of a larger resident size. The same effect from the shell, before Python
starts: ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``.

:func:`check_batch_fits` refuses, before anything is allocated, a frame size or a batch size
whose frames alone cannot fit in memory (``data.size=100000``, ``train.batch_size=100000000``
grew to 21 GB before being killed), and :func:`check_model_fits` a model whose weights cannot
(``model.hidden=1000000`` asked the allocator for 36 TB).

:func:`small_model_threads` trains a small vector model on one thread (:func:`training_threads`),
and :func:`steps_per_call` lets it take several optimizer steps per call of the Lightning task.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..allocator import retain_freed_memory
from .config import Config, ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: the CLI starts without it
    import torch

__all__ = [
    "SMALL_ACTIVATION",
    "check_batch_fits",
    "check_model_fits",
    "memory_bytes",
    "retain_freed_memory",
    "small_model_threads",
    "steps_per_call",
    "training_threads",
]

# Elements of a layer's activation below which PyTorch keeps an elementwise operation on one
# thread (its grain size, at::internal::GRAIN_SIZE).
SMALL_ACTIVATION = 32768


def memory_bytes() -> int | None:
    r"""The memory this process may use: the machine's physical memory, or the container's
    limit (cgroup v2 ``memory.max``) when lower; None where neither can be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def check_batch_fits(
    config: Config,
    event_shape: Sequence[int],
    available: int | None = None,
    *,
    length: int | None = None,
) -> None:
    r"""Refuses a training batch whose frames alone cannot fit in memory.

    One batch of ``train.batch_size / train.num_nodes`` sequences (the share of one machine) of
    ``data.length`` frames of ``event_shape`` is built in memory as float32 (float64 with
    ``train.precision=64``) by the data loader before any device sees it. This is a lower bound
    of what training needs (the model's activations are tens of times larger): it refuses only
    what can never run, and a batch that passes may still run out of memory.

    Arguments:
        config: The experiment.
        event_shape: Frame shape (C, H, W) or (D,) of the data.
        available: Bytes of memory (None: :func:`memory_bytes`; not checked when unknown).
        length: Frames of a training crop, as read from the data (None: ``data.length``).

    Raises:
        ConfigError: Naming ``data.size`` (or ``data.length``) when one sequence does not fit,
            else ``train.batch_size``.
    """
    available = memory_bytes() if available is None else available
    if available is None:
        return
    item = 8 if config.train.precision == "64" else 4
    length = config.data.length if length is None else length
    sequence = length * math.prod(event_shape) * item
    frames = "x".join(str(size) for size in event_shape)
    memory = f"more than the {_size(available)} of memory of this machine"
    if sequence > available:
        key = f"data.size={event_shape[-1]}" if len(event_shape) == 3 else f"data.length={length}"
        raise ConfigError(
            f"{key}: one training sequence of {length} frames of {frames} takes "
            f"{_size(sequence)}, {memory}"
        )
    per_machine = math.ceil(config.train.batch_size / config.train.num_nodes)
    if per_machine * sequence > available:
        raise ConfigError(
            f"train.batch_size={config.train.batch_size}: one batch ({per_machine} sequences "
            f"per machine) of {length} frames of {frames} takes {_size(per_machine * sequence)}, "
            f"{memory}"
        )


def check_model_fits(
    config: Config,
    event_shape: Sequence[int],
    available: int | None = None,
    *,
    condition_dim: int | None = None,
) -> None:
    r"""Refuses a model whose training state alone cannot fit in memory, before it is built.

    The model is built on the ``meta`` device (no memory) to count its parameters. Training
    holds each of them 4 times with Adam (weights, gradients, two moments), 2 times with SGD,
    as float32 (float64 with ``train.precision=64``): a lower bound of what training needs.

    Arguments:
        config: The experiment.
        event_shape: Frame shape (C, H, W) or (D,) of the data.
        available: Bytes of memory (None: :func:`memory_bytes`; not checked when unknown).
        condition_dim: A, the conditions per step read from the data (None: the model's).

    Raises:
        ConfigError: Naming the model's sizes (``model.conditioner.hidden``, ...), the parameters
            and the bytes they take.
    """
    import torch

    from .checkpoints import build_model
    from .figures import model_label

    available = memory_bytes() if available is None else available
    if available is None:
        return
    with torch.device("meta"):
        model = build_model(config, tuple(event_shape), condition_dim)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    copies = 4 if config.train.optimizer == "adam" else 2
    needed = parameters * copies * (8 if config.train.precision == "64" else 4)
    if needed > available:
        sizes = ", ".join(
            f"model.{key}={value}" for key, value in config.model.size_settings().items()
        )
        what = (
            "weights, gradients and Adam's two moments" if copies == 4 else "weights and gradients"
        )
        raise ConfigError(
            f"{sizes}: the {model_label(model)} has {parameters:,} "
            f"parameters; training holds them {copies} times ({what}), {_size(needed)}, more "
            f"than the {_size(available)} of memory of this machine"
        )


def training_threads(
    config: Config, model: torch.nn.Module, event_shape: Sequence[int]
) -> int | None:
    r"""The CPU threads that training ``model`` should use: 1 for a small vector model, else
    None (PyTorch's own choice is kept).

    Small means that the widest layer's activation on a training batch (``train.batch_size``
    x ``data.length`` x the largest output size of a weight) stays below
    :data:`SMALL_ACTIVATION` elements: PyTorch runs tensors that small on one thread anyway,
    and the few operations that fork OpenMP threads whatever the size then wait for them at
    every join, for long when another process holds a core (benchmarks/README.md,
    ``train_speed.py``: the default ``my_time_series`` model trains several times faster on one
    thread of a busy 2-core machine, with the same losses bit for bit). Frames (C, H, W) and
    larger vector models keep PyTorch's threads, and so does a process whose
    ``OMP_NUM_THREADS`` the user set.
    """
    if len(event_shape) != 1 or "OMP_NUM_THREADS" in os.environ:
        return None
    width = max((p.shape[0] for p in model.parameters() if p.dim() >= 1), default=1)
    activation = config.train.batch_size * config.data.length * width
    return 1 if activation < SMALL_ACTIVATION else None


@contextmanager
def small_model_threads(
    config: Config, model: torch.nn.Module, event_shape: Sequence[int]
) -> Iterator[int | None]:
    r"""Runs the block on :func:`training_threads` threads and restores PyTorch's thread count
    after it (training is also called as a library function). Yields the threads set, or None
    where they were left as they were."""
    import torch

    threads = training_threads(config, model, event_shape)
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield None
        return
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


# ``train.steps_per_call=auto``: the time of a training step of a vector model on one CPU
# thread, estimated as a fixed part (Python, kernel launches) and a part per multiply-add
# (parameters x sequences x frames of a batch), as measured for my_time_series at model.hidden
# 64, 256 and 1024 (5,190 to 1.07M parameters; 2.8, 6.0 and 44 ms a step, batch 16, crops of
# 20); a call takes steps for about CALL_SECONDS, at most MAX_STEPS_PER_CALL.
STEP_SECONDS = 2.6e-3
SECONDS_PER_MULTIPLY_ADD = 0.12e-9
CALL_SECONDS = 0.15
MAX_STEPS_PER_CALL = 50


def steps_per_call(
    config: Config, model: torch.nn.Module, event_shape: Sequence[int], world_size: int = 1
) -> int:
    r"""The optimizer steps that one call of the Lightning task takes (``train.steps_per_call``).

    Lightning's own work around a call (its hooks, the logger connector, the data fetcher)
    costs about 2 ms of CPU, nearly as much as a whole training step of a small vector model
    (benchmarks/train_speed.py); taking k steps per call, each on its own batch, shares it.
    ``auto``: 1 for frames (C, H, W) and for several processes; for a vector model, the steps
    that fill about :data:`CALL_SECONDS` (0.15 s, in which Lightning's 2 ms are about 1 %) at
    an estimated :data:`STEP_SECONDS` + :data:`SECONDS_PER_MULTIPLY_ADD` x parameters x
    ``train.batch_size`` x ``data.length`` a step (a dense network does one multiply-add per
    parameter and frame), between 1 and :data:`MAX_STEPS_PER_CALL`: 50 for the default
    ``my_time_series`` model (5,190 parameters, 2.8 ms a step), 28 at ``model.hidden=256``
    (70k parameters, 6 ms), 3 at ``model.hidden=1024`` (1.07M, 44 ms) and 1 from an estimated
    75 ms a step on, where Lightning's share is below 3 % already.

    Raises:
        ConfigError: ``train.steps_per_call`` > 1 with several processes (each step must pass
            through the data-parallel wrapper, which one call passes once).
    """
    chosen = config.train.steps_per_call
    if chosen != "auto":
        if chosen > 1 and world_size > 1:
            raise ConfigError(
                f"train.steps_per_call={chosen} takes one process; this run has {world_size} "
                "(use 1 or auto)"
            )
        return int(chosen)
    if len(event_shape) != 1 or world_size > 1:
        return 1
    parameters = sum(parameter.numel() for parameter in model.parameters())
    work = parameters * config.train.batch_size * config.data.length
    step = STEP_SECONDS + SECONDS_PER_MULTIPLY_ADD * work
    return max(1, min(MAX_STEPS_PER_CALL, int(CALL_SECONDS / step)))


def _size(count: int) -> str:
    """Bytes in B, KB, MB, GB, TB, PB (powers of 1000)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000:
            return f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} PB"

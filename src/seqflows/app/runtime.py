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
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from ..allocator import retain_freed_memory
from .config import Config, ConfigError

__all__ = [
    "check_batch_fits",
    "check_model_fits",
    "memory_bytes",
    "retain_freed_memory",
]


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


def _size(count: int) -> str:
    """Bytes in B, KB, MB, GB, TB, PB (powers of 1000)."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000:
            return f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} PB"

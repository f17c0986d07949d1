r"""The process's memory allocator: one opt-in call for training loops on Linux (glibc).

glibc's malloc serves every block larger than 32 MiB with a fresh ``mmap`` and returns it to the
kernel when it is freed. A training step frees and allocates its activations and gradients
(gigabytes at the paper's sizes), so each step page-faults them in again: 20-30 % of a conv
flow's CPU step on this project's machine, 1.5x in the step time (benchmarks/README.md).
:func:`retain_freed_memory` makes malloc keep and reuse freed memory instead, for a larger
resident size. seqflows never calls it on import or in a model: the program that trains calls
it (``seqflows train`` does, with ``train.allocator: retain``, its default).

The same from the environment, before Python starts (:data:`ENVIRONMENT`)::

    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647 python my_training.py

Example:
    >>> from seqflows.allocator import retain_freed_memory
    >>> retain_freed_memory()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = [
    "ENVIRONMENT",
    "retain_freed_memory",
]

# The environment variables that give glibc the settings of retain_freed_memory at start-up.
ENVIRONMENT = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "2147483647"}

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # from <malloc.h>


def retain_freed_memory() -> bool:
    r"""Makes glibc malloc keep and reuse freed memory (no mmap per block, no trimming).

    For the rest of the process's life: ``mallopt(M_MMAP_MAX, 0)`` and
    ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)``. Call it once, early, in a program that trains.

    Returns:
        Whether the setting took effect (False off glibc, e.g. on macOS or musl).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
        )
    except (OSError, AttributeError):
        return False

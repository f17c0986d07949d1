r"""Process-level settings for fast training on CPU.

glibc's malloc returns every freed block larger than 32 MiB to the kernel, so the activations of
each training step are page-faulted in again: 20-30 % of a conv flow's CPU step (see
benchmarks/README.md). :func:`retain_freed_memory` makes malloc keep and reuse freed memory, at
the cost of a larger resident size. The same effect from the shell, before Python starts:
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = [
    "retain_freed_memory",
]


def retain_freed_memory() -> bool:
    """Makes glibc malloc keep and reuse freed memory (no mmap per block, no trimming).

    Returns:
        Whether the setting took effect (False off glibc, e.g. on macOS or musl).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # from <malloc.h>
        return bool(libc.mallopt(m_mmap_max, 0)) and bool(
            libc.mallopt(m_trim_threshold, 2**31 - 1)
        )
    except (OSError, AttributeError):
        return False

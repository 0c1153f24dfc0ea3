"""Keep freed memory in the process during training (glibc's allocator only).

A training batch of image sequences allocates and frees the same few large tensors every step
(the pendulum encoder's conv output and its gradients: ~100 MB each at 3,750 frames). glibc
serves blocks above 32 MB with fresh `mmap`s and returns them on `free`, so every batch
page-faults and zero-fills them again: measured 40% of an RKN and GRU training step on the
pendulum (benchmarks/core_speed.py, 1 thread). Served from the heap and kept there, the pages
are reused; the cost is that the process holds its peak memory until it exits, which is what
a training run needs anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and never give freed memory back to the OS.

    Process-wide and permanent. Returns False (and changes nothing) where the C library is
    not glibc.
    """
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return False
    except (ValueError, OSError):  # not a glibc system
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    # mallopt returns 1 on success
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX))

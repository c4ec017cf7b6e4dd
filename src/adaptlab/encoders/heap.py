"""Bounded heap growth for long loops over tensors of varying shapes (training steps, encoding batches)."""
from __future__ import annotations

import os

__all__ = ["bound_heap_growth"]

# glibc's malloc raises its mmap threshold (up to 32 MiB) each time a large block is freed, after which the
# activations and gradients of later steps come from the main heap; batches of varying width (dynamic padding)
# then fragment it and the resident size grows with every step (measured: 2.3 -> 3.2 GB over 40 MiniLM refit
# steps). A fixed threshold keeps every block >= 1 MiB in its own mapping, returned to the OS when the tensor is
# freed: the resident size stays flat (1.03 GB over 30 steps, same CPU time per step). See bench/memory.py.
_MMAP_THRESHOLD = 1 << 20
_TRIM_THRESHOLD = 16 << 20
_heap_bounded = False


def bound_heap_growth() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once; a no-op elsewhere); True when set.

    Respects ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` when the user set them.

    Example:
        >>> isinstance(bound_heap_growth(), bool)
        True
    """
    global _heap_bounded
    if _heap_bounded:
        return True
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or os.environ.get("MALLOC_TRIM_THRESHOLD_"):
        return False
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    _heap_bounded = bool(mallopt(m_mmap_threshold, _MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold,
                                                                                        _TRIM_THRESHOLD))
    return _heap_bounded

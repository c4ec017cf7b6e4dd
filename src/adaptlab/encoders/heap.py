"""Bounded heap growth for long loops over tensors of varying shapes (training steps, encoding batches)."""
from __future__ import annotations

import os

__all__ = ["bound_heap_growth", "trim_heap"]

# glibc's malloc raises its mmap threshold (up to 32 MiB) each time a large block is freed, after which the
# activations and gradients of later steps come from the main heap; batches of varying width (dynamic padding)
# then fragment it and the resident size grows with every step (measured: 2.3 -> 3.2 GB over 40 MiniLM refit
# steps). A fixed threshold keeps every block >= 1 MiB in its own mapping, returned to the OS when the tensor is
# freed: the resident size stays flat (1.03 GB over 30 steps, same CPU time per step). See bench/memory.py.
_MMAP_THRESHOLD = 1 << 20
_TRIM_THRESHOLD = 16 << 20
_heap_bounded = False
_libc: object = None  # glibc, once found; False where there is none


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
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    _heap_bounded = bool(mallopt(m_mmap_threshold, _MMAP_THRESHOLD)) and bool(mallopt(m_trim_threshold,
                                                                                        _TRIM_THRESHOLD))
    return _heap_bounded


# Even with the thresholds fixed, the blocks under 1 MiB that each step frees stay in the heap between the
# live ones, and over a few hundred steps of varying widths the resident size creeps up (fine-tune rung:
# 1,101 -> 1,339 MiB over 300 steps). malloc_trim(0) hands those free pages back: after it the resident size is
# what is live, flat over the same 300 steps (1,066 -> 1,164 MiB, the 90 MiB step being the best epoch's copy),
# for about 2% more time per step. See bench/memory.py (--finetune-trim) and docs/guides/reliability.md.
def trim_heap() -> bool:
    """Give the heap's free pages back to the OS (glibc's ``malloc_trim(0)``); False where there is no glibc.

    Example:
        >>> isinstance(trim_heap(), bool)
        True
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


def _glibc() -> object:
    global _libc
    if _libc is None:
        try:
            import ctypes
            import ctypes.util

            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            lib.mallopt, lib.malloc_trim  # noqa: B018  (both exist only in glibc)
            _libc = lib
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without them)
            _libc = False
    return _libc or None

"""Process-level settings that make CPU training fast."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4


def keep_cpu_heap_warm(top_pad_bytes: int = 1 << 30) -> bool:
    """Stop glibc from returning freed memory to the OS between training steps.

    Autograd allocates and frees 100-400 MB temporaries every step (the P x V logits, gather
    gradients). With glibc's defaults each of them is a fresh mmap whose pages fault in again, which
    costs about a quarter of a CPU step; keeping the heap (no mmap, no trim) removes that. This is the
    runtime equivalent of `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=... MALLOC_TOP_PAD_=...`.

    Returns True when the settings were applied (glibc Linux only; a no-op elsewhere).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    ok &= mallopt(_M_TOP_PAD, min(top_pad_bytes, 2**31 - 1)) == 1
    if not ok:
        logger.debug("mallopt refused a setting; the CPU heap stays at glibc defaults")
    return bool(ok)


def release_cpu_heap() -> bool:
    """Return the heap's free pages to the OS (glibc `malloc_trim(0)`); True when it released any.

    `keep_cpu_heap_warm` trades memory for speed within an epoch; calling this between epochs bounds the
    process's resident memory by what is live plus one epoch's fragmentation, instead of letting free but
    fragmented heap pages pile up over a long run.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        malloc_trim = ctypes.CDLL(libc_name).malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    return malloc_trim(0) == 1


__all__ = ["keep_cpu_heap_warm", "release_cpu_heap"]

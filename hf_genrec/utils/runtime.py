"""Process-level settings that make CPU training fast."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import os
import sys
from collections.abc import Iterator

logger = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
# glibc's defaults of those three (mallopt(3): 128 KiB, 128 KiB, 65,536 mappings).
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_TOP_PAD: 128 * 1024, _M_MMAP_MAX: 65536}

# CPU bf16 matmuls go through two per-shape caches: oneDNN's primitive cache (compiled kernels and their buffers,
# `ONEDNN_PRIMITIVE_CACHE_CAPACITY`, 1,024 by default) and, above it, ideep's cache of matmul computations
# (`LRU_CACHE_CAPACITY`, 1,024 per thread). Length-bucketed batches and losses over P supervised positions make a
# new shape almost every step, so both fill up over a run. Measured on HSTU-large (bf16, 2 vCPUs): oneDNN's full
# cache held ~1 GB more by the third epoch; ideep's grew the live heap 190 -> 440 MB, and its entries, allocated
# between the step's big temporaries, fragmented the heap (the heap guard trimmed 51 times in 12 epochs, per-epoch
# peaks crept 2.4 -> 3.2 GiB). A step uses a few dozen shapes: with 64 entries each, training ran as fast (faster:
# no trims after epoch 3) with peaks flat at 2.6-2.7 GiB and bit-identical weights. No oneDNN cache at all was
# 1.4-1.8x slower per epoch (every matmul compiling its kernel again).
ONEDNN_CACHE_CAPACITY = 64
# The environment variables of the two caches, each with the older names a user may have set instead.
_ONEDNN_CACHE_VARIABLES = (("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"), ("LRU_CACHE_CAPACITY",))

# Set by `keep_cpu_heap_warm` once the settings hold: only then can free heap pages pile up (see `CpuHeapGuard`).
_heap_kept_warm = False


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc on Linux (it has `mallopt`, `malloc_trim`), else None."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    try:
        libc = ctypes.CDLL(libc_name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - musl and other libcs lack them
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


def keep_cpu_heap_warm(top_pad_bytes: int = 1 << 30) -> bool:
    """Stop glibc from returning freed memory to the OS between training steps.

    Autograd allocates and frees 100-400 MB temporaries every step (the P x V logits, gather
    gradients). With glibc's defaults each of them is a fresh mmap whose pages fault in again, which
    costs about a quarter of a CPU step; keeping the heap (no mmap, no trim) removes that. This is the
    runtime equivalent of `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=... MALLOC_TOP_PAD_=...`.

    A warm heap can fragment (every batch has other tensor sizes), so its resident set can creep up over a
    run; the trainers' `CpuHeapGuard` bounds that by trimming when it does.

    Returns True when the settings were applied (glibc Linux only; a no-op elsewhere).
    """
    global _heap_kept_warm
    libc = _glibc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
    ok &= libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    ok &= libc.mallopt(_M_TOP_PAD, min(top_pad_bytes, 2**31 - 1)) == 1
    if not ok:
        logger.debug("mallopt refused a setting; the CPU heap stays at glibc defaults")
    _heap_kept_warm = bool(ok)
    return bool(ok)


def bound_onednn_caches(capacity: int = ONEDNN_CACHE_CAPACITY) -> list[str]:
    """Cap the per-shape caches of CPU bf16 matmuls at `capacity` entries: oneDNN's primitive cache
    (`ONEDNN_PRIMITIVE_CACHE_CAPACITY`) and ideep's computation cache (`LRU_CACHE_CAPACITY`).

    Both libraries read their variable once, when they first need the cache (oneDNN at its first primitive,
    ideep at a thread's first matmul), so this only takes effect before the process's first bf16 matmul on CPU;
    every workflow run (`TrainingRun`) calls it before it builds a model. A variable already in the environment
    (or oneDNN's older `DNNL_PRIMITIVE_CACHE_CAPACITY`) is the user's choice and is kept.

    Returns the names of the variables this call set.
    """
    set_here = []
    for names in _ONEDNN_CACHE_VARIABLES:
        if not any(name in os.environ for name in names):
            os.environ[names[0]] = str(int(capacity))
            set_here.append(names[0])
    return set_here


@contextlib.contextmanager
def warm_cpu_heap(top_pad_bytes: int = 1 << 30) -> Iterator[bool]:
    """`keep_cpu_heap_warm` for the duration of a `with` block, for passes that are not a trainer's epochs.

    An evaluation pass allocates the same large temporaries batch after batch (attention blocks, (B, V) scores);
    with glibc's defaults each is a fresh mmap whose pages fault in again, which doubled a benchmark evaluation on
    MovieLens-1M (48 s against 23 s warm, 2 CPU cores). On exit, a heap that was not warm before gives its free
    pages back (`release_cpu_heap`) and gets glibc's default limits again, so a long-lived process keeps no more
    memory than before; inside a run that is already warm (pretraining, reward training) this changes nothing.

    Yields whether the heap is warm inside the block (False where `mallopt` is not available).
    """
    was_warm = _heap_kept_warm
    warm = was_warm or keep_cpu_heap_warm(top_pad_bytes)
    try:
        yield warm
    finally:
        if warm and not was_warm:
            _restore_cpu_heap_defaults()


def _restore_cpu_heap_defaults() -> None:
    """Undo `keep_cpu_heap_warm`: glibc's default limits, and the free pages given back."""
    global _heap_kept_warm
    libc = _glibc()
    if libc is None:
        return
    for parameter, value in _GLIBC_DEFAULTS.items():
        libc.mallopt(parameter, value)
    _heap_kept_warm = False
    release_cpu_heap()


def release_cpu_heap() -> bool:
    """Return the heap's free pages to the OS (glibc `malloc_trim(0)`); True when it released any.

    `keep_cpu_heap_warm` trades memory for speed within an epoch; calling this between epochs bounds the
    process's resident memory by what is live plus one epoch's fragmentation, instead of letting free but
    fragmented heap pages pile up over a long run.
    """
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def cpu_heap_in_use_bytes() -> int | None:
    """Bytes the C heap has handed out and not yet freed (glibc `mallinfo2`: uordblks + hblkhd); None
    where unknown (not glibc, or glibc older than 2.33)."""
    libc = _glibc()
    mallinfo2 = getattr(libc, "mallinfo2", None)
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return int(info.uordblks + info.hblkhd)


def resident_memory_bytes() -> int | None:
    """This process's resident set size now (Linux `/proc/self/statm`), in bytes; None elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class CpuHeapGuard:
    """Keeps a warm heap's free-but-resident pages within `headroom` times one step's working set.

    With `keep_cpu_heap_warm`, freed pages stay resident so that the next step reuses them without page
    faults. But batches of varying shapes fragment the heap: later steps no longer fit in the holes of earlier
    ones, touch fresh pages, and the resident set creeps up over an epoch and from epoch to epoch. Trimming
    every step would give the speed back; this trims (`release_cpu_heap`) only when the free resident pages
    exceed what steps need.

    What a step needs is measured, not configured: right after a trim nothing free is resident, so the growth
    of the resident set over the next step is the pages that step touched (its working set). The
    largest such measurement so far is the reference; a step that ends with more than `headroom` times it
    of free resident memory triggers a trim (which also takes a new measurement). The trainers call `step`
    after every optimizer step and `released` after their own trims (epoch ends, evaluations).

    Trimming only changes where memory lives, never values: training stays bit-identical.

    Args:
        headroom (`float`, defaults to 1.25): free resident memory allowed, in working sets (> 1). On a heap that
            barely fragments it stays near one working set at step ends (measured in fp32 on MovieLens-1M: 1.0-1.12
            for HSTU, about 1.02 for HSTU-large), so 1.25 trims only on real creep and bounds the peak at about
            1.25 working sets plus what is live.
    """

    def __init__(self, headroom: float = 1.25):
        if headroom <= 1:
            raise ValueError(f"headroom must be > 1 (working sets of free resident memory), got {headroom}.")
        self.headroom = headroom
        self.working_set = 0  # largest measured working set of one step, in bytes
        self.trims = 0
        self._after_trim: int | None = None  # free resident bytes right after the last trim
        self._measuring = False

    @staticmethod
    def _free_resident() -> int | None:
        """Resident bytes not held by live heap blocks (free heap pages, plus code and other mappings)."""
        resident, in_use = resident_memory_bytes(), cpu_heap_in_use_bytes()
        return None if resident is None or in_use is None else resident - in_use

    def released(self) -> None:
        """Record that the heap was just trimmed: the next `step` measures a working set."""
        self._after_trim = self._free_resident()
        self._measuring = self._after_trim is not None

    def step(self) -> bool:
        """Call at the end of a training step; trims the heap when it holds too much free resident memory.

        Returns True when it trimmed. A no-op unless the heap is kept warm (`keep_cpu_heap_warm`).
        """
        if not _heap_kept_warm:
            return False
        if self._after_trim is None:  # first call: start from here
            self.released()
            return False
        free = self._free_resident()
        if free is None:
            return False
        growth = free - self._after_trim
        if self._measuring:
            self.working_set = max(self.working_set, growth)
            self._measuring = False
            return False
        if growth <= self.headroom * self.working_set:
            return False
        release_cpu_heap()
        self.trims += 1
        self.released()
        return True


__all__ = [
    "CpuHeapGuard",
    "bound_onednn_caches",
    "cpu_heap_in_use_bytes",
    "keep_cpu_heap_warm",
    "release_cpu_heap",
    "resident_memory_bytes",
    "warm_cpu_heap",
]

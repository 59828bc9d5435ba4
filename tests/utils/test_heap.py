"""`CpuHeapGuard` and the trainers' heap callback: a warm heap keeps freed pages resident (fast), and the
guard gives them back when they outgrow what one step needs (bounded memory)."""

import ctypes

import numpy as np
import pytest

from hf_genrec.trainers.base import _ReleaseHeapCallback
from hf_genrec.utils import runtime
from hf_genrec.utils.runtime import (
    CpuHeapGuard,
    cpu_heap_in_use_bytes,
    keep_cpu_heap_warm,
    release_cpu_heap,
    resident_memory_bytes,
)

MIB = 1 << 20

pytestmark = pytest.mark.skipif(
    cpu_heap_in_use_bytes() is None or resident_memory_bytes() is None, reason="needs glibc >= 2.33 on Linux"
)


@pytest.fixture
def warm_heap():
    """The process-wide warm-heap settings for one test, then glibc's defaults again."""
    assert keep_cpu_heap_warm()
    yield
    libc = runtime._glibc()
    libc.mallopt(runtime._M_MMAP_MAX, 65536)
    libc.mallopt(runtime._M_TRIM_THRESHOLD, 128 * 1024)
    libc.mallopt(runtime._M_TOP_PAD, 0)
    runtime._heap_kept_warm = False
    release_cpu_heap()


def _step(mib: int) -> None:
    """A training step's temporaries: touch `mib` MiB of fresh heap memory, then free it."""
    block = np.empty(mib * MIB, dtype=np.uint8)
    block.fill(1)
    del block


def _run_steps(on_step_end, sizes: list[int]) -> list[int]:
    """Resident bytes after each step (and its step-end hook) of the given sizes."""
    resident = []
    for mib in sizes:
        _step(mib)
        on_step_end()
        resident.append(resident_memory_bytes())
    return resident


def test_callback_trims_a_warm_heap_that_outgrows_one_step(warm_heap):
    callback = _ReleaseHeapCallback()
    callback.on_train_begin(None, None, None)
    start = resident_memory_bytes()
    # Steps of 32 MiB set the working set; then one step frees 256 MiB, far more than 1.25 working sets.
    resident = _run_steps(lambda: callback.on_step_end(None, None, None), [32, 32, 256])
    # Warm heap: the second 32 MiB step reuses the first one's pages (no trim, no growth).
    assert resident[1] - start < 48 * MIB
    assert callback.guard.working_set >= 24 * MIB
    # The 256 MiB of free pages were given back at the end of their step.
    assert callback.guard.trims == 1
    assert resident[2] - start < 64 * MIB


def test_without_guard_the_freed_pages_stay_resident(warm_heap):
    """The same steps with only the epoch-end release (the callback's old behaviour) keep 256 MiB resident:
    this is what the guard bounds."""
    release_cpu_heap()
    start = resident_memory_bytes()
    resident = _run_steps(lambda: None, [32, 32, 256])
    assert resident[2] - start > 200 * MIB


def test_guard_is_inactive_on_a_default_heap(monkeypatch):
    """glibc's default heap returns big blocks itself: nothing to guard, `step` never trims."""
    monkeypatch.setattr(runtime, "_heap_kept_warm", False)
    guard = CpuHeapGuard()
    guard.released()
    assert [guard.step() for _ in range(3)] == [False, False, False]
    assert guard.trims == 0


def test_headroom_must_exceed_one():
    with pytest.raises(ValueError, match="headroom must be > 1"):
        CpuHeapGuard(headroom=1.0)


def test_mallinfo_counts_live_blocks():
    before = cpu_heap_in_use_bytes()
    block = (ctypes.c_char * (8 * MIB))()  # ctypes buffers come from malloc
    assert cpu_heap_in_use_bytes() - before >= 8 * MIB
    del block

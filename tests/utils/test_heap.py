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
    release_cpu_heap,
    resident_memory_bytes,
    warm_cpu_heap,
)

MIB = 1 << 20

pytestmark = pytest.mark.skipif(
    cpu_heap_in_use_bytes() is None or resident_memory_bytes() is None, reason="needs glibc >= 2.33 on Linux"
)


@pytest.fixture
def warm_heap():
    """The process-wide warm-heap settings for one test, then the settings the process had before (`warm_cpu_heap`)."""
    with warm_cpu_heap() as warm:
        assert warm
        yield


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


def _freed_resident_mib(mib: int) -> float:
    """Resident MiB that stay after touching and freeing a fresh `mib` MiB block."""
    before = resident_memory_bytes()
    _step(mib)
    return (resident_memory_bytes() - before) / MIB


def test_warm_cpu_heap_keeps_freed_pages_in_the_block_and_gives_them_back_after():
    runtime._restore_cpu_heap_defaults()  # an earlier test's pretraining may have left this process warm
    assert _freed_resident_mib(256) < 32  # glibc's defaults: a freed block leaves
    with warm_cpu_heap() as warm:
        assert warm and runtime._heap_kept_warm
        assert _freed_resident_mib(256) > 200  # the freed pages stay resident for the next batch
        inside = resident_memory_bytes()
    assert not runtime._heap_kept_warm
    assert (inside - resident_memory_bytes()) / MIB > 200  # given back on exit
    assert _freed_resident_mib(256) < 32  # and glibc's defaults are back


def test_warm_cpu_heap_inside_a_warm_run_changes_nothing(warm_heap):
    _step(256)  # the run's warm heap now holds 256 MiB of free resident pages
    before = resident_memory_bytes()
    with warm_cpu_heap() as warm:
        assert warm
    assert runtime._heap_kept_warm  # the run's own setting survives the block
    assert (before - resident_memory_bytes()) / MIB < 32  # and its pages stay: no trim on exit

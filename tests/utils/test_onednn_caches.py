"""`bound_onednn_caches`: bf16 matmuls of ever new shapes (length buckets, loss blocks) keep the live heap bounded."""

import os
import subprocess
import sys

import pytest

from hf_genrec.trainers.base import cpu_has_native_bf16
from hf_genrec.utils.runtime import ONEDNN_CACHE_CAPACITY, bound_onednn_caches, cpu_heap_in_use_bytes

_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")

# Live heap growth over 200 bf16 matmuls of new shapes, after 16 warm-up shapes; `bounded` calls the library first.
_NEW_SHAPES_SCRIPT = """
import sys
from hf_genrec.utils.runtime import bound_onednn_caches, cpu_heap_in_use_bytes
if sys.argv[1] == "bounded":
    bound_onednn_caches(8)
import torch
torch.set_num_threads(1)
weight = torch.randn(64, 32, dtype=torch.bfloat16)
for length in range(1, 17):
    torch.randn(16, length, 32, dtype=torch.bfloat16) @ weight.T
before = cpu_heap_in_use_bytes()
for length in range(17, 217):
    torch.randn(16, length, 32, dtype=torch.bfloat16) @ weight.T
print(cpu_heap_in_use_bytes() - before)
"""


@pytest.fixture
def clean_environment(monkeypatch):
    """None of the variables set during the test, and the process's own values back after it."""
    for name in _CACHE_VARIABLES:
        monkeypatch.setenv(name, "0")  # records the value to restore (or that there was none) ...
        monkeypatch.delenv(name)  # ... which a bare delenv of an absent variable would not


def test_sets_both_capacities_and_keeps_what_the_user_set(clean_environment, monkeypatch):
    assert bound_onednn_caches() == ["ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"]
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == os.environ["LRU_CACHE_CAPACITY"] == str(ONEDNN_CACHE_CAPACITY)
    assert bound_onednn_caches(8) == []  # already set (by the first call): kept
    for name in _CACHE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DNNL_PRIMITIVE_CACHE_CAPACITY", "7")  # oneDNN's older name is the user's choice too
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "3")
    assert bound_onednn_caches() == []
    assert "ONEDNN_PRIMITIVE_CACHE_CAPACITY" not in os.environ and os.environ["LRU_CACHE_CAPACITY"] == "3"


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="bf16 matmuls go through oneDNN only on CPUs with bf16")
@pytest.mark.skipif(cpu_heap_in_use_bytes() is None, reason="needs glibc >= 2.33 on Linux")
def test_bounded_caches_keep_the_live_heap_flat_over_new_matmul_shapes(clean_environment):
    # The variables are read at the first matmul, so each case needs a fresh process.
    def growth(case: str) -> int:
        result = subprocess.run([sys.executable, "-c", _NEW_SHAPES_SCRIPT, case], capture_output=True, text=True,
                                env=dict(os.environ), check=True)
        return int(result.stdout.split()[-1])

    default, bounded = growth("default"), growth("bounded")
    assert default > 8 << 20, f"the default caches kept only {default} bytes over 200 new shapes"
    assert bounded < default / 4, (bounded, default)

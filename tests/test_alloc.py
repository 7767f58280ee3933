"""The C heap policy: applied once, recorded with the machine, and it changes where glibc puts a
block of the size CTranslate2 frees between encoder layers (checked with glibc's own mallinfo2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from voxperf.engines import alloc

GLIBC = alloc._LIBC is not None and hasattr(alloc._LIBC, "mallinfo2")

PROBE = """
import ctypes
from voxperf.engines.alloc import _LIBC, fix_malloc_thresholds

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]

_LIBC.mallinfo2.restype = MallInfo2
_LIBC.malloc.restype = ctypes.c_void_p
_LIBC.free.argtypes = [ctypes.c_void_p]

def mapped_bytes_for_a_block():
    before = _LIBC.mallinfo2().hblkhd
    block = _LIBC.malloc(23 * 2**20)  # the size CTranslate2 frees after each encoder layer
    mapped = _LIBC.mallinfo2().hblkhd - before
    _LIBC.free(block)
    return mapped

print(mapped_bytes_for_a_block() > 0, fix_malloc_thresholds() is not None, mapped_bytes_for_a_block() > 0)
"""


@pytest.mark.skipif(not GLIBC, reason="the policy applies to glibc's malloc only")
def test_the_policy_keeps_engine_sized_blocks_on_the_heap() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    # glibc's default maps a 23 MiB block of its own; under the policy it comes from the heap
    assert out.split() == ["True", "True", "False"]


@pytest.mark.skipif(not GLIBC, reason="the policy applies to glibc's malloc only")
def test_the_policy_is_applied_once_and_recorded_with_the_machine() -> None:
    code = (
        "from voxperf.engines.alloc import fix_malloc_thresholds as f, malloc_policy as p\n"
        "from voxperf.bench.environment import machine_info as m\n"
        "print(p(), m()['mallocPolicy']); print(f() == f() == p() == m()['mallocPolicy'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["None None", "True"]

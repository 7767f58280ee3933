"""The C heap policy of every process that runs engines, so that bench and serve measure alike.

glibc's malloc adjusts its thresholds as a process runs and, depending on how a thread's heap
happens to be laid out, hands freed blocks back to the kernel (``madvise(MADV_DONTNEED)``) or keeps
them. CTranslate2 frees about 23 MiB after each encoder layer: in a process where that block is
returned, the next layer faults it back in, request after request (tiny.en here: 78 k minor faults
per request against 53 k, and stt about 6 % slower, in one process and not in another with the same
engine and input). Fixing the thresholds makes every process behave the same:

* ``M_MMAP_THRESHOLD`` 32 MiB: blocks below it come from the heap (and are reused), larger ones are
  mapped and unmapped as before;
* ``M_TRIM_THRESHOLD`` 256 MiB: free memory at the top of a heap is kept up to that size.

Setting them also turns off glibc's automatic adjustment. :func:`release_free_memory` still gives
free pages back on purpose (``voxperf serve`` calls it after a long synthesis). Elsewhere than
glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any

__all__ = ["MALLOC_POLICY", "fix_malloc_thresholds", "malloc_policy", "release_free_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20
MALLOC_POLICY = f"glibc mmap_threshold={MMAP_THRESHOLD} trim_threshold={TRIM_THRESHOLD}"

_fixed = False


def _libc() -> Any:
    if os.name != "posix":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # glibc only


_LIBC = _libc()


def fix_malloc_thresholds() -> str | None:
    """Apply the policy to this process (call before engines load); returns it, or None when the
    C library is not glibc. Calling it again changes nothing."""
    global _fixed
    if _LIBC is None:
        return None
    if not _fixed:
        ok = _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _LIBC.mallopt(
            _M_TRIM_THRESHOLD, TRIM_THRESHOLD
        )
        _fixed = bool(ok)
    return MALLOC_POLICY if _fixed else None


def malloc_policy() -> str | None:
    """The policy this process runs under (recorded with the machine in result files), or None."""
    return MALLOC_POLICY if _fixed else None


def release_free_memory() -> None:
    """Give the C heap's free pages back to the system now (after a long synthesis, whose audio
    buffers would otherwise stay resident)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)

"""What a Dask worker process sets up before varinf's core runs there.

Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536 (to hand freed memory back to
the system sooner). Setting that variable also freezes glibc's mmap threshold at 128 KiB, so
every block buffer of the C++ core (an [m, k] kernel block is about 2 MB at m = 256) and every
GEMM packing buffer is a fresh mmap, paid for in page faults on each use: an SGPR evaluation
ran 1.8x slower there than in a plain process (AMD EPYC, bench/bench_dask.py). In a worker
whose environment has that variable, the first varinf task raises both glibc thresholds to
64 MiB: buffers up to that size are reused from the heap, and at most that much free memory
stays with the process.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["prepare"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_THRESHOLD = 64 << 20
_prepared = False


def prepare() -> None:
    """Once per process, in a worker started with MALLOC_TRIM_THRESHOLD_ on glibc."""
    global _prepared
    if _prepared:
        return
    _prepared = True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): nothing to tune
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)
    libc.mallopt(_M_TRIM_THRESHOLD, _THRESHOLD)

"""glibc's malloc thresholds, raised once when the compiled core loads.

The C++ core's temporaries and Eigen's GEMM packing buffers are a few hundred KiB each, made and
freed on every call (an SVGP step at m = 512 makes hundreds of them). glibc serves a request
above its mmap threshold (128 KiB at start, adjusted upwards only when such a block is freed) with
a fresh mmap, and hands the top of the heap back to the system beyond its trim threshold, so each
of those buffers came back as new pages, paid for in page faults and zeroing on every use: an
SVGP step at (B, m) = (128, 512) took 60 ms instead of 34, a 10-class SVGP step 13.5 ms instead
of 6.7 (AMD EPYC, 1 thread). Dask's nanny makes it worse: it starts workers with
MALLOC_TRIM_THRESHOLD_=65536, which also freezes the mmap threshold at 128 KiB.

Raising both thresholds to 64 MiB keeps such buffers in the heap for reuse; at most that much
freed memory stays with each malloc arena of the process instead of going back to the system.
The setting is process-wide (it applies to every library in the process), so it can be turned
off: ``VARINF_MALLOC_TUNING=0`` in the environment before varinf is imported leaves glibc's
defaults alone. Nothing happens on other C libraries (musl, macOS, Windows).
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["THRESHOLD", "tune", "tuned"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
THRESHOLD = 64 << 20
tuned = False  # whether this process's thresholds were raised


def tune() -> bool:
    """Raise glibc's mmap and trim thresholds to THRESHOLD (unless VARINF_MALLOC_TUNING=0);
    whether they are raised."""
    global tuned
    if tuned or os.environ.get("VARINF_MALLOC_TUNING", "").strip() == "0" or not sys.platform.startswith("linux"):
        return tuned
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl): nothing to tune
        return False
    tuned = bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
    return tuned

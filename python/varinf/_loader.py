"""Import the fastest compiled core this CPU can run.

The C++ sources are built twice: ``_core_baseline`` (the compiler's default target) and
``_core_x86_64_v3`` (AVX2 + FMA, 2-2.6x faster for Eigen's exp and GEMM). Set the environment
variable ``VARINF_FORCE_BASELINE=1`` to use the baseline build on any CPU.
"""

import importlib
import os

from . import _cpu


def _choose() -> str:
    forced = os.environ.get("VARINF_FORCE_BASELINE", "").strip().lower()
    if forced not in ("", "0", "false", "no") or not _cpu.supports_x86_64_v3():
        return "baseline"
    return "x86_64_v3"


def _import_core():
    variant = _choose()
    try:
        return importlib.import_module(f"varinf._core_{variant}"), variant
    except ImportError:
        # A build for a non-x86 machine has the baseline module only.
        if variant == "baseline":
            raise
        return importlib.import_module("varinf._core_baseline"), "baseline"


core, variant = _import_core()

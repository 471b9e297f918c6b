"""varinf._allocator: glibc's malloc thresholds are raised when the core loads, unless
VARINF_MALLOC_TUNING=0 says not to."""

import subprocess
import sys

import pytest

import varinf  # noqa: F401  (loads the core)
from varinf import _allocator

glibc = sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver())


@pytest.mark.skipif(not glibc, reason="the thresholds are glibc's")
def test_loading_the_core_raises_the_thresholds():
    assert _allocator.tuned and _allocator.tune()  # a second call changes nothing


@pytest.mark.parametrize("setting, expected", [("0", "False"), ("1", str(glibc))])
def test_the_tuning_can_be_turned_off(setting, expected):
    code = "import varinf, varinf._allocator as a; print(a.tuned)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "VARINF_MALLOC_TUNING": setting})
    assert out.stdout.strip() == expected

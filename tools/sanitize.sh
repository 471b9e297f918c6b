#!/usr/bin/env bash
# Build varinf with AddressSanitizer + UndefinedBehaviorSanitizer and run the test suite on it.
#
#   tools/sanitize.sh                     # whole suite
#   tools/sanitize.sh tests/models/test_gpr.py   # any pytest arguments
#
# The instrumented extension (-fsanitize=address,undefined -fno-sanitize-recover=undefined
# -fno-omit-frame-pointer -O1 -g, CMake option VARINF_SANITIZE=ON) goes into its own venv
# (.venv-sanitize) and build directory (build/sanitize), so the development build is untouched.
# Only the baseline variant is built (half the compile time; the loader falls back to it).
# Python is not instrumented, so libasan is preloaded; leak detection is off (CPython keeps
# interned objects alive at exit by design). Any ASan or UBSan report aborts the process, and
# the script fails. A malloc too large to serve returns NULL, as it does without ASan, so that
# Python raises MemoryError (allocator_may_return_null). Needs gcc (libasan and libubsan ship with it).
# Cost on the 2-core dev machine (shared, load 5-14): first build ~16 CPU-minutes (38 min wall
# under that load), then the whole suite ~3-4.5 min (4m22s wall with a no-op rebuild).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VARINF_SANITIZE_VENV:-.venv-sanitize}
BUILD_DIR=${VARINF_SANITIZE_BUILD:-build/sanitize}

# A venv of its own (no system site packages, where an editable varinf may be installed).
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q scikit-build-core pybind11 cmeel-eigen \
  numpy scipy threadpoolctl tqdm pytest hypothesis scikit-learn
"$VENV/bin/python" -m pip install -q --no-build-isolation --no-deps \
  -Cbuild-dir="$BUILD_DIR" -Ccmake.build-type=Debug \
  -Ccmake.define.VARINF_SANITIZE=ON -Ccmake.define.VARINF_VARIANTS=baseline .

ASAN_LIB=$(gcc -print-file-name=libasan.so)
[ -f "$ASAN_LIB" ] || { echo "libasan.so not found (gcc -print-file-name=libasan.so)" >&2; exit 1; }
# libstdc++ is preloaded too: python does not link it, and without it ASan's __cxa_throw
# interceptor finds no real __cxa_throw ("CHECK failed: asan_interceptors.cpp") at the first
# C++ exception.
STDCXX_LIB=$(gcc -print-file-name=libstdc++.so)

# `import varinf` finds the instrumented install: the sources live in ./python, not ./varinf.
# --capture=sys: pytest captures Python output only, so a sanitizer report (written to fd 2
# just before the abort) reaches the terminal.
if [ $# -eq 0 ]; then set -- tests; fi
LD_PRELOAD="$ASAN_LIB $STDCXX_LIB" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider --capture=sys "$@"

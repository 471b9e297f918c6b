"""Thread control (set_num_threads, OMP_NUM_THREADS, threadpoolctl) and the build variants."""

import importlib.util
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import varinf as vi


def run(code, **env):
    """``code``'s output in a new interpreter, with ``env`` set (a None value unsets)."""
    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


def test_set_num_threads_reaches_other_python_threads():
    before = vi.get_num_threads()
    try:
        vi.set_num_threads(1)
        seen = []
        t = threading.Thread(target=lambda: seen.append(vi.get_num_threads()))
        t.start()
        t.join()
        assert seen == [1]
    finally:
        vi.set_num_threads(before)


def test_set_num_threads_overrides_omp_num_threads_in_threads_started_later():
    code = ("import threading, varinf as vi; vi.set_num_threads(2); seen = []; "
            "t = threading.Thread(target=lambda: seen.append(vi.get_num_threads())); t.start(); t.join(); "
            "print(vi.get_num_threads(), seen[0])")
    assert run(code, OMP_NUM_THREADS="1") == "2 2"


def test_set_num_threads_rejects_nonpositive():
    with pytest.raises(ValueError, match="n must be >= 1"):
        vi.set_num_threads(0)


def test_omp_num_threads_is_followed():
    assert run("import varinf as vi; print(vi.get_num_threads())", OMP_NUM_THREADS="1") == "1"


def test_threadpoolctl_sees_and_limits_varinf():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = vi.get_num_threads()
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert vi.get_num_threads() == 1
    assert vi.get_num_threads() == before
    apis = {(m["user_api"], m["internal_api"]) for m in threadpoolctl.threadpool_info()}
    assert ("openmp", "openmp") in apis


def test_results_do_not_depend_on_thread_count(rng):
    X = rng.normal(size=(500, 5))
    k = vi.kernels.Matern52(1.0, np.ones(5)) + vi.kernels.Periodic(0.5, 1.0, 2.0)
    W = rng.normal(size=(500, 500))
    before = vi.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            vi.set_num_threads(n)
            results.append((k.K(X), k.core().grad_sym(k.theta(), X, W + W.T, True)))
    finally:
        vi.set_num_threads(before)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-14)
    np.testing.assert_allclose(results[0][1][0], results[1][1][0], rtol=1e-10)


def test_baseline_build_can_be_forced_and_agrees():
    from varinf import _cpu

    code = ("import numpy as np, varinf as vi; X = np.linspace(0, 1, 50)[:, None]; "
            "print(vi.build_variant, repr(float(vi.kernels.Matern32().K(X).sum())))")
    base_variant, base_sum = run(code, VARINF_FORCE_BASELINE="1").split()
    assert base_variant == "baseline"
    if not _cpu.supports_x86_64_v3():
        pytest.skip("this CPU runs the baseline build only: there is no second variant to compare")
    if importlib.util.find_spec("varinf._core_x86_64_v3") is None:
        pytest.skip("this install has the baseline build only (VARINF_VARIANTS=baseline, as tools/sanitize.sh)")
    fast_variant, fast_sum = run(code, VARINF_FORCE_BASELINE=None).split()
    assert fast_variant == "x86_64_v3"
    assert float(base_sum) == pytest.approx(float(fast_sum), rel=1e-12)

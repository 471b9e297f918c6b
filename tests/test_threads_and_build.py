"""Thread control (set_num_threads, OMP_NUM_THREADS, threadpoolctl) and the build variants."""

import importlib.util
import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

import varinf as vi


def _subprocess(code, env):
    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def run(code, **env):
    """``code``'s output in a new interpreter, with ``env`` set (a None value unsets)."""
    out = _subprocess(code, env)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def run_failing(code, **env):
    """The error output of ``code`` in a new interpreter (as ``run``), which must fail."""
    out = _subprocess(code, env)
    assert out.returncode != 0, out.stdout
    return out.stderr


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


# The build variants, fastest first, with what the x86-64 psABI level needs beyond the previous
# one, as Linux names the features in /proc/cpuinfo (the kernel lists AVX and AVX-512 only when
# it saves their registers). "pni" is SSE3, "abm" LZCNT, "lahf_lm" LAHF-SAHF, "cx16" CMPXCHG16B.
VARIANTS = {
    "x86_64_v4": ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"),
    "x86_64_v3": ("avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave",
                  "pni", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16", "lahf_lm"),
    "baseline": (),
}
SUM_CODE = ("import numpy as np, varinf as vi; X = np.linspace(0, 1, 50)[:, None]; "
            "print(vi.build_variant, repr(float(vi.kernels.Matern32().K(X).sum())))")
VARIANT_CODE = "import varinf as vi; print(vi.build_variant)"


def _env(**settings):
    """The loader's settings: ``settings``, and the others unset."""
    return {"VARINF_VARIANT": None, "VARINF_FORCE_BASELINE": None, **settings}


def _runs_here(variant):
    from varinf import _cpu

    return variant == "baseline" or getattr(_cpu, f"supports_{variant}")()


def _installed(variant):
    return importlib.util.find_spec(f"varinf._core_{variant}") is not None


def _usable():
    return [v for v in VARIANTS if _installed(v) and _runs_here(v)]


def test_cpu_detection_agrees_with_the_kernel():
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    lines = [ln for ln in cpuinfo.read_text().splitlines() if ln.startswith("flags")] if cpuinfo.exists() else []
    if not lines:
        pytest.skip("no x86 feature flags in /proc/cpuinfo (not Linux on x86)")
    flags = set(lines[0].split(":", 1)[1].split())
    needs = ()
    for variant in reversed(list(VARIANTS)):  # each level includes the ones below it
        needs += VARIANTS[variant]
        assert _runs_here(variant) == all(f in flags for f in needs), variant


def test_default_is_the_fastest_installed_variant_this_cpu_runs():
    assert run(VARIANT_CODE, **_env()) == _usable()[0]


def test_a_missing_variant_falls_back_to_the_next_usable_one():
    """As in an install without some variants (non-x86, or fewer VARINF_VARIANTS): a None entry
    in sys.modules makes importlib find no such module."""
    def without(*variants):
        hide = "".join(f"sys.modules['varinf._core_{v}'] = None; " for v in variants)
        return _subprocess(f"import sys; {hide}import varinf as vi; print(vi.build_variant)", _env())

    assert without("x86_64_v4", "x86_64_v3").stdout.strip() == "baseline"
    fastest, *rest = _usable()
    out = without(fastest)
    assert out.stdout.strip() == (rest[0] if rest else "")
    assert rest or "ImportError: varinf: no usable build of varinf's core" in out.stderr


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_any_variant_can_be_forced_or_is_refused_by_name(variant):
    """A usable variant loads and agrees with the baseline build; any other raises ImportError
    that names the setting and the variants to choose from. Which one holds depends on the CPU
    and the install, so the test runs (and can fail) on every machine."""
    if variant in _usable():
        loaded, total = run(SUM_CODE, **_env(VARINF_VARIANT=variant)).split()
        _, base_total = run(SUM_CODE, **_env(VARINF_FORCE_BASELINE="1")).split()
        assert loaded == variant
        assert float(total) == pytest.approx(float(base_total), rel=1e-12)
    else:
        error = run_failing("import varinf", **_env(VARINF_VARIANT=variant))
        assert f"ImportError: VARINF_VARIANT={variant}: no usable build" in error
        assert f"Choose VARINF_VARIANT from: {', '.join(_usable())}." in error


def test_unknown_variant_is_refused():
    error = run_failing("import varinf", **_env(VARINF_VARIANT="x86_64_v9"))
    assert "ImportError: VARINF_VARIANT=x86_64_v9: no usable build" in error
    assert "known variants: x86_64_v4, x86_64_v3, baseline" in error


def test_force_baseline_still_works_and_cannot_contradict_varinf_variant():
    assert run(VARIANT_CODE, **_env(VARINF_FORCE_BASELINE="1")) == "baseline"
    assert run(VARIANT_CODE, **_env(VARINF_FORCE_BASELINE="1", VARINF_VARIANT="baseline")) == "baseline"
    error = run_failing("import varinf", **_env(VARINF_FORCE_BASELINE="1", VARINF_VARIANT="x86_64_v3"))
    assert "VARINF_FORCE_BASELINE=1 and VARINF_VARIANT=x86_64_v3 ask for different builds" in error

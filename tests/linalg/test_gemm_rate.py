"""core.testing.gemm_gflops: the GEMM rate the benchmarks report hot paths against. No speed
is asserted (the machine is shared); only that a rate comes back, in plausible units, and that
the call leaves the thread settings as it found them."""

import math

import pytest

import varinf as vi

gemm_gflops = vi._core.testing.gemm_gflops


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_gflops_returns_a_positive_finite_rate(dtype, threads):
    rate = gemm_gflops(64, dtype, threads, 3)
    # GFLOP/s, not FLOP/s: far below anything a CPU core pair could reach in FLOP/s units.
    assert math.isfinite(rate) and 0 < rate < 1e5


def test_gemm_gflops_odd_sizes_and_one_rep():
    for n in (1, 2, 33):
        assert gemm_gflops(n, "float64", 1, 1) > 0
    assert gemm_gflops(17, "float32", 2, 2) > 0  # an even count: the mean of the middle two


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "n must be in"),
    (dict(n=8193), "n must be in"),
    (dict(dtype="float16"), "dtype must be 'float64' or 'float32'"),
    (dict(threads=0), "threads must be in"),
    (dict(reps=0), "reps must be in"),
])
def test_gemm_gflops_rejects_bad_arguments(kwargs, message):
    args = dict(n=8, dtype="float64", threads=1, reps=1) | kwargs
    with pytest.raises(ValueError, match=message):
        gemm_gflops(**args)


def test_gemm_gflops_restores_the_thread_limits():
    """A 2-thread measurement inside a 1-thread limit (threadpoolctl, varinf's own count)
    leaves both at 1 afterwards: the count it asks for is its own."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = vi.get_num_threads()
    try:
        vi.set_num_threads(1)
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert gemm_gflops(64, "float64", 2, 1) > 0
            assert vi.get_num_threads() == 1
            openmp = [m for m in threadpoolctl.threadpool_info() if m["user_api"] == "openmp"]
            assert all(m["num_threads"] == 1 for m in openmp)
        assert vi.get_num_threads() == 1
    finally:
        vi.set_num_threads(before)

"""Cholesky: varinf against scipy.linalg.cholesky (LAPACK dpotrf in scipy's OpenBLAS).

    python bench/bench_cholesky.py [--quick] [--busy]

Both factorise fresh F-ordered copies of the same SPD matrix A [n, n], side by side in one run,
at 1 and 2 threads (scipy's BLAS through threadpoolctl, varinf through vi.set_num_threads).
Times are medians of repeats; `load` is the 1-minute load average after them (the machine is
shared: a load above the core count means the figures are busy-machine figures); accuracy is
max |L L^T - A| / max |A|. `varinf ms` is the public vi.linalg.cholesky (validation, one copy,
factorisation), the counterpart of scipy's call; `in-place ms` the core factorising a caller's
buffer (vi._core.testing.cholesky_inplace_f). Roofline of the in-place factorisation: n^3 / 3
flops, the GFLOP/s achieved and their percentage of Eigen's float64 GEMM rate at the row's thread
count in this process (common.gemm_rates).
--busy also times n = 2000 while another process spins on core 1 (a shared, busy machine).
Writes bench/results/cholesky.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import scipy
import scipy.linalg
from threadpoolctl import threadpool_limits

import varinf as vi
from common import add_roofline, gemm_rates, roofline_columns, write_results


def spd_matrix(n: int, seed: int = 0) -> np.ndarray:
    """A well-conditioned SPD matrix [n, n], F-ordered."""
    X = np.random.default_rng(seed).standard_normal((n, n))  # [n, n]
    return np.asfortranarray(X @ X.T / n + np.eye(n))


def timed(fn, A: np.ndarray):
    """(seconds, result) of fn on a fresh F-ordered copy of A (the copy is not timed)."""
    B = A.copy(order="F")  # [n, n]
    start = time.perf_counter()
    out = fn(B)
    return time.perf_counter() - start, out


def relative_error(L: np.ndarray, A: np.ndarray) -> float:
    L = np.tril(L)  # [n, n]
    return float(np.abs(L @ L.T - A).max() / np.abs(A).max())


def contenders():
    def scipy_chol(B):
        return scipy.linalg.cholesky(B, lower=True, overwrite_a=False, check_finite=False)

    def varinf_chol(B):
        return vi.linalg.cholesky(B)

    def varinf_inplace(B):
        if not vi._core.testing.cholesky_inplace_f(B):
            raise RuntimeError("cholesky_inplace_f failed on an SPD matrix")
        return B

    return {"scipy": scipy_chol, "varinf": varinf_chol, "inplace": varinf_inplace}


def measure(n: int, threads: int, repeats: int) -> dict:
    """Median times (ms) of each contender, interleaved per repeat, and their accuracy."""
    A = spd_matrix(n)
    fns = contenders()
    times = {name: [] for name in fns}
    last = {}
    vi.set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        for _ in range(repeats):
            for name, fn in fns.items():
                seconds, last[name] = timed(fn, A)
                times[name].append(seconds)
    ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
    return {
        "n": n,
        "threads": threads,
        "load_avg_1min": os.getloadavg()[0],
        "repeats": repeats,
        "scipy_ms": ms["scipy"],
        "varinf_ms": ms["varinf"],
        "inplace_ms": ms["inplace"],
        "speedup": ms["scipy"] / ms["varinf"],
        "scipy_rel_err": relative_error(last["scipy"], A),
        "varinf_rel_err": relative_error(last["varinf"], A),
    }


def repeats_for(n: int) -> int:
    return 9 if n <= 500 else 7 if n <= 1000 else 5 if n <= 2000 else 3


COLUMNS = [("n", "n"), ("threads", "threads"), ("scipy_ms", "scipy ms"), ("varinf_ms", "varinf ms"),
           ("inplace_ms", "in-place ms"), ("speedup", "speedup"),
           *roofline_columns("factorisation", "inplace_", "in-place "),
           ("scipy_rel_err", "rel err scipy"), ("varinf_rel_err", "rel err varinf"), ("load_avg_1min", "load")]


def with_roofline(rows: list, rates: dict) -> list:
    """The rows with the in-place factorisation's roofline: n^3 / 3 flops (docs/math.md 9.1)."""
    return add_roofline(rows, lambda r: r["n"] ** 3 / 3.0, lambda r: r["inplace_ms"] / 1e3, "float64", rates,
                        prefix="inplace_")


def busy_case(n: int = 2000, repeats: int = 5) -> list:
    """Time n = 2000 at 1 and 2 threads while a busy-loop process holds core 1."""
    busy = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        return [measure(n, threads, repeats) for threads in (1, 2)]
    finally:
        busy.terminate()
        busy.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 200, 500 only")
    parser.add_argument("--busy", action="store_true", help="also time n = 2000 on a busy core")
    args = parser.parse_args()

    rates = gemm_rates(args.quick)
    sizes = (200, 500) if args.quick else (500, 1000, 2000, 4000)
    rows = with_roofline([measure(n, t, repeats_for(n)) for n in sizes for t in (1, 2)], rates)
    extra = []
    if args.busy:
        extra.append(("Busy machine: another process spins on core 1", with_roofline(busy_case(), rates), COLUMNS))
    write_results("cholesky", f"Cholesky: varinf {vi.build_variant} vs scipy {scipy.__version__} (medians)",
                  rows, COLUMNS, args.quick, extra_tables=extra,
                  notes=["in-place model GFLOP, GFLOP/s, % GEMM: n^3 / 3 flops per factorisation, over the "
                         "in-place time, as a percentage of Eigen's float64 GEMM rate at the row's thread "
                         "count in this process"])


if __name__ == "__main__":
    main()

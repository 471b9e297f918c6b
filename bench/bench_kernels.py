"""Kernel matrix and fused gradient contraction: varinf's C++ core vs the numpy reference.

    python bench/bench_kernels.py [--quick]

For SE-ARD (and Matern 5/2 for variety) on X1 [n, d], X2 [m, d] (n = m = 2000, d = 8; quick:
200): K(X1, X2) [n, m], and given a random Kbar [n, m] the contraction (dL/dvariance,
dL/dlengthscales [d], dL/dX1 [n, d]), at 1 and 2 threads (numpy's BLAS limited the same way).
Two numpy baselines: the readable reference (varinf.reference.kernels: broadcast [rows, m, d]
differences) and a tuned one written here (`numpy-GEMM`: r2 = |a|^2 + |b|^2 - 2 a b^T and the
gradient as matrix products, the way scikit-learn and GPflow compute distances).
Medians of interleaved repeats; `max abs diff` compares with the reference's outputs.
Roofline of varinf's call: the FLOP model (op_flops), the GFLOP/s achieved and their percentage
of Eigen's float64 GEMM rate at the row's thread count in this process (common.gemm_rates).
Writes bench/results/kernels.json.
"""

from __future__ import annotations

import numpy as np

import varinf as vi
from common import add_roofline, gemm_rates, parse_args, roofline_columns, run_interleaved, threads, write_results
from varinf.reference import kernels as ref_kernels

KERNELS = {"SE-ARD": (ref_kernels.SquaredExponential, vi.kernels.SquaredExponential),
           "Matern52-ARD": (ref_kernels.Matern52, vi.kernels.Matern52)}


# Flops per pair and input dimension (docs/math.md 9.1): K(X1, X2) [n, m] ~3 n m d (scaled
# differences, squares, sums), its gradient contraction ~7 n m d; plus n m exp (and sqrt for
# Matern), not counted.
FLOPS_PER_PAIR_DIM = {"K": 3.0, "grad": 7.0, "K + grad": 10.0}


def op_flops(row: dict) -> float:
    return FLOPS_PER_PAIR_DIM[row["op"]] * row["n"] * row["n"] * row["d"]


def max_abs_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b))


def gemm_r2(ref, X1, X2):
    """Scaled squared distances by the expansion |a - b|^2 = |a|^2 + |b|^2 - 2 a.b:
    (A [n, d], B [m, d], r2 [n, m])."""
    A, B = X1 / ref.lengthscales, X2 / ref.lengthscales  # [n, d], [m, d]
    r2 = np.sum(A ** 2, axis=1)[:, None] + np.sum(B ** 2, axis=1)[None, :] - 2.0 * A @ B.T
    return A, B, np.maximum(r2, 0.0)  # [n, m], clipped: the expansion can round below 0


def gemm_K(ref, X1, X2):
    return ref.variance * ref.f(gemm_r2(ref, X1, X2)[2])  # [n, m]


def gemm_grad(ref, X1, X2, Kbar):
    """The reference's chain rule with every sum over pairs written as a matrix product:
    sum_ij G_ij (a_ik - b_jk)^2 = G.sum(1) @ A^2 + G.sum(0) @ B^2 - 2 sum_i A_ik (G B)_ik."""
    A, B, r2 = gemm_r2(ref, X1, X2)
    dvariance = np.sum(Kbar * ref.f(r2))
    G = Kbar * ref.variance * ref.df(r2)  # [n, m]
    GB = G @ B  # [n, d]
    g_rows, g_cols = G.sum(axis=1), G.sum(axis=0)  # [n], [m]
    dl = -2.0 / ref.lengthscales * (g_rows @ A ** 2 + g_cols @ B ** 2 - 2.0 * np.sum(A * GB, axis=0))
    dX1 = 2.0 / ref.lengthscales * (g_rows[:, None] * A - GB)  # [n, d]
    return np.concatenate([[dvariance], dl]), dX1


def measure(name: str, n: int, d: int, num_threads: int, repeats: int) -> list:
    """Rows (K, gradient) for one kernel at one thread count."""
    rng = np.random.default_rng(0)
    X1, X2 = rng.standard_normal((n, d)), rng.standard_normal((n, d))  # [n, d] each
    Kbar = rng.standard_normal((n, n))  # [n, m]
    variance, lengthscales = 1.3, rng.uniform(0.5, 2.0, d)
    ref_cls, vi_cls = KERNELS[name]
    ref = ref_cls(variance, lengthscales)
    k = vi_cls(variance=variance, lengthscales=lengthscales)
    core, theta = k.core(), k.theta()

    def ref_grad():
        dvariance, dl, dX1 = ref.grad(X1, X2, Kbar)
        return np.concatenate([[dvariance], dl]), dX1

    def vi_grad():
        return core.grad(theta, X1, X2, Kbar, True)

    with threads(num_threads):
        t = run_interleaved({"ref K": lambda: ref.K(X1, X2), "gemm K": lambda: gemm_K(ref, X1, X2),
                             "vi K": lambda: k.K(X1, X2), "ref grad": ref_grad,
                             "gemm grad": lambda: gemm_grad(ref, X1, X2, Kbar), "vi grad": vi_grad},
                            repeats=repeats)
    seconds = {key: value[0] for key, value in t.items()}
    for who in ("ref", "gemm", "vi"):
        seconds[f"{who} K + grad"] = seconds[f"{who} K"] + seconds[f"{who} grad"]
    diff = {who: {"K": max_abs_diff([t["ref K"][1]], [t[f"{who} K"][1]]),
                  "grad": max_abs_diff(t["ref grad"][1], t[f"{who} grad"][1])} for who in ("gemm", "vi")}
    for who in diff:
        diff[who]["K + grad"] = max(diff[who].values())
    return [{"kernel": name, "op": op, "n": n, "d": d, "threads": num_threads,
             "numpy_ms": 1e3 * seconds[f"ref {op}"], "gemm_ms": 1e3 * seconds[f"gemm {op}"],
             "varinf_ms": 1e3 * seconds[f"vi {op}"],
             "speedup": seconds[f"ref {op}"] / seconds[f"vi {op}"],
             "speedup_gemm": seconds[f"gemm {op}"] / seconds[f"vi {op}"],
             "varinf_diff": diff["vi"][op], "gemm_diff": diff["gemm"][op]}
            for op in ("K", "grad", "K + grad")]


COLUMNS = [("kernel", "kernel"), ("op", "op"), ("n", "n = m"), ("d", "d"), ("threads", "threads"),
           ("numpy_ms", "numpy ms"), ("gemm_ms", "numpy-GEMM ms"), ("varinf_ms", "varinf ms"),
           ("speedup", "speedup vs numpy"), ("speedup_gemm", "speedup vs numpy-GEMM"),
           *roofline_columns("call", "varinf_", "varinf "),
           ("varinf_diff", "varinf max abs diff"), ("gemm_diff", "numpy-GEMM max abs diff")]


def main(argv=None) -> None:
    args = parse_args(__doc__, argv)
    n, d, repeats = (200, 8, 3) if args.quick else (2000, 8, 5)
    rates = gemm_rates(args.quick)
    rows = [row for name in KERNELS for t in (1, 2) for row in measure(name, n, d, t, repeats)]
    add_roofline(rows, op_flops, lambda r: r["varinf_ms"] / 1e3, "float64", rates, prefix="varinf_")
    write_results("kernels", "Kernel matrix and gradient contraction: varinf vs numpy reference",
                  rows, COLUMNS, args.quick,
                  notes=[f"medians of {repeats} interleaved repeats after one warm-up",
                         "grad = dL/dvariance, dL/dlengthscales and dL/dX1 given Kbar [n, m]",
                         "numpy = varinf.reference.kernels ([rows, m, d] broadcasting in 16 MB row "
                         "blocks); numpy-GEMM = distances and gradient sums as BLAS matrix products "
                         "(threaded by OpenBLAS at 2 threads)",
                         "max abs diff: against the numpy reference's K and gradients",
                         "varinf model GFLOP, GFLOP/s, % GEMM: 3 n m d for K, 7 n m d for grad "
                         "(docs/math.md 9.1; the n m exp not counted), over varinf's time, and as a "
                         "percentage of Eigen's float64 GEMM rate at the row's thread count"])


if __name__ == "__main__":
    main()

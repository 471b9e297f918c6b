"""Exact GP regression fit: varinf vs the numpy reference vs scikit-learn.

    python bench/bench_gpr.py [--quick]

One fixed synthetic problem (seeded): X [n, 8] standard normal, y = sum of sines of three
random projections of the first five inputs + N(0, 0.1^2) noise, n = 1000, 2000, 4000
(quick: 300). Every library fits SE-ARD + Gaussian noise from the same initial values
(variance 1, lengthscales 1, noise variance 0.1) with L-BFGS-B:
- varinf: vi.GPR(...).fit() (C++ LML + gradient, scipy L-BFGS-B in softplus space);
- numpy: varinf.reference.gpr.GPR(...).fit() (same parameterisation, numpy/scipy LAPACK);
- sklearn: GaussianProcessRegressor(ConstantKernel * RBF(ARD) + WhiteKernel,
  n_restarts_optimizer=0, normalize_y=False) with its own log-space L-BFGS-B under the same
  iteration cap (if scikit-learn is importable).
The numpy and sklearn fits get a wall-clock budget (5 x varinf's fit time, capped); a fit stopped
by it says so in `status`.
Every fitted model's LML is evaluated with varinf's exact LML at its fitted hyperparameters.
Thread counts 1 and 2 (varinf via vi.set_num_threads; BLAS via threadpoolctl).
Roofline of one LML + gradient evaluation: the FLOP model (eval_flops), the GFLOP/s achieved and
their percentage of Eigen's float64 GEMM rate at the row's thread count (common.gemm_rates).
Writes bench/results/gpr.json.
"""

from __future__ import annotations

import sys
import time
import warnings

import numpy as np
import scipy.optimize

import varinf as vi
from common import (add_roofline, gemm_rates, optional_import, parse_args, roofline_columns, run_interleaved,
                    threads, write_results)
from varinf.reference import gpr as ref_gpr
from varinf.reference import kernels as ref_kernels

D = 8
# The numpy and sklearn fits stop after this many times varinf's fit time (or a cap): a fit
# stopped there is at least this much slower than varinf.
BUDGET_FACTOR = 5.0
INITIAL = {"variance": 1.0, "lengthscale": 1.0, "noise_variance": 0.1}


def problem(n: int, seed: int = 0):
    """X [n, D], y [n]: y = sum_j sin(X[:, :5] @ w_j) + 0.1 eps, three fixed projections w_j."""
    W = np.random.default_rng(1234).normal(0.0, 0.6, (5, 3))  # [5, 3], the same for every n
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))  # [n, D]
    y = np.sin(X[:, :5] @ W).sum(axis=1) + 0.1 * rng.standard_normal(n)  # [n]
    return X, y


def eval_flops(n: int, d: int = D) -> float:
    """One exact-GPR LML + gradient (docs/math.md 9.2): K(X) [n, n] (3 n^2 d), its Cholesky
    (n^3 / 3), Ky^-1 (2 n^3 / 3) and the gradient contraction (7 n^2 d)."""
    return float(n) ** 3 + 10.0 * n * n * d


class OutOfTime(Exception):
    """The wall-clock budget of a fit is spent."""


def budgeted_minimize(fun, x0, max_iter: int, budget_s: float, bounds=None):
    """scipy's L-BFGS-B on fun(x) -> (f, grad), stopped at the first evaluation that starts
    after ``budget_s`` seconds. Returns (best x, its f, iterations, evaluations, status)."""
    start = time.perf_counter()
    best = {"f": np.inf, "x": np.array(x0, dtype=np.float64), "nit": 0, "nfev": 0}

    def timed_fun(x):
        if time.perf_counter() - start > budget_s:
            raise OutOfTime
        f, grad = fun(x)
        best["nfev"] += 1
        if f < best["f"]:
            best["f"], best["x"] = f, np.array(x)
        return f, grad

    def count(*args):
        best["nit"] += 1

    try:
        r = scipy.optimize.minimize(timed_fun, best["x"], jac=True, method="L-BFGS-B", bounds=bounds,
                                    callback=count, options={"maxiter": max_iter})
    except OutOfTime:
        return best["x"], best["f"], best["nit"], best["nfev"], f"stopped by the {budget_s:.3g} s budget"
    return r.x, r.fun, r.nit, r.nfev, status(r, max_iter)


def status(result, max_iter: int) -> str:
    if result.success:
        return "converged"
    return "stopped at the iteration cap" if result.nit >= max_iter else f"failed: {result.message}"


def varinf_model(X, y):
    kernel = vi.kernels.SquaredExponential(variance=INITIAL["variance"],
                                           lengthscales=np.full(D, INITIAL["lengthscale"]))
    return vi.GPR(X, y, kernel, noise_variance=INITIAL["noise_variance"])


def numpy_model(X, y):
    kernel = ref_kernels.SquaredExponential(INITIAL["variance"], np.full(D, INITIAL["lengthscale"]))
    return ref_gpr.GPR(X, y, kernel, noise_variance=INITIAL["noise_variance"])


def sklearn_model(X, y, optimizer=None):
    """sklearn's GP fitted with ``optimizer`` (None: kept at the initial values); alpha = 1e-10."""
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    kernel = (ConstantKernel(INITIAL["variance"]) * RBF(np.full(D, INITIAL["lengthscale"]))
              + WhiteKernel(INITIAL["noise_variance"]))
    return GaussianProcessRegressor(kernel, optimizer=optimizer, n_restarts_optimizer=0,
                                    normalize_y=False).fit(X, y)


def fit_varinf(X, y, max_iter, budget_s):
    m = varinf_model(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the iteration cap: status says so
        m.fit(max_iter=max_iter)
    r = m.optimizer_result_
    return {"variance": float(m.kernel.variance), "lengthscales": m.kernel.lengthscales.copy(),
            "noise_variance": m.noise_variance, "nit": r.nit, "nfev": r.nfev, "status": status(r, max_iter)}


def fit_numpy(X, y, max_iter, budget_s):
    m = numpy_model(X, y)
    x, _, nit, nfev, state = budgeted_minimize(m.negative_objective, m.get_raw(), max_iter, budget_s)
    m.set_raw(x)
    return {"variance": m.kernel.variance, "lengthscales": m.kernel.lengthscales.copy(),
            "noise_variance": m.noise_variance, "nit": nit, "nfev": nfev, "status": state}


def fit_sklearn(X, y, max_iter, budget_s):
    info = {}

    def optimizer(obj_func, initial_theta, bounds):
        # sklearn's own L-BFGS-B call (log-space theta, its bounds), with our cap and budget
        x, f, nit, nfev, state = budgeted_minimize(obj_func, initial_theta, max_iter, budget_s, bounds)
        info.update(nit=nit, nfev=nfev, status=state)
        return x, f

    k = sklearn_model(X, y, optimizer).kernel_
    return {"variance": float(k.k1.k1.constant_value), "lengthscales": np.asarray(k.k1.k2.length_scale),
            "noise_variance": float(k.k2.noise_level), **info}


def varinf_lml(X, y, fitted) -> float:
    """varinf's exact LML at a fitted model's hyperparameters (the common yardstick)."""
    kernel = vi.kernels.SquaredExponential(variance=fitted["variance"], lengthscales=fitted["lengthscales"])
    # A fit can end exactly on the lower bound 1e-6 (softplus underflow), which varinf's
    # constructor refuses (it wants > 1e-6): step one ulp above it.
    noise = max(fitted["noise_variance"], np.nextafter(ref_gpr.LOWER, 1.0))
    return vi.GPR(X, y, kernel, noise_variance=noise).log_marginal_likelihood()


def contenders(sklearn_available: bool) -> dict:
    fits = {"varinf": fit_varinf, "numpy": fit_numpy}
    if sklearn_available:
        fits["sklearn"] = fit_sklearn
    return fits


def timed_fit(fit, X, y, max_iter, budget_s):
    start = time.perf_counter()
    fitted = fit(X, y, max_iter, budget_s)
    seconds = time.perf_counter() - start
    print(f"  n = {len(y)}, {fit.__name__}: {seconds:.1f} s, {fitted['status']}", file=sys.stderr, flush=True)
    return seconds, fitted


def measure(n, num_threads, fits, max_iter, cap_s) -> list:
    """One timed fit per library. varinf runs first; the others may run for
    min(BUDGET_FACTOR x varinf's time, cap_s) seconds of wall clock."""
    X, y = problem(n)
    with threads(num_threads):
        base_s, fitted = timed_fit(fits["varinf"], X, y, max_iter, None)
        timed = {"varinf": (base_s, fitted)}
        budget_s = min(BUDGET_FACTOR * base_s, cap_s)
        for name, fit in fits.items():
            if name != "varinf":
                timed[name] = timed_fit(fit, X, y, max_iter, budget_s)
    base_lml = varinf_lml(X, y, fitted)
    rows = []
    for name, (seconds, fitted) in timed.items():
        lml = varinf_lml(X, y, fitted)
        rows.append({"n": n, "threads": num_threads, "library": name, "fit_s": seconds,
                     "varinf_speedup": seconds / base_s, "eval_s": seconds / max(1, fitted["nfev"]), "nit": fitted["nit"], "nfev": fitted["nfev"],
                     "lml": lml, "lml_minus_varinf": lml - base_lml,
                     "noise_variance": fitted["noise_variance"], "status": fitted["status"]})
    return rows


def evaluation_rows(n, num_threads, sklearn_available, repeats, warmup) -> list:
    """One LML + gradient evaluation per library at the initial hyperparameters, interleaved
    medians (robust to a load that drifts during the long fits)."""
    X, y = problem(n)
    model, ref = varinf_model(X, y), numpy_model(X, y)
    calls = {"varinf": lambda: model.log_marginal_likelihood(return_grad=True)[0],
             "numpy": lambda: ref.log_marginal_likelihood(return_grad=True)[0]}
    if sklearn_available:
        gp = sklearn_model(X, y)
        calls["sklearn"] = lambda: gp.log_marginal_likelihood(gp.kernel_.theta, eval_gradient=True)[0]
    with threads(num_threads):
        timed = run_interleaved(calls, repeats=repeats, warmup=warmup)
    base_s, base_lml = timed["varinf"]
    return [{"n": n, "threads": num_threads, "library": name, "eval_ms": 1e3 * seconds,
             "varinf_speedup": seconds / base_s, "lml_diff": abs(lml - base_lml)}
            for name, (seconds, lml) in timed.items()]


EVAL_COLUMNS = [("n", "n"), ("threads", "threads"), ("library", "library"),
                ("eval_ms", "ms / evaluation"), ("varinf_speedup", "varinf speedup"),
                *roofline_columns("eval"), ("lml_diff", "abs LML diff vs varinf")]


def warm_up(fits) -> None:
    """Imports, first allocations and thread pools, outside the timings."""
    X, y = problem(50, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 5 iterations on 50 points: sklearn warns about bounds
        for fit in fits.values():
            fit(X, y, 5, 10.0)


COLUMNS = [("n", "n"), ("threads", "threads"), ("library", "library"), ("fit_s", "fit s"),
           ("varinf_speedup", "varinf speedup"), ("nit", "iterations"), ("nfev", "evaluations"),
           ("eval_s", "s / evaluation"),
           ("lml", "LML (varinf's)"), ("lml_minus_varinf", "LML - varinf LML"),
           ("noise_variance", "noise var"), ("status", "status")]


def main(argv=None) -> None:
    args = parse_args(__doc__, argv)
    sklearn = optional_import("sklearn")
    fits = contenders(sklearn is not None)
    # (n, cap on the numpy / sklearn budget in seconds)
    plan = [(300, 10.0)] if args.quick else [(1000, 120.0), (2000, 120.0), (4000, 30.0)]
    max_iter = 30 if args.quick else 200
    rates = gemm_rates(args.quick)
    warm_up(fits)
    rows = [row for n, cap_s in plan for t in (1, 2) for row in measure(n, t, fits, max_iter, cap_s)]
    evaluations = [row for n, _ in plan for t in (1, 2)
                   for row in evaluation_rows(n, t, sklearn is not None, *((3, 1) if n <= 2000 else (1, 0)))]
    add_roofline(evaluations, lambda r: eval_flops(r["n"]), lambda r: r["eval_ms"] / 1e3, "float64", rates)
    caps = ", ".join(f"{cap:.0f} s at n = {n}" for n, cap in plan)
    notes = [f"SE-ARD + noise, d = {D}, same initial values, L-BFGS-B capped at {max_iter} iterations",
             f"numpy and sklearn fits stop after {BUDGET_FACTOR:.0f} x varinf's fit time, at most "
             f"{caps}, checked before each evaluation (status says so)",
             "fit s: one timed fit per library after a warm-up fit on 50 points; s / evaluation = "
             "fit s / evaluations (LML + gradient, plus the optimiser's share)",
             "varinf speedup = fit s / varinf's fit s at the same n and threads",
             "LML (varinf's): varinf's exact LML at each library's fitted hyperparameters",
             "per evaluation: one LML + gradient at the initial hyperparameters, median of 3 "
             "interleaved repeats after a warm-up (n = 4000: one run)",
             "per evaluation, model GFLOP: n^3 + 10 n^2 d (docs/math.md 9.2: kernel matrix and its "
             "gradient contraction, Cholesky, Ky^-1), the same for every library; GFLOP/s = that / the "
             "evaluation's time; % GEMM = of Eigen's float64 GEMM rate at the row's thread count"]
    if sklearn is None:
        notes.append("scikit-learn is not importable: its rows are skipped")
    write_results("gpr", "Exact GPR fit: varinf vs numpy reference vs scikit-learn", rows, COLUMNS,
                  args.quick, notes,
                  extra_tables=[("One LML + gradient evaluation", evaluations, EVAL_COLUMNS)])


if __name__ == "__main__":
    main()

"""Maximising a model's objective with scipy's L-BFGS-B and the analytic gradient.

Models hand over their trainable parameters as a :class:`~varinf.parameters.ParameterVector`
and a function returning ``(objective, d objective / d parameter values)``. The driver works in
the unconstrained space, never loses the model (a step whose objective is not finite or whose
factorisation fails is reported to L-BFGS-B as +inf, so its line search backs off, and the
best finite point is restored at the end) and shows progress when asked (docs/math.md
section 2.3). scipy.optimize and threadpoolctl are imported on the first fit (scipy.optimize
takes about 0.2 s to import).
"""

from __future__ import annotations

import warnings

import numpy as np

from ._errors import LinAlgError
from .parameters import ParameterVector
from .progress import Progress

__all__ = ["maximize"]

# A raw value less than this above its bound (RAW_MIN) is on the floor of the softplus
# transform, where the objective is nearly flat in raw space.
_FLOOR_BAND = 1.0
# A gradient this large (scipy's default projected-gradient tolerance) is no optimum.
_GTOL = 1e-5


def maximize(objective, params: ParameterVector, max_iter: int = 1000, progress: bool = False,
             label: str = "objective", per_datum: float = 1.0):
    """Maximise ``objective()`` over ``params`` with L-BFGS-B; returns scipy's OptimizeResult.

    ``objective()`` reads the parameters' current values and returns the value and its gradient
    with respect to the values of ``params.params`` (flattened in that order).
    """
    import scipy.optimize
    from threadpoolctl import threadpool_limits

    best = {"f": -np.inf, "x": params.get()}
    bar = Progress(total=max_iter, enabled=progress, label=label)

    def negative(x):
        params.set(x)
        try:
            value, grad_values = objective()
        except LinAlgError:
            return np.inf, np.zeros_like(x)
        grad = params.chain(grad_values)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(x)
        if value > best["f"]:
            best["f"], best["x"] = value, x.copy()
        return -value, -grad

    def step(xk):
        bar.update(1, best["f"] / per_datum)

    def run(x0, iterations):
        # L-BFGS-B's own vector work is tiny: OpenBLAS threads there cost more than they save
        # (measured: SGPR fit, n = 200, 212 parameters, 2 cores, 2.4 s with 2 BLAS threads, 0.12 s
        # with 1). The objective runs in varinf's C++ core, which this limit does not touch.
        with threadpool_limits(limits=1, user_api="blas"):
            return scipy.optimize.minimize(negative, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                           callback=step, options={"maxiter": int(iterations)})

    bounds = params.bounds() or None
    try:
        result = run(best["x"], max_iter)
        restart = _off_the_floor(negative, best["x"], bounds)
        if restart is not None and result.nit < max_iter:
            nit = result.nit
            result = run(restart, max_iter - nit)
            result.nit += nit
    finally:
        bar.close()
    params.set(best["x"])
    if not np.isfinite(best["f"]):
        raise LinAlgError(f"the {label} was not finite at any point tried, including the start; "
                          "check the data scale and the initial noise variance")
    if not result.success and result.nit >= max_iter:
        warnings.warn(f"L-BFGS-B stopped after max_iter={max_iter} iterations before converging",
                      RuntimeWarning, stacklevel=3)
    result.x = best["x"]
    result.fun = -best["f"]
    return result


def _off_the_floor(negative, x, bounds):
    """A restart point when L-BFGS-B stopped with a parameter on the transform's floor whose
    gradient points up, else None (docs/math.md sections 2.2 and 2.3).

    There the objective is nearly flat in raw space (d value / d raw = sigmoid(raw) ~ 1e-6), so
    L-BFGS-B's test on the relative decrease of the objective ends the run although the point
    is no optimum (a value started on its lower bound would never move). Such entries restart
    from raw 0 (the value lower + log 2); the best point of both runs is kept.
    """
    if bounds is None:
        return None
    low = np.array([-np.inf if b is None else b for b, _ in bounds])  # [x size]
    near = x <= low + _FLOOR_BAND
    if not near.any():
        return None
    _, minus_grad = negative(x)
    stuck = near & (-minus_grad > _GTOL)
    if not stuck.any():
        return None
    restart = x.copy()
    restart[stuck] = 0.0
    return restart


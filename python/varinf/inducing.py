"""Inducing inputs: placed at k-means centres of the training inputs or by greedy conditional
variance (docs/math.md section 5.7), and the warning when K(Z, Z) needed extra jitter (shared
by SGPR, FITC and SVGP)."""

from __future__ import annotations

import warnings

import numpy as np

from ._validation import as_choice, as_matrix, as_positive_int
from .linalg import JitterWarning

__all__ = ["KMEANS_SAMPLE", "METHODS", "inducing_points", "place_inducing", "kmeans_centres", "greedy_variance",
           "warn_kuu_jitter"]

# Both placements run on at most this many rows of X (a uniform sample of the rest).
KMEANS_SAMPLE = 20000

# How inducing inputs are placed: k-means centres, or greedy conditional variance.
METHODS = ("kmeans", "greedy-variance")


def inducing_points(X, m: int, seed=None, method: str = "kmeans", kernel=None) -> np.ndarray:
    """m inducing inputs [m, d] among the rows of X (or of a random sample of them; docs/math.md
    section 5.7): ``"kmeans"``, k-means centres (scipy's kmeans2, k-means++ start, seeded), or
    ``"greedy-variance"``, the rows that greedily maximise the conditional variance under
    ``kernel`` (Burt, Rasmussen & van der Wilk 2020)."""
    method = as_choice(method, "method", METHODS)
    return place_inducing(as_matrix(X, "X"), m, seed, method, kernel)


def place_inducing(X: np.ndarray, m: int, seed, method: str, kernel) -> np.ndarray:
    """``inducing_points`` for an X [n, d] and a method that were validated already."""
    if method == "kmeans":
        return kmeans_centres(X, m, seed)
    if kernel is None:
        raise ValueError("method 'greedy-variance' needs the kernel (the variance is the kernel's)")
    return greedy_variance(X, m, kernel, seed)


def _sample(X: np.ndarray, m: int, rng) -> np.ndarray:
    """X itself, or KMEANS_SAMPLE of its rows drawn without replacement; m is checked here."""
    m = as_positive_int(m, "m")
    if m > X.shape[0]:
        raise ValueError(f"m must be at most the number of rows of X ({X.shape[0]}), got {m}")
    if X.shape[0] > KMEANS_SAMPLE:
        X = X[rng.choice(X.shape[0], KMEANS_SAMPLE, replace=False)]  # [KMEANS_SAMPLE, d]
    return X


def greedy_variance(X: np.ndarray, m: int, kernel, seed=None) -> np.ndarray:
    """m rows of X [n, d] (validated; of a sample of KMEANS_SAMPLE rows when n is larger) chosen
    one at a time where the conditional variance given those chosen is largest: a partial
    pivoted Cholesky factorisation of K(X, X) that never forms it (Burt, Rasmussen & van der
    Wilk 2020, section 4 and Algorithm 1; docs/math.md section 5.7). O(n m^2) time, O(n m)
    memory. Raises ValueError when fewer than m rows have a conditional variance above
    rounding (duplicated inputs)."""
    X = _sample(X, m, np.random.default_rng(seed))
    m = int(m)
    kernel.check_input(X, "X")
    core, theta = kernel.core(), kernel.theta()
    d = core.K_diag(theta, X)  # [n] conditional variances, updated in place
    floor = 1e-12 * max(float(np.max(d)), np.finfo(float).tiny)
    C = np.empty((m, X.shape[0]))  # [m, n] rows of the partial Cholesky factor
    chosen = []
    for j in range(m):
        i = int(np.argmax(d))
        if not d[i] > floor:
            raise ValueError(f"only {j} rows of X have a conditional variance above rounding under this kernel; "
                             f"ask for m <= {j} inducing inputs (are rows of X duplicated?)")
        k_i = core.K(theta, X, X[i:i + 1])[:, 0]  # [n] k(X, x_i)
        C[j] = (k_i - C[:j, i] @ C[:j]) / np.sqrt(d[i])
        d -= C[j] ** 2
        d[i] = 0.0  # exactly: x_i is now known
        chosen.append(i)
    return np.ascontiguousarray(X[chosen])


def kmeans_centres(X: np.ndarray, m: int, seed=None) -> np.ndarray:
    """``inducing_points`` for an X [n, d] that was validated already (m is checked here)."""
    import scipy.cluster.vq  # on first use: scipy.cluster takes long to import

    rng = np.random.default_rng(seed)
    X = _sample(X, m, rng)
    # k-means on X / max|X| (in [-1, 1]), then scaled back: squared distances between huge
    # inputs (~1e300) overflow to inf, on which scipy's kmeans2 raises IndexError or crashes.
    scale = float(np.max(np.abs(X))) or 1.0
    centres, _ = scipy.cluster.vq.kmeans2(X / scale, m, minit="++", seed=rng)  # [m, d]
    return np.ascontiguousarray(centres * scale)


def warn_kuu_jitter(jitter: float, asked: float, stacklevel: int = 2) -> None:
    """Warn (JitterWarning, at the caller's ``stacklevel``) when K(Z, Z) needed more jitter
    than ``asked`` to factorise (docs/math.md section 3.2)."""
    if jitter > asked:
        warnings.warn(f"K(Z, Z) needed jitter {jitter:.3g} to factorise; the inducing inputs "
                      "may be (nearly) duplicated", JitterWarning, stacklevel=stacklevel + 1)

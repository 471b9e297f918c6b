"""Inducing inputs: placed at k-means centres of the training inputs (docs/math.md section 5.7),
and the warning when K(Z, Z) needed extra jitter (shared by SGPR, FITC and SVGP)."""

from __future__ import annotations

import warnings

import numpy as np

from ._validation import as_matrix, as_positive_int
from .linalg import JitterWarning

__all__ = ["KMEANS_SAMPLE", "inducing_points", "kmeans_centres", "warn_kuu_jitter"]

# k-means runs on at most this many rows of X.
KMEANS_SAMPLE = 20000


def inducing_points(X, m: int, seed=None) -> np.ndarray:
    """m inducing inputs [m, d]: k-means centres (scipy's kmeans2, k-means++ start, seeded) of
    X or of a random sample of its rows (docs/math.md section 5.7)."""
    return kmeans_centres(as_matrix(X, "X"), m, seed)


def kmeans_centres(X: np.ndarray, m: int, seed=None) -> np.ndarray:
    """``inducing_points`` for an X [n, d] that was validated already (m is checked here)."""
    import scipy.cluster.vq  # on first use: scipy.cluster takes long to import

    m = as_positive_int(m, "m")
    if m > X.shape[0]:
        raise ValueError(f"m must be at most the number of rows of X ({X.shape[0]}), got {m}")
    rng = np.random.default_rng(seed)
    if X.shape[0] > KMEANS_SAMPLE:
        X = X[rng.choice(X.shape[0], KMEANS_SAMPLE, replace=False)]  # [KMEANS_SAMPLE, d]
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

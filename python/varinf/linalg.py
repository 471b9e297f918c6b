"""Cholesky factorisation with a jitter policy, its reverse mode, and triangular solves.

Thin wrappers over varinf's C++ core (docs/math.md section 3). Inputs are validated here once;
the core works on F-ordered (column-major) float64 buffers without further copies.

    import varinf as vi
    L = vi.linalg.cholesky(K, jitter=1e-6, name="Kuu")       # K = L @ L.T
    Kbar = vi.linalg.cholesky_reverse(L, Lbar)                # dF/dK from dF/dL
    X = vi.linalg.solve_lower(L, B)                           # L^-1 B
"""

from __future__ import annotations

import warnings

import numpy as np

from ._loader import core
from ._validation import as_dense_matrix, as_finite_float

__all__ = ["JitterWarning", "cholesky", "cholesky_reverse", "solve_lower"]


class JitterWarning(RuntimeWarning):
    """A Cholesky factorisation needed more jitter on the diagonal than was asked for."""


def cholesky(A, jitter: float = 0.0, name: str = "matrix") -> np.ndarray:
    """Lower Cholesky factor L of ``A + jitter * I`` for a symmetric A (docs/math.md sections
    3.1 and 3.2).

    Like ``numpy.linalg.cholesky``, the lower triangle is factorised; jitter retries restore
    it from the upper triangle, so both triangles must hold A.

    When the factorisation fails, it is retried with a jitter of
    ``max(jitter, 1e-6 * mean(diag A))`` times 10, 100, ..., 1e5 (GPy's ``jitchol``), and one
    :class:`JitterWarning` reports the jitter that worked. Raises :class:`varinf.LinAlgError`
    (a ``numpy.linalg.LinAlgError``) naming ``name`` when every try fails.

    Parameters
    ----------
    A : array_like [n, n]
        Symmetric positive (semi-)definite matrix, any memory layout (copied once).
    jitter : float
        Added to the diagonal before the first try (>= 0).
    name : str
        What the matrix is, for warnings and errors ("Kuu", "K + noise I", ...).

    Returns
    -------
    L : ndarray [n, n], F-ordered, lower triangular with a zero strict upper triangle.
    """
    jitter = as_finite_float(jitter, "jitter", lower=0.0, strict=False)
    A = as_dense_matrix(A, "A")
    L, used = core.linalg.cholesky(A, jitter, str(name))  # L [n, n]
    if used > jitter:
        warnings.warn(
            f"Cholesky of {name} needed jitter {used:.3g} on its diagonal "
            f"(asked for {jitter:.3g}).",
            JitterWarning,
            stacklevel=2,
        )
    return L


def cholesky_reverse(L, Lbar) -> np.ndarray:
    """Reverse mode of A = L L^T (I. Murray 2016, arXiv 1602.07527, eq. 10; docs/math.md
    section 3.6).

    Parameters
    ----------
    L : array_like [n, n]
        Lower Cholesky factor of A.
    Lbar : array_like [n, n]
        dF/dL; only its lower triangle is read.

    Returns
    -------
    Abar : ndarray [n, n], symmetric: dF = sum(Abar * dA) for any symmetric perturbation dA.
    """
    L = as_dense_matrix(L, "L")
    Lbar = as_dense_matrix(Lbar, "Lbar")
    if Lbar.shape != L.shape:
        raise ValueError(f"Lbar must have the shape of L {L.shape}, got {Lbar.shape}")
    return core.linalg.cholesky_reverse(L, Lbar)


def solve_lower(L, B, transpose: bool = False) -> np.ndarray:
    """``L^-1 B`` (or ``L^-T B`` when ``transpose``) for lower-triangular L [n, n] (docs/math.md
    section 3.4).

    B may be [n] or [n, k]; the result has B's shape.
    """
    L = as_dense_matrix(L, "L")
    try:
        B_arr = np.asarray(B)
    except ValueError as exc:  # ragged sequences
        raise ValueError(f"B must be a numeric array: {exc}") from None
    vector = B_arr.ndim == 1
    B_mat = as_dense_matrix(B_arr[:, None] if vector else B_arr, "B", square=False)  # [n, k]
    if B_mat.shape[0] != L.shape[0]:
        raise ValueError(f"B must have {L.shape[0]} rows to match L, got shape {B_arr.shape}")
    X = core.linalg.solve_lower(L, B_mat, bool(transpose))  # [n, k]
    return X[:, 0] if vector else X

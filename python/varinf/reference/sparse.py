"""Sparse GPs in plain numpy/scipy, written as in the papers with full [m, n] matrices.

Kernel matrices come from the kernel objects (tested on their own against naive loops); the
rest is dense linear algebra. Shapes: n data, m inducing points, B a minibatch.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["sgpr_bound", "sgpr_upper_bound", "exact_lml"]

_LOG2PI = np.log(2 * np.pi)


def _chol(A):
    return scipy.linalg.cholesky(A, lower=True)


def _solve(L, B):
    return scipy.linalg.solve_triangular(L, B, lower=True)


def exact_lml(kernel, X, y, noise, mean=0.0):
    """GPML eq. 2.30 by a dense Cholesky of K + s2n I [n, n]."""
    L = _chol(kernel.K(X) + noise * np.eye(len(y)))  # [n, n]
    a = _solve(L, y - mean)  # [n]
    return -0.5 * a @ a - np.log(np.diag(L)).sum() - 0.5 * len(y) * _LOG2PI


def sgpr_bound(kernel, X, y, Z, noise, mean=0.0, jitter=1e-6):
    """Titsias (2009) eq. 9, as written in MATH.md section 4 (GPflow's SGPR.elbo)."""
    n, m = X.shape[0], Z.shape[0]
    r = y - mean  # [n]
    L = _chol(kernel.K(Z) + jitter * np.eye(m))  # [m, m]
    A = _solve(L, kernel.K(Z, X)) / np.sqrt(noise)  # [m, n]
    LB = _chol(np.eye(m) + A @ A.T)  # [m, m]
    c = _solve(LB, A @ r) / np.sqrt(noise)  # [m]
    return (-0.5 * n * (_LOG2PI + np.log(noise)) - np.log(np.diag(LB)).sum()
            - 0.5 * r @ r / noise + 0.5 * c @ c
            - 0.5 * (kernel.K_diag(X).sum() - noise * (A ** 2).sum()) / noise)


def sgpr_upper_bound(kernel, X, y, Z, noise, mean=0.0, jitter=1e-6):
    """Titsias (2014) upper bound on the LML, with the trace correction on the quadratic term
    (GPflow's SGPR.upper_bound)."""
    n, m = X.shape[0], Z.shape[0]
    r = y - mean  # [n]
    L = _chol(kernel.K(Z) + jitter * np.eye(m))  # [m, m]
    A = _solve(L, kernel.K(Z, X))  # [m, n]
    AAT = A @ A.T  # [m, m]
    LB = _chol(np.eye(m) + AAT / noise)
    corrected = noise + kernel.K_diag(X).sum() - (A ** 2).sum()
    LC = _chol(np.eye(m) + AAT / corrected)
    v = _solve(LC, A @ r) / corrected  # [m]
    return (-0.5 * n * (_LOG2PI + np.log(noise)) - np.log(np.diag(LB)).sum()
            - 0.5 * r @ r / corrected + 0.5 * v @ v)

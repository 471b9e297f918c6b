"""Sparse GPs in plain numpy/scipy, written as in the papers with full [m, n] matrices.

Kernel matrices come from the kernel objects (tested on their own against naive loops); the
rest is dense linear algebra. Shapes: n data, m inducing points, B a minibatch.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.stats

__all__ = ["sgpr_bound", "sgpr_upper_bound", "exact_lml", "svgp_predict_f", "svgp_kl", "svgp_elbo",
           "gaussian_variational_expectations", "sgpr_optimal_qu_whitened", "fitc_lml", "svgp_elbo_grad_se"]

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
    """Titsias (2009) eq. 9, as written in docs/math.md section 5 (GPflow's SGPR.elbo)."""
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


def gaussian_variational_expectations(y, mu, var, noise):
    """E_{N(f; mu, var)} log N(y; f, noise), elementwise (docs/math.md section 7)."""
    return -0.5 * (_LOG2PI + np.log(noise)) - 0.5 * ((y - mu) ** 2 + var) / noise


def svgp_predict_f(kernel, Z, q_mu, q_sqrt, X, whiten=True, mean=0.0, jitter=1e-6):
    """Latent mean and variance [B] of the SVGP at X (Hensman et al. 2013; docs/math.md section 7).
    q_sqrt is [m, m] lower triangular or [m] (diagonal)."""
    m = Z.shape[0]
    Lq = np.diag(q_sqrt) if q_sqrt.ndim == 1 else np.tril(q_sqrt)  # [m, m]
    L = _chol(kernel.K(Z) + jitter * np.eye(m))  # [m, m]
    A = _solve(L, kernel.K(Z, X))  # [m, B]
    G = A if whiten else scipy.linalg.solve_triangular(L.T, A, lower=False)  # [m, B]
    mu = G.T @ q_mu + mean  # [B]
    var = kernel.K_diag(X) - (A ** 2).sum(0) + ((Lq.T @ G) ** 2).sum(0)  # [B]
    return mu, var


def svgp_kl(kernel, Z, q_mu, q_sqrt, whiten=True, jitter=1e-6):
    """KL[N(q_mu, S) || N(0, I or Kuu)] with S = Lq Lq^T (docs/math.md section 7)."""
    m = Z.shape[0]
    Lq = np.diag(q_sqrt) if q_sqrt.ndim == 1 else np.tril(q_sqrt)  # [m, m]
    logdet_S = 2 * np.log(np.abs(np.diag(Lq))).sum()
    if whiten:
        return 0.5 * ((Lq ** 2).sum() + q_mu @ q_mu - m - logdet_S)
    L = _chol(kernel.K(Z) + jitter * np.eye(m))  # [m, m]
    V, a = _solve(L, Lq), _solve(L, q_mu)
    return 0.5 * ((V ** 2).sum() + a @ a - m + 2 * np.log(np.diag(L)).sum() - logdet_S)


def svgp_elbo(kernel, Z, q_mu, q_sqrt, X, y, num_data, noise=None, whiten=True, mean=0.0,
              jitter=1e-6, variational_expectations=None):
    """(num_data / B) sum_batch E[log p(y | f)] - KL. The likelihood is Gaussian with variance
    ``noise`` unless ``variational_expectations(y, mu, var) -> [B]`` is given."""
    mu, var = svgp_predict_f(kernel, Z, q_mu, q_sqrt, X, whiten, mean, jitter)
    if variational_expectations is None:
        ell = gaussian_variational_expectations(y, mu, var, noise)
    else:
        ell = variational_expectations(y, mu, var)
    return num_data / X.shape[0] * ell.sum() - svgp_kl(kernel, Z, q_mu, q_sqrt, whiten, jitter)


def sgpr_optimal_qu_whitened(kernel, X, y, Z, noise, mean=0.0, jitter=1e-6):
    """The optimal q(v) = N(q_mu, Lq Lq^T) of the whitened SVGP with a Gaussian likelihood
    (docs/math.md section 7): Sigma = (I + A A^T / s2)^-1, q_mu = Sigma A (y - mean) / s2."""
    m = Z.shape[0]
    L = _chol(kernel.K(Z) + jitter * np.eye(m))  # [m, m]
    A = _solve(L, kernel.K(Z, X))  # [m, n]
    Sigma = np.linalg.inv(np.eye(m) + A @ A.T / noise)  # [m, m]
    return Sigma @ A @ (y - mean) / noise, _chol(Sigma)


def fitc_lml(kernel, X, y, Z, noise, mean=0.0, jitter=1e-6):
    """Snelson & Ghahramani (2006): log N(y; mean, Qff + diag(Kff - Qff) + s2n I), dense [n, n]."""
    m = Z.shape[0]
    L = _chol(kernel.K(Z) + jitter * np.eye(m))  # [m, m]
    A = _solve(L, kernel.K(Z, X))  # [m, n]
    Q = A.T @ A  # [n, n]
    C = Q + np.diag(kernel.K_diag(X) - np.diag(Q) + noise)  # [n, n]
    return scipy.stats.multivariate_normal(np.full(len(y), mean), C).logpdf(y)


def _se(A, B, variance, lengthscales):
    """variance * exp(-|a - b|^2 / (2 l^2)) [len(A), len(B)] (docs/math.md section 1)."""
    As, Bs = A / lengthscales, B / lengthscales
    r2 = (As ** 2).sum(1)[:, None] + (Bs ** 2).sum(1)[None, :] - 2 * As @ Bs.T
    return variance * np.exp(-0.5 * np.maximum(r2, 0.0))


def _se_contract(Kbar, K, A, B, lengthscales):
    """sum Kbar * dK/dl [d] and sum Kbar * dK/dA [len(A), d] for K = SE(A, B)."""
    W = Kbar * K  # [a, b]
    l2 = lengthscales ** 2
    WB = W @ B  # [a, d]
    dl = ((W.sum(1) @ A ** 2) - 2 * (A * WB).sum(0) + (W.sum(0) @ B ** 2)) / (l2 * lengthscales)
    dA = (WB - W.sum(1)[:, None] * A) / l2
    return dl, dA


def svgp_elbo_grad_se(Z, q_mu, q_sqrt, variance, lengthscales, noise, X, y, num_data, jitter=1e-6):
    """The whitened SVGP ELBO with a squared-exponential (ARD) kernel, a Gaussian likelihood and
    a full lower-triangular q_sqrt on the batch (X, y), and its gradient with respect to every
    value: the numpy baseline of the benchmarks. The reverse pass is the one in svgp.cpp
    (docs/math.md sections 3 and 7), written with dense numpy products."""
    m, B = Z.shape[0], X.shape[0]
    scale = num_data / B
    Lq = np.tril(q_sqrt)  # [m, m]
    Kuu0 = _se(Z, Z, variance, lengthscales)  # [m, m]
    Kuf = _se(Z, X, variance, lengthscales)  # [m, B]
    L = _chol(Kuu0 + jitter * np.eye(m))
    A = _solve(L, Kuf)  # [m, B]
    T = Lq.T @ A  # [m, B]
    mu = A.T @ q_mu  # [B]
    var = variance - (A ** 2).sum(0) + (T ** 2).sum(0)  # [B]
    sq = (y - mu) ** 2 + var
    kl = 0.5 * ((Lq ** 2).sum() + q_mu @ q_mu - m - 2 * np.log(np.abs(np.diag(Lq))).sum())
    elbo = scale * (-0.5 * B * (_LOG2PI + np.log(noise)) - 0.5 * sq.sum() / noise) - kl
    gmu = scale * (y - mu) / noise  # [B]
    gv = np.full(B, -0.5 * scale / noise)  # [B]
    TD = T * gv  # [m, B]
    dLq = np.tril(2 * A @ TD.T - Lq) + np.diag(1 / np.diag(Lq))
    Abar = np.outer(q_mu, gmu) + 2 * Lq @ TD - 2 * A * gv  # [m, B]
    Kufbar = scipy.linalg.solve_triangular(L.T, Abar, lower=False)  # [m, B]
    Lbar = -np.tril(Kufbar @ A.T)  # [m, m]
    # Murray (2016): Kuubar = L^-T sym(Phi(L^T Lbar)) L^-1.
    P = np.tril(L.T @ Lbar)
    P[np.diag_indices(m)] *= 0.5
    S = 0.5 * (P + P.T)
    Kuubar = scipy.linalg.solve_triangular(L.T, scipy.linalg.solve_triangular(L.T, S, lower=False).T, lower=False)
    dl_f, dZ_f = _se_contract(Kufbar, Kuf, Z, X, lengthscales)
    dl_u, dZ_u = _se_contract(Kuubar, Kuu0, Z, Z, lengthscales)
    grads = {
        "variance": ((Kufbar * Kuf).sum() + (Kuubar * Kuu0).sum()) / variance + gv.sum(),
        "lengthscales": dl_f + dl_u,
        "noise": scale * (-0.5 * B / noise + 0.5 * sq.sum() / noise ** 2),
        "q_mu": A @ gmu - q_mu,
        "q_sqrt": dLq,
        "Z": dZ_f + 2 * dZ_u,
    }
    return elbo, grads

"""Exact GP regression in numpy + scipy (docs/math.md section 4; Rasmussen & Williams 2006, GPML).

The same model as ``varinf.GPR``: a reference kernel from ``varinf.reference.kernels``,
Gaussian noise, a zero or learned constant mean, and a ``fit`` that runs scipy's L-BFGS-B over
the same unconstrained parameters (``value = softplus(raw) + 1e-6``, docs/math.md section 2.1, in the
same order: kernel variance, lengthscales, noise variance, mean), so that timings compare like
with like.

    k = SquaredExponential(1.0, np.ones(d))
    m = GPR(X, y, k, noise_variance=0.1).fit()
    mean, var = m.predict_y(Xnew)
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
from scipy.linalg import cho_factor, cho_solve, solve_triangular

from .kernels import Stationary

__all__ = ["log_marginal_likelihood", "GPR"]

# Lower bound of every positive parameter (docs/math.md section 2.1).
LOWER = 1e-6


def softplus(x):
    return np.logaddexp(0.0, x)


def inverse_softplus(y):
    # log(exp(y) - 1) = y + log(1 - exp(-y)), stable for small and large y
    return y + np.log(-np.expm1(-y))


def sigmoid(x):
    # d softplus / dx
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def log_marginal_likelihood(kernel: Stationary, X, y, noise_variance: float, mean: float = 0.0,
                            return_grad: bool = False):
    """log p(y | X) and, with ``return_grad``, a dict of its gradients with respect to the
    parameter values: variance, lengthscales, noise_variance, mean."""
    X = np.asarray(X, dtype=np.float64)  # [n, d]
    y = np.asarray(y, dtype=np.float64).ravel()  # [n]
    n = y.size
    # GPML Alg. 2.1 line 2: L = chol(K + s2n I)
    Ky = kernel.K(X) + noise_variance * np.eye(n)  # [n, n]
    factor = cho_factor(Ky, lower=True)  # L [n, n] in the lower triangle of factor[0]
    L_diag = np.diag(factor[0])  # [n]
    # line 3: alpha = L^T \ (L \ (y - m))
    r = y - mean  # [n]
    alpha = cho_solve(factor, r)  # [n]
    # line 5 (eq. 2.30): log p(y|X) = -1/2 r^T alpha - sum log L_ii - n/2 log 2 pi
    lml = -0.5 * r @ alpha - np.sum(np.log(L_diag)) - 0.5 * n * np.log(2.0 * np.pi)
    if not return_grad:
        return float(lml)
    # eq. 5.9: dLML/dtheta = 1/2 tr((alpha alpha^T - Ky^-1) dKy/dtheta) = sum(Kbar * dKy/dtheta)
    Ky_inv = cho_solve(factor, np.eye(n))  # [n, n]
    Kbar = 0.5 * (np.outer(alpha, alpha) - Ky_inv)  # [n, n]
    dvariance, dlengthscales, _ = kernel.grad(X, X, Kbar, want_dX=False)
    grads = {
        "variance": dvariance,
        "lengthscales": dlengthscales,
        "noise_variance": float(np.trace(Kbar)),  # dKy/ds2n = I
        "mean": float(np.sum(alpha)),  # d/dm of -1/2 (y - m)^T Ky^-1 (y - m)
    }
    return float(lml), grads


class GPR:
    """Exact GP regression, the same model and parameterisation as ``varinf.GPR``.

    ``mean``: None / "zero" (no mean parameter), "constant" (learned, starts at mean(y)) or a
    number (learned, starts there).
    """

    def __init__(self, X, y, kernel: Stationary, noise_variance: float = 1.0, mean=None):
        self.X = np.asarray(X, dtype=np.float64)  # [n, d]
        self.y = np.asarray(y, dtype=np.float64).ravel()  # [n]
        self.kernel = kernel
        self.noise_variance = float(noise_variance)
        self.learn_mean = not (mean is None or (isinstance(mean, str) and mean == "zero"))
        if isinstance(mean, str) and mean == "constant":
            self.mean = float(np.mean(self.y))
        else:
            self.mean = float(mean) if self.learn_mean else 0.0

    # --- the unconstrained vector: [raw variance, raw lengthscales..., raw noise, (mean)] -----
    def _positive_values(self) -> np.ndarray:
        return np.concatenate([[self.kernel.variance], self.kernel.lengthscales.ravel(),
                               [self.noise_variance]])

    def get_raw(self) -> np.ndarray:
        raw = inverse_softplus(self._positive_values() - LOWER)
        return np.append(raw, self.mean) if self.learn_mean else raw

    def set_raw(self, x) -> None:
        p = self.kernel.lengthscales.size
        values = softplus(x[:p + 2]) + LOWER  # [variance, lengthscales..., noise]
        self.kernel.variance = float(values[0])
        self.kernel.lengthscales = values[1:p + 1].reshape(self.kernel.lengthscales.shape)
        self.noise_variance = float(values[p + 1])
        if self.learn_mean:
            self.mean = float(x[p + 2])

    def log_marginal_likelihood(self, return_grad: bool = False):
        """LML; with ``return_grad`` also its gradient with respect to ``get_raw()``."""
        out = log_marginal_likelihood(self.kernel, self.X, self.y, self.noise_variance,
                                      self.mean, return_grad)
        if not return_grad:
            return out
        lml, g = out
        grad_values = np.concatenate([[g["variance"]], np.ravel(g["lengthscales"]),
                                      [g["noise_variance"]]])
        raw = self.get_raw()
        # value = softplus(raw) + lower  =>  dL/draw = dL/dvalue * sigmoid(raw)
        grad = grad_values * sigmoid(raw[:grad_values.size])
        return lml, np.append(grad, g["mean"]) if self.learn_mean else grad

    def negative_objective(self, x):
        """(-LML, -gradient) at the unconstrained vector x (sets the parameters to x); (inf, 0)
        where K + noise I is not positive definite, so that a line search backs off."""
        self.set_raw(x)
        try:
            lml, grad = self.log_marginal_likelihood(return_grad=True)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros_like(x)
        return -lml, -grad

    def fit(self, max_iter: int = 1000):
        """Maximise the LML with scipy's L-BFGS-B (default tolerances, as varinf)."""
        result = scipy.optimize.minimize(self.negative_objective, self.get_raw(), jac=True,
                                         method="L-BFGS-B", options={"maxiter": int(max_iter)})
        self.set_raw(result.x)
        self.optimizer_result_ = result
        return self

    # --- prediction (GPML Alg. 2.1 lines 4 and 6) -------------------------------------------------
    def predict_f(self, Xnew, full_cov: bool = False):
        """Latent mean [n*] and variance [n*] (or covariance [n*, n*]) at Xnew [n*, d]."""
        Xnew = np.asarray(Xnew, dtype=np.float64)  # [n*, d]
        n = self.y.size
        L = np.linalg.cholesky(self.kernel.K(self.X) + self.noise_variance * np.eye(n))  # [n, n]
        alpha = cho_solve((L, True), self.y - self.mean)  # [n]
        Ks = self.kernel.K(self.X, Xnew)  # [n, n*]
        mean = Ks.T @ alpha + self.mean  # [n*]
        v = solve_triangular(L, Ks, lower=True)  # [n, n*], L^-1 K*
        if full_cov:
            return mean, self.kernel.K(Xnew) - v.T @ v  # [n*, n*]
        return mean, self.kernel.K_diag(Xnew) - np.sum(v ** 2, axis=0)  # [n*]

    def predict_y(self, Xnew, full_cov: bool = False):
        """Predictive mean and variance of noisy observations: var + noise_variance."""
        mean, var = self.predict_f(Xnew, full_cov)
        if full_cov:
            return mean, var + self.noise_variance * np.eye(var.shape[0])
        return mean, var + self.noise_variance

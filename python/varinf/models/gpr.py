"""Exact Gaussian-process regression (Rasmussen & Williams 2006, GPML Alg. 2.1 and eq. 5.9)."""

from __future__ import annotations

import warnings

import numpy as np

from .._loader import core as _core
from .._validation import as_positive_int
from ..kernels import Kernel
from ..linalg import JitterWarning
from ..optimize import maximize
from ..parameters import ParameterVector
from ._regression import GaussianRegression

__all__ = ["GPR"]


class GPR(GaussianRegression):
    """GP regression with Gaussian noise, exact inference by Cholesky.

    Parameters
    ----------
    X : array_like [n, d]
    y : array_like [n] (or [n, 1])
        X and y are copied: the model keeps read-only copies (``model.X``, ``model.y``), so
        editing the caller's arrays afterwards does not change it.
    kernel : varinf.kernels.Kernel
    noise_variance : float, the Gaussian noise variance (learned; > 1e-6)
    mean : None or "zero" (zero prior mean), "constant" (a learned constant starting at
        mean(y)) or a number (a learned constant starting there)

    The C++ core computes the log marginal likelihood and its gradient for every parameter in
    one call; ``fit`` maximises it with L-BFGS-B.
    """

    def __init__(self, X, y, kernel: Kernel, noise_variance: float = 1.0, mean=None):
        self._init_data(X, y, kernel, noise_variance, mean)
        self._factor = None
        self._factor_key = None

    # --- parameters ------------------------------------------------------------------------
    @property
    def parameters(self) -> list:
        """Every parameter, in gradient order: kernel, noise variance, mean (if any)."""
        return self.kernel.parameters + [self._noise] + ([self._mean] if self._mean else [])

    def __repr__(self):
        mean = f", mean={self.mean:.4g}" if self._mean is not None else ""
        return (f"GPR(n={self.X.shape[0]}, d={self.X.shape[1]}, kernel={self.kernel!r}, "
                f"noise_variance={self.noise_variance:.4g}{mean})")

    # --- objective ---------------------------------------------------------------------------
    def _args(self):
        return (self.kernel.core(), self.kernel.theta(), self.X, self.y, self.noise_variance, self.mean)

    def _lml_and_value_grad(self):
        lml, dtheta, dnoise, dmean, jitter = _core.gpr_lml_grad(*self._args())
        self._warn_jitter(jitter)
        grads = [dtheta, [dnoise]] + ([[dmean]] if self._mean is not None else [])
        return lml, np.concatenate(grads)

    def log_marginal_likelihood(self, return_grad: bool = False):
        """log p(y | X, theta) (GPML eq. 2.30); with ``return_grad`` also its gradient with
        respect to the unconstrained values of ``trainable_parameters``, in that order."""
        if not return_grad:
            return float(self._posterior().lml)
        lml, grad_values = self._lml_and_value_grad()
        return lml, ParameterVector(self.parameters).chain(grad_values)

    def fit(self, max_iter: int = 1000, progress: bool = False):
        """Maximise the log marginal likelihood over the trainable parameters (L-BFGS-B)."""
        max_iter = as_positive_int(max_iter, "max_iter")
        self.optimizer_result_ = maximize(self._lml_and_value_grad, ParameterVector(self.parameters),
                                          max_iter=max_iter, progress=progress,
                                          label="log marginal likelihood", per_datum=len(self.y))
        return self

    # --- predictions ---------------------------------------------------------------------------
    def _posterior(self):
        """The Cholesky factor at the current parameters (recomputed when they change)."""
        key = (self.kernel.theta().tobytes(), self.noise_variance, self.mean)
        if self._factor_key != key:
            self._factor = _core.gpr_factor(*self._args())
            self._factor_key = key
            self._warn_jitter(self._factor.jitter)
        return self._factor

    @staticmethod
    def _warn_jitter(jitter):
        if jitter > 0:
            warnings.warn(f"K(X, X) + noise_variance * I needed jitter {jitter:.3g} to factorise; "
                          "consider a larger noise variance", JitterWarning, stacklevel=3)

    def predict_f(self, Xnew, full_cov: bool = False):
        """Latent predictive mean [n*] and variance [n*] (or covariance [n*, n*])."""
        Xnew = self._new_inputs(Xnew)
        f = self._posterior()
        mean, var = _core.gpr_predict(*self._args(), f, Xnew, bool(full_cov))
        if not full_cov:
            np.maximum(var, 0.0, out=var)  # rounding can make a near-zero variance negative
        return mean, var

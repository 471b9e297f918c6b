"""Exact Gaussian-process regression (Rasmussen & Williams 2006, GPML Alg. 2.1 and eq. 5.9)."""

from __future__ import annotations

import warnings

import numpy as np

from .._loader import core as _core
from .._validation import as_matrix, as_positive_int, as_vector
from ..kernels import Kernel
from ..linalg import JitterWarning, cholesky
from ..optimize import maximize
from ..parameters import Parameter, ParameterVector
from ._common import NOISE_LOWER, gaussian_log_density, make_mean

__all__ = ["GPR"]


class GPR:
    """GP regression with Gaussian noise, exact inference by Cholesky.

    Parameters
    ----------
    X : array_like [n, d]
    y : array_like [n] (or [n, 1])
    kernel : varinf.kernels.Kernel
    noise_variance : float, the Gaussian noise variance (learned; > 1e-6)
    mean : None or "zero" (zero prior mean), "constant" (a learned constant starting at
        mean(y)) or a number (a learned constant starting there)

    The C++ core computes the log marginal likelihood and its gradient for every parameter in
    one call; ``fit`` maximises it with L-BFGS-B.
    """

    def __init__(self, X, y, kernel: Kernel, noise_variance: float = 1.0, mean=None):
        if not isinstance(kernel, Kernel):
            raise ValueError(f"kernel must be a varinf.kernels.Kernel, got {type(kernel).__name__}")
        self.X = as_matrix(X, "X")  # [n, d]
        self.y = as_vector(y, "y", n=self.X.shape[0])  # [n]
        kernel.check_input(self.X, "X")
        self.kernel = kernel
        self._noise = Parameter("noise_variance", noise_variance, lower=NOISE_LOWER)
        if self._noise.size != 1:
            raise ValueError("noise_variance must be a scalar")
        self._mean = make_mean(mean, self.y)
        self._factor = None
        self._factor_key = None

    # --- parameters ------------------------------------------------------------------------
    noise_variance = property(lambda self: float(self._noise.value),
                              lambda self, v: setattr(self._noise, "value", v))

    @property
    def mean(self) -> float:
        return 0.0 if self._mean is None else float(self._mean.value)

    @mean.setter
    def mean(self, value):
        if self._mean is None:
            raise ValueError("this model has a zero mean; create it with mean='constant'")
        self._mean.value = value

    @property
    def parameters(self) -> list:
        """Every parameter, in gradient order: kernel, noise variance, mean (if any)."""
        return self.kernel.parameters + [self._noise] + ([self._mean] if self._mean else [])

    @property
    def trainable_parameters(self) -> list:
        return ParameterVector(self.parameters).unique

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

    def _new_inputs(self, Xnew):
        Xnew = as_matrix(Xnew, "Xnew", d=self.X.shape[1])
        return Xnew

    def predict_f(self, Xnew, full_cov: bool = False):
        """Latent predictive mean [n*] and variance [n*] (or covariance [n*, n*])."""
        Xnew = self._new_inputs(Xnew)
        f = self._posterior()
        predict = _core.gpr_predict_cov if full_cov else _core.gpr_predict
        mean, var = predict(*self._args(), f, Xnew)
        if not full_cov:
            np.maximum(var, 0.0, out=var)  # rounding can make a near-zero variance negative
        return mean, var

    def predict_y(self, Xnew, full_cov: bool = False):
        """Predictive mean and variance of noisy observations y*."""
        mean, var = self.predict_f(Xnew, full_cov)
        if full_cov:
            var[np.diag_indices_from(var)] += self.noise_variance
        else:
            var += self.noise_variance
        return mean, var

    def predict_log_density(self, Xnew, ynew) -> np.ndarray:
        """log N(y*; mean, var + noise) for each test point [n*]."""
        Xnew = self._new_inputs(Xnew)
        ynew = as_vector(ynew, "ynew", n=Xnew.shape[0])
        mean, var = self.predict_y(Xnew)
        return gaussian_log_density(ynew, mean, var)

    def predict_f_samples(self, Xnew, num_samples: int = 1, seed=None) -> np.ndarray:
        """Joint samples of the latent function at Xnew: [num_samples, n*]."""
        num_samples = as_positive_int(num_samples, "num_samples")
        mean, cov = self.predict_f(Xnew, full_cov=True)
        L = cholesky(cov, jitter=1e-10 * max(1.0, float(np.mean(np.diag(cov)))),
                     name="the predictive covariance")  # [n*, n*]
        eps = np.random.default_rng(seed).standard_normal((num_samples, mean.size))
        return mean + eps @ L.T

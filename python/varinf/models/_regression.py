"""What GP regression models with Gaussian noise share (GPR, SGPR, FITC): the data, the
noise-variance and mean parameters, and everything predictions derive from ``predict_f``."""

from __future__ import annotations

import numpy as np

from .._errors import LinAlgError
from .._validation import as_matrix, as_positive_int, as_vector, owned
from ..kernels import Kernel
from ..linalg import cholesky
from ..parameters import Parameter, ParameterVector
from ._common import ConstantMean, NOISE_LOWER, Persistent, gaussian_log_density, make_mean

__all__ = ["GaussianRegression", "sample_joint"]


def sample_joint(mean, cov, num_samples, seed) -> np.ndarray:
    """Joint samples [num_samples, n*] of N(mean [n*], cov [n*, n*])."""
    if not np.all(np.isfinite(cov)):
        raise LinAlgError("Cholesky of the predictive covariance failed: it is not finite at Xnew "
                          "(the kernel overflows there); rescale the inputs")
    L = cholesky(cov, jitter=1e-10 * max(1.0, float(np.mean(np.diag(cov)))),
                 name="the predictive covariance")  # [n*, n*]
    eps = np.random.default_rng(seed).standard_normal((num_samples, mean.size))
    return mean + eps @ L.T


class GaussianRegression(ConstantMean, Persistent):
    """Base of the Gaussian-noise regression models. Subclasses define ``parameters`` and
    ``predict_f(Xnew, full_cov)``."""

    _caches = ("_factor", "_factor_key")  # the C++ factorisation, recomputed when needed

    def _init_data(self, X, y, kernel, noise_variance, mean):
        if not isinstance(kernel, Kernel):
            raise ValueError(f"kernel must be a varinf.kernels.Kernel, got {type(kernel).__name__}")
        # The model owns read-only copies: editing the caller's arrays later changes nothing.
        self.X = owned(as_matrix(X, "X", copy=True))  # [n, d]
        self.y = owned(as_vector(y, "y", n=self.X.shape[0], copy=True))  # [n]
        kernel.check_input(self.X, "X")
        self.kernel = kernel
        self._noise = Parameter("noise_variance", noise_variance, lower=NOISE_LOWER)
        if self._noise.size != 1:
            raise ValueError("noise_variance must be a scalar")
        self._mean = make_mean(mean, self.y)

    # --- parameters ------------------------------------------------------------------------
    noise_variance = property(lambda self: float(self._noise.value),
                              lambda self, v: setattr(self._noise, "value", v))

    @property
    def trainable_parameters(self) -> list:
        return ParameterVector(self.parameters).unique

    def _new_inputs(self, Xnew):
        return as_matrix(Xnew, "Xnew", d=self.X.shape[1])

    # --- predictions derived from predict_f ------------------------------------------------------
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
        return sample_joint(mean, cov, num_samples, seed)

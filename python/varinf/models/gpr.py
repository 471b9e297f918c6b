"""Exact Gaussian-process regression (Rasmussen & Williams 2006, GPML Alg. 2.1 and eq. 5.9;
docs/math.md section 4)."""

from __future__ import annotations

import warnings

import numpy as np

from .._loader import core as _core
from ..kernels import Kernel
from ..linalg import JitterWarning
from ..serialization import register
from ._regression import GaussianRegression

__all__ = ["GPR"]


@register
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

    _core_factor = staticmethod(_core.gp.gpr_factor)
    _core_predict = staticmethod(_core.gp.gpr_predict)  # GPML Alg. 2.1 lines 4-6, docs/math.md section 4.3
    _objective_field = "lml"
    _label = "log marginal likelihood"

    def __init__(self, X, y, kernel: Kernel, noise_variance: float = 1.0, mean=None):
        self._init_data(X, y, kernel, noise_variance, mean)

    @property
    def parameters(self) -> list:
        """Every parameter, in gradient order: kernel, noise variance, mean (if any)."""
        return self.kernel.parameters + self._own_parameters()

    # --- objective ---------------------------------------------------------------------------
    def _args(self):
        return (self.kernel.core(), self.kernel.theta(), self.X, self.y, self.noise_variance, self.mean)

    def _objective_and_value_grad(self):
        lml, dtheta, dnoise, dmean, jitter = _core.gp.gpr_lml_grad(*self._args())
        self._warn_jitter(jitter)
        grads = [dtheta, [dnoise]] + ([[dmean]] if self._mean is not None else [])
        return lml, np.concatenate(grads)

    def log_marginal_likelihood(self, return_grad: bool = False):
        """log p(y | X, theta) (GPML eq. 2.30, docs/math.md section 4.1); with ``return_grad``
        also its gradient (GPML eq. 5.9, section 4.2) with respect to the unconstrained values of
        ``trainable_parameters``, in that order."""
        return self._objective(return_grad)

    @staticmethod
    def _warn_jitter(jitter):
        if jitter > 0:
            warnings.warn(f"K(X, X) + noise_variance * I needed jitter {jitter:.3g} to factorise; "
                          "consider a larger noise variance", JitterWarning, stacklevel=3)

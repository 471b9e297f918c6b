"""Sparse GP regression with the collapsed variational bound of Titsias (2009) and FITC
(Snelson & Ghahramani 2006); docs/math.md sections 5 and 6."""

from __future__ import annotations

import numpy as np

from .._constants import KUU_JITTER
from .._loader import core as _core
from .._validation import as_matrix, is_integer
from ..inducing import inducing_points, kmeans_centres, warn_kuu_jitter
from ..kernels import Kernel
from ..parameters import Parameter
from ..serialization import config_value, register
from ._regression import GaussianRegression

# inducing_points and KUU_JITTER are read here too (vi.models.sgpr.inducing_points; tests patch
# KUU_JITTER in this module).
__all__ = ["SGPR", "FITC", "inducing_points", "KUU_JITTER"]


class _SparseRegression(GaussianRegression):
    """What SGPR and FITC share: inducing inputs Z, the blocked C++ objective with its gradient,
    L-BFGS-B, and the predictions (the same formulas with each model's factors).

    Parameters: see SGPR.
    """

    _core_objective = None  # set by subclasses: the C++ objective with its gradient
    _core_predict = staticmethod(_core.sparse.sgpr_predict)  # docs/math.md sections 5.6 and 6.4
    _objective_field = "bound"

    def __init__(self, X, y, kernel: Kernel, Z, noise_variance: float = 1.0, mean=None,
                 train_Z: bool = True):
        self._init_data(X, y, kernel, noise_variance, mean)
        if is_integer(Z):
            Z = kmeans_centres(self.X, Z, seed=0)
        Z = as_matrix(Z, "Z", d=self.X.shape[1])  # [m, d]
        self._Z = Parameter("Z", Z.ravel(), lower=None, trainable=train_Z)
        self._Z_shape = Z.shape

    # --- parameters ------------------------------------------------------------------------
    @property
    def Z(self) -> np.ndarray:
        """The inducing inputs [m, d] (a copy; assign to change them)."""
        return self._Z.value.reshape(self._Z_shape).copy()

    @Z.setter
    def Z(self, value):
        value = as_matrix(value, "Z", d=self.X.shape[1])
        if value.shape != self._Z_shape:
            raise ValueError(f"Z must keep its shape {self._Z_shape}, got {value.shape}")
        self._Z.value = value.ravel()

    @property
    def parameters(self) -> list:
        """Every parameter, in gradient order: kernel, noise variance, mean (if any), Z."""
        return self.kernel.parameters + self._own_parameters() + [self._Z]

    def _sizes(self) -> str:
        return f"n={self.X.shape[0]}, m={self._Z_shape[0]}, d={self.X.shape[1]}"

    # --- saving (varinf.serialization; the layout: GaussianRegression._save_state) -----------------
    def _save_state(self):
        config, arrays = super()._save_state()
        config["train_Z"] = self._Z.trainable
        arrays["Z"] = self.Z
        return config, arrays

    @classmethod
    def _saved_inducing(cls, config, arrays, d):
        return {"Z": arrays.take("Z", (None, d)), "train_Z": config_value(config, "train_Z", bool)}

    # --- objective ---------------------------------------------------------------------------
    def _args(self):
        return (self.kernel.core(), self.kernel.theta(), self.X, self.y, self.Z,
                self.noise_variance, self.mean, KUU_JITTER)

    def _objective_and_value_grad(self):
        bound, dtheta, dZ, dnoise, dmean, jitter = self._core_objective(*self._args())
        self._warn_jitter(jitter)
        grads = [dtheta, [dnoise]] + ([[dmean]] if self._mean is not None else []) + [dZ.ravel()]
        return bound, np.concatenate(grads)

    def _factor_depends_on(self) -> tuple:
        return super()._factor_depends_on() + (self._Z.value.tobytes(),)

    def _warn_jitter(self, jitter):
        warn_kuu_jitter(jitter, KUU_JITTER, stacklevel=3)

    def compute_qu(self):
        """The posterior of u = f(Z) given the data, N(mean [m], cov [m, m]) (for SGPR the
        optimal q(u), Titsias 2009 eq. 10; docs/math.md section 5.5)."""
        return _core.sparse.sgpr_qu(*self._args(), self._posterior())


@register
class SGPR(_SparseRegression):
    """Sparse GP regression with the collapsed bound of Titsias (2009): m inducing inputs Z
    summarise the data.

    Parameters
    ----------
    X, y, kernel : as for varinf.GPR (X [n, d] and y [n] are copied; the model keeps read-only copies)
    Z : array_like [m, d], the inducing inputs (learned by ``fit`` unless ``train_Z=False``),
        or an int m: k-means centres of X
    noise_variance, mean : as for varinf.GPR
    train_Z : bool, whether ``fit`` moves the inducing inputs

    The C++ core evaluates the objective and its gradient with respect to Z, the kernel
    parameters, the noise and the mean in one call, in blocks of data rows (memory
    O(m^2 + block m), never n x n); ``fit`` maximises it with L-BFGS-B.
    """

    _core_objective = staticmethod(_core.sparse.sgpr_bound_grad)
    _core_factor = staticmethod(_core.sparse.sgpr_factor)
    _label = "SGPR bound"

    def upper_bound(self) -> float:
        """Titsias (2014) upper bound on the log marginal likelihood: elbo() <= log p(y) <=
        upper_bound(), so the gap shows how good the inducing inputs are (docs/math.md
        section 5.4)."""
        return float(self._posterior().upper_bound)

    def elbo(self, return_grad: bool = False):
        """The collapsed evidence lower bound (Titsias 2009, eq. 9; docs/math.md section 5.2); with
        ``return_grad`` also its gradient (section 5.3) with respect to the unconstrained values of
        ``trainable_parameters``."""
        return self._objective(return_grad)


@register
class FITC(_SparseRegression):
    """The FITC approximation (Snelson & Ghahramani 2006; docs/math.md section 6.1):
    y ~ N(mean, Qff + Lambda) with Qff = Kfu Kuu^-1 Kuf [n, n] and the diagonal
    Lambda = diag(Kff - Qff) + noise_variance [n].
    Parameters as for SGPR; ``fit`` maximises the FITC log marginal likelihood.
    """

    _core_objective = staticmethod(_core.sparse.fitc_lml_grad)
    _core_factor = staticmethod(_core.sparse.fitc_factor)
    _label = "FITC log marginal likelihood"

    def log_marginal_likelihood(self, return_grad: bool = False):
        """log N(y; mean, Qff + Lambda) (Snelson & Ghahramani 2006; docs/math.md section 6.2); with
        ``return_grad`` also its gradient (section 6.3) with respect to the unconstrained values of
        ``trainable_parameters``."""
        return self._objective(return_grad)

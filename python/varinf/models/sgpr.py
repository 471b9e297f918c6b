"""Sparse GP regression with the collapsed variational bound of Titsias (2009)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.cluster.vq

from .._loader import core as _core
from .._validation import as_matrix, as_positive_int
from ..kernels import Kernel
from ..linalg import JitterWarning
from ..optimize import maximize
from ..parameters import Parameter, ParameterVector
from ._regression import GaussianRegression

__all__ = ["SGPR", "FITC", "inducing_points"]

# Jitter added to the diagonal of K(Z, Z) (docs/math.md section 3; GPflow's default).
KUU_JITTER = 1e-6

# k-means runs on at most this many rows of X.
_KMEANS_SAMPLE = 20000


def inducing_points(X, m: int, seed=None) -> np.ndarray:
    """m inducing inputs [m, d]: k-means centres (scipy's kmeans2, k-means++ start, seeded) of
    X or of a random sample of its rows (docs/math.md section 5.7)."""
    X = as_matrix(X, "X")
    m = as_positive_int(m, "m")
    if m > X.shape[0]:
        raise ValueError(f"m must be at most the number of rows of X ({X.shape[0]}), got {m}")
    rng = np.random.default_rng(seed)
    if X.shape[0] > _KMEANS_SAMPLE:
        X = X[rng.choice(X.shape[0], _KMEANS_SAMPLE, replace=False)]
    # k-means on X / max|X| (in [-1, 1]), then scaled back: squared distances between huge
    # inputs (~1e300) overflow to inf, on which scipy's kmeans2 raises IndexError or crashes.
    scale = float(np.max(np.abs(X))) or 1.0
    centres, _ = scipy.cluster.vq.kmeans2(X / scale, m, minit="++", seed=rng)
    return np.ascontiguousarray(centres * scale)


class _SparseRegression(GaussianRegression):
    """What SGPR and FITC share: inducing inputs Z, the blocked C++ objective with its gradient,
    L-BFGS-B, and the predictions (the same formulas with each model's factors).

    Parameters: see SGPR.
    """

    # Set by subclasses: the C++ functions and the objective's name.
    _core_objective = _core_factor = None
    _label = ""

    def __init__(self, X, y, kernel: Kernel, Z, noise_variance: float = 1.0, mean=None,
                 train_Z: bool = True):
        self._init_data(X, y, kernel, noise_variance, mean)
        if isinstance(Z, (int, np.integer)) and not isinstance(Z, (bool, np.bool_)):
            Z = inducing_points(self.X, Z, seed=0)
        Z = as_matrix(Z, "Z", d=self.X.shape[1])  # [m, d]
        self._Z = Parameter("Z", Z.ravel(), lower=None, trainable=train_Z)
        self._Z_shape = Z.shape
        self._factor = None
        self._factor_key = None

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
        return (self.kernel.parameters + [self._noise] + ([self._mean] if self._mean else [])
                + [self._Z])

    def __repr__(self):
        mean = f", mean={self.mean:.4g}" if self._mean is not None else ""
        return (f"{type(self).__name__}(n={self.X.shape[0]}, m={self._Z_shape[0]}, "
                f"d={self.X.shape[1]}, kernel={self.kernel!r}, "
                f"noise_variance={self.noise_variance:.4g}{mean})")

    # --- objective ---------------------------------------------------------------------------
    def _args(self):
        return (self.kernel.core(), self.kernel.theta(), self.X, self.y, self.Z,
                self.noise_variance, self.mean, KUU_JITTER)

    def _objective_and_value_grad(self):
        bound, dtheta, dZ, dnoise, dmean, jitter = self._core_objective(*self._args())
        self._warn_jitter(jitter)
        grads = [dtheta, [dnoise]] + ([[dmean]] if self._mean is not None else []) + [dZ.ravel()]
        return bound, np.concatenate(grads)

    def _objective(self, return_grad):
        if not return_grad:
            return float(self._posterior().bound)
        value, grad_values = self._objective_and_value_grad()
        return value, ParameterVector(self.parameters).chain(grad_values)

    def fit(self, max_iter: int = 1000, progress: bool = False):
        """Maximise the objective over the trainable parameters (L-BFGS-B, analytic gradient)."""
        max_iter = as_positive_int(max_iter, "max_iter")
        self.optimizer_result_ = maximize(self._objective_and_value_grad, ParameterVector(self.parameters),
                                          max_iter=max_iter, progress=progress, label=self._label,
                                          per_datum=len(self.y))
        return self

    # --- predictions ---------------------------------------------------------------------------
    def _posterior(self):
        """The factors at the current parameters (recomputed when they change)."""
        key = (self.kernel.theta().tobytes(), self.noise_variance, self.mean, self._Z.value.tobytes())
        if self._factor_key != key:
            self._factor = self._core_factor(*self._args())
            self._factor_key = key
            self._warn_jitter(self._factor.jitter)
        return self._factor

    @staticmethod
    def _warn_jitter(jitter):
        if jitter > KUU_JITTER:
            warnings.warn(f"K(Z, Z) needed jitter {jitter:.3g} to factorise; the inducing inputs "
                          "may be (nearly) duplicated", JitterWarning, stacklevel=3)

    def predict_f(self, Xnew, full_cov: bool = False):
        """Latent predictive mean [n*] and variance [n*] (or covariance [n*, n*])."""
        Xnew = self._new_inputs(Xnew)
        mean, var = _core.sgpr_predict(*self._args(), self._posterior(), Xnew, bool(full_cov))
        if not full_cov:
            np.maximum(var, 0.0, out=var)  # rounding can make a near-zero variance negative
        return mean, var

    def compute_qu(self):
        """The posterior of u = f(Z) given the data, N(mean [m], cov [m, m]) (for SGPR the
        optimal q(u), Titsias 2009 eq. 10)."""
        return _core.sgpr_qu(*self._args(), self._posterior())


class SGPR(_SparseRegression):
    """Sparse GP regression with the collapsed bound of Titsias (2009): m inducing inputs Z
    summarise the data.

    Parameters
    ----------
    X : array_like [n, d]
    y : array_like [n] (or [n, 1])
        X and y are copied: the model keeps read-only copies (``model.X``, ``model.y``), so
        editing the caller's arrays afterwards does not change it.
    kernel : varinf.kernels.Kernel
    Z : array_like [m, d], the inducing inputs (learned by ``fit`` unless ``train_Z=False``),
        or an int m: k-means centres of X
    noise_variance : float, the Gaussian noise variance (learned; > 1e-6)
    mean : None or "zero", "constant" (learned, starts at mean(y)) or a number
    train_Z : bool, whether ``fit`` moves the inducing inputs

    The C++ core evaluates the objective and its gradient with respect to Z, the kernel
    parameters, the noise and the mean in one call, in blocks of data rows (memory
    O(m^2 + block m), never n x n); ``fit`` maximises it with L-BFGS-B.
    """

    _core_objective = staticmethod(_core.sgpr_bound_grad)
    _core_factor = staticmethod(_core.sgpr_factor)
    _label = "SGPR bound"

    def elbo(self, return_grad: bool = False):
        """The collapsed evidence lower bound (Titsias 2009, eq. 9); with ``return_grad`` also
        its gradient with respect to the unconstrained values of ``trainable_parameters``."""
        return self._objective(return_grad)

    def upper_bound(self) -> float:
        """Titsias (2014) upper bound on the log marginal likelihood: elbo() <= log p(y) <=
        upper_bound(), so the gap shows how good the inducing inputs are."""
        return float(self._posterior().upper_bound)


class FITC(_SparseRegression):
    """The FITC approximation (Snelson & Ghahramani 2006): y ~ N(mean, Qff + Lambda) with
    Qff = Kfu Kuu^-1 Kuf and the diagonal Lambda = diag(Kff - Qff) + noise_variance.
    Parameters as for SGPR; ``fit`` maximises the FITC log marginal likelihood.
    """

    _core_objective = staticmethod(_core.fitc_lml_grad)
    _core_factor = staticmethod(_core.fitc_factor)
    _label = "FITC log marginal likelihood"

    def log_marginal_likelihood(self, return_grad: bool = False):
        """log N(y; mean, Qff + Lambda) (Snelson & Ghahramani 2006); with ``return_grad`` also
        its gradient with respect to the unconstrained values of ``trainable_parameters``."""
        return self._objective(return_grad)

"""Kernels (covariance functions) for varinf's Gaussian processes.

Every kernel here is a thin description over the C++ core: it holds its parameters (positive
values with a softplus transform, docs/math.md section 2.1) and, on demand, an immutable C++ kernel
structure. The C++ side computes ``K(X1, X2)``, ``K_diag(X)`` and the fused gradient
contractions; parameter values travel to it as one flat array ``theta``.

    k = vi.kernels.SquaredExponential(lengthscales=[1.0, 2.0]) + vi.kernels.White(0.1)
    K = k.K(X)          # [n, n]
    k.lengthscales      # read/set in constrained space (k.kernels[0].lengthscales for sums)
"""

from __future__ import annotations

import abc

import numpy as np

from ._loader import core as _core
from ._validation import as_matrix
from .parameters import Parameter

__all__ = [
    "Kernel", "SquaredExponential", "RBF", "Matern12", "Matern32", "Matern52",
    "RationalQuadratic", "Periodic", "Linear", "Constant", "White", "Sum", "Product",
]

# Lower bound of positive kernel parameters (docs/math.md section 2.1).
POSITIVE_LOWER = 1e-6


class Kernel(abc.ABC):
    """Base class. Subclasses list their parameters and build their C++ structure."""

    # numpy defers to Kernel's operators: kernel * array is a TypeError, not an array of kernels.
    __array_ufunc__ = None

    def __init__(self, active_dims=None):
        if active_dims is None:
            self.active_dims = None
        else:
            dims = np.atleast_1d(np.asarray(active_dims))
            if dims.ndim != 1 or dims.size == 0 or not np.issubdtype(dims.dtype, np.integer) \
                    or np.any(dims < 0) or len(set(dims.tolist())) != dims.size:
                raise ValueError(f"active_dims must be distinct non-negative integers, got {active_dims}")
            self.active_dims = [int(i) for i in dims]
        self._core_kernel = None

    # --- what subclasses provide -------------------------------------------------------
    @abc.abstractmethod
    def _own_parameters(self) -> list:
        """This kernel's parameters (children's included) in C++ theta order."""

    @abc.abstractmethod
    def _build(self):
        """The C++ kernel structure, without active_dims."""

    def _check_width(self, d: int, name: str) -> None:
        """Raise ValueError when inputs of width d (after active_dims) do not fit."""

    # --- shared machinery ----------------------------------------------------------------
    @property
    def parameters(self) -> list:
        """Every parameter in the order of the flat theta array the C++ core reads."""
        return self._own_parameters()

    @property
    def trainable_parameters(self) -> list:
        return [p for p in self.parameters if p.trainable]

    def theta(self) -> np.ndarray:
        """Constrained parameter values, flattened in C++ order."""
        params = self.parameters
        if not params:
            return np.zeros(0)
        return np.concatenate([p.value.ravel() for p in params])

    def core(self):
        """The immutable C++ kernel structure (built once)."""
        if self._core_kernel is None:
            built = self._build()
            if self.active_dims is not None:
                built = _core.active_dims(built, self.active_dims)
            self._core_kernel = built
        return self._core_kernel

    def __getstate__(self):
        # The C++ structure cannot be pickled or deep-copied; core() rebuilds it.
        return {**self.__dict__, "_core_kernel": None}

    def check_input(self, X, name: str = "X") -> None:
        """Raise ValueError naming ``name`` when X's columns do not fit this kernel."""
        d = X.shape[1]
        if self.active_dims is not None:
            if max(self.active_dims) >= d:
                raise ValueError(f"{name} has {d} columns but active_dims asks for column "
                                 f"{max(self.active_dims)}")
            d = len(self.active_dims)
        self._check_width(d, name)

    def K(self, X, X2=None) -> np.ndarray:
        """K(X, X2) [n1, n2]; with X2 None, the symmetric K(X, X) (White noise included)."""
        X = as_matrix(X, "X")
        self.check_input(X, "X")
        if X2 is None:
            return self.core().K_sym(self.theta(), X)
        X2 = as_matrix(X2, "X2", d=X.shape[1])
        return self.core().K(self.theta(), X, X2)

    def K_diag(self, X) -> np.ndarray:
        """diag K(X, X) [n]."""
        X = as_matrix(X, "X")
        self.check_input(X, "X")
        return self.core().K_diag(self.theta(), X)

    def __add__(self, other):
        if not isinstance(other, Kernel):
            return NotImplemented
        return Sum([self, other])

    def __mul__(self, other):
        if isinstance(other, Kernel):
            return Product([self, other])
        if np.isscalar(other) and np.isreal(other):
            return Product([Constant(variance=float(other)), self])
        return NotImplemented

    __rmul__ = __mul__

    def __repr__(self):
        parts = [repr(p) for p in self._own_parameters()]
        if self.active_dims is not None:
            parts.append(f"active_dims={self.active_dims}")
        return f"{type(self).__name__}({', '.join(parts)})"


def _positive(name, value, trainable=True):
    return Parameter(name, value, lower=POSITIVE_LOWER, trainable=trainable)


class _Stationary(Kernel):
    """k = variance * f(r2), r2 = sum_k (x_k - x'_k)^2 / l_k^2. One lengthscale or one per
    input dimension (ARD)."""

    _factory = None  # the C++ constructor

    def __init__(self, variance=1.0, lengthscales=1.0, active_dims=None):
        super().__init__(active_dims)
        self._variance = _positive("variance", variance)
        self._lengthscales = _positive("lengthscales", lengthscales)
        if self._variance.size != 1:
            raise ValueError("variance must be a scalar")

    variance = property(lambda self: self._variance.value,
                        lambda self, v: setattr(self._variance, "value", v))
    lengthscales = property(lambda self: self._lengthscales.value,
                            lambda self, v: setattr(self._lengthscales, "value", v))

    def _own_parameters(self):
        return [self._variance, self._lengthscales]

    def _build(self):
        return type(self)._factory(self._lengthscales.size)

    def _check_width(self, d, name):
        L = self._lengthscales.size
        if L != 1 and L != d:
            raise ValueError(f"{name} has {d} (active) columns but the kernel has {L} lengthscales")


class SquaredExponential(_Stationary):
    """Squared exponential (RBF): variance * exp(-r2 / 2)."""
    _factory = staticmethod(_core.squared_exponential)


RBF = SquaredExponential


class Matern12(_Stationary):
    """Matern 1/2 (exponential): variance * exp(-r)."""
    _factory = staticmethod(_core.matern12)


class Matern32(_Stationary):
    """Matern 3/2: variance * (1 + sqrt3 r) exp(-sqrt3 r)."""
    _factory = staticmethod(_core.matern32)


class Matern52(_Stationary):
    """Matern 5/2: variance * (1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r)."""
    _factory = staticmethod(_core.matern52)


class RationalQuadratic(_Stationary):
    """Rational quadratic: variance * (1 + r2 / (2 alpha))^-alpha."""
    _factory = staticmethod(_core.rational_quadratic)

    def __init__(self, variance=1.0, lengthscales=1.0, alpha=1.0, active_dims=None):
        super().__init__(variance, lengthscales, active_dims)
        self._alpha = _positive("alpha", alpha)
        if self._alpha.size != 1:
            raise ValueError("alpha must be a scalar")

    alpha = property(lambda self: self._alpha.value, lambda self, v: setattr(self._alpha, "value", v))

    def _own_parameters(self):
        return [self._variance, self._lengthscales, self._alpha]


class Periodic(_Stationary):
    """Periodic (exp-sine-squared): variance * exp(-2 sum_k sin^2(pi (x_k - x'_k) / period) / l_k^2)."""
    _factory = staticmethod(_core.periodic)

    def __init__(self, variance=1.0, lengthscales=1.0, period=1.0, active_dims=None):
        super().__init__(variance, lengthscales, active_dims)
        self._period = _positive("period", period)
        if self._period.size != 1:
            raise ValueError("period must be a scalar")

    period = property(lambda self: self._period.value, lambda self, v: setattr(self._period, "value", v))

    def _own_parameters(self):
        return [self._variance, self._lengthscales, self._period]


class Linear(Kernel):
    """Linear: sum_k variance_k x_k x'_k (one shared variance or one per input dimension)."""

    def __init__(self, variance=1.0, active_dims=None):
        super().__init__(active_dims)
        self._variance = _positive("variance", variance)

    variance = property(lambda self: self._variance.value,
                        lambda self, v: setattr(self._variance, "value", v))

    def _own_parameters(self):
        return [self._variance]

    def _build(self):
        return _core.linear(self._variance.size)

    def _check_width(self, d, name):
        if self._variance.size not in (1, d):
            raise ValueError(f"{name} has {d} (active) columns but the kernel has "
                             f"{self._variance.size} variances")


class _Scalar(Kernel):
    """A kernel with one positive variance."""

    _factory = None

    def __init__(self, variance=1.0, active_dims=None):
        super().__init__(active_dims)
        self._variance = _positive("variance", variance)
        if self._variance.size != 1:
            raise ValueError("variance must be a scalar")

    variance = property(lambda self: self._variance.value,
                        lambda self, v: setattr(self._variance, "value", v))

    def _own_parameters(self):
        return [self._variance]

    def _build(self):
        return type(self)._factory()


class Constant(_Scalar):
    """Constant: variance everywhere."""
    _factory = staticmethod(_core.constant)


class White(_Scalar):
    """White noise: variance on the diagonal of K(X, X); zero between different inputs."""
    _factory = staticmethod(_core.white)


class _Combination(Kernel):
    _factory = None

    def __init__(self, kernels):
        super().__init__(None)
        flat = []
        for k in kernels:
            if not isinstance(k, Kernel):
                raise ValueError(f"kernels must be Kernel objects, got {type(k).__name__}")
            # (k1 + k2) + k3 is one sum of three kernels (likewise products).
            flat.extend(k.kernels if type(k) is type(self) else [k])
        self.kernels = flat

    def _own_parameters(self):
        return [p for k in self.kernels for p in k.parameters]

    def _build(self):
        return type(self)._factory([k.core() for k in self.kernels])

    def check_input(self, X, name="X"):
        for k in self.kernels:
            k.check_input(X, name)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(repr(k) for k in self.kernels)})"


class Sum(_Combination):
    """k1 + k2 + ..."""
    _factory = staticmethod(_core.sum)


class Product(_Combination):
    """k1 * k2 * ... (elementwise)."""
    _factory = staticmethod(_core.product)

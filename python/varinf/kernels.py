"""Kernels (covariance functions) for varinf's Gaussian processes.

Every kernel here is a thin description over the C++ core: it holds its parameters (positive
values with a softplus transform, docs/math.md section 2.1) and, on demand, an immutable C++ kernel
structure. The C++ side computes ``K(X1, X2)``, ``K_diag(X)`` and the fused gradient
contractions (docs/math.md section 1); parameter values travel to it as one flat array ``theta``
(section 1.1). Each kernel saves and loads itself (``_save_state`` / ``_from_state``, registered
with varinf.serialization).

    k = vi.kernels.SquaredExponential(lengthscales=[1.0, 2.0]) + vi.kernels.White(0.1)
    K = k.K(X)          # [n, n]
    k.lengthscales      # read/set in constrained space (k.kernels[0].lengthscales for sums)
"""

from __future__ import annotations

import abc

import numpy as np

from ._loader import core as _core
from ._validation import as_matrix
from .parameters import Parameter, distinct
from .serialization import (
    FormatError,
    config_value,
    dump_component,
    load_component,
    parameter_arrays,
    register,
    restore_trainable,
    save_parameters,
)

__all__ = [
    "Kernel", "SquaredExponential", "RBF", "Matern12", "Matern32", "Matern52",
    "RationalQuadratic", "Periodic", "Linear", "Constant", "White", "Sum", "Product",
    "SeparateIndependent", "LinearCoregionalization",
]

# Lower bound of positive kernel parameters (docs/math.md section 2.1).
POSITIVE_LOWER = 1e-6


class Kernel(abc.ABC):
    """Base class. Subclasses list their parameters and build their C++ structure."""

    # numpy defers to Kernel's operators: kernel * array is a TypeError, not an array of kernels.
    __array_ufunc__ = None

    # The constructor's parameter arguments, which are also the Parameter names (for loading).
    _param_names: tuple = ()

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
                built = _core.kernels.active_dims(built, self.active_dims)
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

    # --- saving (varinf.serialization) ------------------------------------------------------
    def _save_state(self):
        """config ``{"active_dims": [...] or null, "trainable": {name: bool}}``; arrays: each
        parameter's value under its name (``variance``, ``lengthscales``, ...)."""
        trainable, values = save_parameters(self.parameters)
        return {"active_dims": self.active_dims, "trainable": trainable}, values

    @classmethod
    def _from_state(cls, config, arrays):
        active = config.get("active_dims")
        if active is not None and not (isinstance(active, list) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in active)):
            raise FormatError(f"active_dims must be a list of integers, got {active!r}")
        kernel = cls(**parameter_arrays(arrays, cls._param_names), active_dims=active)
        restore_trainable(kernel.parameters, config_value(config, "trainable", dict))
        return kernel

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


def _positive(name: str, value, scalar: bool = False) -> Parameter:
    """A positive kernel parameter (docs/math.md section 2.1); with ``scalar``, one value only."""
    param = Parameter(name, value, lower=POSITIVE_LOWER)
    if scalar and param.size != 1:
        raise ValueError(f"{name} must be a scalar")
    return param


def _value_of(attr: str) -> property:
    """A property that reads and sets the value of the Parameter ``self.<attr>``."""
    return property(lambda self: getattr(self, attr).value,
                    lambda self, value: setattr(getattr(self, attr), "value", value))


class _Stationary(Kernel):
    """A kernel of x - x' with a variance and lengthscales: one lengthscale, or one per input
    dimension (ARD). The subclasses other than Periodic are ``variance * f(r2)`` with
    r2 = sum_k (x_k - x'_k)^2 / l_k^2 (docs/math.md section 1.2); Periodic has the same
    parameters (and a period) but a function of sin^2(pi (x_k - x'_k) / period) (section 1.3)."""

    _factory = None  # the C++ constructor
    _param_names = ("variance", "lengthscales")

    def __init__(self, variance=1.0, lengthscales=1.0, active_dims=None):
        super().__init__(active_dims)
        self._variance = _positive("variance", variance, scalar=True)
        self._lengthscales = _positive("lengthscales", lengthscales)

    variance = _value_of("_variance")
    lengthscales = _value_of("_lengthscales")

    def _own_parameters(self):
        return [self._variance, self._lengthscales]

    def _build(self):
        return type(self)._factory(self._lengthscales.size)

    def _check_width(self, d, name):
        L = self._lengthscales.size
        if L != 1 and L != d:
            raise ValueError(f"{name} has {d} (active) columns but the kernel has {L} lengthscales")


@register
class SquaredExponential(_Stationary):
    """Squared exponential (RBF): variance * exp(-r2 / 2) (GPML eq. 4.9)."""
    _factory = staticmethod(_core.kernels.squared_exponential)


RBF = SquaredExponential


@register
class Matern12(_Stationary):
    """Matern 1/2 (exponential): variance * exp(-r) (GPML section 4.2.1)."""
    _factory = staticmethod(_core.kernels.matern12)


@register
class Matern32(_Stationary):
    """Matern 3/2: variance * (1 + sqrt3 r) exp(-sqrt3 r) (GPML eq. 4.17)."""
    _factory = staticmethod(_core.kernels.matern32)


@register
class Matern52(_Stationary):
    """Matern 5/2: variance * (1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r) (GPML eq. 4.17)."""
    _factory = staticmethod(_core.kernels.matern52)


@register
class RationalQuadratic(_Stationary):
    """Rational quadratic: variance * (1 + r2 / (2 alpha))^-alpha (GPML eq. 4.19)."""
    _factory = staticmethod(_core.kernels.rational_quadratic)
    _param_names = ("variance", "lengthscales", "alpha")

    def __init__(self, variance=1.0, lengthscales=1.0, alpha=1.0, active_dims=None):
        super().__init__(variance, lengthscales, active_dims)
        self._alpha = _positive("alpha", alpha, scalar=True)

    alpha = _value_of("_alpha")

    def _own_parameters(self):
        return super()._own_parameters() + [self._alpha]


@register
class Periodic(_Stationary):
    """Periodic (exp-sine-squared; MacKay 1998): variance * exp(-2 sum_k sin^2(pi (x_k - x'_k) / period) / l_k^2)
    (docs/math.md section 1.3). Not a function of r2: it shares only the parameters of _Stationary."""
    _factory = staticmethod(_core.kernels.periodic)
    _param_names = ("variance", "lengthscales", "period")

    def __init__(self, variance=1.0, lengthscales=1.0, period=1.0, active_dims=None):
        super().__init__(variance, lengthscales, active_dims)
        self._period = _positive("period", period, scalar=True)

    period = _value_of("_period")

    def _own_parameters(self):
        return super()._own_parameters() + [self._period]


@register
class Linear(Kernel):
    """Linear: sum_k variance_k x_k x'_k (one shared variance or one per input dimension;
    docs/math.md section 1.3)."""

    _param_names = ("variance",)

    def __init__(self, variance=1.0, active_dims=None):
        super().__init__(active_dims)
        self._variance = _positive("variance", variance)

    variance = _value_of("_variance")

    def _own_parameters(self):
        return [self._variance]

    def _build(self):
        return _core.kernels.linear(self._variance.size)

    def _check_width(self, d, name):
        if self._variance.size not in (1, d):
            raise ValueError(f"{name} has {d} (active) columns but the kernel has "
                             f"{self._variance.size} variances")


class _Scalar(Kernel):
    """A kernel with one positive variance."""

    _factory = None
    _param_names = ("variance",)

    def __init__(self, variance=1.0, active_dims=None):
        super().__init__(active_dims)
        self._variance = _positive("variance", variance, scalar=True)

    variance = _value_of("_variance")

    def _own_parameters(self):
        return [self._variance]

    def _build(self):
        return type(self)._factory()


@register
class Constant(_Scalar):
    """Constant: variance everywhere."""
    _factory = staticmethod(_core.kernels.constant)


@register
class White(_Scalar):
    """White noise: variance on the diagonal of K(X, X); zero between different inputs."""
    _factory = staticmethod(_core.kernels.white)


class _Combination(Kernel):
    """A sum or product of kernels (docs/math.md section 1.4)."""

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

    def _save_state(self):
        """config ``{"children": [{"class", "config"}, ...]}``; the arrays of child i under ``i/``."""
        arrays, children = {}, []
        for i, child in enumerate(self.kernels):
            spec, child_arrays = dump_component(child, f"{i}/")
            children.append(spec)
            arrays.update(child_arrays)
        return {"children": children}, arrays

    @classmethod
    def _from_state(cls, config, arrays):
        children = config_value(config, "children", list)
        if len(children) < 1:
            raise FormatError(f"a {cls.__name__} needs children")
        return cls([load_component(c, arrays, f"{i}/", Kernel) for i, c in enumerate(children)])


@register
class Sum(_Combination):
    """k1 + k2 + ..."""
    _factory = staticmethod(_core.kernels.sum)


@register
class Product(_Combination):
    """k1 * k2 * ... (elementwise)."""
    _factory = staticmethod(_core.kernels.product)


# --- several latent GPs (docs/math.md section 11.1) -------------------------------------------------
class _LatentKernels:
    """One kernel per latent GP of an SVGP with several (not a Kernel: it has no K of its own).
    The same kernel object may appear several times: its parameters are then shared, and the
    latent GPs that share it and the inducing inputs share one K(Z, Z) and K(Z, X)."""

    def __init__(self, kernels):
        kernels = list(kernels) if isinstance(kernels, (list, tuple)) else None
        if not kernels or not all(isinstance(k, Kernel) for k in kernels):
            raise ValueError("kernels must be a non-empty list of varinf.kernels.Kernel objects")
        self.kernels = kernels

    @property
    def num_latent_gps(self) -> int:
        return len(self.kernels)

    @property
    def parameters(self) -> list:
        """Every distinct parameter: the kernels' (then W's, for coregionalisation)."""
        return distinct(self.value_parameters())

    def value_parameters(self) -> list:
        """The parameters latent GP by latent GP (then W's), a shared one once per latent GP that
        reads it: the order of a gradient computed per latent GP."""
        return [p for k in self.kernels for p in k.parameters] + self._own_parameters()

    def _own_parameters(self) -> list:
        return []

    def check_input(self, X, name: str = "X") -> None:
        for k in self.kernels:
            k.check_input(X, name)

    def __repr__(self):
        return f"{type(self).__name__}([{', '.join(repr(k) for k in self.kernels)}])"

    def _save_state(self):
        """config ``{"children": [{"class", "config"}, ...], "shared": [i, ...]}``: child i's arrays
        under ``i/``; ``shared[i]`` is the index of the first child that is the same object."""
        arrays, children, shared = {}, [], []
        for i, child in enumerate(self.kernels):
            first = next(j for j, k in enumerate(self.kernels) if k is child)
            shared.append(first)
            spec, child_arrays = dump_component(child, f"{i}/") if first == i else ({}, {})
            children.append(spec)
            arrays.update(child_arrays)
        return {"children": children, "shared": shared}, arrays

    @classmethod
    def _children(cls, config, arrays) -> list:
        children = config_value(config, "children", list)
        shared = config_value(config, "shared", list)
        if not children or len(shared) != len(children):
            raise FormatError(f"a {cls.__name__} needs children, one 'shared' entry each")
        kernels = []
        for i, (spec, first) in enumerate(zip(children, shared)):
            if not isinstance(first, int) or isinstance(first, bool) or not 0 <= first <= i:
                raise FormatError(f"'shared' entry {i} must be an index at most {i}, got {first!r}")
            kernels.append(kernels[first] if first < i else load_component(spec, arrays, f"{i}/", Kernel))
        return kernels


@register
class SeparateIndependent(_LatentKernels):
    """Independent latent GPs, latent GP l with kernel ``kernels[l]`` (GPflow's
    SeparateIndependent)."""

    @classmethod
    def _from_state(cls, config, arrays):
        return cls(cls._children(config, arrays))


@register
class LinearCoregionalization(_LatentKernels):
    """P outputs g = W f mixing L independent latent GPs f_l with kernels ``kernels[l]``, W [P, L]
    learned (GPflow's LinearCoregionalization; Alvarez, Rosasco & Lawrence 2012; docs/math.md
    section 11.1)."""

    def __init__(self, kernels, W):
        super().__init__(kernels)
        W = as_matrix(W, "W")
        if W.shape[1] != len(self.kernels):
            raise ValueError(f"W must be [P, {len(self.kernels)}] (one column per kernel), got {W.shape}")
        self._W_shape = W.shape
        self._W = Parameter("W", W.ravel(), lower=None)

    @property
    def num_outputs(self) -> int:
        return self._W_shape[0]

    @property
    def W(self) -> np.ndarray:
        """The mixing matrix [P, L] (a copy)."""
        return self._W.value.reshape(self._W_shape).copy()

    @W.setter
    def W(self, value):
        value = as_matrix(value, "W")
        if value.shape != self._W_shape:
            raise ValueError(f"W must keep its shape {self._W_shape}, got {value.shape}")
        self._W.value = value.ravel()

    def _own_parameters(self):
        return [self._W]

    def _save_state(self):
        """As SeparateIndependent's, and the array ``W`` [P, L] with its ``trainable`` flag."""
        config, arrays = super()._save_state()
        config["trainable"] = {"W": self._W.trainable}
        arrays["W"] = self.W
        return config, arrays

    @classmethod
    def _from_state(cls, config, arrays):
        kernels = cls._children(config, arrays)
        model = cls(kernels, arrays.take("W", (None, len(kernels))))
        restore_trainable([model._W], config_value(config, "trainable", dict))
        return model

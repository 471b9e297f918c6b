"""Likelihoods p(y | f) for the SVGP (docs/math.md section 7).

Each likelihood holds its parameters (like a kernel) and an immutable C++ structure that gives
the variational expectation E_{N(f; mu, var)}[log p(y | f)] with its derivatives, the
predictive moments of y and the predictive log density. Each likelihood saves and loads
itself (``_save_state`` / ``_from_state``, registered with varinf.serialization).

    lik = vi.likelihoods.Gaussian(variance=0.1)
"""

from __future__ import annotations

import abc

import numpy as np

from ._constants import NOISE_LOWER
from ._loader import core as _core
from ._validation import as_finite_float, as_positive_int, as_vector
from .parameters import Parameter
from .serialization import config_value, parameter_arrays, register, restore_trainable, save_parameters

__all__ = ["Likelihood", "Gaussian", "Bernoulli", "Poisson", "StudentT"]


class Likelihood(abc.ABC):
    """Base class: parameters in C++ theta order, the C++ structure, target checks."""

    # The constructor's parameter arguments, which are also the Parameter names (for loading).
    _param_names: tuple = ()

    def __init__(self):
        self._core_likelihood = None

    @property
    @abc.abstractmethod
    def parameters(self) -> list:
        """Parameters in the order of the flat theta array the C++ core reads."""

    @abc.abstractmethod
    def _build(self):
        """The C++ likelihood structure."""

    def core(self):
        if self._core_likelihood is None:
            self._core_likelihood = self._build()
        return self._core_likelihood

    def __getstate__(self):
        # The C++ structure cannot be pickled or deep-copied; core() rebuilds it.
        return {**self.__dict__, "_core_likelihood": None}

    def theta(self) -> np.ndarray:
        params = self.parameters
        return np.concatenate([p.value.ravel() for p in params]) if params else np.zeros(0)

    def check_targets(self, y, name: str = "y", n: int | None = None) -> np.ndarray:
        """y as a float64 [n] array; ValueError naming ``name`` when it is not valid data."""
        return as_vector(y, name, n=n)

    # --- evaluations (arrays [k]): validated here, trusted in the _private versions models call --
    @staticmethod
    def _check_var(var, n):
        var = as_vector(var, "var", n=n)
        if np.any(var < 0):
            raise ValueError("var must be non-negative (a variance)")
        return var

    def variational_expectations(self, y, mu, var):
        """(sum_i E[log p(y_i | f)], d/dmu [k], d/dvar [k], d/dtheta summed over i) for y, mu
        and var [k] (docs/math.md section 7.6)."""
        y = self.check_targets(y)
        result = self.core().variational_expectations(self.theta(), y, as_vector(mu, "mu", n=y.size),
                                                      self._check_var(var, y.size))
        if not all(np.all(np.isfinite(r)) for r in result):
            raise ValueError("the variational expectation or its gradient overflows for these y, mu and var: "
                             "they are too large for float64 (rescale the data)")
        return result

    def predict_mean_and_var(self, mu, var):
        """Mean and variance of y [k] when f ~ N(mu, var) (docs/math.md section 7.9)."""
        mu = as_vector(mu, "mu")
        return self._predict_mean_and_var(mu, self._check_var(var, mu.size))

    def predict_log_density(self, y, mu, var) -> np.ndarray:
        """log int p(y | f) N(f; mu, var) df [k] (docs/math.md section 7.9)."""
        y = self.check_targets(y)
        return self._predict_log_density(y, as_vector(mu, "mu", n=y.size), self._check_var(var, y.size))

    def _predict_mean_and_var(self, mu, var):
        return self.core().predict_mean_and_var(self.theta(), mu, var)

    def _predict_log_density(self, y, mu, var):
        return self.core().predict_log_density(self.theta(), y, mu, var)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(repr(p) for p in self.parameters)})"

    # --- saving (varinf.serialization) ------------------------------------------------------
    def _settings(self) -> dict:
        """The constructor's arguments that are not parameters."""
        return {}

    def _save_state(self):
        """config ``{"settings": {"quadrature_points", "df" (StudentT)}, "trainable": {name:
        bool}}``; arrays: each parameter's value under its name."""
        trainable, values = save_parameters(self.parameters)
        return {"settings": self._settings(), "trainable": trainable}, values

    @classmethod
    def _from_state(cls, config, arrays):
        settings = config_value(config, "settings", dict)
        kinds = {"quadrature_points": int, "df": (int, float)}
        kwargs = {key: config_value(settings, key, kinds.get(key, object)) for key in settings}
        likelihood = cls(**parameter_arrays(arrays, cls._param_names), **kwargs)
        restore_trainable(likelihood.parameters, config_value(config, "trainable", dict))
        return likelihood


@register
class Gaussian(Likelihood):
    """y = f + noise, noise ~ N(0, variance) (docs/math.md section 7.6)."""

    _param_names = ("variance",)

    def __init__(self, variance: float = 1.0):
        super().__init__()
        self._variance = Parameter("variance", variance, lower=NOISE_LOWER)
        if self._variance.size != 1:
            raise ValueError("variance must be a scalar")

    variance = property(lambda self: float(self._variance.value),
                        lambda self, v: setattr(self._variance, "value", v))

    @property
    def parameters(self):
        return [self._variance]

    def _build(self):
        return _core.sparse.gaussian_likelihood()


# Gauss-Hermite points for the quadrature likelihoods (docs/math.md section 7.7: GPflow, GPy and
# GPyTorch all use 20). The rule's nodes come from an eigendecomposition of a [points, points]
# matrix, so the count is capped.
QUADRATURE_POINTS = 20
MAX_QUADRATURE_POINTS = 1000


class _ParameterFree(Likelihood):
    """A likelihood without parameters, evaluated by Gauss-Hermite quadrature where needed."""

    def __init__(self, quadrature_points: int = QUADRATURE_POINTS):
        super().__init__()
        self.quadrature_points = as_positive_int(quadrature_points, "quadrature_points", maximum=MAX_QUADRATURE_POINTS)

    @property
    def parameters(self):
        return []

    def _settings(self):
        return {"quadrature_points": self.quadrature_points}


@register
class Bernoulli(_ParameterFree):
    """Binary y in {0, 1} with p(y = 1 | f) = Phi(f) (probit link; docs/math.md sections 7.6
    and 7.8). ``predict_y`` gives p(y* = 1)."""

    def _build(self):
        return _core.sparse.bernoulli_probit_likelihood(self.quadrature_points)

    def check_targets(self, y, name="y", n=None):
        y = as_vector(y, name, n=n)
        if not np.all((y == 0) | (y == 1)):
            raise ValueError(f"{name} must hold labels 0 or 1 for a Bernoulli likelihood, got "
                             f"{np.unique(y[(y != 0) & (y != 1)])[:5]}")
        return y


@register
class Poisson(_ParameterFree):
    """Counts y in {0, 1, 2, ...} with rate exp(f) (docs/math.md section 7.6). ``predict_y``
    gives the rate's mean."""

    def _build(self):
        return _core.sparse.poisson_likelihood(self.quadrature_points)

    def check_targets(self, y, name="y", n=None):
        y = as_vector(y, name, n=n)
        bad = (y < 0) | (y != np.round(y))
        if np.any(bad):
            raise ValueError(f"{name} must hold non-negative integer counts for a Poisson likelihood, "
                             f"got {np.unique(y[bad])[:5]}")
        return y


@register
class StudentT(Likelihood):
    """y = f + scale * t_df noise (heavy tails; docs/math.md section 7.6); ``df`` fixed,
    ``scale`` learned."""

    _param_names = ("scale",)

    def __init__(self, scale: float = 1.0, df: float = 3.0, quadrature_points: int = QUADRATURE_POINTS):
        super().__init__()
        self._scale = Parameter("scale", scale, lower=NOISE_LOWER)
        if self._scale.size != 1:
            raise ValueError("scale must be a scalar")
        self.df = as_finite_float(df, "df", lower=0.0)
        self.quadrature_points = as_positive_int(quadrature_points, "quadrature_points", maximum=MAX_QUADRATURE_POINTS)

    scale = property(lambda self: float(self._scale.value), lambda self, v: setattr(self._scale, "value", v))

    @property
    def parameters(self):
        return [self._scale]

    def _build(self):
        return _core.sparse.student_t_likelihood(self.df, self.quadrature_points)

    def _settings(self):
        return {"quadrature_points": self.quadrature_points, "df": self.df}

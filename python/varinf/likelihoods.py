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
from ._validation import as_finite_float, as_matrix, as_positive_int, as_vector
from .parameters import Parameter
from .serialization import config_value, parameter_arrays, register, restore_trainable, save_parameters

__all__ = ["Likelihood", "Gaussian", "Bernoulli", "Poisson", "StudentT", "RobustMax", "Softmax",
           "HeteroskedasticGaussian"]


class Likelihood(abc.ABC):
    """Base class: parameters in C++ theta order, the C++ structure, target checks."""

    # The constructor's parameter arguments, which are also the Parameter names (for loading).
    _param_names: tuple = ()
    # How many latent functions one row's y depends on: None for a pointwise likelihood (one
    # per output column, each y_ip on its own f_ip), else that number (docs/math.md section 11).
    latent_dim: int | None = None

    def __init__(self):
        self._core_likelihood = None
        self._latent_cores = {}

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
        # The C++ structures cannot be pickled or deep-copied; core() rebuilds them.
        return {**self.__dict__, "_core_likelihood": None, "_latent_cores": {}}

    def latent_core(self, columns: int):
        """The C++ view the SVGP evaluates (latent_likelihoods.hpp): a pointwise likelihood on
        ``columns`` independent outputs, each with its own parameters when they have one entry
        per output (docs/math.md section 11.2)."""
        if columns not in self._latent_cores:
            self._latent_cores[columns] = _core.sparse.columns_likelihood(self.core(), columns, self._outputs > 1)
        return self._latent_cores[columns]

    def check_latent(self, columns: int) -> None:
        """ValueError unless the model feeds this likelihood ``columns`` latent functions."""
        if self._outputs not in (1, columns):
            raise ValueError(f"the likelihood's parameters have {self._outputs} entries (one per output) but the "
                             f"model has {columns} output(s)")

    def check_outputs(self, y, name: str, n: int | None, columns: int) -> np.ndarray:
        """y for ``columns`` outputs: [n] for one, [n, columns] for several; each entry checked
        by check_targets."""
        if columns == 1:
            return self.check_targets(y, name, n=n)
        Y = as_matrix(y, name)
        if Y.shape[1] != columns or (n is not None and Y.shape[0] != n):
            want = f"[{n if n is not None else 'n'}, {columns}]"
            raise ValueError(f"{name} must have shape {want} (one column per output), got {Y.shape}")
        self.check_targets(Y.ravel(), name)
        return Y

    def theta(self) -> np.ndarray:
        params = self.parameters
        return np.concatenate([p.value.ravel() for p in params]) if params else np.zeros(0)

    def check_targets(self, y, name: str = "y", n: int | None = None) -> np.ndarray:
        """y as a float64 [n] array; ValueError naming ``name`` when it is not valid data."""
        return as_vector(y, name, n=n)

    # --- evaluations (arrays [k], or [k, P] with one parameter value per output): validated
    # here, trusted in the _private versions models call --
    @staticmethod
    def _check_var(var, n):
        var = as_vector(var, "var", n=n)
        if np.any(var < 0):
            raise ValueError("var must be non-negative (a variance)")
        return var

    @property
    def _outputs(self) -> int:
        """P when the parameters have one value per output, else 1."""
        sizes = {p.size for p in self.parameters} - {1}
        return sizes.pop() if sizes else 1

    def _columns(self, mu, var, n):
        """mu, var [k, P] for a likelihood with P > 1 outputs."""
        P = self._outputs
        mu, var = as_matrix(mu, "mu"), as_matrix(var, "var")
        if mu.shape[1] != P or var.shape != mu.shape or (n is not None and mu.shape[0] != n):
            raise ValueError(f"mu and var must be [k, {P}] (one column per output), got {mu.shape} and {var.shape}")
        if np.any(var < 0):
            raise ValueError("var must be non-negative (a variance)")
        return mu, var

    def variational_expectations(self, y, mu, var):
        """(sum_i E[log p(y_i | f)], d/dmu [k], d/dvar [k], d/dtheta summed over i) for y, mu
        and var [k] (docs/math.md section 7.6); [k, P] each with one parameter value per output."""
        if self._outputs > 1:
            y = self.check_outputs(y, "y", None, self._outputs)
            result = self.latent_core(self._outputs).variational_expectations(
                self.theta(), y, *self._columns(mu, var, y.shape[0]))
        else:
            y = self.check_targets(y)
            result = self.core().variational_expectations(self.theta(), y, as_vector(mu, "mu", n=y.size),
                                                          self._check_var(var, y.size))
        if not all(np.all(np.isfinite(r)) for r in result):
            raise ValueError("the variational expectation or its gradient overflows for these y, mu and var: "
                             "they are too large for float64 (rescale the data)")
        return result

    def predict_mean_and_var(self, mu, var):
        """Mean and variance of y [k] (or [k, P]) when f ~ N(mu, var) (docs/math.md section 7.9)."""
        if self._outputs > 1:
            return self.latent_core(self._outputs).predict_mean_and_var(self.theta(), *self._columns(mu, var, None))
        mu = as_vector(mu, "mu")
        return self._predict_mean_and_var(mu, self._check_var(var, mu.size))

    def predict_log_density(self, y, mu, var) -> np.ndarray:
        """log int p(y | f) N(f; mu, var) df [k] (docs/math.md section 7.9), summed over the outputs
        of a row."""
        if self._outputs > 1:
            y = self.check_outputs(y, "y", None, self._outputs)
            return self.latent_core(self._outputs).predict_log_density(
                self.theta(), y, *self._columns(mu, var, y.shape[0]))
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
        kinds = {"quadrature_points": int, "df": (int, float), "num_classes": int, "epsilon": (int, float),
                 "num_samples": int, "seed": int}
        kwargs = {key: config_value(settings, key, kinds.get(key, object)) for key in settings}
        likelihood = cls(**parameter_arrays(arrays, cls._param_names), **kwargs)
        restore_trainable(likelihood.parameters, config_value(config, "trainable", dict))
        return likelihood


@register
class Gaussian(Likelihood):
    """y = f + noise, noise ~ N(0, variance) (docs/math.md section 7.6). For a model with P
    outputs, ``variance`` is one number shared by the outputs or P numbers, one per output."""

    _param_names = ("variance",)

    def __init__(self, variance=1.0):
        super().__init__()
        self._variance = Parameter("variance", variance, lower=NOISE_LOWER)

    variance = property(lambda self: float(self._variance.value) if self._variance.size == 1
                        else self._variance.value.copy(),
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


# --- likelihoods over several latent functions per row (docs/math.md sections 11.3-11.5) ----------
class _Coupled(Likelihood):
    """A likelihood whose y_i depends on ``latent_dim`` latent functions together; its C++
    structure is already the SVGP's view, and its targets are one column."""

    @property
    def parameters(self):
        return []

    def latent_core(self, columns: int):
        return self.core()

    def check_latent(self, columns: int) -> None:
        if columns != self.latent_dim:
            raise ValueError(f"a {type(self).__name__} likelihood reads {self.latent_dim} latent GPs, but the model "
                             f"has {columns} (set num_latent_gps={self.latent_dim}, or the kernel's)")

    def check_outputs(self, y, name: str, n: int | None, columns: int) -> np.ndarray:
        return self.check_targets(y, name, n=n)

    def _matrix_call(self, method, *arrays):
        return getattr(self.core(), method)(np.zeros(0), *arrays)

    def variational_expectations(self, y, mu, var):
        """(sum_i E[log p(y_i | f_i)], d/dmu [k, L], d/dvar [k, L], d/dtheta) for y [k] and
        mu, var [k, L]."""
        y = self.check_targets(y)
        mu, var = self._latent_moments(mu, var, y.size)
        return self._matrix_call("variational_expectations", y, mu, var)

    def predict_mean_and_var(self, mu, var):
        """Mean and variance of y (class probabilities for classifiers) [k, outputs] for mu,
        var [k, L]."""
        mu, var = self._latent_moments(mu, var, None)
        return self._predict_mean_and_var(mu, var)

    def predict_log_density(self, y, mu, var) -> np.ndarray:
        y = self.check_targets(y)
        mu, var = self._latent_moments(mu, var, y.size)
        return self._predict_log_density(y, mu, var)

    def _predict_mean_and_var(self, mu, var):
        return self._matrix_call("predict_mean_and_var", mu, var)

    def _predict_log_density(self, y, mu, var):
        return self._matrix_call("predict_log_density", y, mu, var)

    def _latent_moments(self, mu, var, n):
        mu = as_matrix(mu, "mu")
        var = as_matrix(var, "var")
        if mu.shape[1] != self.latent_dim or var.shape != mu.shape or (n is not None and mu.shape[0] != n):
            raise ValueError(f"mu and var must be [{n if n is not None else 'k'}, {self.latent_dim}], "
                             f"got {mu.shape} and {var.shape}")
        if np.any(var < 0):
            raise ValueError("var must be non-negative (a variance)")
        return mu, var


class _Classes(_Coupled):
    """Labels 0..K-1, one latent GP per class."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = as_positive_int(num_classes, "num_classes", minimum=2)

    @property
    def latent_dim(self):
        return self.num_classes

    def check_targets(self, y, name="y", n=None):
        y = as_vector(y, name, n=n)
        bad = (y < 0) | (y >= self.num_classes) | (y != np.round(y))
        if np.any(bad):
            raise ValueError(f"{name} must hold class labels 0..{self.num_classes - 1}, got {np.unique(y[bad])[:5]}")
        return y


@register
class RobustMax(_Classes):
    """Multi-class: p(y = k | f) = 1 - epsilon if k = argmax f, else epsilon / (K - 1)
    (Hernandez-Lobato et al. 2011; GPflow's MultiClass), by one-dimensional Gauss-Hermite
    quadrature (docs/math.md section 11.3). ``predict_y`` gives the class probabilities."""

    def __init__(self, num_classes: int, epsilon: float = 1e-3, quadrature_points: int = QUADRATURE_POINTS):
        super().__init__(num_classes)
        self.epsilon = as_finite_float(epsilon, "epsilon", lower=0.0, upper=1.0)
        if not 0.0 < self.epsilon < 1.0:
            raise ValueError(f"epsilon must be in (0, 1), got {epsilon}")
        self.quadrature_points = as_positive_int(quadrature_points, "quadrature_points", maximum=MAX_QUADRATURE_POINTS)

    def _build(self):
        return _core.sparse.robustmax_likelihood(self.num_classes, self.epsilon, self.quadrature_points)

    def _settings(self):
        return {"num_classes": self.num_classes, "epsilon": self.epsilon, "quadrature_points": self.quadrature_points}

    def __repr__(self):
        return f"RobustMax(num_classes={self.num_classes}, epsilon={self.epsilon:g})"


# Monte Carlo samples per row for Softmax: between GPyTorch's default (num_likelihood_samples, 10)
# and GPflow's (num_monte_carlo_points, 100).
SOFTMAX_SAMPLES = 15


@register
class Softmax(_Classes):
    """Multi-class: p(y = k | f) = softmax(f)_k, its expectation by ``num_samples``
    reparameterised Monte Carlo samples per row, drawn from ``seed`` and the row's place in its
    batch (docs/math.md section 11.4). ``predict_y`` gives the class probabilities."""

    def __init__(self, num_classes: int, num_samples: int = SOFTMAX_SAMPLES, seed: int = 0):
        super().__init__(num_classes)
        self.num_samples = as_positive_int(num_samples, "num_samples", maximum=100000)
        self.seed = as_positive_int(seed, "seed", minimum=0, maximum=2 ** 63 - 1)

    def _build(self):
        return _core.sparse.softmax_likelihood(self.num_classes, self.num_samples, self.seed)

    def _settings(self):
        return {"num_classes": self.num_classes, "num_samples": self.num_samples, "seed": self.seed}

    def __repr__(self):
        return f"Softmax(num_classes={self.num_classes}, num_samples={self.num_samples})"


@register
class HeteroskedasticGaussian(_Coupled):
    """y = f_0 + noise, noise ~ N(0, exp(f_1)): two latent GPs, the mean and the log noise
    variance, with a closed-form variational expectation (Lazaro-Gredilla & Titsias 2011; Saul et
    al. 2016; docs/math.md section 11.5). ``predict_y`` gives y's mean and variance."""

    latent_dim = 2

    def __init__(self, quadrature_points: int = QUADRATURE_POINTS):
        super().__init__()
        self.quadrature_points = as_positive_int(quadrature_points, "quadrature_points", maximum=MAX_QUADRATURE_POINTS)

    def _build(self):
        return _core.sparse.heteroskedastic_gaussian_likelihood(self.quadrature_points)

    def _settings(self):
        return {"quadrature_points": self.quadrature_points}

    def __repr__(self):
        return "HeteroskedasticGaussian()"

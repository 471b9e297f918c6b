"""scikit-learn estimators over varinf's models.

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    import varinf as vi
    model = make_pipeline(StandardScaler(), vi.GPRegressor(normalize_y=True)).fit(X, y)
    mean, std = model.predict(X_test, return_std=True)

Each estimator follows scikit-learn's contract: ``__init__`` only stores its parameters,
``fit`` validates the data with ``validate_data``, builds and trains a fresh varinf model
(``model_``) and returns self; fitted attributes end in ``_``. The user's kernel is never
changed: ``fit`` trains a copy, ``kernel_``. ``vi.save(estimator, path)`` / ``vi.load(path)`` store
an estimator (fitted or not) with its model (varinf._estimator_state); pickle works too.

Regressors predict noisy targets y*: ``predict(X, return_std=True)`` gives the standard
deviation of y* (latent variance plus the learned noise variance), as scikit-learn's
GaussianProcessRegressor does with a ``WhiteKernel`` in its kernel.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import scipy.special

try:
    from sklearn.base import (
        BaseEstimator,
        ClassifierMixin,
        ClassNamePrefixFeaturesOutMixin,
        RegressorMixin,
        TransformerMixin,
    )
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_array, check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn is an optional dependency
    raise ImportError('varinf.estimators needs scikit-learn >= 1.6: pip install "varinf[sklearn]"') from exc

from ._estimator_state import SaveableEstimator
from ._validation import as_choice, as_positive_int
from .inducing import METHODS, inducing_points
from .kernels import Kernel, LinearCoregionalization, SeparateIndependent, SquaredExponential
from .likelihoods import Bernoulli, Gaussian, RobustMax, Softmax
from .models import GPR, SGPR, SVGP, VAE
from .models._regression import sample_joint
from .serialization import FormatError, register

__all__ = ["GPRegressor", "SGPRRegressor", "SVGPClassifier", "SVGPRegressor", "VAETransformer"]


def _seed(random_state) -> int:
    """An int seed for varinf's models from a scikit-learn random_state (None, int, RandomState)."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def _location_scale(values):
    """Means and standard deviations of the columns of ``values`` [n, ...] (1 where a column is
    constant), computed on values / max|values| so that squaring cannot overflow (docs/math.md
    section 4.4)."""
    peak = np.max(np.abs(values), axis=0)
    peak = np.where(peak > 0, peak, 1.0)
    unit = values / peak
    std = peak * np.std(unit, axis=0)
    return peak * np.mean(unit, axis=0), np.where(std > 0, std, 1.0)


# Predictive variances and the noise come back in y's units multiplied by y_train_std_**2 (as in
# scikit-learn's GaussianProcessRegressor), so that square must be a normal, finite float64.
_Y_STD_RANGE = (math.sqrt(np.finfo(np.float64).tiny), math.sqrt(np.finfo(np.float64).max))


def _y_std_in_range(std: float) -> bool:
    return _Y_STD_RANGE[0] <= std <= _Y_STD_RANGE[1]


def _kernels_in(kernel):
    """The kernel and every kernel it combines."""
    yield kernel
    for child in getattr(kernel, "kernels", ()):
        yield from _kernels_in(child)


def copy_kernel(kernel: Kernel) -> Kernel:
    """A deep copy of ``kernel`` that builds its own C++ structure when first used: a built
    structure is mapped to None in deepcopy's memo, so copying works whether or not the
    compiled objects can be copied."""
    memo = {id(k._core_kernel): None for k in _kernels_in(kernel)
            if getattr(k, "_core_kernel", None) is not None}
    return copy.deepcopy(kernel, memo)


def _optimize(model, max_iter) -> int:
    """Fit ``model`` with L-BFGS-B for at most max_iter iterations (0: not at all); the iterations run."""
    if max_iter == 0:
        return 0
    return int(model.fit(max_iter=as_positive_int(max_iter, "max_iter")).optimizer_result_.nit)


class _GPEstimator(SaveableEstimator, BaseEstimator):
    """What the GP estimators share: the kernel (default or a copy of the user's) and the
    optional standardisation of the inputs."""

    def _kernel_for(self, d: int) -> Kernel:
        """The kernel to train: ``kernel`` copied, or an ARD squared exponential over d inputs."""
        if self.kernel is None:
            return SquaredExponential(variance=1.0, lengthscales=np.ones(d))
        if not isinstance(self.kernel, Kernel):
            raise ValueError(  # noqa: TRY004 (scikit-learn expects ValueError for bad parameters)
                f"kernel must be None or a varinf.kernels.Kernel, got {type(self.kernel).__name__}")
        return copy_kernel(self.kernel)

    @property
    def kernel_(self) -> Kernel:
        """The trained kernel: a copy of ``kernel`` (or the default), the model's own."""
        return self.model_.kernel

    def _fit_inputs(self, X) -> np.ndarray:
        """Validated training inputs [n, d], standardised when ``normalize_X``."""
        if self.normalize_X:
            self.X_mean_, self.X_scale_ = self._scales(X)  # [d], [d]
        return self._inputs(X)

    @staticmethod
    def _scales(values) -> tuple:
        """Column means and scales of ``values`` (varinf.dask's estimators compute them with dask)."""
        return _location_scale(values)

    def _inputs(self, X) -> np.ndarray:
        return (X - self.X_mean_) / self.X_scale_ if self.normalize_X else X

    def _new_inputs(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self._inputs(validate_data(self, X, reset=False, dtype=np.float64))

    def _restore_fitted(self, fitted) -> int:
        d = super()._restore_fitted(fitted)
        if self.normalize_X:
            fitted.array("X_mean_", (d,))
            fitted.array("X_scale_", (d,), positive=True)
        return d


class _GaussianGPRegressor(RegressorMixin, _GPEstimator):
    """What the three regressors share: target normalisation, predictions with std / cov
    un-normalised, samples. Subclasses define ``_build(X, y, kernel)`` (a trained model)."""

    # Whether y may be [n, P] (several outputs).
    _MULTI_OUTPUT = False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = self._MULTI_OUTPUT
        return tags

    def fit(self, X, y):
        """Fit the model to X [n, d] and y [n] (or [n, P] where several outputs are supported);
        returns self."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=self._MULTI_OUTPUT)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"y must hold numbers (regression targets), got an array of dtype {y.dtype}")
        return self._fit_rows(X, y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y)

    def _fit_rows(self, X, y):
        """Normalise, build and train on validated X [n, d] and y [n] or [n, P] (numpy, or dask
        arrays for varinf.dask's estimators)."""
        mean, std = (np.zeros(y.shape[1:]), np.ones(y.shape[1:]))
        if self.normalize_y:
            mean, std = (np.asarray(v, dtype=np.float64) for v in self._scales(y))
        if not np.all([_y_std_in_range(s) for s in np.ravel(std)]):
            raise ValueError(f"y has standard deviation {np.ravel(std)[0] if std.ndim == 0 else std}: normalize_y "
                             f"needs one in [{_Y_STD_RANGE[0]:.3g}, {_Y_STD_RANGE[1]:.3g}], where its square (the "
                             "scale of the predictive variances) is a finite float64; rescale y")
        X = self._fit_inputs(X)
        self.y_train_mean_, self.y_train_std_ = (float(mean), float(std)) if y.ndim == 1 else (mean, std)
        self.model_ = self._build(X, (y - mean) / std, self._kernel_for(X.shape[1]))
        # The noise variance in the units of y.
        self.noise_variance_ = self._noise * std ** 2
        return self

    def _restore_fitted(self, fitted) -> int:
        d = super()._restore_fitted(fitted)
        if getattr(self.model_, "_single", True):
            mean = fitted.number("y_train_mean_")
            std = fitted.number("y_train_std_", minimum=0, above=True)
            noise = fitted.number("noise_variance_")
        else:  # one entry per output
            P = self.model_.num_outputs
            mean = fitted.array("y_train_mean_", (P,))
            std = fitted.array("y_train_std_", (P,), positive=True)
            noise = fitted.array("noise_variance_", (P,), positive=True)
        unscaled = np.all(mean == 0.0) and np.all(std == 1.0)
        if not all(_y_std_in_range(s) for s in np.ravel(std)) or (not self.normalize_y and not unscaled):
            raise FormatError(f"y_train_mean_ {mean} and y_train_std_ {std} are invalid with "
                              f"normalize_y={self.normalize_y}")
        if not np.allclose(noise, self._noise * std ** 2, rtol=1e-12, atol=0.0):
            raise FormatError(f"noise_variance_ {noise} is not the model's noise in the units of y")
        return d

    def predict(self, X, return_std: bool = False, return_cov: bool = False):
        """Predictive mean of y* [n*]; with ``return_std`` also its standard deviation [n*], with
        ``return_cov`` its covariance [n*, n*] (noise included, in the units of y)."""
        if return_std and return_cov:
            raise RuntimeError("At most one of return_std or return_cov can be requested.")
        X = self._new_inputs(X)
        if return_cov and np.ndim(self.y_train_std_):
            raise ValueError("return_cov is for one output; with several use return_std")
        mean, var = self.model_.predict_f(X, full_cov=return_cov)  # [n*] (or [n*, P]), [n*] or [n*, n*]
        mean = mean * self.y_train_std_ + self.y_train_mean_
        if return_cov:
            var[np.diag_indices_from(var)] += self._noise
            return mean, var * self.y_train_std_ ** 2
        if return_std:
            return mean, np.sqrt(var + self._noise) * self.y_train_std_
        return mean

    @property
    def _noise(self) -> float:
        """The model's Gaussian noise variance (of the normalised targets)."""
        return self.model_.noise_variance

    def sample_y(self, X, n_samples: int = 1, random_state=0) -> np.ndarray:
        """Joint samples of y* at X, [n*, n_samples] (as GaussianProcessRegressor.sample_y)."""
        n_samples = as_positive_int(n_samples, "n_samples")
        if np.ndim(self.y_train_std_):
            raise ValueError("sample_y is for one output; with several sample the model_'s predict_f_samples")
        mean, cov = self.predict(X, return_cov=True)
        return sample_joint(mean, cov, n_samples, _seed(random_state)).T  # [n*, n_samples]


@register
class GPRegressor(_GaussianGPRegressor):
    """Exact GP regression (varinf.GPR) as a scikit-learn regressor.

    Parameters
    ----------
    kernel : varinf.kernels.Kernel or None. None: SquaredExponential with one lengthscale per
        feature (all 1.0) and variance 1.0. The kernel is copied at fit (``kernel_``).
    noise_variance : initial Gaussian noise variance (learned), in the units of the
        normalised targets when ``normalize_y``.
    normalize_y : subtract the mean of y and divide by its standard deviation before fitting
        (predictions are transformed back), as in GaussianProcessRegressor.
    normalize_X : standardise every input column (its lengthscales are then in standard deviations).
    max_iter : L-BFGS-B iterations; 0 keeps the initial hyperparameters.

    Fitted attributes: ``model_`` (the varinf.GPR), ``kernel_``, ``n_iter_`` (L-BFGS-B iterations),
    ``noise_variance_`` (in the units of y), ``log_marginal_likelihood_value_`` (of the normalised
    targets, as scikit-learn),
    ``y_train_mean_``, ``y_train_std_``, ``X_mean_`` and ``X_scale_`` (with ``normalize_X``).
    """

    def __init__(self, kernel=None, noise_variance=1.0, normalize_y=False, normalize_X=False, max_iter=1000):
        self.kernel = kernel
        self.noise_variance = noise_variance
        self.normalize_y = normalize_y
        self.normalize_X = normalize_X
        self.max_iter = max_iter

    _MODEL = GPR
    _FITTED_NUMBERS = {"n_iter_": (int, 0), "log_marginal_likelihood_value_": (float, None)}

    def _build(self, X, y, kernel):
        model = GPR(X, y, kernel, noise_variance=self.noise_variance)
        self.n_iter_ = _optimize(model, self.max_iter)
        self.log_marginal_likelihood_value_ = model.log_marginal_likelihood()
        return model


@register
class SGPRRegressor(_GaussianGPRegressor):
    """Sparse GP regression with the collapsed bound of Titsias 2009 (varinf.SGPR).

    Parameters as GPRegressor, and
    n_inducing : number of inducing inputs (at most n), placed among the (standardised) inputs by
        ``inducing``, then learned.
    inducing : ``"kmeans"`` (k-means centres) or ``"greedy-variance"`` (the inputs of greatest
        conditional variance under the initial kernel; Burt, Rasmussen & van der Wilk 2020).
    random_state : seeds the placement of the inducing inputs.

    Fitted attributes as GPRegressor, with ``elbo_`` (the collapsed bound of the normalised
    targets) instead of the log marginal likelihood.

    Several outputs: y [n, P] fits P outputs that share the inducing inputs and the noise
    variance (``normalize_y`` scales each column); ``predict`` then gives [n*, P] means and
    standard deviations, and ``noise_variance_``, ``y_train_mean_`` and ``y_train_std_`` are [P].
    n_latent_gps : None: the outputs are independent and share the kernel (as scikit-learn's
        GaussianProcessRegressor and GPflow's SGPR do with several target columns); Q: they mix Q
        latent GPs, each with its own copy of the kernel, through a learned W [P, Q] (linear
        coregionalisation with the joint optimal q(u), docs/math.md section 5.10; cost
        n (mQ)^2 per step), W starting at seeded N(0, 1 / Q) entries. Ignored for one output.
    """

    _MULTI_OUTPUT = True

    def __init__(self, kernel=None, n_inducing=100, noise_variance=1.0, normalize_y=False, normalize_X=False,
                 max_iter=1000, random_state=None, inducing="kmeans", n_latent_gps=None):
        self.kernel = kernel
        self.n_inducing = n_inducing
        self.inducing = inducing
        self.noise_variance = noise_variance
        self.normalize_y = normalize_y
        self.normalize_X = normalize_X
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_latent_gps = n_latent_gps

    _MODEL = SGPR
    _FITTED_NUMBERS = {"n_iter_": (int, 0), "elbo_": (float, None)}

    def _build(self, X, y, kernel):
        m = min(as_positive_int(self.n_inducing, "n_inducing"), X.shape[0])
        method = as_choice(self.inducing, "inducing", METHODS)
        Z = inducing_points(X, m, seed=_seed(self.random_state), method=method, kernel=kernel)  # [m, d]
        if y.ndim == 2 and self.n_latent_gps is not None:
            kernel = _coregionalisation(kernel, y.shape[1], self.n_latent_gps, self.random_state)
        model = SGPR(X, y, kernel, Z, noise_variance=self.noise_variance)
        self.n_iter_ = _optimize(model, self.max_iter)
        self.elbo_ = model.elbo()
        return model


class _SVGPEstimator(_GPEstimator):
    """What the SVGP estimators share: building and training varinf.SVGP on minibatches.
    Subclasses name the likelihood class in ``_LIKELIHOOD``."""

    _MODEL = SVGP
    _FITTED_NUMBERS = {"elbo_": (float, None)}

    def _restore_fitted(self, fitted) -> int:
        allowed = self._LIKELIHOOD if isinstance(self._LIKELIHOOD, tuple) else (self._LIKELIHOOD,)
        if not isinstance(self.model_.likelihood, allowed):
            raise FormatError(f"a {type(self).__name__} needs an SVGP with a "
                              f"{' or '.join(c.__name__ for c in allowed)} likelihood, "
                              f"got {type(self.model_.likelihood).__name__}")
        return super()._restore_fitted(fitted)

    def _train_svgp(self, X, y, kernel, likelihood, client=None) -> SVGP:
        """varinf.SVGP on X [n, d] and y [n] or [n, P], numpy or dask (then on ``client``'s
        cluster; the inducing inputs are placed among a sample of the dask rows)."""
        n = X.shape[0]
        m = min(as_positive_int(self.n_inducing, "n_inducing"), n)
        batch = min(as_positive_int(self.batch_size, "batch_size"), n)
        epochs = as_positive_int(self.epochs, "epochs", allow_none=True)
        iterations = None if epochs is not None else as_positive_int(self.iterations, "iterations")
        model = SVGP(kernel, likelihood, m, num_data=n, inducing=self.inducing, dtype=self.dtype)
        model.fit(X, y, iterations=iterations, epochs=epochs, batch_size=batch, learning_rate=self.learning_rate,
                  natgrad=self.natgrad, seed=_seed(self.random_state), progress=self.progress, client=client)
        self.elbo_ = float(model.elbo(X, y))
        return model


@register
class SVGPRegressor(_GaussianGPRegressor, _SVGPEstimator):
    """Stochastic variational GP regression (varinf.SVGP, Gaussian likelihood; Hensman et al. 2013),
    trained with Adam on minibatches in C++.

    Parameters as GPRegressor (without max_iter), and
    n_inducing : number of inducing inputs (at most n), placed among the inputs by ``inducing``
        (as SGPRRegressor), then learned.
    batch_size : minibatch size (at most n).
    iterations : Adam steps, unless ``epochs`` (passes over the data) is given.
    learning_rate : Adam's step size.
    natgrad : natural-gradient steps for q(u) (Salimbeni et al. 2018), Adam for the rest.
    random_state : seeds k-means and the minibatches.
    progress : show a progress bar.
    dtype : np.float64, or np.float32 for the minibatch products in float32 (varinf.SVGP).

    Fitted attributes as GPRegressor, with ``elbo_`` (the full-data ELBO of the normalised
    targets) instead of the log marginal likelihood.
    """

    def __init__(self, kernel=None, n_inducing=100, noise_variance=1.0, normalize_y=False, normalize_X=False,
                 batch_size=256, iterations=1000, epochs=None, learning_rate=0.01, natgrad=False,
                 random_state=None, progress=False, inducing="kmeans", n_latent_gps=None, dtype=np.float64):
        self.kernel = kernel
        self.n_inducing = n_inducing
        self.inducing = inducing
        self.noise_variance = noise_variance
        self.normalize_y = normalize_y
        self.normalize_X = normalize_X
        self.batch_size = batch_size
        self.iterations = iterations
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.natgrad = natgrad
        self.random_state = random_state
        self.progress = progress
        self.n_latent_gps = n_latent_gps
        self.dtype = dtype

    _LIKELIHOOD = Gaussian
    _MULTI_OUTPUT = True

    def _build(self, X, y, kernel):
        if y.ndim == 1:
            return self._train_svgp(X, y, kernel, Gaussian(variance=self.noise_variance))
        P = y.shape[1]
        return self._train_svgp(X, y, self._output_kernels(kernel, P),
                                Gaussian(variance=np.full(P, self.noise_variance)))

    def _output_kernels(self, kernel, P):
        """Several outputs: one latent GP per output, each with its own copy of the kernel
        (``n_latent_gps=None``), or ``_coregionalisation``'s Q latent GPs."""
        if self.n_latent_gps is None:
            return SeparateIndependent([copy_kernel(kernel) for _ in range(P)])
        return _coregionalisation(kernel, P, self.n_latent_gps, self.random_state)

    @property
    def kernel_(self):
        """The trained kernel: with several outputs the SeparateIndependent or
        LinearCoregionalization of the trained copies."""
        return self.model_.kernel

    @property
    def _noise(self):
        return self.model_.likelihood.variance


def _coregionalisation(kernel, P: int, n_latent_gps, random_state) -> LinearCoregionalization:
    """Q = ``n_latent_gps`` latent GPs, each with its own copy of ``kernel``, mixed into the P
    outputs by a learned W [P, Q] (linear coregionalisation, docs/math.md section 11.1) that
    starts at seeded N(0, 1 / Q) entries."""
    Q = as_positive_int(n_latent_gps, "n_latent_gps")
    W = np.random.default_rng(_seed(random_state)).standard_normal((P, Q)) / np.sqrt(Q)
    return LinearCoregionalization([copy_kernel(kernel) for _ in range(Q)], W)


# The multi-class likelihoods SVGPClassifier offers, by the name of its ``likelihood`` parameter.
_CLASSIFIER_LIKELIHOODS = ("auto", "bernoulli", "robustmax", "softmax")


@register
class SVGPClassifier(ClassifierMixin, _SVGPEstimator):
    """GP classification with any number of classes: varinf.SVGP on minibatches.

    Any labels (numbers or strings) are accepted; ``classes_`` holds them sorted. With
    ``likelihood="auto"`` two classes take the Bernoulli (probit) likelihood on one latent GP,
    and K > 2 classes the RobustMax likelihood on K latent GPs that share the kernel (GPflow's
    MultiClass; docs/math.md section 11.3); ``"robustmax"`` and ``"softmax"`` (Monte Carlo,
    section 11.4) choose the multi-class likelihood for any K >= 2, ``"bernoulli"`` insists on two
    classes. Parameters as SVGPRegressor without the noise and normalize_y.

    ``predict_proba`` gives p(y* = k | data) [n*, K] in the order of ``classes_``: for Bernoulli
    Phi(mu / sqrt(1 + var)) for the latent posterior N(mu, var) (Rasmussen & Williams 2006,
    eq. 3.82); for the multi-class likelihoods the likelihood's predictive probabilities, divided
    by their sum (RobustMax's quadrature leaves it within about 1e-3 of 1). ``decision_function``
    gives mu / sqrt(1 + var) for Bernoulli (positive where the second class is predicted) and
    log predict_proba [n*, K] otherwise.
    """

    def __init__(self, kernel=None, n_inducing=100, normalize_X=False, batch_size=256, iterations=1000,
                 epochs=None, learning_rate=0.01, natgrad=False, random_state=None, progress=False,
                 inducing="kmeans", likelihood="auto", dtype=np.float64):
        self.kernel = kernel
        self.n_inducing = n_inducing
        self.inducing = inducing
        self.normalize_X = normalize_X
        self.batch_size = batch_size
        self.iterations = iterations
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.natgrad = natgrad
        self.random_state = random_state
        self.progress = progress
        self.likelihood = likelihood
        self.dtype = dtype

    def fit(self, X, y):
        """Fit to X [n, d] and labels y [n] of two or more classes; returns self."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; y holds one class, "
                             f"{self.classes_[0]!r}")
        likelihood = self._likelihood_for(len(self.classes_))
        X = self._fit_inputs(X)
        self.model_ = self._train_svgp(X, encoder.transform(y).astype(np.float64), self._kernel_for(X.shape[1]),
                                       likelihood)
        return self

    def _likelihood_for(self, K: int):
        name = as_choice(self.likelihood, "likelihood", _CLASSIFIER_LIKELIHOODS)
        if name == "bernoulli" and K != 2:
            raise ValueError(f"likelihood='bernoulli' needs 2 classes, y holds {K}: use 'robustmax' or 'softmax'")
        if name == "softmax":
            return Softmax(K, seed=_seed(self.random_state))
        return Bernoulli() if name == "bernoulli" or (name == "auto" and K == 2) else RobustMax(K)

    _LIKELIHOOD = (Bernoulli, RobustMax, Softmax)

    @property
    def _binary(self) -> bool:
        return isinstance(self.model_.likelihood, Bernoulli)

    def _restore_fitted(self, fitted) -> int:
        d = super()._restore_fitted(fitted)
        K = 2 if self._binary else self.model_.likelihood.num_classes
        classes = fitted.labels("classes_", K)
        if not all(a < b for a, b in zip(classes[:-1], classes[1:])):
            raise FormatError(f"classes_ must hold {K} distinct labels in sorted order, got {classes.tolist()!r}")
        return d

    def decision_function(self, X) -> np.ndarray:
        """Bernoulli: mu / sqrt(1 + var) [n*], positive where ``classes_[1]`` is the more probable
        class; a multi-class likelihood: log predict_proba [n*, K] (for two classes the log odds of
        ``classes_[1]`` [n*], as scikit-learn expects of binary classifiers)."""
        if not self._binary_fitted():
            log_p = np.log(self.predict_proba(X))
            return log_p[:, 1] - log_p[:, 0] if len(self.classes_) == 2 else log_p
        X = self._new_inputs(X)
        mean, var = self.model_.predict_f(X)  # [n*], [n*]
        # Probit link: p(y* = 1) = Phi(mu / sqrt(1 + var)) (Rasmussen & Williams 2006, eq. 3.82).
        return mean / np.sqrt(1.0 + var)

    def _binary_fitted(self) -> bool:
        check_is_fitted(self)
        return self._binary

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities [n*, K], columns in the order of ``classes_``."""
        if self._binary_fitted():
            p = scipy.special.ndtr(self.decision_function(X))  # [n*]
            return np.column_stack([1.0 - p, p])  # [n*, 2]
        p, _ = self.model_.predict_y(self._new_inputs(X))  # [n*, K]
        return p / p.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X) -> np.ndarray:
        """log predict_proba [n*, K], for Bernoulli computed without cancellation."""
        if not self._binary_fitted():
            return np.log(self.predict_proba(X))
        z = self.decision_function(X)  # [n*]
        return np.column_stack([scipy.special.log_ndtr(-z), scipy.special.log_ndtr(z)])  # [n*, 2]

    def predict(self, X) -> np.ndarray:
        """The most probable class of each row [n*]."""
        if self._binary_fitted():
            positive = self.decision_function(X) > 0  # [n*]
            return self.classes_[positive.astype(int)]
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


@register
class VAETransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, SaveableEstimator, BaseEstimator):
    """A variational auto-encoder (varinf.VAE, float64) as a transformer: ``transform`` gives
    the means of q(z | x) [n, n_components], ``inverse_transform`` the decoder's means in the
    original scale.

    Parameters
    ----------
    n_components : latent dimension.
    hidden : hidden layer sizes of the encoder (the decoder mirrors them).
    likelihood : "gaussian" (any real data; every column is standardised internally and the
        per-column noise variance is learned) or "bernoulli" (data in [0, 1], used as is).
    epochs, batch_size, learning_rate : Adam training on shuffled minibatches (a batch_size
        above the number of rows n is n).
    random_state : seeds the initial weights, the training noise and the shuffling.

    Fitted attributes: ``model_`` (the varinf.VAE), ``mean_`` and ``scale_`` [n_features] (the
    standardisation; zeros and ones for "bernoulli"), ``loss_curve_`` (mean loss per epoch).
    """

    def __init__(self, n_components=2, hidden=(64,), likelihood="gaussian", epochs=100, batch_size=128,
                 learning_rate=1e-3, random_state=None):
        self.n_components = n_components
        self.hidden = hidden
        self.likelihood = likelihood
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(self, X, y=None):
        """Train on X [n, n_features]; returns self."""
        X = validate_data(self, X, dtype=np.float64)
        gaussian = as_choice(self.likelihood, "likelihood", ("gaussian", "bernoulli")) == "gaussian"
        d = X.shape[1]
        self.mean_, self.scale_ = _location_scale(X) if gaussian else (np.zeros(d), np.ones(d))  # [d], [d]
        self.model_ = VAE(d, as_positive_int(self.n_components, "n_components"), hidden=self.hidden,
                          likelihood=self.likelihood, dtype=np.float64, seed=_seed(self.random_state),
                          learn_obs_logvar=gaussian)
        self.model_.fit((X - self.mean_) / self.scale_, epochs=as_positive_int(self.epochs, "epochs"),
                        batch_size=min(as_positive_int(self.batch_size, "batch_size"), X.shape[0]),
                        learning_rate=self.learning_rate, progress=False)
        self.loss_curve_ = list(self.model_.history_["loss"])
        return self

    _MODEL = VAE

    def _restore_fitted(self, fitted) -> int:
        d = super()._restore_fitted(fitted)
        if (self.model_.latent_dim, self.model_.likelihood) != (self.n_components, self.likelihood):
            raise FormatError(f"the VAE's latent_dim {self.model_.latent_dim} and likelihood "
                              f"{self.model_.likelihood!r} are not n_components and likelihood")
        fitted.array("mean_", (d,))
        fitted.array("scale_", (d,), positive=True)
        fitted.history("loss_curve_")
        return d

    def transform(self, X) -> np.ndarray:
        """Means of q(z | x) [n, n_components]."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        mu, _ = self.model_.encode((X - self.mean_) / self.scale_)
        return mu

    def inverse_transform(self, X) -> np.ndarray:
        """Decoder means [n, n_features] of latent points X [n, n_components], in the original scale."""
        check_is_fitted(self)
        Z = check_array(X, dtype=np.float64)  # [n, n_components]
        if Z.shape[1] != self.model_.latent_dim:
            raise ValueError(f"X must have {self.model_.latent_dim} columns (n_components), got {Z.shape[1]}")
        return self.model_.decode(Z) * self.scale_ + self.mean_

    @property
    def _n_features_out(self):
        return self.model_.latent_dim

"""scikit-learn estimators on Dask, after lightgbm.dask and xgboost.dask: each one is the local
estimator (varinf.estimators) with a ``client`` parameter. ``fit`` takes dask arrays or dask
DataFrames (numpy works too, as in the local estimator); ``predict`` of a dask collection
returns a lazy dask array; ``to_local()`` gives the plain estimator, which predicts in memory
without the data or the cluster; pickling drops the client.

``client=None`` means the active ``distributed.Client``. SGPR then runs its passes over the
chunks on it (or, with no client at all, on dask's default scheduler); SVGP needs a client.
"""

from __future__ import annotations

import copy

import dask
import numpy as np

from .. import estimators as local
from .._validation import as_choice, as_positive_int, is_dask
from ..inducing import KMEANS_SAMPLE, METHODS, place_inducing
from ..models import SGPR, SVGP
from ._partitioned import active_client, as_row_chunks, compute, sample_rows

__all__ = ["SGPRRegressor", "SVGPRegressor", "SVGPClassifier"]


class _DaskEstimator:
    """What the Dask estimators add to the local ones: dask input, lazy output, to_local()."""

    _LOCAL = None  # the local estimator class

    def _dask_rows(self, X, y, outputs: bool = False):
        """X [n, d] and y [n] (or [n, P] with ``outputs``) as row-chunked dask arrays (persisted
        on the client's cluster), with n_features_in_ and feature_names_in_ set as scikit-learn's
        validate_data does."""
        columns = getattr(X, "columns", None)
        X, y = as_row_chunks(X, y, columns=outputs)
        client = active_client(self.client)
        if client is not None:
            X, y = client.persist([X, y])
        self.n_features_in_ = X.shape[1]
        if columns is not None and all(isinstance(c, str) for c in columns):
            self.feature_names_in_ = np.asarray(list(columns), dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return X, y, client

    @staticmethod
    def _scales(values) -> tuple:
        """Column means and scales ([d] of X, [] or [P] of y), computed with dask in one pass
        for a dask array."""
        scales = local._location_scale(values)
        return tuple(np.asarray(v) for v in compute(*scales)) if is_dask(values) else scales

    def _new_inputs(self, X):
        if not is_dask(X):
            return super()._new_inputs(X)
        local.check_is_fitted(self)
        if hasattr(X, "to_dask_array"):
            X = X.to_dask_array(lengths=True)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be 2-D with {self.n_features_in_} columns, got shape {X.shape}")
        return self._inputs(X.astype(np.float64))

    def _inducing(self, X, seed, kernel) -> np.ndarray:
        """Inducing inputs [m, d] placed by ``inducing`` among a sample of the dask rows X."""
        m = min(as_positive_int(self.n_inducing, "n_inducing"), X.shape[0])
        method = as_choice(self.inducing, "inducing", METHODS)
        return place_inducing(sample_rows(X, KMEANS_SAMPLE, seed), m, seed, method, kernel)

    def to_local(self):
        """The plain varinf estimator with this one's parameters and fitted state: it predicts
        on numpy arrays, without the data or the cluster."""
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "client"}
        plain = self._LOCAL(**params)
        for name, value in vars(self).items():
            if name.endswith("_") and not name.startswith("_"):
                setattr(plain, name, _local_copy(value))
        return plain

    def _saved_form(self):
        """What ``vi.save`` writes: the local estimator (``vi.load`` gives it back)."""
        return self.to_local()

    def __getstate__(self):
        """Pickled without the client, and with a model on dask arrays replaced by its copy
        without data (what predicts)."""
        state = dict(self.__dict__, client=None)
        if "model_" in state:
            state["model_"] = _local_copy(state["model_"], deep=False)
        return state


def _local_copy(value, deep: bool = True):
    """A fitted attribute for a local estimator: a model on dask arrays as its copy without
    data, anything else copied."""
    if getattr(value, "_partitioned", None) is not None:
        return value._without_data()
    return copy.deepcopy(value) if deep else value


class _DaskRegressor(_DaskEstimator):
    """fit and predict of the Gaussian regressors on dask collections."""

    def fit(self, X, y):
        """Fit to X [n, d] and y [n] (or [n, P] where the local estimator takes several
        outputs), dask arrays or DataFrames (numpy: as the local estimator)."""
        if not (is_dask(X) or is_dask(y)):
            return super().fit(X, y)
        X, y, self._fit_client = self._dask_rows(X, y, outputs=self._MULTI_OUTPUT)
        try:
            return self._fit_rows(X, y)
        finally:
            del self._fit_client

    def _build(self, X, y, kernel):
        return self._build_dask(X, y, kernel, self._fit_client) if is_dask(X) else super()._build(X, y, kernel)

    def predict(self, X, return_std: bool = False, return_cov: bool = False):
        """As the local estimator's, which computes lazily on a dask X: a lazy dask array (or
        two); no return_cov for a dask X."""
        if is_dask(X) and return_cov:
            raise ValueError("return_cov=True needs X in memory (an [n*, n*] matrix); pass a numpy array")
        return super().predict(X, return_std, return_cov)


class SGPRRegressor(_DaskRegressor, local.SGPRRegressor):
    """varinf.SGPRRegressor on Dask: the collapsed bound and its gradient are computed where the
    chunks lie (two passes per evaluation), L-BFGS-B runs on the client. Parameters as
    varinf.SGPRRegressor, and ``client`` (None: the active distributed.Client, else dask's
    default scheduler)."""

    _LOCAL = local.SGPRRegressor

    def __init__(self, kernel=None, n_inducing=100, noise_variance=1.0, normalize_y=False, normalize_X=False,
                 max_iter=1000, random_state=None, inducing="kmeans", client=None):
        super().__init__(kernel=kernel, n_inducing=n_inducing, noise_variance=noise_variance,
                         normalize_y=normalize_y, normalize_X=normalize_X, max_iter=max_iter,
                         random_state=random_state, inducing=inducing)
        self.client = client

    def _build_dask(self, X, y, kernel, client):
        Z = self._inducing(X, local._seed(self.random_state), kernel)
        model = SGPR(X, y, kernel, Z, noise_variance=self.noise_variance)
        self.n_iter_ = local._optimize(model, self.max_iter)
        self.elbo_ = model.elbo()
        return model


class SVGPRegressor(_DaskRegressor, local.SVGPRegressor):
    """varinf.SVGPRegressor on a Dask cluster. Parameters as varinf.SVGPRegressor, and
    ``client`` (None: the active distributed.Client)."""

    _LOCAL = local.SVGPRegressor

    def __init__(self, kernel=None, n_inducing=100, noise_variance=1.0, normalize_y=False, normalize_X=False,
                 batch_size=256, iterations=1000, epochs=None, learning_rate=0.01, natgrad=False,
                 random_state=None, progress=False, inducing="kmeans", n_latent_gps=None, dtype=np.float64,
                 client=None):
        super().__init__(kernel=kernel, n_inducing=n_inducing, noise_variance=noise_variance,
                         normalize_y=normalize_y, normalize_X=normalize_X, batch_size=batch_size,
                         iterations=iterations, epochs=epochs, learning_rate=learning_rate, natgrad=natgrad,
                         random_state=random_state, progress=progress, inducing=inducing,
                         n_latent_gps=n_latent_gps, dtype=dtype)
        self.client = client

    def _build_dask(self, X, y, kernel, client):
        """The local estimator's model (y [n], or [n, P]: its kernels per output, docs/math.md
        section 11.1), trained on the cluster (client: _fit_client)."""
        return local.SVGPRegressor._build(self, X, y, kernel)

    def _train_svgp(self, X, y, kernel, likelihood, client=None) -> SVGP:
        return super()._train_svgp(X, y, kernel, likelihood, self._fit_client if is_dask(X) else None)


class SVGPClassifier(_DaskEstimator, local.SVGPClassifier):
    """varinf.SVGPClassifier on a Dask cluster: any number of classes, found with a dask
    ``unique`` over y, and the local estimator's likelihood for them (Bernoulli for two with
    ``likelihood="auto"``, RobustMax for more; docs/math.md section 11.3). Parameters as
    varinf.SVGPClassifier, and ``client`` (None: the active distributed.Client)."""

    _LOCAL = local.SVGPClassifier

    def __init__(self, kernel=None, n_inducing=100, normalize_X=False, batch_size=256, iterations=1000,
                 epochs=None, learning_rate=0.01, natgrad=False, random_state=None, progress=False,
                 inducing="kmeans", likelihood="auto", dtype=np.float64, client=None):
        super().__init__(kernel=kernel, n_inducing=n_inducing, normalize_X=normalize_X, batch_size=batch_size,
                         iterations=iterations, epochs=epochs, learning_rate=learning_rate, natgrad=natgrad,
                         random_state=random_state, progress=progress, inducing=inducing, likelihood=likelihood,
                         dtype=dtype)
        self.client = client

    def fit(self, X, y):
        """Fit to X [n, d] and labels y [n] of two or more classes (dask collections or numpy)."""
        if not (is_dask(X) or is_dask(y)):
            return super().fit(X, y)
        y = y.to_dask_array(lengths=True) if hasattr(y, "to_dask_array") else dask.array.asarray(y)  # [n]
        classes = np.sort(np.asarray(compute(dask.array.unique(y))[0]))
        if classes.size < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; y holds "
                             f"{classes.size}")
        likelihood = self._likelihood_for(classes.size)
        self.classes_ = classes
        # Labels 0..K-1: each label's place among the sorted classes (as LabelEncoder), lazily.
        codes = y.map_blocks(lambda b: np.searchsorted(classes, b).astype(np.float64), dtype=np.float64)
        X, targets, client = self._dask_rows(X, codes)
        X = self._fit_inputs(X)
        self.model_ = self._train_svgp(X, targets, self._kernel_for(X.shape[1]), likelihood, client)
        return self

    def predict_proba(self, X):
        """Class probabilities [n*, K]; lazy for a dask X."""
        if not is_dask(X) or not self._binary_fitted():
            return super().predict_proba(X)  # multi-class: the likelihood's, lazy [n*, K]
        import scipy.special
        p = self.decision_function(X).map_blocks(scipy.special.ndtr, dtype=np.float64)  # [n*]
        return dask.array.stack([1.0 - p, p], axis=1)

    def predict(self, X):
        """The most probable class of each row [n*]; lazy for a dask X."""
        if not is_dask(X):
            return super().predict(X)
        classes = self.classes_
        if self._binary_fitted():
            index = self.decision_function(X) > 0  # lazy [n*]
        else:
            index = self.predict_proba(X).argmax(axis=1)  # lazy [n*]
        return index.map_blocks(lambda b: classes[b.astype(int)], dtype=classes.dtype)

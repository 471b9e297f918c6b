"""What GP models share: the mean parameter, saving, and Gaussian predictive densities."""

from __future__ import annotations

import functools

import numpy as np

from .._validation import is_dask
from ..parameters import Parameter
from ..serialization import config_value, save

__all__ = ["ConstantMean", "Persistent", "make_mean", "gaussian_log_density", "lazy_on_dask"]


class ConstantMean:
    """The ``mean`` property of a model whose prior mean is zero (``self._mean`` is None) or a
    learned constant (a Parameter), and how the mean is saved."""

    @property
    def mean(self):
        """The constant prior mean (0.0 when zero; an array [L] for one constant per latent GP)."""
        if self._mean is None:
            return 0.0
        return float(self._mean.value) if self._mean.size == 1 else self._mean.value.copy()

    @mean.setter
    def mean(self, value):
        if self._mean is None:
            raise ValueError("this model has a zero mean; create it with mean='constant'")
        self._mean.value = value

    def _own_parameters(self) -> list:
        """The model's own parameters (not the kernel's or the likelihood's) that are saved
        beside its settings: the mean, if any."""
        return [] if self._mean is None else [self._mean]

    @staticmethod
    def _saved_mean(config, arrays, shape=()):
        """The ``mean`` argument of a saved model: the array ``mean`` [*shape] when ``has_mean``."""
        if not config_value(config, "has_mean", bool):
            return None
        mean = arrays.take("mean", shape)
        return mean if shape else float(mean)


class Persistent:
    """``save(path)`` (varinf.serialization) and pickling without the cached C++ objects named
    in ``_caches`` (they are rebuilt on first use)."""

    _caches: tuple = ()

    def save(self, path) -> None:
        """Write the model to ``path`` (see varinf.serialization for the format); ``vi.load``
        reads it back."""
        save(self, path)

    def __getstate__(self):
        return {**self.__dict__, **{name: None for name in self._caches}}


def make_mean(mean, y) -> Parameter | None:
    """None / "zero": no mean parameter; "constant": learned, starts at mean(y) (one per column
    of y [n, P]); a number (or one per column): learned, starts there."""
    if mean is None or (isinstance(mean, str) and mean == "zero"):
        return None
    if isinstance(mean, str):
        if mean != "constant":
            raise ValueError(f"mean must be None, 'zero', 'constant' or a number, got {mean!r}")
        start = np.asarray(np.mean(y, axis=0), dtype=np.float64)  # computed, for dask arrays
        return Parameter("mean", float(start) if y.ndim == 1 else start, lower=None)
    outputs = y.shape[1] if y.ndim == 2 else 1
    try:
        values = np.asarray(mean, dtype=np.float64)
    except (TypeError, ValueError):
        values = np.zeros(0)
    if values.ndim > 1 or values.size not in (1, outputs):
        raise ValueError(f"mean must be None, 'zero', 'constant', a number or one number per output, got {mean!r}")
    value = float(values.ravel()[0]) if y.ndim == 1 else np.broadcast_to(values.ravel(), (outputs,)).copy()
    return Parameter("mean", value, lower=None)


def gaussian_log_density(y, mean, var) -> np.ndarray:
    """log N(y; mean, var) elementwise [n] (docs/math.md section 4.3)."""
    return -0.5 * (np.log(2 * np.pi * var) + (y - mean) ** 2 / var)


def lazy_on_dask(outputs: int):
    """A prediction method that, given a dask array Xnew (and ynew), returns lazy dask arrays
    computed block by block (varinf.dask); numpy in, numpy out as before. The model's
    ``_predictor()``, when it has one, is what goes to the workers."""
    def wrap(method):
        @functools.wraps(method)
        def call(self, Xnew, *args, **kwargs):
            if not is_dask(Xnew):
                return method(self, Xnew, *args, **kwargs)
            from ..dask._predict import lazy
            predictor = self._predictor() if hasattr(self, "_predictor") else self
            return lazy(predictor, method.__name__, Xnew, args, kwargs, outputs)
        return call
    return wrap

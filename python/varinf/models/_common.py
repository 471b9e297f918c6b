"""What GP regression models share: the noise and mean parameters, and predictive densities."""

from __future__ import annotations

import numpy as np

from ..parameters import Parameter

__all__ = ["ConstantMean", "Persistent", "make_mean", "gaussian_log_density", "NOISE_LOWER"]

# Lower bound of the Gaussian noise variance (docs/math.md section 2.1; GPflow's default).
NOISE_LOWER = 1e-6


class ConstantMean:
    """The ``mean`` property of a model whose prior mean is zero (``self._mean`` is None) or a
    learned constant (a Parameter)."""

    @property
    def mean(self) -> float:
        return 0.0 if self._mean is None else float(self._mean.value)

    @mean.setter
    def mean(self, value):
        if self._mean is None:
            raise ValueError("this model has a zero mean; create it with mean='constant'")
        self._mean.value = value


class Persistent:
    """``save(path)`` (varinf.serialization) and pickling without the cached C++ objects named
    in ``_caches`` (they are rebuilt on first use)."""

    _caches: tuple = ()

    def save(self, path) -> None:
        """Write the model to ``path`` (see varinf.serialization for the format); ``vi.load``
        reads it back."""
        from ..serialization import save
        save(self, path)

    def __getstate__(self):
        return {**self.__dict__, **{name: None for name in self._caches}}


def make_mean(mean, y) -> Parameter | None:
    """None / "zero": no mean parameter; "constant": learned, starts at mean(y); a number:
    learned, starts there."""
    if mean is None or (isinstance(mean, str) and mean == "zero"):
        return None
    if isinstance(mean, str):
        if mean != "constant":
            raise ValueError(f"mean must be None, 'zero', 'constant' or a number, got {mean!r}")
        return Parameter("mean", float(np.mean(y)), lower=None)
    if not np.isscalar(mean):
        raise ValueError(f"mean must be None, 'zero', 'constant' or a number, got {mean!r}")
    return Parameter("mean", float(mean), lower=None)


def gaussian_log_density(y, mean, var) -> np.ndarray:
    """log N(y; mean, var) elementwise."""
    return -0.5 * (np.log(2 * np.pi * var) + (y - mean) ** 2 / var)

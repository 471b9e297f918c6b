"""Parameters with positivity transforms, and their flattening into one optimisation vector.

A positive parameter is stored by its value and optimised through an unconstrained ``raw``:
``value = softplus(raw) + lower`` (docs/math.md section 2.1; GPflow's default transform), so
``d value / d raw = sigmoid(raw)``.

Optimisers keep ``raw >= RAW_MIN`` (docs/math.md section 2.2). Far below it the sigmoid underflows and a parameter that
got there (a start on its lower bound, a step that was too long) could never move again; at
``RAW_MIN`` a value sits ``softplus(RAW_MIN) ~ 1e-6`` above its bound and still responds.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Parameter", "ParameterVector", "RAW_MIN", "distinct"]

RAW_MIN = math.log(1e-6)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _inverse_softplus(y):
    # log(exp(y) - 1), stable for small and large y, and at least RAW_MIN: a value on (or just
    # above) the lower bound starts where its gradient does not vanish.
    y = np.maximum(y, 1e-300)
    return np.maximum(y + np.log(-np.expm1(-y)), RAW_MIN)


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class Parameter:
    """A named array of values, positive (``lower`` not None) or free, optionally fixed."""

    def __init__(self, name, value, lower=1e-6, trainable=True):
        self.name = name
        self.lower = lower
        self.trainable = bool(trainable)
        self.value = value

    @property
    def value(self) -> np.ndarray:
        return self._value

    @value.setter
    def value(self, value):
        try:
            v = np.array(value)
        except ValueError:  # ragged sequences
            v = np.array(None)
        if v.dtype.kind not in "fiu":
            raise ValueError(f"{self.name} must be a real number or a 1-D array of them, got {value!r}")
        v = v.astype(np.float64)
        if v.ndim > 1 or v.size == 0:
            raise ValueError(f"{self.name} must be a scalar or a 1-D array, got shape {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{self.name} must be finite, got {v}")
        if self.lower is not None and np.any(v < self.lower):
            raise ValueError(f"{self.name} must be at least {self.lower:g}, got {v}")
        if hasattr(self, "_value") and v.shape != self._value.shape:
            raise ValueError(f"{self.name} must keep its shape {self._value.shape}, got {v.shape}")
        self._value = v
        self._raw = None  # derived from the value when first asked for

    @property
    def size(self) -> int:
        return self._value.size

    @property
    def raw(self) -> np.ndarray:
        if self._raw is None:
            v = self._value.ravel()
            self._raw = v.copy() if self.lower is None else _inverse_softplus(v - self.lower)
        return self._raw.copy()

    def set_raw(self, raw) -> None:
        raw = np.array(raw, dtype=np.float64).ravel()
        if self.lower is not None:
            raw = np.maximum(raw, RAW_MIN)
        value = raw if self.lower is None else _softplus(raw) + self.lower
        self._value = value.reshape(self._value.shape).copy()
        self._raw = raw  # kept: the value may have rounded onto the lower bound

    def chain(self, grad_value) -> np.ndarray:
        """Gradient w.r.t. raw from the gradient w.r.t. value."""
        g = np.asarray(grad_value, dtype=np.float64).ravel()
        return g if self.lower is None else g * _sigmoid(self.raw)

    def __repr__(self):
        return f"{self.name}={np.array2string(self._value, precision=4)}"


def distinct(params) -> list:
    """Each parameter of ``params`` once, in the order of its first appearance (a parameter
    shared by two kernels appears twice in a model's gradient order)."""
    out = []
    for p in params:
        if all(p is not q for q in out):
            out.append(p)
    return out


class ParameterVector:
    """The trainable parameters of a model as one unconstrained vector ``x``.

    ``params`` lists every occurrence in the order a model's gradient comes (a parameter
    shared by two kernels appears twice; its gradients are summed).
    """

    def __init__(self, params):
        self.params = list(params)
        self.unique = []
        for p in self.params:
            if p.trainable and all(p is not q for q in self.unique):
                self.unique.append(p)
        self.size = sum(p.size for p in self.unique)

    def bounds(self) -> list:
        """(low, high) for each entry of ``x``: raw values of positive parameters stay at or
        above RAW_MIN."""
        return [(None if p.lower is None else RAW_MIN, None) for p in self.unique for _ in range(p.size)]

    def get(self) -> np.ndarray:
        if not self.unique:
            return np.zeros(0)
        return np.concatenate([p.raw for p in self.unique])

    def set(self, x) -> None:
        start = 0
        for p in self.unique:
            p.set_raw(x[start:start + p.size])
            start += p.size

    def chain(self, grad_values) -> np.ndarray:
        """dL/dx from dL/dvalue, given as one flat array over ``params`` in order."""
        grad_values = np.asarray(grad_values, dtype=np.float64)
        total = {id(p): np.zeros(p.size) for p in self.unique}
        start = 0
        for p in self.params:
            if id(p) in total:
                total[id(p)] += grad_values[start:start + p.size]
            start += p.size
        if not self.unique:
            return np.zeros(0)
        return np.concatenate([p.chain(total[id(p)]) for p in self.unique])

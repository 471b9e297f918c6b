"""Stationary kernels and their gradient contractions in plain numpy (docs/math.md section 1).

Written the way a numpy user would: the pairwise differences are one broadcast array
``D = (X1[:, None, :] - X2[None, :, :]) / l`` of shape [n, m, d], reduced with ``np.sum`` and
``np.einsum``. To keep memory bounded for large n the rows of X1 are taken in blocks
(``_row_blocks``), so D never holds more than about 2M numbers (16 MB).

    k = SquaredExponential(variance=1.0, lengthscales=[1.0, 2.0])
    K = k.K(X1, X2)                                   # [n, m]
    dvariance, dlengthscales, dX1 = k.grad(X1, X2, Kbar)
"""

from __future__ import annotations

import abc

import numpy as np

__all__ = ["Stationary", "SquaredExponential", "RBF", "Matern52"]

# Largest number of entries of the [rows, m, d] difference array built at once.
_BLOCK_ENTRIES = 2 ** 21


def _row_blocks(n: int, m: int, d: int):
    """Slices of [0, n) whose [rows, m, d] difference arrays hold at most _BLOCK_ENTRIES."""
    step = max(1, _BLOCK_ENTRIES // max(1, m * d))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


class Stationary(abc.ABC):
    """k(x, x') = variance * f(r2), r2 = sum_k (x_k - x'_k)^2 / l_k^2 (docs/math.md section 1).

    ``lengthscales`` is a scalar (isotropic) or one per input dimension (ARD). Subclasses give
    the shape ``f(r2)`` and its derivative ``df(r2) = df/dr2``.
    """

    def __init__(self, variance=1.0, lengthscales=1.0):
        self.variance = float(variance)
        self.lengthscales = np.array(lengthscales, dtype=np.float64)  # [] or [d]

    @staticmethod
    @abc.abstractmethod
    def f(r2):
        """The shape f(r2), elementwise."""

    @staticmethod
    @abc.abstractmethod
    def df(r2):
        """df/dr2, elementwise."""

    @property
    def theta(self) -> np.ndarray:
        """[variance, lengthscales...]: the order of varinf's flat kernel parameters."""
        return np.concatenate([[self.variance], self.lengthscales.ravel()])

    def _scaled_differences(self, X1, X2) -> np.ndarray:
        """D_ijk = (X1_ik - X2_jk) / l_k: [n, m, d]."""
        return (X1[:, None, :] - X2[None, :, :]) / self.lengthscales

    def K(self, X1, X2=None) -> np.ndarray:
        """K(X1, X2) [n, m]; K(X1, X1) when X2 is None."""
        X1 = np.asarray(X1, dtype=np.float64)  # [n, d]
        X2 = X1 if X2 is None else np.asarray(X2, dtype=np.float64)  # [m, d]
        K = np.empty((X1.shape[0], X2.shape[0]))  # [n, m]
        for rows in _row_blocks(X1.shape[0], X2.shape[0], X1.shape[1]):
            D = self._scaled_differences(X1[rows], X2)  # [b, m, d]
            K[rows] = self.variance * self.f(np.sum(D ** 2, axis=-1))
        return K

    def K_diag(self, X) -> np.ndarray:
        """diag K(X, X) [n]: f(0) = 1."""
        return np.full(np.shape(X)[0], self.variance)

    def grad(self, X1, X2, Kbar, want_dX: bool = True):
        """Contract Kbar = dL/dK(X1, X2) [n, m] with dK/dparameters and dK/dX1.

        Returns (dL/dvariance, dL/dlengthscales [shape of lengthscales], dL/dX1 [n, d] or None).
        Chain rule through r2 (docs/math.md section 1, "Gradient contraction"):
          dk/dvariance = f(r2)
          dk/dl_k      = variance f'(r2) dr2/dl_k,  dr2/dl_k = -2 (x_k - x'_k)^2 / l_k^3
          dk/dx_k      = variance f'(r2) dr2/dx_k,  dr2/dx_k =  2 (x_k - x'_k) / l_k^2
        """
        X1 = np.asarray(X1, dtype=np.float64)  # [n, d]
        X2 = np.asarray(X2, dtype=np.float64)  # [m, d]
        Kbar = np.asarray(Kbar, dtype=np.float64)  # [n, m]
        n, d = X1.shape
        l = np.broadcast_to(self.lengthscales, (d,))  # [d]
        dvariance = 0.0
        dl = np.zeros(d)  # [d]
        dX1 = np.zeros((n, d)) if want_dX else None  # [n, d]
        for rows in _row_blocks(n, X2.shape[0], d):
            D = self._scaled_differences(X1[rows], X2)  # [b, m, d], (x - x') / l
            r2 = np.sum(D ** 2, axis=-1)  # [b, m]
            dvariance += np.sum(Kbar[rows] * self.f(r2))
            G = Kbar[rows] * self.variance * self.df(r2)  # [b, m], Kbar * dk/dr2
            # (x_k - x'_k)^2 / l_k^3 = D_k^2 / l_k
            dl += -2.0 / l * np.einsum("ij,ijk->k", G, D ** 2)
            if want_dX:
                # (x_k - x'_k) / l_k^2 = D_k / l_k
                dX1[rows] = 2.0 / l * np.einsum("ij,ijk->ik", G, D)
        if self.lengthscales.ndim == 0:
            dl = dl.sum()  # one shared lengthscale: its gradient sums over dimensions
        return float(dvariance), dl, dX1

    def __repr__(self):
        return f"{type(self).__name__}(variance={self.variance:.4g}, lengthscales={self.lengthscales})"


class SquaredExponential(Stationary):
    """SE / RBF: f = exp(-r2 / 2), df/dr2 = -f / 2 (GPML eq. 4.9)."""

    @staticmethod
    def f(r2):
        return np.exp(-0.5 * r2)

    @staticmethod
    def df(r2):
        return -0.5 * np.exp(-0.5 * r2)


RBF = SquaredExponential


class Matern52(Stationary):
    """Matern 5/2 (GPML eq. 4.17): f = (1 + sqrt5 r + 5 r2 / 3) exp(-sqrt5 r);
    df/dr2 = -5/6 (1 + sqrt5 r) exp(-sqrt5 r), finite at r = 0 (no 1/r)."""

    @staticmethod
    def f(r2):
        s = np.sqrt(5.0 * r2)
        return (1.0 + s + 5.0 / 3.0 * r2) * np.exp(-s)

    @staticmethod
    def df(r2):
        s = np.sqrt(5.0 * r2)
        return -5.0 / 6.0 * (1.0 + s) * np.exp(-s)

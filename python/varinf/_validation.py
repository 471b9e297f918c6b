"""Input checks at the Python boundary: validate once, then hand C++ contiguous float64."""

from __future__ import annotations

import numpy as np

__all__ = ["as_matrix", "as_vector", "as_targets", "as_positive_int", "as_float", "owned"]


def _numeric(a, name: str) -> np.ndarray:
    """a as a numeric numpy array (pandas' nullable dtypes through ``to_numpy``, NA as NaN)."""
    if isinstance(a, np.ndarray) and a.dtype.kind in "fiub":
        return a
    try:
        if hasattr(a, "to_numpy") and not isinstance(a, np.ndarray):  # pandas objects
            return a.to_numpy(dtype=np.float64, na_value=np.nan)
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists, strings in a frame and other unconvertible objects
        raise ValueError(f"{name} must be a numeric array: {exc}") from None
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _as_float_array(a, name: str, copy: bool = False) -> np.ndarray:
    arr = _numeric(a, name)
    # Without ``copy`` a C-contiguous float64 array passes through (the C++ core reads it in
    # place); with it the result never shares memory with ``a``.
    arr = np.array(arr, dtype=np.float64, order="C", copy=True) if copy else np.ascontiguousarray(arr, np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


def owned(arr: np.ndarray) -> np.ndarray:
    """``arr`` (a fresh copy from ``copy=True``) made read-only: a model's own training data."""
    arr.flags.writeable = False
    return arr


def as_matrix(X, name: str, d: int | None = None, allow_empty: bool = False, copy: bool = False) -> np.ndarray:
    """X as a C-contiguous float64 [n, d] array; a 1-D array is one input dimension. With
    ``copy``, never a view of the caller's memory."""
    arr = _as_float_array(X, name, copy)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, d], got shape {arr.shape}")
    if arr.shape[1] == 0 or (arr.shape[0] == 0 and not allow_empty):
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} must have {d} columns, got {arr.shape[1]}")
    return arr


def as_vector(y, name: str, n: int | None = None, copy: bool = False) -> np.ndarray:
    """y as a C-contiguous float64 [n] array ([n, 1] is accepted). With ``copy``, never a view
    of the caller's memory."""
    arr = _as_float_array(y, name, copy)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [n] (or [n, 1]), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but X has {n}")
    return np.ascontiguousarray(arr)


as_targets = as_vector


def as_positive_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def as_float(value, name: str) -> float:
    """A real number (Python or numpy int/float, or a 0-d/size-1 real array) as a float; NaN and
    Inf pass (callers check their ranges). Strings, None, complex and bool raise ValueError."""
    arr = np.asarray(value) if not isinstance(value, (str, bytes)) else None
    if arr is None or arr.size != 1 or arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(arr.reshape(()))

"""Input checks at the Python boundary, for every public function and class of varinf.

Each argument is validated once, where it enters, by one of these functions; the checked value
is what the code after it uses (and hands to C++: contiguous arrays of the right dtype). Every
failure raises ValueError naming the argument.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_dask", "as_matrix", "as_vector", "as_dense_matrix", "as_real_array", "is_integer", "as_positive_int",
           "as_seed", "as_sizes", "as_float", "as_finite_float", "as_choice", "owned"]


def is_dask(a) -> bool:
    """Whether ``a`` is a dask collection (array, DataFrame, Series), without importing dask."""
    return hasattr(a, "__dask_graph__") and not isinstance(a, type)


# --- arrays -------------------------------------------------------------------------------------------
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


def as_targets(y, name: str, n: int | None = None, copy: bool = False) -> np.ndarray:
    """Regression targets as a C-contiguous float64 array: [n] for one output ([n, 1] is
    accepted), [n, P] for P > 1 outputs."""
    arr = _as_float_array(y, name, copy)
    if arr.ndim != 2 or arr.shape[1] == 1:
        return as_vector(arr, name, n)
    if arr.shape[0] == 0 or (n is not None and arr.shape[0] != n):
        raise ValueError(f"{name} must have the {n} rows of X, got shape {arr.shape}")
    return arr


def as_dense_matrix(a, name: str, square: bool = True) -> np.ndarray:
    """``a`` as a finite, non-empty 2-D float64 array [n, k] in C or F order (no copy when it
    already is one): the matrices of varinf.linalg, which the core views in either order."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric 2-D array: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got {arr.ndim} dimension(s)")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    if square and arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be square, got shape {arr.shape}")
    # A finite sum implies finite entries (NaN and Inf propagate) and needs no temporary;
    # only when it is not finite (bad entries or overflow) look at every entry.
    if not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous) or min(arr.strides) < 0:
        # e.g. negative strides (numpy calls a reversed [n, 1] view contiguous), which the
        # core cannot view
        arr = np.array(arr, order="F")  # a copy (asfortranarray would keep a [1, 1] view)
    return arr


def as_real_array(a, name: str, dtype) -> np.ndarray:
    """A real (float, integer or bool) array as a C-contiguous array of ``dtype`` (no copy when
    it already is one), every value finite in that dtype."""
    a = np.asarray(a)
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):  # reported below
        cast = np.ascontiguousarray(a, dtype=dtype)
    if not np.isfinite(cast).all():
        if np.isfinite(a).all():
            raise ValueError(f"{name} has values too large for {dtype.name} (largest {np.finfo(dtype).max:.4g})")
        raise ValueError(f"{name} contains NaN or Inf")
    return cast


# --- scalars ------------------------------------------------------------------------------------------
def is_integer(value) -> bool:
    """Whether ``value`` is a Python or numpy integer (bool is not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_positive_int(value, name: str, minimum: int = 1, maximum: int | None = None,
                    allow_none: bool = False) -> int | None:
    """An integer in [minimum, maximum] as an int (None passes with ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not is_integer(value):
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def as_seed(seed, name: str = "seed") -> int | None:
    """None, or a non-negative integer (numpy integers too) as an int."""
    if seed is None:
        return None
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"{name} must be None or an integer >= 0, got {seed!r}")
    return int(seed)


def as_sizes(value, name: str) -> list:
    """Layer sizes: an integer or a sequence of integers >= 1, as a list of ints."""
    if is_integer(value):
        value = (value,)
    try:
        items = list(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of layer sizes, got {value!r}") from None
    return [as_positive_int(h, f"{name}[{i}]") for i, h in enumerate(items)]


def as_float(value, name: str) -> float:
    """A real number (Python or numpy int/float, or a 0-d/size-1 real array) as a float; NaN and
    Inf pass (callers check their ranges). Strings, None, complex and bool raise ValueError."""
    arr = np.asarray(value) if not isinstance(value, (str, bytes)) else None
    if arr is None or arr.size != 1 or arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(arr.reshape(()))


def as_finite_float(value, name: str, lower: float | None = None, upper: float | None = None,
                    strict: bool = True) -> float:
    """A finite real number as a float, above ``lower`` (at least it when not ``strict``) and at
    most ``upper``."""
    v = as_float(value, name)
    ok = np.isfinite(v) and (lower is None or (v > lower if strict else v >= lower)) and (upper is None or v <= upper)
    if not ok:
        if lower is None and upper is None:
            what = "finite"
        elif upper is not None:
            what = f"in {'(' if strict else '['}{lower:g}, {upper:g}]"
        elif lower == 0 and strict:
            what = "positive"
        else:
            what = f"{'>' if strict else '>='} {lower:g}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return v


def as_choice(value, name: str, choices: tuple):
    """``value`` if it is one of ``choices``."""
    if not (isinstance(value, str) and value in choices):
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value

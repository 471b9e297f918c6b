"""Shared strategies and checks of the property-based boundary tests (tests/boundary/test_boundary_*.py).

The invariant of every public entry point: any input gives either a clear Python exception
(ValueError / TypeError naming the argument, or varinf.LinAlgError naming the matrix) or a
finite result of the right shape; never a crash, never a silent NaN.
"""

import os
import re
import warnings

import numpy as np
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.extra import numpy as hnp

import varinf as vi

# Tiny (subnormal, 1e-300), huge (1e300) and non-finite values beside ordinary ones.
SPECIAL = [0.0, 5e-324, 1e-300, -1e-300, 1e300, -1e300, 1e-8, 1.0, -1.0, np.nan, np.inf, -np.inf]
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.sampled_from(SPECIAL))
SANE = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)
DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int8, np.bool_, np.complex128, object, "U3"])

ERRORS = (ValueError, TypeError, vi.LinAlgError)


def settings_for(max_examples):
    """Hypothesis settings of these tests: no deadline (a shared 2-core machine), no health checks.
    Under CI (CI set) the examples are derandomised, so that a run is repeatable; elsewhere each
    run explores new ones."""
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck),
                    derandomize=bool(os.environ.get("CI")))


@st.composite
def layouts(draw, a):
    """``a`` as given, Fortran-ordered, a strided or reversed view, or read-only."""
    if a.ndim == 2 and draw(st.booleans()):
        a = np.asfortranarray(a)
    if a.ndim >= 1 and a.shape[0] > 1:
        step = draw(st.sampled_from([1, 1, 2, -1]))
        a = a[::step]
    if draw(st.booleans()):
        a = a.view()
        a.flags.writeable = False
    return a


@st.composite
def arrays(draw, max_rows=6, max_cols=3, dims=(1, 2, 3), elements=FLOATS, dtypes=DTYPES, duplicates=True):
    """Any shape (0 rows, 0 columns, 1-D, 3-D), dtype, layout and value, possibly with
    duplicated rows (singular kernel matrices)."""
    ndim = draw(st.sampled_from(dims))
    shape = tuple(draw(st.integers(0, max_rows if i == 0 else max_cols)) for i in range(ndim))
    dtype = np.dtype(draw(dtypes))
    if dtype.kind in "fc":
        with np.errstate(over="ignore"):  # 1e300 -> inf in float32: a case worth testing
            a = draw(hnp.arrays(np.float64, shape, elements=elements)).astype(dtype)
    elif dtype.kind in "iub":
        a = draw(hnp.arrays(np.int64, shape, elements=st.integers(-5, 5))).astype(dtype)
    else:
        a = np.full(shape, "x", dtype=dtype)
    if duplicates and a.ndim >= 1 and a.shape[0] > 1 and draw(st.booleans()):
        a[-1] = a[0]
    return draw(layouts(a))


# Finite values from tiny (subnormal) to huge: valid input that may still overflow a kernel.
FINITE = st.one_of(SANE, st.sampled_from([0.0, 5e-324, 1e-300, -1e-300, 1e-8, 1e300, -1e300]))


@st.composite
def valid_or_any(draw, shape, elements=FINITE, p_any=0.25):
    """Mostly a valid float64 array of ``shape`` (finite values, any layout, possibly duplicated
    rows), sometimes anything from ``arrays()``: most examples get past validation."""
    if draw(st.integers(0, 99)) >= 100 * (1 - p_any):  # hypothesis starts from 0: valid
        return draw(arrays())
    a = draw(hnp.arrays(np.float64, shape, elements=elements))
    if a.shape[0] > 1 and draw(st.booleans()):
        a[-1] = a[0]
    return draw(layouts(a))


def clean_matrix(n_min=1, n_max=6, d=1):
    """Valid inputs [n, d] in any layout (for the arguments not under test)."""
    return st.integers(n_min, n_max).flatmap(
        lambda n: hnp.arrays(np.float64, (n, d), elements=SANE)).flatmap(layouts)


def outcome(fn, *names):
    """fn()'s result, or None when it raised a clear error: ValueError/TypeError naming one of
    ``names``, or varinf.LinAlgError naming the matrix. Warnings are silenced here (the
    dedicated tests check JitterWarning)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    except vi.LinAlgError as e:
        assert "Cholesky of" in str(e) or _names_one(str(e), names), str(e)
        return None
    except (ValueError, TypeError) as e:
        assert _names_one(str(e), names), f"{type(e).__name__} names none of {names}: {e}"
        return None


def _names_one(message, names):
    """Whether the message names one of the arguments as a word ("X", not the x of "max")."""
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", message) for n in names)


def assert_finite(*results, shapes=None):
    """Every result finite (and of the given shapes)."""
    for i, r in enumerate(results):
        r = np.asarray(r)
        assert r.dtype.kind in "fiu", r.dtype
        assert np.all(np.isfinite(r)), r
        if shapes is not None:
            assert r.shape == shapes[i], (r.shape, shapes[i])

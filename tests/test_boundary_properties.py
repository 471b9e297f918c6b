"""Property-based checks of the public entry points: any input gives a clear Python exception
(ValueError naming the argument, or varinf.LinAlgError) or a finite, correct result; never a
crash or a silent NaN."""

import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import varinf as vi  # noqa: E402
from varinf import kernels as K  # noqa: E402

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1e-300, -1e-300, 1e300, -1e300, 1e-8, 1.0]),
)
DTYPES = st.sampled_from([np.float64, np.float32, np.int64, np.int8, np.bool_, np.complex128, object, "U3"])


@st.composite
def arrays(draw, max_rows=6, max_cols=3, dims=(1, 2, 3)):
    ndim = draw(st.sampled_from(dims))
    shape = tuple(draw(st.integers(0, max_rows if i == 0 else max_cols)) for i in range(ndim))
    dtype = draw(DTYPES)
    if np.dtype(dtype).kind in "fc":
        with np.errstate(over="ignore"):  # 1e300 -> inf in float32: a case worth testing
            a = draw(hnp.arrays(np.float64, shape, elements=FLOATS)).astype(dtype)
    elif np.dtype(dtype).kind in "iub":
        a = draw(hnp.arrays(np.int64, shape, elements=st.integers(-5, 5))).astype(dtype)
    else:
        a = np.full(shape, "x", dtype=dtype)
    if a.ndim == 2 and draw(st.booleans()):
        a = np.asfortranarray(a)
    if a.ndim >= 1 and a.shape[0] > 1 and draw(st.booleans()):
        a = a[::2]
    return a


KERNELS = [K.SquaredExponential(), K.Matern12(), K.Matern32(), K.Matern52(1.0, 0.5),
           K.RationalQuadratic(), K.Periodic(), K.Linear(), K.Constant(), K.White(),
           K.RBF() * K.Periodic() + K.White(0.1)]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def _clean(a):
    return a.dtype.kind in "fiub" and a.ndim in (1, 2) and a.size > 0 and np.all(np.isfinite(a.astype(np.float64)))


@SETTINGS
@given(X=arrays(), X2=arrays(), kernel=st.sampled_from(KERNELS))
def test_kernel_matrices_raise_or_are_finite(X, X2, kernel):
    try:
        Kxx = kernel.K(X)
        Kxy = kernel.K(X, X2)
        kd = kernel.K_diag(X)
    except ValueError as e:
        assert any(name in str(e) for name in ("X", "X2"))
        return
    for result in (Kxx, Kxy, kd):
        # The Linear kernel may overflow to inf on inputs near 1e300; never NaN.
        assert not np.any(np.isnan(result))


@SETTINGS
@given(X=arrays(), y=arrays(dims=(1, 2)), noise=st.floats(-1, 10), kernel=st.sampled_from(KERNELS))
def test_gpr_raises_or_is_finite(X, y, noise, kernel):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = vi.GPR(X, y, kernel, noise_variance=noise)
        except ValueError as e:
            assert any(name in str(e) for name in ("X", "y", "noise_variance", "lengthscales"))
            return
        try:
            lml = model.log_marginal_likelihood()
            mean, var = model.predict_f(model.X)
        except vi.LinAlgError as e:
            assert "noise_variance" in str(e)
            return
    assert np.isfinite(lml)
    assert np.all(np.isfinite(mean)) and np.all(var >= 0)

"""Boundary properties of vi.kernels, vi.linalg, vi.set_num_threads and the data loaders' arguments:
any input gives a clear Python exception naming the argument or a finite, correct result."""

import warnings

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import varinf as vi  # noqa: E402
from varinf import kernels as K  # noqa: E402
from varinf.reference import kernels as ref  # noqa: E402

from _boundary import FLOATS, SANE, arrays, assert_finite, clean_matrix, outcome, settings_for  # noqa: E402

STATIONARY = [K.SquaredExponential, K.Matern12, K.Matern32, K.Matern52, K.RationalQuadratic, K.Periodic]
SCALAR = [K.Constant, K.White, K.Linear]


@st.composite
def kernels(draw):
    """Any kernel class, ARD or not, on all or some columns, alone or combined."""
    def one():
        cls = draw(st.sampled_from(STATIONARY + SCALAR))
        dims = draw(st.sampled_from([None, [0], [1], [0, 1], [1, 0]]))
        if cls in STATIONARY:
            ls = draw(st.sampled_from([1.0, 0.3, [0.5, 2.0], 1e-3, 1e3]))
            return cls(variance=draw(st.sampled_from([1.0, 1e-6, 1e6])), lengthscales=ls, active_dims=dims)
        return cls(variance=draw(st.sampled_from([1.0, 0.1])), active_dims=dims)

    k = one()
    for _ in range(draw(st.integers(0, 2))):
        k = k + one() if draw(st.booleans()) else k * one()
    return k


@settings_for(200)
@given(X=arrays(), X2=arrays(), kernel=kernels())
def test_kernel_matrices_raise_or_are_finite(X, X2, kernel):
    out = outcome(lambda: (kernel.K(X), kernel.K(X, X2), kernel.K_diag(X)), "X", "X2")
    if out is None:
        return
    n, m = X.shape[0], np.asarray(X2).shape[0]
    Kxx, Kxy, kd = out
    assert Kxx.shape == (n, n) and Kxy.shape == (n, m) and kd.shape == (n,)
    # Inputs near 1e300 may overflow a Linear kernel to inf; never to NaN.
    for r in out:
        assert not np.any(np.isnan(r))
    # Two code paths (the matrix's GEMM and the diagonal's row sums) may round apart.
    np.testing.assert_allclose(np.diag(Kxx), kd, rtol=1e-12)


@settings_for(60)
@given(X=clean_matrix(d=2), X2=clean_matrix(d=2), variance=st.floats(1e-3, 1e3),
       ls=st.lists(st.floats(1e-2, 1e2), min_size=2, max_size=2), cls=st.sampled_from([0, 1]))
def test_stationary_kernels_match_numpy_reference_in_any_layout(X, X2, variance, ls, cls):
    ours = [K.SquaredExponential, K.Matern52][cls](variance, ls)
    theirs = [ref.SquaredExponential, ref.Matern52][cls](variance, ls)
    Xc, X2c = np.array(X), np.array(X2)
    np.testing.assert_allclose(ours.K(X, X2), theirs.K(Xc, X2c), rtol=1e-12, atol=1e-250)  # underflow noise
    np.testing.assert_allclose(ours.K(X), theirs.K(Xc, Xc), rtol=1e-12, atol=1e-250)  # underflow noise


PARAMETER_VALUES = st.one_of(FLOATS, st.lists(FLOATS, min_size=0, max_size=3), st.sampled_from(
    ["1", None, [[1.0]], np.ones((2, 2)), 1 + 1j, True, object()]))


@settings_for(150)
@given(cls=st.sampled_from(STATIONARY + SCALAR), value=PARAMETER_VALUES,
       which=st.sampled_from(["variance", "lengthscales", "alpha", "period", "active_dims"]))
def test_kernel_constructors_raise_or_build_a_working_kernel(cls, value, which):
    params = {"variance", "active_dims"} | ({"lengthscales"} if cls in STATIONARY else set()) \
        | ({"alpha"} if cls is K.RationalQuadratic else set()) | ({"period"} if cls is K.Periodic else set())
    if which not in params:
        with pytest.raises(TypeError):
            cls(**{which: value})
        return
    kernel = outcome(lambda: cls(**{which: value}), which)
    if kernel is None:
        return
    X = np.linspace(-1, 1, 8).reshape(4, 2)
    out = outcome(lambda: kernel.K(X), "X")
    if out is not None:
        assert out.shape == (4, 4) and not np.any(np.isnan(out))


@settings_for(80)
@given(value=FLOATS, name=st.sampled_from(["variance", "lengthscales"]))
def test_kernel_parameter_setters_raise_or_keep_working(value, name):
    kernel = K.Matern32(1.0, 1.0)
    if outcome(lambda: setattr(kernel, name, value), name) is None and getattr(kernel, name) != value:
        assert getattr(kernel, name) == 1.0  # a rejected value leaves the parameter unchanged
    out = kernel.K(np.linspace(-1, 1, 5))
    assert not np.any(np.isnan(out))


@pytest.mark.parametrize("other", [1, "a", None, np.ones(2), 1 + 2j])
def test_kernel_arithmetic_with_non_kernels_is_a_type_error(other):
    with pytest.raises(TypeError):
        K.RBF() + other
    if not (np.isscalar(other) and np.isreal(other)):
        with pytest.raises(TypeError):
            K.RBF() * other


@pytest.mark.parametrize("kernels_arg", [[1], ["RBF"], [None]])
def test_combination_of_non_kernels_names_the_argument(kernels_arg):
    with pytest.raises(ValueError, match="kernels"):
        K.Sum(kernels_arg)


# --- linalg ---------------------------------------------------------------------------------------

@settings_for(200)
@given(A=arrays(max_cols=6, dims=(1, 2, 3)), jitter=st.one_of(FLOATS, st.sampled_from(["x", None])))
def test_cholesky_raises_or_factorises(A, jitter):
    L = outcome(lambda: vi.linalg.cholesky(A, jitter=jitter, name="Kuu"), "A", "jitter", "Kuu")
    if L is None:
        return
    Af = np.asarray(A, dtype=np.float64)
    assert_finite(L, shapes=[Af.shape])
    assert np.all(np.triu(L, 1) == 0)


@settings_for(60)
@given(n=st.integers(1, 8), seed=st.integers(0, 100), layout=st.sampled_from(["C", "F", "rev", "ro"]))
def test_cholesky_and_solves_match_numpy_in_any_layout(n, seed, layout):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, n))
    A = W @ W.T + n * np.eye(n)
    B = rng.normal(size=(n, 3))
    A_in, B_in = {"C": (A, B), "F": (np.asfortranarray(A), np.asfortranarray(B)),
                  "rev": (A[::-1, ::-1], B[::-1]), "ro": (A.copy(), B.copy())}[layout]
    if layout == "ro":
        A_in.flags.writeable = B_in.flags.writeable = False
    A_ref, B_ref = np.array(A_in), np.array(B_in)
    L = vi.linalg.cholesky(A_in)
    np.testing.assert_allclose(L, np.linalg.cholesky(A_ref), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(vi.linalg.solve_lower(L, B_in), np.linalg.solve(L, B_ref), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(vi.linalg.solve_lower(L, B_in[:, 0], transpose=True),
                               np.linalg.solve(L.T, B_ref[:, 0]), rtol=1e-10, atol=1e-12)


@settings_for(150)
@given(L=arrays(max_cols=5, dims=(1, 2, 3)), B=arrays(max_cols=3, dims=(1, 2, 3)), transpose=st.booleans())
def test_solve_lower_raises_or_is_finite(L, B, transpose):
    X = outcome(lambda: vi.linalg.solve_lower(L, B, transpose), "L", "B")
    if X is None:
        return
    # A zero on L's diagonal gives inf (as numpy/scipy's triangular solves do); never NaN
    # from finite data and a non-singular L.
    Lf = np.asarray(L, dtype=np.float64)
    if np.all(np.abs(np.diag(Lf)) > 1e-100) and np.all(np.abs(Lf) < 1e100):
        assert X.shape == np.asarray(B).shape


@settings_for(120)
@given(L=arrays(max_cols=5, dims=(1, 2, 3)), Lbar=arrays(max_cols=5, dims=(1, 2, 3)))
def test_cholesky_reverse_raises_or_is_symmetric(L, Lbar):
    Abar = outcome(lambda: vi.linalg.cholesky_reverse(L, Lbar), "L", "Lbar")
    if Abar is None:
        return
    assert Abar.shape == np.asarray(L).shape
    finite = np.isfinite(Abar)
    np.testing.assert_array_equal(finite, finite.T)


def test_singular_matrix_warns_with_jitter_then_raises():
    A = np.ones((4, 4))  # rank 1: four identical rows
    with pytest.warns(vi.linalg.JitterWarning, match="Kxx"):
        L = vi.linalg.cholesky(A, name="Kxx")
    assert np.all(np.isfinite(L))
    A = -np.eye(3)  # negative definite: no jitter helps
    with pytest.raises(vi.LinAlgError, match="Cholesky of Kxx"):
        vi.linalg.cholesky(A, name="Kxx")


# --- threads and data loaders ----------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, -1, 1.5, "2", None, True, 2 ** 70, np.nan, [1]])
def test_set_num_threads_rejects_bad_values_naming_n(n):
    before = vi.get_num_threads()
    with pytest.raises((ValueError, TypeError), match="n must"):
        vi.set_num_threads(n)
    assert vi.get_num_threads() == before


def test_set_num_threads_accepts_numpy_integers():
    before = vi.get_num_threads()
    try:
        vi.set_num_threads(np.int64(1))
        assert vi.get_num_threads() == 1
    finally:
        vi.set_num_threads(before)


@pytest.mark.parametrize("call, name", [
    (lambda: vi.datasets.load_fashion_mnist(kind="valid"), "kind"),
    (lambda: vi.datasets.load_fashion_mnist(kind=None), "kind"),
    (lambda: vi.datasets.train_test_split(np.ones((5, 2)), test_fraction=1.0), "test_fraction"),
    (lambda: vi.datasets.train_test_split(np.ones((5, 2)), test_fraction="0.2"), "test_fraction"),
    (lambda: vi.datasets.train_test_split(np.ones((5, 2)), test_fraction=np.nan), "test_fraction"),
    (lambda: vi.datasets.train_test_split(np.ones((5, 2)), np.ones(4)), "y"),
    (lambda: vi.datasets.train_test_split(np.ones((1, 2))), "X"),
    (lambda: vi.datasets.train_test_split(5.0), "X"),
])
def test_loader_arguments_are_checked(call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call()


def test_load_fashion_mnist_missing_directory_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        vi.datasets.load_fashion_mnist(directory=str(tmp_path))


@pytest.mark.parametrize("content", [b"", b"\x00\x00\x08", b"\x00\x00\x08\x01\x00\x00\x00\x05abc",
                                     b"\x00\x00\x99\x01", b"\x1f\x8bnot gzip"])
def test_load_idx_rejects_corrupt_files(tmp_path, content):
    path = tmp_path / "bad.idx"
    path.write_bytes(content)
    with pytest.raises((ValueError, OSError, EOFError)):
        vi.datasets.load_idx(str(path))


@settings_for(40)
@given(X=hnp.arrays(np.float64, st.tuples(st.integers(0, 4), st.integers(0, 3)), elements=SANE),
       threshold=FLOATS)
def test_binarize_gives_zeros_and_ones(X, threshold):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        B = vi.datasets.binarize(X, threshold)
    assert B.shape == X.shape and np.all((B == 0) | (B == 1))

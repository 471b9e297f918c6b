"""Kernels against naive numpy loops, and every gradient against central finite differences."""

import numpy as np
import pytest

import varinf as vi
from varinf import kernels as K
from _grad import check_grad

# Naive per-pair formulas (docs/math.md section 1), written independently of the C++ code.
def _r2(x, y, l):
    return np.sum(((x - y) / l) ** 2)


def naive(kind, theta, x, y, same):
    d = x.size
    if kind in ("se", "m12", "m32", "m52", "rq"):
        s2, l = theta[0], theta[1:1 + (d if len(theta) > 2 + (kind == "rq") else 1)]
        r2 = _r2(x, y, l)
        r = np.sqrt(r2)
        if kind == "se":
            return s2 * np.exp(-0.5 * r2)
        if kind == "m12":
            return s2 * np.exp(-r)
        if kind == "m32":
            return s2 * (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)
        if kind == "m52":
            return s2 * (1 + np.sqrt(5) * r + 5 * r2 / 3) * np.exp(-np.sqrt(5) * r)
        alpha = theta[-1]
        return s2 * (1 + r2 / (2 * alpha)) ** (-alpha)
    if kind == "per":
        s2, l, p = theta[0], theta[1:-1], theta[-1]
        return s2 * np.exp(-2 * np.sum(np.sin(np.pi * (x - y) / p) ** 2 / l ** 2))
    if kind == "lin":
        return np.sum(theta * x * y)
    if kind == "const":
        return theta[0]
    if kind == "white":
        return theta[0] * float(same)
    raise AssertionError(kind)


D = 3


def make(kind, ard):
    ls = [0.7, 1.3, 0.9][:D] if ard else 0.8
    return {
        "se": lambda: K.SquaredExponential(1.3, ls),
        "m12": lambda: K.Matern12(1.3, ls),
        "m32": lambda: K.Matern32(1.3, ls),
        "m52": lambda: K.Matern52(1.3, ls),
        "rq": lambda: K.RationalQuadratic(1.3, ls, alpha=0.7),
        "per": lambda: K.Periodic(1.3, ls, period=1.7),
        "lin": lambda: K.Linear([0.5, 1.5, 2.0] if ard else 0.7),
        "const": lambda: K.Constant(0.6),
        "white": lambda: K.White(0.4),
    }[kind]()


KINDS = ["se", "m12", "m32", "m52", "rq", "per", "lin", "const", "white"]
CASES = [(k, ard) for k in KINDS for ard in (False, True) if ard is False or k in ("se", "m12", "m32", "m52", "rq", "per", "lin")]


def naive_matrix(kind, theta, X1, X2, sym):
    if kind == "per" and theta.size == 3:
        theta = np.r_[theta[0], np.full(D, theta[1]), theta[2]]
    if kind == "lin" and theta.size == 1:
        theta = np.full(D, theta[0])
    return np.array([[naive(kind, theta, a, b, sym and i == j) for j, b in enumerate(X2)]
                     for i, a in enumerate(X1)])


@pytest.mark.parametrize("kind,ard", CASES)
def test_kernel_matches_naive_loops(kind, ard, rng):
    k = make(kind, ard)
    X1, X2 = rng.normal(size=(7, D)), rng.normal(size=(5, D))
    theta = k.theta()
    np.testing.assert_allclose(k.K(X1, X2), naive_matrix(kind, theta, X1, X2, False), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k.K(X1), naive_matrix(kind, theta, X1, X1, True), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k.K_diag(X1), np.diag(k.K(X1)), rtol=1e-14)


@pytest.mark.parametrize("kind,ard", CASES)
def test_kernel_matrix_is_symmetric_psd(kind, ard, rng):
    X = rng.normal(size=(30, D))
    Kxx = make(kind, ard).K(X)
    np.testing.assert_allclose(Kxx, Kxx.T, rtol=0, atol=1e-14)
    assert np.linalg.eigvalsh(Kxx).min() > -1e-10 * max(1.0, np.abs(Kxx).max())


def check_grads(k, X1, X2, rng):
    """grad, grad_sym and grad_diag against central differences of sum(W * K)."""
    c, theta = k.core(), k.theta()
    W = rng.normal(size=(X1.shape[0], X2.shape[0]))
    dth, dX = c.grad(theta, X1, X2, W, True)
    check_grad(lambda t: np.sum(W * c.K(t, X1, X2)), theta, dth)
    check_grad(lambda x: np.sum(W * c.K(theta, x, X2)), X1, dX)

    Ws = rng.normal(size=(X1.shape[0],) * 2)
    Ws = Ws + Ws.T
    dth, dX = c.grad_sym(theta, X1, Ws, True)
    check_grad(lambda t: np.sum(Ws * c.K_sym(t, X1)), theta, dth)
    check_grad(lambda x: np.sum(Ws * c.K_sym(theta, x)), X1, dX)

    w = rng.normal(size=X1.shape[0])
    dth, dX = c.grad_diag(theta, X1, w, True)
    check_grad(lambda t: w @ c.K_diag(t, X1), theta, dth)
    check_grad(lambda x: w @ c.K_diag(theta, x), X1, dX)


@pytest.mark.parametrize("kind,ard", CASES)
def test_kernel_gradients_match_finite_differences(kind, ard, rng):
    # Distinct points: Matern 1/2 is not differentiable in x where x == x'.
    X1, X2 = rng.normal(size=(6, D)), rng.normal(size=(4, D))
    check_grads(make(kind, ard), X1, X2, rng)


def test_matern_gradients_finite_at_zero_distance():
    X = np.zeros((3, 2))
    for kern in (K.Matern12(), K.Matern32(), K.Matern52(), K.SquaredExponential()):
        dth, dX = kern.core().grad_sym(kern.theta(), X, np.ones((3, 3)), True)
        assert np.all(np.isfinite(dth)) and np.all(np.isfinite(dX))


def test_composite_kernels_and_active_dims(rng):
    X1, X2 = rng.normal(size=(6, 4)), rng.normal(size=(5, 4))
    se = K.SquaredExponential(1.1, [0.5, 0.8], active_dims=[0, 2])
    per = K.Periodic(0.9, 1.2, period=2.0, active_dims=[3])
    lin = K.Linear(0.3)
    k = se * per + 2.0 * lin + K.White(0.2)
    expected = se.K(X1, X2) * per.K(X1, X2) + 2.0 * lin.K(X1, X2)
    np.testing.assert_allclose(k.K(X1, X2), expected, rtol=1e-13)
    np.testing.assert_allclose(k.K(X1), se.K(X1) * per.K(X1) + 2.0 * lin.K(X1) + 0.2 * np.eye(6), rtol=1e-13)
    np.testing.assert_allclose(se.K(X1, X2), K.SquaredExponential(1.1, [0.5, 0.8]).K(X1[:, [0, 2]], X2[:, [0, 2]]))
    check_grads(k, X1, X2, rng)


def test_sums_flatten_and_parameters_are_ordered():
    a, b, c = K.RBF(), K.Matern32(), K.White(0.1)
    s = a + b + c
    assert isinstance(s, K.Sum) and len(s.kernels) == 3
    assert len(s.parameters) == 5 and s.core().num_params == 5


def test_parameters_read_and_set_in_constrained_space():
    k = K.SquaredExponential(variance=2.0, lengthscales=[1.0, 3.0])
    k.lengthscales = [0.5, 0.25]
    np.testing.assert_array_equal(k.lengthscales, [0.5, 0.25])
    np.testing.assert_array_equal(k.theta(), [2.0, 0.5, 0.25])
    assert "lengthscales=[0.5  0.25]" in repr(k)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, [1.0, -2.0]])
def test_nonpositive_lengthscales_raise_naming_the_argument(bad):
    with pytest.raises(ValueError, match="lengthscales"):
        K.SquaredExponential(lengthscales=bad)
    k = K.Matern52(lengthscales=[1.0, 1.0])
    with pytest.raises(ValueError, match="lengthscales"):
        k.lengthscales = bad if np.ndim(bad) else [bad, 1.0]


def test_input_width_mismatch_raises(rng):
    k = K.SquaredExponential(lengthscales=[1.0, 1.0])
    with pytest.raises(ValueError, match="X has 3"):
        k.K(rng.normal(size=(4, 3)))
    with pytest.raises(ValueError, match="X2"):
        K.RBF().K(rng.normal(size=(4, 3)), rng.normal(size=(4, 2)))
    with pytest.raises(ValueError, match="active_dims"):
        K.RBF(active_dims=[5]).K(rng.normal(size=(4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        K.RBF().K(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="theta"):
        K.RBF().core().K(np.ones(5), np.ones((2, 1)), np.ones((2, 1)))


def test_large_kernel_matches_numpy_with_threads(rng):
    X1, X2 = rng.normal(size=(300, 8)), rng.normal(size=(200, 8))
    k = K.SquaredExponential(1.5, rng.uniform(0.5, 2.0, 8))
    d2 = (((X1[:, None, :] - X2[None, :, :]) / k.lengthscales) ** 2).sum(-1)
    expected = 1.5 * np.exp(-0.5 * d2)
    before = vi.get_num_threads()
    try:
        for n in (1, 2):
            vi.set_num_threads(n)
            np.testing.assert_allclose(k.K(X1, X2), expected, rtol=1e-12)
    finally:
        vi.set_num_threads(before)


@pytest.mark.parametrize("gap", [1e-6, 1e-9, 1e-12])
def test_matern12_gradient_of_nearly_coincident_points(gap):
    """k = v exp(-r), r = |x1 - x2| / l: dk/dl = v exp(-r) r / l, dk/dx1 = -v exp(-r) sign / l,
    exact however close the points (the expanded distance cancels; direct differences do not)."""
    x1, x2, v, l = 5.0, 5.0 + gap, 1.3, 0.7
    k = K.Matern12(v, l)
    # A second point at -5 (weight 0) centres the inputs on 0, far from the pair: |a| ~ 7.
    X2, Kbar = np.array([[x2], [-5.0]]), np.array([[1.0, 0.0]])
    dth, dX = k.core().grad(k.theta(), np.array([[x1]]), X2, Kbar, True)
    r = abs(x1 - x2) / l
    assert dth[1] == pytest.approx(v * np.exp(-r) * r / l, rel=1e-9)
    assert dX[0, 0] == pytest.approx(v * np.exp(-r) * np.sign(x2 - x1) / l, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Stationary kernels at block boundaries and at high input dimension (the GEMM paths), against
# a numpy reference of the kernel and of the gradient sums from direct differences.

def _shape(kind, r2, alpha=0.7):
    """(f, df/dr2) elementwise (docs/math.md section 1.2); df/dr2 taken as 0 at r2 = 0."""
    r = np.sqrt(r2)
    safe = np.where(r > 0, r, 1.0)
    if kind == "se":
        f = np.exp(-0.5 * r2)
        return f, -0.5 * f
    if kind == "m12":
        f = np.exp(-r)
        return f, np.where(r > 0, -0.5 * f / safe, 0.0)
    if kind == "m32":
        s = np.sqrt(3.0) * r
        return (1 + s) * np.exp(-s), -1.5 * np.exp(-s)
    if kind == "m52":
        s = np.sqrt(5.0) * r
        return (1 + s + 5.0 * r2 / 3) * np.exp(-s), -5.0 / 6 * (1 + s) * np.exp(-s)
    b = 1 + r2 / (2 * alpha)
    return b ** -alpha, -0.5 * b ** (-alpha - 1)


def reference_stationary(kind, variance, l, X1, X2, Kbar):
    """(K, dtheta without extras, dX1) with D_ijk = (x_ik - x'_jk) / l_k from direct differences."""
    l = np.broadcast_to(l, (X1.shape[1],))
    D = (X1[:, None, :] - X2[None, :, :]) / l  # [n1, n2, d]
    r2 = np.sum(D ** 2, axis=-1)
    f, df = _shape(kind, r2)
    G = Kbar * variance * df  # [n1, n2]
    dl = -2.0 / l * np.einsum("ij,ijk->k", G, D ** 2)
    dX = 2.0 / l * np.einsum("ij,ijk->ik", G, D)
    return variance * f, np.r_[np.sum(Kbar * f), dl], dX


STATIONARY_KINDS = ["se", "m12", "m32", "m52", "rq"]


def _stationary(kind, variance, ls):
    return {"se": K.SquaredExponential, "m12": K.Matern12, "m32": K.Matern32, "m52": K.Matern52,
            "rq": lambda v, l: K.RationalQuadratic(v, l, alpha=0.7)}[kind](variance, ls)


def _check_against_reference(kind, X1, X2, ls, rng, rtol=1e-9):
    k = _stationary(kind, 1.3, ls)
    c, theta = k.core(), k.theta()
    Kbar = rng.normal(size=(X1.shape[0], X2.shape[0]))
    Kr, dr, dXr = reference_stationary(kind, 1.3, np.asarray(ls), X1, X2, Kbar)
    np.testing.assert_allclose(c.K(theta, X1, X2), Kr, rtol=1e-11, atol=1e-300)
    dth, dX = c.grad(theta, X1, X2, Kbar, True)
    dl = dr[1:] if np.ndim(ls) else [dr[1:].sum()]
    np.testing.assert_allclose(dth[:1 + len(dl)], np.r_[dr[0], dl], rtol=rtol, atol=rtol * np.abs(dr).max())
    np.testing.assert_allclose(dX, dXr, rtol=rtol, atol=rtol * np.abs(dXr).max())


# Blocks hold up to 32 rows of X1 (4 when X2 has thousands of rows): 1 row, fewer than a
# block, a whole block, one past it, several blocks with a remainder; d = 3 and 23 take direct
# differences, d = 24 and 784 the GEMM.
@pytest.mark.parametrize("n1,n2", [(1, 5), (7, 40), (32, 40), (33, 40), (70, 9), (9, 2100)])
@pytest.mark.parametrize("d", [3, 23, 24, 784])
@pytest.mark.parametrize("kind", STATIONARY_KINDS)
def test_stationary_blocks_match_numpy_reference(kind, n1, n2, d, rng):
    if d > 3 and n2 == 2100 and kind != "se":
        pytest.skip("one kind is enough for the large case")
    X1, X2 = rng.uniform(size=(n1, d)), rng.uniform(size=(n2, d))
    scale = 0.5 * np.sqrt(d)  # r2 of order 1
    for ls in (scale, rng.uniform(0.5, 2.0, d) * scale):
        _check_against_reference(kind, X1, X2, ls, rng)


@pytest.mark.parametrize("kind", STATIONARY_KINDS)
@pytest.mark.parametrize("ard", [False, True])
def test_high_dimensional_gradients_match_finite_differences(kind, ard, rng):
    d = 784
    X1, X2 = rng.uniform(size=(3, d)), rng.uniform(size=(4, d))
    ls = 0.5 * np.sqrt(d) * (rng.uniform(0.5, 2.0, d) if ard else 1.0)
    check_grads(_stationary(kind, 1.3, ls), X1, X2, rng)


def test_gemm_distances_with_a_large_offset_and_nearly_coincident_points(rng):
    """d = 784, inputs near 1e6, pairs at every distance from 1e-6 to 1 (in input units):
    Matern 1/2's input gradient, whose df/dr2 ~ 1/r reads r2 with no cancellation to hide
    behind, and SE's matrix agree with direct differences pair by pair. (Scaling each input
    by 1/l costs the pair eps |a| / |a - b| of relative accuracy, 1e-10 at the closest here.)"""
    d, n = 784, 20
    X2 = 1e6 + rng.uniform(size=(n, d))
    t = np.logspace(-6, 0, n)
    X1 = X2 + t[:, None] * rng.uniform(-1, 1, size=(n, d))
    X1[0] = X2[0]  # one exact coincidence
    Kbar = np.eye(n)  # row i pairs with row i of X2 only
    for l in (0.3, 3.0):
        m12 = K.Matern12(1.3, l)
        _, _, dXr = reference_stationary("m12", 1.3, l, X1, X2, Kbar)
        dth, dX = m12.core().grad(m12.theta(), X1, X2, Kbar, True)
        row_scale = np.abs(dXr).max(axis=1, keepdims=True)
        assert np.all(np.abs(dX - dXr) <= 1e-9 * row_scale)
        D = (X1 - X2) / l
        r = np.sqrt(np.sum(D ** 2, axis=1))
        assert dth[1] == pytest.approx(np.sum(1.3 * np.exp(-r) * r / l), rel=1e-9)
        se = K.SquaredExponential(1.3, l * 10)
        np.testing.assert_allclose(se.K(X1, X2), reference_stationary("se", 1.3, l * 10, X1, X2, Kbar)[0],
                                   rtol=1e-12, atol=1e-300)
        np.testing.assert_array_equal(np.diag(se.K(X2)), 1.3)


@pytest.mark.parametrize("d", [3, 784])
def test_infinitely_distant_points_give_zeros_not_nans(d, rng):
    """r2 beyond 1e300 is capped there and k is 0 (Matern's polynomial factors included); at
    d = 784 scaled inputs beyond 1e100 leave the GEMM path for direct differences."""
    X = rng.uniform(size=(5, d))
    X[0, 1] = 1e200
    for k in (K.SquaredExponential(1.3, 2.0), K.Matern12(1.3, 2.0), K.Matern32(1.3, 2.0),
              K.Matern52(1.3, [2.0] * d)):
        Kx = k.K(X)
        assert np.all(np.isfinite(Kx)) and np.all(Kx[0, 1:] < 1e-300) and Kx[0, 0] == 1.3
        dth, dX = k.core().grad_sym(k.theta(), X, np.ones((5, 5)), True)
        assert np.all(np.isfinite(dth)) and np.all(np.isfinite(dX))


@pytest.mark.parametrize("d", [3, 784])
def test_stationary_threads_agree(d, rng):
    X1, X2 = rng.uniform(size=(300, d)), rng.uniform(size=(200, d))
    k = K.Matern52(1.3, 0.5 * np.sqrt(d) * rng.uniform(0.5, 2.0, d))
    c, theta = k.core(), k.theta()
    Kbar = rng.normal(size=(300, 200))
    Ks = rng.normal(size=(300, 300))
    Ks = Ks + Ks.T
    before = vi.get_num_threads()
    results = {}
    try:
        for n in (1, 2):
            vi.set_num_threads(n)
            results[n] = (c.K(theta, X1, X2),) + c.grad(theta, X1, X2, Kbar, True) + c.grad_sym(theta, X1, Ks, True)
    finally:
        vi.set_num_threads(before)
    for one, two in zip(results[1], results[2]):
        np.testing.assert_allclose(one, two, rtol=1e-12, atol=1e-12 * np.abs(one).max())


@pytest.mark.parametrize("d", [3, 24, 784])
def test_stationary_K_sym_is_exactly_symmetric(d, rng):
    X = rng.uniform(size=(70, d))
    for kind in STATIONARY_KINDS:
        Kx = _stationary(kind, 1.3, 0.5 * np.sqrt(d)).K(X)
        np.testing.assert_array_equal(Kx, Kx.T)
        np.testing.assert_array_equal(np.diag(Kx), 1.3)

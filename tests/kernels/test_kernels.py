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

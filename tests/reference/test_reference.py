"""The numpy reference (varinf.reference) against varinf's C++ core, and the reference's own
gradients against central finite differences (so the oracle itself is checked)."""

import numpy as np
import pytest

import varinf as vi
from varinf.reference import gpr as ref_gpr
from varinf.reference import kernels as ref_k
from _grad import central_differences, check_grad

KINDS = {"se": (ref_k.SquaredExponential, vi.kernels.SquaredExponential),
         "matern52": (ref_k.Matern52, vi.kernels.Matern52)}


def make_pair(kind, ard, d, rng):
    """The same kernel as a reference object and a varinf object."""
    variance = rng.uniform(0.5, 2.0)
    lengthscales = rng.uniform(0.5, 2.0, d) if ard else rng.uniform(0.5, 2.0)
    ref_cls, vi_cls = KINDS[kind]
    return ref_cls(variance, lengthscales), vi_cls(variance=variance, lengthscales=lengthscales)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ard", [True, False])
def test_kernel_matrix_matches_varinf(kind, ard, rng):
    X1, X2 = rng.standard_normal((7, 3)), rng.standard_normal((5, 3))
    ref, k = make_pair(kind, ard, 3, rng)
    np.testing.assert_allclose(ref.K(X1, X2), k.K(X1, X2), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.K(X1), k.K(X1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.K_diag(X1), k.K_diag(X1), rtol=1e-14, atol=1e-15)


def test_kernel_blocks_do_not_change_the_result(rng, monkeypatch):
    X1, X2 = rng.standard_normal((23, 4)), rng.standard_normal((11, 4))
    ref, _ = make_pair("se", True, 4, rng)
    Kbar = rng.standard_normal((23, 11))
    whole_K, whole_g = ref.K(X1, X2), ref.grad(X1, X2, Kbar)
    monkeypatch.setattr(ref_k, "_BLOCK_ENTRIES", 3 * 11 * 4)  # blocks of 3 rows
    np.testing.assert_allclose(ref.K(X1, X2), whole_K, rtol=1e-14)
    for a, b in zip(ref.grad(X1, X2, Kbar), whole_g):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ard", [True, False])
def test_kernel_gradients_match_varinf(kind, ard, rng):
    X1, X2 = rng.standard_normal((9, 3)), rng.standard_normal((6, 3))
    X2[0] = X1[0]  # a zero distance: Matern's df/dr2 must stay finite there
    Kbar = rng.standard_normal((9, 6))
    ref, k = make_pair(kind, ard, 3, rng)
    dvariance, dl, dX1 = ref.grad(X1, X2, Kbar)
    dtheta, dX1_vi = k.core().grad(k.theta(), X1, X2, Kbar, True)
    np.testing.assert_allclose(np.concatenate([[dvariance], np.ravel(dl)]), dtheta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dX1, dX1_vi, rtol=1e-10, atol=1e-12)
    assert np.shape(dl) == np.shape(ref.lengthscales)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ard", [True, False])
def test_reference_kernel_gradients_match_finite_differences(kind, ard, rng):
    X1, X2 = rng.standard_normal((6, 3)), rng.standard_normal((5, 3))
    Kbar = rng.standard_normal((6, 5))
    ref, _ = make_pair(kind, ard, 3, rng)
    cls = type(ref)
    dvariance, dl, dX1 = ref.grad(X1, X2, Kbar)

    def objective(variance=ref.variance, lengthscales=ref.lengthscales, X=X1):
        return np.sum(Kbar * cls(variance, lengthscales).K(X, X2))

    np.testing.assert_allclose(dvariance, central_differences(lambda v: objective(variance=v), ref.variance),
                               rtol=1e-7)
    np.testing.assert_allclose(dl, central_differences(lambda l: objective(lengthscales=l), ref.lengthscales),
                               rtol=1e-6, atol=1e-8)
    check_grad(lambda X: objective(X=X), X1, dX1, rtol=1e-6, atol=1e-8)


def regression_problem(rng, n=30, d=2):
    X = rng.uniform(-2, 2, (n, d))  # [n, d]
    y = np.sin(X @ rng.standard_normal(d)) + 0.1 * rng.standard_normal(n)  # [n]
    return X, y


@pytest.mark.parametrize("mean", [None, "constant"])
@pytest.mark.parametrize("kind", KINDS)
def test_gpr_lml_and_gradient_match_varinf(mean, kind, rng):
    X, y = regression_problem(rng)
    ref_k_, k = make_pair(kind, True, 2, rng)
    ref = ref_gpr.GPR(X, y, ref_k_, noise_variance=0.3, mean=mean)
    model = vi.GPR(X, y, k, noise_variance=0.3, mean=mean)
    lml, grad = ref.log_marginal_likelihood(return_grad=True)
    lml_vi, grad_vi = model.log_marginal_likelihood(return_grad=True)
    assert lml == pytest.approx(lml_vi, rel=1e-12)
    assert ref.log_marginal_likelihood() == pytest.approx(lml, rel=1e-14)
    np.testing.assert_allclose(grad, grad_vi, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("mean", [None, "constant"])
def test_reference_gpr_gradient_matches_finite_differences(mean, rng):
    X, y = regression_problem(rng)
    ref = ref_gpr.GPR(X, y, ref_k.SquaredExponential(1.3, [0.8, 1.5]), noise_variance=0.2, mean=mean)
    x0 = ref.get_raw()
    _, grad = ref.log_marginal_likelihood(return_grad=True)

    def lml_at(x):
        ref.set_raw(x)
        return ref.log_marginal_likelihood()

    check_grad(lml_at, x0, grad, rtol=1e-6, atol=1e-8)


def test_gpr_lml_matches_the_closed_form_density(rng):
    """An oracle for the oracle: log N(y; m, K + s2n I) computed directly."""
    X, y = regression_problem(rng, n=12)
    k = ref_k.Matern52(0.7, [1.1, 0.6])
    Ky = k.K(X) + 0.25 * np.eye(12)
    _, logdet = np.linalg.slogdet(Ky)
    r = y - 0.4
    direct = -0.5 * r @ np.linalg.solve(Ky, r) - 0.5 * logdet - 6 * np.log(2 * np.pi)
    assert ref_gpr.log_marginal_likelihood(k, X, y, 0.25, mean=0.4) == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize("full_cov", [False, True])
def test_gpr_predictions_match_varinf(full_cov, rng):
    X, y = regression_problem(rng)
    Xnew = rng.uniform(-2.5, 2.5, (8, 2))
    ref_k_, k = make_pair("se", True, 2, rng)
    ref = ref_gpr.GPR(X, y, ref_k_, noise_variance=0.1, mean="constant")
    model = vi.GPR(X, y, k, noise_variance=0.1, mean="constant")
    for ref_pred, vi_pred in [(ref.predict_f, model.predict_f), (ref.predict_y, model.predict_y)]:
        mean, var = ref_pred(Xnew, full_cov=full_cov)
        mean_vi, var_vi = vi_pred(Xnew, full_cov=full_cov)
        np.testing.assert_allclose(mean, mean_vi, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(var, var_vi, rtol=1e-10, atol=1e-10)


def test_reference_fit_reaches_varinf_optimum(rng):
    X, y = regression_problem(rng, n=40)
    ref = ref_gpr.GPR(X, y, ref_k.SquaredExponential(1.0, [1.0, 1.0]), noise_variance=0.5)
    model = vi.GPR(X, y, vi.kernels.SquaredExponential(variance=1.0, lengthscales=[1.0, 1.0]),
                   noise_variance=0.5)
    start = ref.log_marginal_likelihood()
    ref.fit()
    model.fit()
    assert ref.optimizer_result_.success
    assert ref.log_marginal_likelihood() > start + 1.0
    assert ref.log_marginal_likelihood() == pytest.approx(model.log_marginal_likelihood(), abs=1e-5)
    np.testing.assert_allclose(ref.noise_variance, model.noise_variance, rtol=1e-3)

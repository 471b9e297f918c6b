"""SGPR (Titsias 2009): the C++ bound and gradient against the numpy reference, central finite
differences and the identities of docs/math.md section 5.8."""

import numpy as np
import pytest

import varinf as vi
from varinf import kernels as K
from varinf._loader import core
from varinf.reference import sparse as ref
from _grad import central_differences, check_grad, check_model_gradient


@pytest.fixture
def data(rng):
    X = rng.uniform(-3, 3, size=(150, 2))  # [n, d]
    y = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, 1]) + 0.1 * rng.normal(size=150)  # [n]
    Z = rng.uniform(-3, 3, size=(12, 2))  # [m, d]
    return X, y, Z


def kernels():
    return [K.SquaredExponential(1.4, [0.9, 1.6]),
            K.Matern32(0.8, 1.2) + K.Linear(0.3),
            K.Matern52(1.1, [1.3, 0.7]) * K.Constant(0.9)]


@pytest.mark.parametrize("kernel", kernels(), ids=lambda k: type(k).__name__)
def test_bound_and_upper_bound_equal_numpy_reference(data, kernel):
    X, y, Z = data
    model = vi.SGPR(X, y, kernel, Z, noise_variance=0.07, mean=0.3)
    np.testing.assert_allclose(model.elbo(), ref.sgpr_bound(kernel, X, y, Z, 0.07, 0.3), rtol=1e-10)
    np.testing.assert_allclose(model.upper_bound(), ref.sgpr_upper_bound(kernel, X, y, Z, 0.07, 0.3),
                               rtol=1e-10)


@pytest.mark.parametrize("kernel", kernels(), ids=lambda k: type(k).__name__)
def test_fitc_equals_dense_reference(data, kernel):
    X, y, Z = data
    model = vi.FITC(X, y, kernel, Z, noise_variance=0.07, mean=0.3)
    np.testing.assert_allclose(model.log_marginal_likelihood(), ref.fitc_lml(kernel, X, y, Z, 0.07, 0.3),
                               rtol=1e-10)


OBJECTIVES = {"sgpr": (core.sparse.sgpr_factor, core.sparse.sgpr_bound_grad), "fitc": (core.sparse.fitc_factor, core.sparse.fitc_lml_grad)}


@pytest.mark.parametrize("objective", ["sgpr", "fitc"])
@pytest.mark.parametrize("kernel", kernels(), ids=lambda k: type(k).__name__)
def test_cpp_gradient_matches_central_differences(data, kernel, objective):
    X, y, Z = data
    kc, theta = kernel.core(), kernel.theta()
    s2, mu, jit = 0.07, np.array([0.3]), 1e-6
    factor, value_grad = OBJECTIVES[objective]

    def bound(theta=theta, Z=Z, s2=s2, mu=mu):
        return factor(kc, theta, X, y, np.ascontiguousarray(Z), s2, np.asarray(mu), jit).bound

    b, dtheta, dZ, dnoise, dmean, _ = value_grad(kc, theta, X, y, Z, s2, mu, jit)
    assert b == pytest.approx(bound(), rel=1e-12)
    check_grad(lambda t: bound(theta=t), theta, dtheta, h=1e-5, rtol=1e-5, atol=1e-5)
    check_grad(lambda z: bound(Z=z), Z, dZ, h=1e-5, rtol=1e-5, atol=1e-5)
    assert dnoise == pytest.approx(central_differences(lambda s: bound(s2=s[0]), [s2], h=1e-5)[0], rel=1e-5)
    np.testing.assert_allclose(dmean, central_differences(lambda m: bound(mu=m), mu, h=1e-5), rtol=1e-5)


def test_blocked_threads_give_the_same_bound_and_gradient(rng):
    # n large enough for many row blocks on every thread.
    X = rng.normal(size=(9000, 3))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=9000)
    Z = X[:40].copy()
    kernel = K.SquaredExponential(1.0, [1.0, 1.5, 2.0])
    results = []
    for threads in (1, 2):
        saved = vi.get_num_threads()
        vi.set_num_threads(threads)
        try:
            results.append(vi.SGPR(X, y, kernel, Z, noise_variance=0.01).elbo(return_grad=True))
        finally:
            vi.set_num_threads(saved)
    np.testing.assert_allclose(results[0][0], ref.sgpr_bound(kernel, X, y, Z, 0.01), rtol=1e-9)
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-10)
    # Another summation order: equal to rounding, relative to the gradient's scale.
    scale = np.abs(results[0][1]).max()
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=0, atol=1e-9 * scale)


def test_bound_below_exact_lml_below_upper_bound(data):
    X, y, Z = data
    kernel = K.SquaredExponential(1.4, [0.9, 1.6])
    model = vi.SGPR(X, y, kernel, Z, noise_variance=0.07)
    exact = vi.GPR(X, y, kernel, noise_variance=0.07).log_marginal_likelihood()
    assert model.elbo() < exact < model.upper_bound()


def test_inducing_at_data_equals_gpr(data, rng, monkeypatch):
    X, y, _ = data
    X, y = X[:60], y[:60]
    kernel = K.SquaredExponential(1.4, [0.9, 1.6])
    gpr = vi.GPR(X, y, kernel, noise_variance=0.07, mean=0.2)
    lml = gpr.log_marginal_likelihood()
    # With the default jitter j = 1e-6 on K(Z, Z): Kff - Qff ~ j I moves the bound by about
    # n j / (2 s2n), and it stays below the LML.
    sgpr = vi.SGPR(X, y, kernel, X, noise_variance=0.07, mean=0.2)
    assert sgpr.elbo() == pytest.approx(lml, abs=2 * len(y) * 1e-6 / (2 * 0.07))
    assert sgpr.elbo() <= lml <= sgpr.upper_bound()
    # With a tiny jitter the identity is sharp, predictions included.
    monkeypatch.setattr(vi.models.sgpr, "KUU_JITTER", 1e-11)
    sgpr = vi.SGPR(X, y, kernel, X, noise_variance=0.07, mean=0.2)
    assert sgpr.elbo() == pytest.approx(lml, abs=1e-6)
    assert sgpr.upper_bound() == pytest.approx(lml, abs=1e-5)  # tr(Kff - Qff) ~ rounding
    Xs = rng.uniform(-3, 3, size=(20, 2))
    for full_cov in (False, True):
        for a, b in zip(sgpr.predict_y(Xs, full_cov), gpr.predict_y(Xs, full_cov)):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(sgpr.predict_log_density(Xs, np.sin(Xs[:, 0])),
                               gpr.predict_log_density(Xs, np.sin(Xs[:, 0])), rtol=1e-7)


def test_fitc_with_inducing_at_data_equals_gpr(data, rng, monkeypatch):
    X, y, _ = data
    X, y = X[:60], y[:60]
    kernel = K.Matern52(1.4, [0.9, 1.6])
    gpr = vi.GPR(X, y, kernel, noise_variance=0.07, mean=0.2)
    monkeypatch.setattr(vi.models.sgpr, "KUU_JITTER", 1e-11)
    fitc = vi.FITC(X, y, kernel, X, noise_variance=0.07, mean=0.2)
    assert fitc.log_marginal_likelihood() == pytest.approx(gpr.log_marginal_likelihood(), abs=1e-6)
    Xs = rng.uniform(-3, 3, size=(20, 2))
    for full_cov in (False, True):
        for a, b in zip(fitc.predict_y(Xs, full_cov), gpr.predict_y(Xs, full_cov)):
            np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-8)


@pytest.mark.filterwarnings("ignore:L-BFGS-B stopped")
def test_fitc_fit_and_gradient_chain(data):
    X, y, Z = data
    model = vi.FITC(X, y, K.SquaredExponential(1.4, [0.9, 1.6]), Z, noise_variance=0.3, mean="constant")
    params = vi.parameters.ParameterVector(model.parameters)
    _, grad = model.log_marginal_likelihood(return_grad=True)

    def f(x):
        params.set(x)
        return model.log_marginal_likelihood()

    check_grad(f, params.get(), grad, h=1e-5, rtol=1e-5, atol=1e-5)
    before = model.log_marginal_likelihood()
    model.fit(max_iter=200)
    assert model.log_marginal_likelihood() > before + 50
    assert np.isnan(model._posterior().upper_bound)
    assert not hasattr(model, "elbo") and not hasattr(vi.SGPR, "log_marginal_likelihood")


def test_optimal_qu_is_the_prediction_at_Z(data):
    X, y, Z = data
    model = vi.SGPR(X, y, K.Matern52(1.1, [1.3, 0.7]), Z, noise_variance=0.05, mean="constant")
    mu, S = model.compute_qu()
    mean, cov = model.predict_f(Z, full_cov=True)
    # q(u) is of f(Z) under K(Z, Z) + jitter I, predict_f uses K(Z, Z): equal up to the jitter.
    np.testing.assert_allclose(mu, mean, rtol=0, atol=1e-5)
    np.testing.assert_allclose(S, cov, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.diag(cov), model.predict_f(Z)[1], rtol=1e-7, atol=1e-9)


def test_model_gradient_chains_through_transforms(data):
    X, y, Z = data
    model = vi.SGPR(X, y, K.SquaredExponential(1.4, [0.9, 1.6]), Z, noise_variance=0.07,
                    mean="constant")
    check_model_gradient(model, rtol=1e-5)


def test_fit_improves_bound_and_predicts_well(rng):
    X = rng.uniform(-3, 3, size=(400, 1))
    f = lambda x: np.sin(2 * x[:, 0]) + 0.3 * x[:, 0]  # noqa: E731
    y = f(X) + 0.1 * rng.normal(size=400)
    model = vi.SGPR(X, y, K.SquaredExponential(), X[::40].copy(), noise_variance=0.5)
    before = model.elbo()
    model.fit(max_iter=300)
    assert model.elbo() > before + 100
    assert model.elbo() <= model.upper_bound()
    Xs = np.linspace(-2.8, 2.8, 50)[:, None]
    mean, var = model.predict_f(Xs)
    assert np.sqrt(np.mean((mean - f(Xs)) ** 2)) < 0.05
    assert model.noise_variance == pytest.approx(0.01, rel=0.3)
    samples = model.predict_f_samples(Xs, num_samples=400, seed=1)
    assert samples.shape == (400, 50)
    np.testing.assert_allclose(samples.mean(0), mean, atol=4 * np.sqrt(var.max() / 400) + 1e-3)


def test_fixed_Z_is_not_moved(data):
    X, y, Z = data
    model = vi.SGPR(X, y, K.SquaredExponential(), Z, noise_variance=0.5, train_Z=False)
    model.fit(max_iter=20)
    np.testing.assert_array_equal(model.Z, Z)


@pytest.mark.parametrize("bad, match", [
    (dict(Z=np.zeros((5, 3))), "Z must have 2 columns"),
    (dict(Z=np.full((5, 2), np.nan)), "Z contains NaN"),
    (dict(y=np.zeros(7)), "y has 7 rows"),
    (dict(noise_variance=-1.0), "noise_variance"),
])
def test_bad_input_raises_naming_the_argument(data, bad, match):
    X, y, Z = data
    kwargs = dict(X=X, y=y, kernel=K.SquaredExponential(), Z=Z, noise_variance=0.1)
    kwargs.update(bad)
    with pytest.raises(ValueError, match=match):
        vi.SGPR(**kwargs)


def test_fit_from_noise_on_its_lower_bound_reaches_the_same_optimum(rng):
    X = rng.uniform(-3, 3, size=(300, 1))
    y = np.sin(2 * X[:, 0]) + 0.2 * rng.normal(size=300)
    fits = [vi.SGPR(X, y, K.RBF(1.0, 1.0), X[::20].copy(), noise_variance=noise).fit() for noise in (1e-6, 0.1)]
    assert fits[0].elbo() == pytest.approx(fits[1].elbo(), rel=1e-4)
    assert fits[0].noise_variance == pytest.approx(fits[1].noise_variance, rel=1e-2)

"""Exact GP regression against scikit-learn, finite differences and its own identities."""

import warnings

import numpy as np
import pytest

import varinf as vi
from varinf import kernels as K
from _gil import assert_releases_gil
from _grad import central_differences
from varinf.parameters import ParameterVector

sklearn_gp = pytest.importorskip("sklearn.gaussian_process")
skk = pytest.importorskip("sklearn.gaussian_process.kernels")


@pytest.fixture
def data(rng):
    X = rng.uniform(-3, 3, size=(60, 3))
    y = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, 1]) + 0.1 * rng.normal(size=60)
    return X, y


def sklearn_model(variance, lengthscales, noise):
    kernel = skk.ConstantKernel(variance) * skk.RBF(lengthscales) + skk.WhiteKernel(noise)
    return sklearn_gp.GaussianProcessRegressor(kernel, optimizer=None, alpha=0.0)


def test_lml_and_predictions_equal_sklearn(data, rng):
    X, y = data
    ls = [0.8, 1.3, 2.1]
    model = vi.GPR(X, y, K.SquaredExponential(1.7, ls), noise_variance=0.05)
    sk = sklearn_model(1.7, ls, 0.05).fit(X, y)
    np.testing.assert_allclose(model.log_marginal_likelihood(), sk.log_marginal_likelihood_value_, rtol=1e-8)
    Xs = rng.uniform(-3, 3, size=(25, 3))
    mean, var = model.predict_y(Xs)
    sk_mean, sk_std = sk.predict(Xs, return_std=True)
    np.testing.assert_allclose(mean, sk_mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(var, sk_std ** 2, rtol=1e-8, atol=1e-10)
    mean_c, cov = model.predict_y(Xs, full_cov=True)
    _, sk_cov = sk.predict(Xs, return_cov=True)
    np.testing.assert_allclose(cov, sk_cov, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(mean_c, mean, rtol=1e-12)


def test_fit_reaches_sklearn_lml(data):
    X, y = data
    model = vi.GPR(X, y, K.SquaredExponential(1.0, [1.0, 1.0, 1.0]), noise_variance=0.1).fit()
    kernel = skk.ConstantKernel(1.0, (1e-6, 1e6)) * skk.RBF([1.0] * 3, (1e-6, 1e6)) + skk.WhiteKernel(0.1, (1e-6, 1e6))
    sk = sklearn_gp.GaussianProcessRegressor(kernel, alpha=0.0, random_state=0).fit(X, y)
    assert model.log_marginal_likelihood() >= sk.log_marginal_likelihood_value_ - 1e-3


@pytest.mark.parametrize("mean", [None, "constant"])
def test_lml_gradient_matches_finite_differences(data, mean):
    X, y = data
    kernel = K.Matern52(1.2, [0.9, 1.1, 1.4]) + K.Linear(0.3) * K.Constant(0.5)
    model = vi.GPR(X, y + 2.0, kernel, noise_variance=0.2, mean=mean)
    lml, grad = model.log_marginal_likelihood(return_grad=True)
    pv = ParameterVector(model.parameters)
    x0 = pv.get()

    def lml_at(x):
        pv.set(x)
        return model.log_marginal_likelihood()

    fd = central_differences(lml_at, x0)
    pv.set(x0)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)
    assert lml == pytest.approx(model.log_marginal_likelihood(), rel=1e-12)


def test_fixed_parameters_are_not_trained(data):
    X, y = data
    kernel = K.SquaredExponential(1.0, 1.0)
    kernel._lengthscales.trainable = False
    model = vi.GPR(X, y, kernel, noise_variance=0.1).fit(max_iter=50)
    assert kernel.lengthscales == 1.0
    assert model.noise_variance != 0.1


def test_constant_mean_is_learned(rng):
    X = rng.uniform(0, 5, size=(40, 1))
    y = 10.0 + np.sin(X[:, 0]) + 0.05 * rng.normal(size=40)
    model = vi.GPR(X, y, K.SquaredExponential(), noise_variance=0.1, mean="constant").fit()
    assert abs(model.mean - 10.0) < 1.5
    assert model.predict_f(X)[0] == pytest.approx(y, abs=0.3)


def test_predict_in_blocks_matches_one_block(rng):
    X, y = rng.normal(size=(300, 2)), rng.normal(size=300)
    model = vi.GPR(X, y, K.Matern32(1.0, [1.0, 2.0]), noise_variance=0.3)
    Xs = rng.normal(size=(20000, 2))  # more rows than one prediction block holds
    mean, var = model.predict_f(Xs)
    mean_c, cov = model.predict_f(Xs[-50:], full_cov=True)
    np.testing.assert_allclose(mean[-50:], mean_c, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var[-50:], np.diag(cov), rtol=1e-8, atol=1e-12)


def test_log_density_and_samples(data, rng):
    X, y = data
    model = vi.GPR(X, y, K.SquaredExponential(1.0, 1.0), noise_variance=0.1)
    Xs, ys = X[:10], y[:10]
    mean, var = model.predict_y(Xs)
    np.testing.assert_allclose(model.predict_log_density(Xs, ys),
                               -0.5 * np.log(2 * np.pi * var) - 0.5 * (ys - mean) ** 2 / var)
    samples = model.predict_f_samples(X[:5], num_samples=4000, seed=1)
    assert samples.shape == (4000, 5)
    f_mean, f_cov = model.predict_f(X[:5], full_cov=True)
    np.testing.assert_allclose(samples.mean(0), f_mean, atol=4 * np.sqrt(np.diag(f_cov).max() / 4000) + 1e-3)
    np.testing.assert_array_equal(samples, model.predict_f_samples(X[:5], num_samples=4000, seed=1))


# --- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("X,y,match", [
    (np.ones((3, 2, 2)), np.ones(3), "X must be 2-D"),
    (np.ones((3, 2)), np.ones(4), "y has 4 rows"),
    (np.ones((0, 2)), np.ones(0), "X is empty"),
    (np.array([[1.0], [np.nan]]), np.ones(2), "X contains NaN"),
    (np.ones((2, 1)), np.array([1.0, np.inf]), "y contains NaN or Inf"),
    (np.array([["a"], ["b"]]), np.ones(2), "X must be numeric"),
    (np.ones((2, 1)), np.ones((2, 2)), "y must be 1-D"),
])
def test_bad_input_raises_value_error_naming_the_argument(X, y, match):
    with pytest.raises(ValueError, match=match):
        vi.GPR(X, y, K.SquaredExponential())


def test_bad_parameters_and_new_inputs(data):
    X, y = data
    with pytest.raises(ValueError, match="noise_variance"):
        vi.GPR(X, y, K.SquaredExponential(), noise_variance=0.0)
    with pytest.raises(ValueError, match="kernel"):
        vi.GPR(X, y, "rbf")
    with pytest.raises(ValueError, match="X has 3 .*2 lengthscales"):
        vi.GPR(X, y, K.SquaredExponential(lengthscales=[1.0, 1.0]))
    model = vi.GPR(X, y, K.SquaredExponential())
    with pytest.raises(ValueError, match="Xnew must have 3 columns"):
        model.predict_f(np.ones((2, 2)))
    with pytest.raises(ValueError, match="ynew has 3 rows"):
        model.predict_log_density(X[:2], y[:3])
    with pytest.raises(ValueError, match="num_samples"):
        model.predict_f_samples(X[:2], num_samples=0)


def test_singular_problem_raises_linalg_error_never_nan():
    # Finite inputs whose covariance overflows: no jitter can make it positive definite.
    X = np.array([[1e200], [1.0], [2.0]])
    model = vi.GPR(X, np.arange(3.0), K.Linear(1.0), noise_variance=0.1)
    with pytest.raises(vi.LinAlgError, match="noise_variance"):
        model.log_marginal_likelihood()
    with pytest.raises(np.linalg.LinAlgError):
        model.predict_f(X)


def test_jitter_rescues_a_nearly_singular_problem():
    X = np.zeros((5, 1)) + 1.0
    model = vi.GPR(X, np.ones(5), K.Constant(1e6), noise_variance=1.0001e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(model.log_marginal_likelihood())


def test_noncontiguous_and_float32_inputs_work(data):
    X, y = data
    ref = vi.GPR(X, y, K.SquaredExponential()).log_marginal_likelihood()
    Xf = np.asfortranarray(X)
    assert vi.GPR(Xf, y, K.SquaredExponential()).log_marginal_likelihood() == pytest.approx(ref, rel=1e-12)
    Xw = np.zeros((60, 6))
    Xw[:, ::2] = X
    assert vi.GPR(Xw[:, ::2], y[::1], K.SquaredExponential()).log_marginal_likelihood() == pytest.approx(ref, rel=1e-12)
    lml32 = vi.GPR(X.astype(np.float32), y.astype(np.float32), K.SquaredExponential()).log_marginal_likelihood()
    assert lml32 == pytest.approx(ref, rel=1e-4)


@pytest.mark.parametrize("model_class", ["GPR", "SGPR", "FITC"])
def test_model_owns_its_training_data(rng, model_class):
    """Editing the caller's arrays after construction changes nothing (the cached factor is
    never mixed with edited data), and the model's own copies are read-only."""
    X = rng.normal(size=(50, 1))
    y = np.sin(X[:, 0])
    extra = () if model_class == "GPR" else (X[::5].copy(),)
    model = getattr(vi, model_class)(X, y, K.RBF(), *extra, noise_variance=0.1)
    Xs = np.linspace(-2, 2, 7)[:, None]
    before = model.predict_y(Xs)
    X0, y0 = X.copy(), y.copy()
    X *= 2
    y += 1
    np.testing.assert_array_equal(model.predict_y(Xs), before)
    model.noise_variance = 0.2  # a new factorisation, from the model's own data
    fresh = getattr(vi, model_class)(X0, y0, K.RBF(), *extra, noise_variance=0.2)
    np.testing.assert_allclose(model.predict_y(Xs), fresh.predict_y(Xs), rtol=1e-12)
    assert not (np.shares_memory(model.X, X) or np.shares_memory(model.y, y))
    with pytest.raises(ValueError, match="read-only"):
        model.X[0, 0] = 1.0


def test_fit_moves_a_parameter_started_on_its_lower_bound(rng):
    """A value on its lower bound starts where its gradient does not vanish: the fit reaches
    the optimum of a start just above the bound."""
    X = rng.normal(size=(50, 1))
    y = np.sin(X[:, 0])
    lml = [vi.GPR(X, y, K.RBF(v, 1.0), noise_variance=0.1).fit().log_marginal_likelihood()
           for v in (1e-6, 1e-5)]
    assert lml[0] == pytest.approx(lml[1], abs=1e-3)


def test_predict_releases_the_gil(rng):
    """One long predict_f call: another Python thread keeps running during it."""
    X, y = rng.normal(size=(1000, 4)), rng.normal(size=1000)
    model = vi.GPR(X, y, K.SquaredExponential(1.0, 1.0), noise_variance=0.1)
    model.predict_f(X[:10])  # factorise once, outside the call measured
    Xs = rng.normal(size=(6000, 4))
    assert_releases_gil(lambda: model.predict_f(Xs))


def test_pandas_nullable_integer_frames_are_accepted(rng):
    pd = pytest.importorskip("pandas")
    X = rng.integers(0, 10, size=(30, 2))
    y = np.sin(X[:, 0]) + X[:, 1]
    frame = pd.DataFrame(X, columns=["a", "b"]).astype("Int64")
    model = vi.GPR(frame, pd.Series(y), K.RBF(1.0, [1.0, 1.0]), noise_variance=0.1)
    reference = vi.GPR(X.astype(float), y, K.RBF(1.0, [1.0, 1.0]), noise_variance=0.1)
    assert model.log_marginal_likelihood() == reference.log_marginal_likelihood()
    np.testing.assert_array_equal(model.predict_f(frame)[0], reference.predict_f(X)[0])
    frame.iloc[3, 1] = pd.NA
    with pytest.raises(ValueError, match="^X contains NaN or Inf"):
        vi.GPR(frame, y, K.RBF(), noise_variance=0.1)

"""The scikit-learn estimators: scikit-learn's own estimator checks, equivalence with the wrapped
models and with scikit-learn's GaussianProcessRegressor, and use inside Pipeline / GridSearchCV."""

import subprocess
import sys

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import varinf as vi
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks
from _files import _edit_meta, _rewrite
from varinf.estimators import (
    GPRegressor,
    SGPRRegressor,
    SVGPClassifier,
    SVGPRegressor,
    VAETransformer,
    copy_kernel,
)


# The sparse models run the checks with 20 inducing inputs (defaults: 100) and SGPR with at most 200
# L-BFGS-B iterations (default 1000) to keep them quick.
@parametrize_with_checks([GPRegressor(), SGPRRegressor(n_inducing=20, max_iter=200), SVGPRegressor(n_inducing=20),
                          SVGPRegressor(n_inducing=20, n_latent_gps=1), SVGPClassifier(n_inducing=20),
                          SVGPClassifier(n_inducing=20, likelihood="softmax"), VAETransformer()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _sine(n=60, d=2, noise=0.1, seed=0, offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(n, d))  # [n, d]
    y = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, -1]) + noise * rng.standard_normal(n)  # [n]
    return X, offset + scale * y


# --- regressors --------------------------------------------------------------------------------

def test_gpregressor_equals_the_gpr_model_after_the_same_fit():
    X, y = _sine()
    est = GPRegressor(kernel=vi.kernels.SquaredExponential(lengthscales=[1.0, 1.0]), noise_variance=0.5).fit(X, y)
    model = vi.GPR(X, y, vi.kernels.SquaredExponential(lengthscales=[1.0, 1.0]), noise_variance=0.5).fit()
    Xs = X[:7] + 0.3
    mean, std = est.predict(Xs, return_std=True)
    m_mean, m_var = model.predict_y(Xs)
    np.testing.assert_allclose(mean, m_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, np.sqrt(m_var), rtol=1e-12)
    assert est.log_marginal_likelihood_value_ == pytest.approx(model.log_marginal_likelihood(), rel=1e-12)
    assert est.noise_variance_ == pytest.approx(model.noise_variance, rel=1e-12)


def _sklearn_gpr(X, y, optimize):
    kernel = ConstantKernel(1.0) * RBF([1.0, 1.0]) + WhiteKernel(1.0)
    return GaussianProcessRegressor(kernel, normalize_y=True, optimizer="fmin_l_bfgs_b" if optimize else None,
                                    alpha=1e-12).fit(X, y)


def test_normalize_y_matches_sklearn_at_fixed_hyperparameters():
    X, y = _sine(offset=10.0, scale=3.0)
    sk = _sklearn_gpr(X, y, optimize=False)
    est = GPRegressor(normalize_y=True, max_iter=0).fit(X, y)
    # sklearn's alpha (1e-12) is added to the noise; the LML of the normalised targets agrees.
    assert est.log_marginal_likelihood_value_ == pytest.approx(sk.log_marginal_likelihood_value_, rel=1e-8)
    Xs = X[:9] * 1.1
    for kw in ({"return_std": True}, {"return_cov": True}):
        for ours, theirs in zip(est.predict(Xs, **kw), sk.predict(Xs, **kw)):
            np.testing.assert_allclose(ours, theirs, rtol=1e-7, atol=1e-9)


def test_normalize_y_after_optimisation_close_to_sklearn():
    X, y = _sine(n=80, offset=-4.0, scale=2.0, seed=1)
    sk = _sklearn_gpr(X, y, optimize=True)
    est = GPRegressor(normalize_y=True).fit(X, y)
    assert est.log_marginal_likelihood_value_ == pytest.approx(sk.log_marginal_likelihood_value_, abs=1e-3)
    Xs = _sine(n=20, seed=2)[0]
    mean, std = est.predict(Xs, return_std=True)
    sk_mean, sk_std = sk.predict(Xs, return_std=True)
    np.testing.assert_allclose(mean, sk_mean, atol=1e-3 * np.std(y))
    np.testing.assert_allclose(std, sk_std, rtol=1e-2)
    assert est.noise_variance_ == pytest.approx(sk.kernel_.k2.noise_level * np.std(y) ** 2, rel=1e-2)


def test_normalize_X_makes_predictions_independent_of_input_units():
    X, y = _sine(n=40)
    a = GPRegressor(normalize_X=True).fit(X, y)
    b = GPRegressor(normalize_X=True).fit(X * [1e3, 1e-2] + [7.0, -1.0], y)
    Xs = X[:6] + 0.2
    np.testing.assert_allclose(b.predict(Xs * [1e3, 1e-2] + [7.0, -1.0]), a.predict(Xs), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.kernel_.lengthscales, a.kernel_.lengthscales, rtol=1e-4)


def test_predict_std_cov_consistent_and_exclusive():
    X, y = _sine(n=40, offset=2.0)
    est = SGPRRegressor(n_inducing=10, normalize_y=True, normalize_X=True, random_state=0).fit(X, y)
    mean, std = est.predict(X[:5], return_std=True)
    mean2, cov = est.predict(X[:5], return_cov=True)
    np.testing.assert_allclose(mean, mean2, rtol=1e-12)
    np.testing.assert_allclose(std ** 2, np.diag(cov), rtol=1e-10)
    with pytest.raises(RuntimeError, match="At most one"):
        est.predict(X[:5], return_std=True, return_cov=True)


def test_sample_y_moments():
    X, y = _sine(n=30, offset=5.0)
    est = GPRegressor(normalize_y=True).fit(X, y)
    Xs = X[:4] + 0.1
    samples = est.sample_y(Xs, n_samples=4000, random_state=1)  # [4, 4000]
    assert samples.shape == (4, 4000)
    mean, cov = est.predict(Xs, return_cov=True)
    std = np.sqrt(np.diag(cov))
    assert np.all(np.abs(samples.mean(axis=1) - mean) < 5 * std / np.sqrt(4000))
    np.testing.assert_allclose(np.cov(samples), cov, atol=0.1 * std.max() ** 2)


def test_user_kernel_is_copied_not_changed():
    X, y = _sine()
    kernel = vi.kernels.SquaredExponential(lengthscales=[1.0, 1.0])
    kernel.K(X[:3])  # builds the C++ structure: the copy must still work
    est = clone(GPRegressor(kernel=kernel)).fit(X, y)
    np.testing.assert_array_equal(kernel.lengthscales, [1.0, 1.0])
    assert est.kernel_ is not kernel and not np.allclose(est.kernel_.lengthscales, 1.0)
    copied = copy_kernel(kernel * vi.kernels.Matern32())
    assert all(k._core_kernel is None for k in copied.kernels)
    np.testing.assert_allclose(copied.K(X[:4]), (kernel * vi.kernels.Matern32()).K(X[:4]), rtol=1e-14)


def test_sgpr_elbo_below_gpr_lml_at_the_same_hyperparameters():
    X, y = _sine(n=50)
    gpr = GPRegressor(max_iter=0, noise_variance=0.1).fit(X, y)
    sgpr = SGPRRegressor(n_inducing=8, max_iter=0, noise_variance=0.1, random_state=0).fit(X, y)
    full = SGPRRegressor(n_inducing=50, max_iter=0, noise_variance=0.1, random_state=0).fit(X, y)
    assert sgpr.elbo_ < gpr.log_marginal_likelihood_value_
    # Z = X (50 k-means centres of 50 points are the points): the bound is the LML (docs/math.md section 5.8), up to
    # the 1e-6 jitter on K(Z, Z).
    assert full.elbo_ == pytest.approx(gpr.log_marginal_likelihood_value_, rel=1e-4)


def test_svgp_regressor_learns_and_reports_its_elbo():
    X, y = _sine(n=200, offset=3.0, seed=3)
    Xt, yt = _sine(n=100, offset=3.0, seed=4, noise=0.0)
    est = SVGPRegressor(n_inducing=20, normalize_y=True, natgrad=True, iterations=1000, random_state=0).fit(X, y)
    assert est.score(Xt, yt) > 0.95
    assert np.isfinite(est.elbo_) and est.elbo_ == pytest.approx(est.model_.elbo(X, (y - y.mean()) / y.std()))
    assert est.noise_variance_ == pytest.approx(0.01, rel=0.5)


# --- composition ---------------------------------------------------------------------------------

def test_pipeline_with_scaler():
    X, y = _sine(n=80)
    X = X * [100.0, 0.01] + [5.0, -3.0]
    pipe = make_pipeline(StandardScaler(), GPRegressor(normalize_y=True)).fit(X, y)
    Xt, yt = _sine(n=50, seed=9, noise=0.0)
    assert pipe.score(Xt * [100.0, 0.01] + [5.0, -3.0], yt) > 0.95


def test_grid_search_over_inducing_points_and_kernels():
    X, y = _sine(n=90, d=1, noise=0.05)
    search = GridSearchCV(SGPRRegressor(random_state=0), {"n_inducing": [1, 15]}, cv=3).fit(X, y)
    assert search.best_params_ == {"n_inducing": 15}
    kernels = [vi.kernels.Linear(), vi.kernels.Matern52()]
    search = GridSearchCV(GPRegressor(), {"kernel": kernels}, cv=3).fit(X, y)
    assert isinstance(search.best_estimator_.kernel_, vi.kernels.Matern52)
    assert all(k._core_kernel is None for k in kernels)  # the grid's kernels were copied, never used


# --- classifier ------------------------------------------------------------------------------------

def _two_moons_labels():
    from sklearn.datasets import make_moons
    X, y = make_moons(120, noise=0.15, random_state=0)
    return X, np.where(y == 1, "dog", "cat")


def test_classifier_with_string_labels():
    X, labels = _two_moons_labels()
    clf = SVGPClassifier(n_inducing=20, random_state=0, iterations=500).fit(X, labels)
    assert clf.classes_.tolist() == ["cat", "dog"]
    assert clf.score(X, labels) > 0.95
    proba = clf.predict_proba(X[:10])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # The probabilities are the Bernoulli likelihood's predictive mean.
    p1, _ = clf.model_.predict_y(X[:10])
    np.testing.assert_allclose(proba[:, 1], p1, rtol=1e-10)
    np.testing.assert_allclose(clf.predict_log_proba(X[:10]), np.log(proba), rtol=1e-10)
    assert set(clf.predict(X)) <= {"cat", "dog"}


@pytest.mark.parametrize("labels, kwargs, match", [
    (np.zeros(10), {}, "needs samples of at least 2 classes"),
    (np.arange(10) % 3, dict(likelihood="bernoulli"), "likelihood='bernoulli' needs 2 classes, y holds 3"),
    (np.arange(10) % 3, dict(likelihood="probit"), "likelihood must be one of"),
])
def test_classifier_needs_two_classes_and_a_known_likelihood(labels, kwargs, match):
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match=match):
        SVGPClassifier(iterations=5, **kwargs).fit(X, labels)


# --- VAE transformer -------------------------------------------------------------------------------

def test_vae_transformer_reconstructs_better_than_the_mean():
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((400, 2))  # [n, 2]
    X = np.tanh(latent @ rng.standard_normal((2, 8))) * 5.0 + 10.0 + 0.05 * rng.standard_normal((400, 8))  # [n, 8]
    vae = VAETransformer(n_components=2, epochs=150, learning_rate=3e-3, random_state=0)
    Z = vae.fit_transform(X)
    assert Z.shape == (400, 2)
    X_hat = vae.inverse_transform(Z)
    assert X_hat.shape == X.shape
    baseline = np.mean((X - X.mean(axis=0)) ** 2)
    assert np.mean((X - X_hat) ** 2) < 0.2 * baseline
    assert vae.get_feature_names_out().tolist() == ["vaetransformer0", "vaetransformer1"]
    with pytest.raises(ValueError, match="2 columns"):
        vae.inverse_transform(np.zeros((3, 4)))


def test_vae_transformer_bernoulli_needs_unit_interval():
    X, _ = vi.datasets.load_digits_binarized()
    vae = VAETransformer(n_components=3, likelihood="bernoulli", epochs=2, random_state=0).fit(X[:200])
    probs = vae.inverse_transform(vae.transform(X[:5]))
    assert probs.shape == (5, 64) and probs.min() >= 0 and probs.max() <= 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        clone(vae).fit(X[:50] * 2.0)


# --- save / load -------------------------------------------------------------------------------------

def _estimators_to_save():
    X, y = _sine(n=40)
    return X, [(GPRegressor(kernel=vi.kernels.Matern52() + vi.kernels.Linear(), normalize_y=True, normalize_X=True), y),
               (SGPRRegressor(n_inducing=8, random_state=0), y),
               (SVGPRegressor(n_inducing=8, iterations=50, random_state=1), y),
               (SVGPClassifier(n_inducing=8, iterations=50, random_state=2), np.where(y > 0, "up", "down")),
               (VAETransformer(n_components=2, hidden=(16, 8), epochs=5, random_state=3), None)]


@pytest.mark.parametrize("index", range(5))
def test_save_load_round_trip(tmp_path, index):
    X, cases = _estimators_to_save()
    est, target = cases[index]
    vi.save(est, tmp_path / "unfitted.npz")
    unfitted = vi.load(tmp_path / "unfitted.npz")
    assert repr(unfitted.get_params()) == repr(est.get_params())
    with pytest.raises(NotFittedError):
        getattr(unfitted, "transform" if target is None else "predict")(X)
    est.fit(X, target)
    vi.save(est, tmp_path / "fitted.npz")
    loaded = vi.load(tmp_path / "fitted.npz")
    assert type(loaded) is type(est) and repr(loaded.get_params()) == repr(est.get_params())
    methods = {VAETransformer: ["transform"], SVGPClassifier: ["predict", "predict_proba"]}.get(type(est), ["predict"])
    for method in methods:
        np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(est, method)(X))
    if target is None:
        np.testing.assert_array_equal(loaded.inverse_transform([[0.5, -1.0]]), est.inverse_transform([[0.5, -1.0]]))
        assert loaded.loss_curve_ == est.loss_curve_
    elif isinstance(est, SVGPClassifier):
        assert loaded.classes_.tolist() == ["down", "up"]
    else:
        np.testing.assert_array_equal(loaded.predict(X, return_std=True)[1], est.predict(X, return_std=True)[1])
        assert loaded.kernel_ is loaded.model_.kernel and repr(loaded.kernel_) == repr(est.kernel_)


def test_save_refuses_a_random_state_object(tmp_path):
    est = SGPRRegressor(random_state=np.random.RandomState(0))
    with pytest.raises(ValueError, match="random_state"):
        vi.save(est, tmp_path / "est.npz")


# --- lazy import -------------------------------------------------------------------------------------

def test_top_level_names_are_lazy():
    code = ("import sys, varinf as vi; assert 'sklearn' not in sys.modules; "
            "assert 'GPRegressor' in dir(vi) and 'VAETransformer' in vi.__all__; "
            "from varinf.estimators import GPRegressor; assert vi.GPRegressor is GPRegressor")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_sklearn_gives_advice():
    code = ("import sys; sys.modules['sklearn'] = None; import varinf as vi\n"
            "try:\n    vi.GPRegressor\nexcept ImportError as e:\n    assert 'varinf[sklearn]' in str(e), e\n"
            "else:\n    raise SystemExit('no ImportError')")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- targets and training data -------------------------------------------------------------------------------

@pytest.mark.parametrize("Estimator", [GPRegressor, SGPRRegressor, SVGPRegressor])
def test_regressors_need_numeric_targets(Estimator):
    X, y = _sine(n=20)
    with pytest.raises(ValueError, match="y must hold numbers"):
        Estimator().fit(X, y.astype(str))


def test_normalize_y_where_the_sum_of_squares_overflows():
    X, y = _sine(n=60, offset=1.0)
    scale = 1e154  # y's variance is finite, n times it is not: np.std(y * scale) was inf
    small = GPRegressor(normalize_y=True, max_iter=0).fit(X, y)
    large = GPRegressor(normalize_y=True, max_iter=0).fit(X, y * scale)
    Xs = X[:5] + 0.1
    for ours, reference in zip(large.predict(Xs, return_std=True), small.predict(Xs, return_std=True)):
        # The normalised targets agree to rounding, not bit for bit: a float64 tolerance.
        np.testing.assert_allclose(ours / scale, reference, rtol=1e-10, atol=1e-12)
    assert large.y_train_std_ == pytest.approx(np.std(y) * scale, rel=1e-12)


def test_normalize_y_refuses_targets_whose_variance_overflows():
    X, y = _sine(n=20)
    with pytest.raises(ValueError, match="y has standard deviation .* rescale y"):
        GPRegressor(normalize_y=True).fit(X, y * 1e300)


@pytest.mark.parametrize("est", [GPRegressor(max_iter=5), SGPRRegressor(n_inducing=30, max_iter=5),
                                 SVGPRegressor(n_inducing=30, iterations=5, random_state=0)], ids=repr)
def test_editing_the_training_data_after_fit_changes_nothing(est):
    X, y = _sine(n=30)
    Xs = X[:5] + 0.1
    est.fit(X, y)
    before = est.predict(Xs, return_std=True)
    X *= 2.0
    y[:] = 0.0
    after = est.predict(Xs, return_std=True)
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)  # the same computation on the same data: bit-equal


# --- crafted estimator files ---------------------------------------------------------------------------------

def _saved(tmp_path, est, y):
    path = tmp_path / "est.vi"
    vi.save(est.fit(_sine(n=30)[0], y), path)
    return path


def _fitted_config(key, value):
    return lambda meta: meta["config"]["fitted"].update({key: value})


@pytest.mark.parametrize("edit, pattern", [
    (_fitted_config("y_train_std_", float("nan")), "not valid JSON"),
    (_fitted_config("y_train_std_", 0.0), "'y_train_std_' must be a finite number > 0"),
    (_fitted_config("y_train_std_", -2.0), "'y_train_std_' must be a finite number > 0"),
    (_fitted_config("y_train_std_", 1e300), "y_train_std_ 1e.300 are invalid"),
    (_fitted_config("y_train_mean_", "1"), "'y_train_mean_' has the wrong type"),
    (_fitted_config("noise_variance_", 5.0), "not the model's noise"),
    (_fitted_config("n_features_in_", 3), "n_features_in_ is 3, but the model takes 2 inputs"),
    (_fitted_config("n_iter_", -1), "'n_iter_' must be a finite number >= 0"),
    (_fitted_config("kernel_", 1.0), "unexpected fitted attributes \\['kernel_'\\]"),
    (lambda meta: meta["config"]["fitted"].pop("log_marginal_likelihood_value_"), "is missing"),
    (lambda meta: meta["config"]["params"].update(normalize_X=1), "'normalize_X' has the wrong type"),
    (lambda meta: meta["config"]["params"].update(alpha=1), "params .* are not among GPRegressor's"),
    (lambda meta: meta["config"].update(params=[]), "'params' has the wrong type"),
    (lambda meta: meta["config"]["model"].update({"class": "SGPR"}), "expected a GPR"),
    (lambda meta: meta["config"].update(model=None), "unexpected fitted attributes .* in an unfitted estimator"),
])
def test_gp_regressor_file_scalars_are_validated(tmp_path, edit, pattern):
    path = _saved(tmp_path, GPRegressor(normalize_y=True, max_iter=3), _sine(n=30)[1])
    _edit_meta(path, edit)
    with pytest.raises(vi.FormatError, match=pattern):
        vi.load(path)


def test_gp_regressor_needs_its_input_scaling(tmp_path):
    path = _saved(tmp_path, GPRegressor(normalize_X=True, max_iter=3), _sine(n=30)[1])
    _rewrite(path, lambda e: e.update({"fitted/X_scale_": -e["fitted/X_scale_"]}))
    with pytest.raises(vi.FormatError, match="'X_scale_' must be a float64 array of shape \\(2,\\) with positive"):
        vi.load(path)


@pytest.mark.parametrize("labels", [["down", "up", "left"], ["up", "down"], ["up", "up"]])
def test_classifier_needs_two_sorted_labels(tmp_path, labels):
    y = np.where(_sine(n=30)[1] > 0, "up", "down")
    path = _saved(tmp_path, SVGPClassifier(n_inducing=5, iterations=5, random_state=0), y)
    _edit_meta(path, lambda meta: meta["config"]["labels"]["classes_"].__setitem__(0, labels))
    with pytest.raises(vi.FormatError, match="classes_"):
        vi.load(path)


def test_classifier_with_numeric_labels_needs_two(tmp_path):
    y = np.where(_sine(n=30)[1] > 0, 3, 1)
    path = _saved(tmp_path, SVGPClassifier(n_inducing=5, iterations=5, random_state=0), y)
    np.testing.assert_array_equal(vi.load(path).classes_, [1, 3])
    _rewrite(path, lambda e: e.update({"fitted/classes_": np.array([1, 2, 3])}))
    with pytest.raises(vi.FormatError, match="'classes_' must be an array of 2 labels"):
        vi.load(path)


def test_svgp_regressor_needs_a_gaussian_likelihood(tmp_path):
    path = _saved(tmp_path, SVGPRegressor(n_inducing=5, iterations=5, random_state=0), _sine(n=30)[1])
    _edit_meta(path, lambda meta: meta["config"]["model"]["config"]["likelihood"].update(
        {"class": "Bernoulli", "config": {"settings": {"quadrature_points": 20}, "trainable": {}}}))
    _rewrite(path, lambda e: e.pop("model/likelihood/variance"))
    with pytest.raises(vi.FormatError, match="needs an SVGP with a Gaussian likelihood"):
        vi.load(path)


def test_label_dtype_is_bounded_before_allocating(tmp_path):
    y = np.where(_sine(n=30)[1] > 0, "up", "down")
    path = _saved(tmp_path, SVGPClassifier(n_inducing=5, iterations=5, random_state=0), y)
    _edit_meta(path, lambda meta: meta["config"]["labels"]["classes_"].__setitem__(1, "<U100000000"))
    with pytest.raises(vi.FormatError, match="labels 'classes_' must be"):
        vi.load(path)  # was 800 MB for two labels

"""The estimators with several latent GPs (docs/math.md section 11): multi-class SVGPClassifier
(RobustMax, Softmax), multi-output SVGPRegressor (independent outputs or coregionalisation) and
SGPRRegressor with several outputs sharing the kernel (section 5.9)."""

import numpy as np
import pytest

import varinf as vi
from varinf.estimators import SGPRRegressor, SVGPClassifier, SVGPRegressor


def test_ten_digits_reach_95_percent():
    X, y = vi.datasets.load_digits_scaled(dtype=np.float64)
    Xtr, Xte, ytr, yte = vi.datasets.train_test_split(X, y, test_fraction=0.2, seed=0)
    clf = SVGPClassifier(n_inducing=100, iterations=800, random_state=0).fit(Xtr, ytr)
    assert isinstance(clf.model_.likelihood, vi.likelihoods.RobustMax) and clf.model_.num_latent_gps == 10
    assert np.mean(clf.predict(Xte) == yte) >= 0.95


def _three_blobs(n=150, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
    labels = rng.integers(0, 3, size=n)
    X = centres[labels] + 0.7 * rng.standard_normal((n, 2))
    return X, np.array(["ant", "bee", "cat"])[labels]


@pytest.mark.parametrize("likelihood, kind", [("auto", vi.likelihoods.RobustMax),
                                              ("robustmax", vi.likelihoods.RobustMax),
                                              ("softmax", vi.likelihoods.Softmax)])
def test_multiclass_probabilities_follow_classes(likelihood, kind):
    X, y = _three_blobs()
    clf = SVGPClassifier(n_inducing=20, iterations=300, likelihood=likelihood, random_state=1).fit(X, y)
    assert isinstance(clf.model_.likelihood, kind)
    assert list(clf.classes_) == ["ant", "bee", "cat"]
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    p, _ = clf.model_.predict_y(X)  # the model's probabilities, divided by their sum
    np.testing.assert_allclose(proba, p / p.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(clf.decision_function(X), np.log(proba), rtol=1e-12)
    assert np.mean(clf.predict(X) == y) > 0.9
    assert np.array_equal(clf.predict(X), clf.classes_[np.argmax(proba, axis=1)])


def test_multiclass_classifier_saves_and_loads(tmp_path):
    X, y = _three_blobs()
    clf = SVGPClassifier(n_inducing=15, iterations=50, random_state=2).fit(X, y)
    vi.save(clf, tmp_path / "clf")
    loaded = vi.load(tmp_path / "clf")
    assert np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert list(loaded.classes_) == list(clf.classes_)


def _two_outputs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(n, 2))
    f = np.sin(X[:, 0]) + 0.3 * X[:, 1]
    Y = np.column_stack([10.0 + 5.0 * f, -f + 0.5 * np.cos(2 * X[:, 1])]) + 0.1 * rng.standard_normal((n, 2))
    return X, Y


@pytest.mark.parametrize("n_latent_gps, kernel_kind", [(None, vi.kernels.SeparateIndependent),
                                                       (2, vi.kernels.LinearCoregionalization)])
def test_multi_output_regression(n_latent_gps, kernel_kind, tmp_path):
    X, Y = _two_outputs()
    est = SVGPRegressor(n_inducing=30, iterations=800, learning_rate=0.02, normalize_y=True,
                        n_latent_gps=n_latent_gps, random_state=0).fit(X[:150], Y[:150])
    assert isinstance(est.kernel_, kernel_kind)
    assert est.y_train_mean_.shape == est.y_train_std_.shape == est.noise_variance_.shape == (2,)
    mean, std = est.predict(X[150:], return_std=True)
    assert mean.shape == std.shape == (50, 2)
    # Better than predicting each output's mean, output by output.
    assert np.all(np.mean((mean - Y[150:]) ** 2, axis=0) < 0.1 * np.var(Y[150:], axis=0))
    vi.save(est, tmp_path / "est")
    loaded = vi.load(tmp_path / "est")
    assert np.array_equal(loaded.predict(X[150:]), mean)
    with pytest.raises(ValueError, match="return_cov is for one output"):
        est.predict(X[:3], return_cov=True)


def test_multi_output_regressor_with_one_column_is_the_single_output_one():
    X, Y = _two_outputs()
    a = SVGPRegressor(n_inducing=10, iterations=20, random_state=0).fit(X, Y[:, :1])
    b = SVGPRegressor(n_inducing=10, iterations=20, random_state=0).fit(X, Y[:, 0])
    assert np.array_equal(a.predict(X[:5]), b.predict(X[:5]))


def test_sgpr_regressor_with_several_outputs(tmp_path):
    X, Y = _two_outputs()
    est = SGPRRegressor(n_inducing=25, normalize_y=True, random_state=0).fit(X[:150], Y[:150])
    model = est.model_
    assert isinstance(model, vi.SGPR) and model.num_outputs == 2
    assert isinstance(est.kernel_, vi.kernels.SquaredExponential)  # one kernel for both outputs
    np.testing.assert_allclose(est.y_train_std_, Y[:150].std(0), rtol=1e-12)
    np.testing.assert_allclose(est.noise_variance_, model.noise_variance * Y[:150].std(0) ** 2, rtol=1e-12)
    mean, std = est.predict(X[150:], return_std=True)
    assert mean.shape == std.shape == (50, 2)
    assert np.all(np.mean((mean - Y[150:]) ** 2, axis=0) < 0.1 * np.var(Y[150:], axis=0))
    m, v = model.predict_y((X[150:] - 0.0) / 1.0)  # normalize_X is off
    np.testing.assert_allclose(mean, est.y_train_mean_ + est.y_train_std_ * m, rtol=1e-12)
    np.testing.assert_allclose(std, est.y_train_std_ * np.sqrt(v), rtol=1e-12)
    vi.save(est, tmp_path / "sgpr")
    loaded = vi.load(tmp_path / "sgpr")
    assert np.array_equal(loaded.predict(X[150:]), mean)
    with pytest.raises(ValueError, match="return_cov is for one output"):
        est.predict(X[:3], return_cov=True)
    with pytest.raises(ValueError, match="sample_y is for one output"):
        est.sample_y(X[:3])


def test_sgpr_regressor_with_coregionalised_outputs(tmp_path):
    X, Y = _two_outputs()
    est = SGPRRegressor(n_inducing=25, normalize_y=True, n_latent_gps=3, random_state=0, max_iter=300)
    est.fit(X[:150], Y[:150])
    model = est.model_
    assert isinstance(est.kernel_, vi.kernels.LinearCoregionalization)
    assert est.kernel_.W.shape == (2, 3) and model.num_outputs == 2
    # Seeded: the same random_state gives the same W at the start, so the same fit.
    again = SGPRRegressor(n_inducing=25, normalize_y=True, n_latent_gps=3, random_state=0, max_iter=300)
    assert np.array_equal(again.fit(X[:150], Y[:150]).kernel_.W, est.kernel_.W)
    mean, std = est.predict(X[150:], return_std=True)
    assert mean.shape == std.shape == (50, 2)
    assert np.all(np.mean((mean - Y[150:]) ** 2, axis=0) < 0.1 * np.var(Y[150:], axis=0))
    m, v = model.predict_y(X[150:])
    np.testing.assert_allclose(std, est.y_train_std_ * np.sqrt(v), rtol=1e-12)
    vi.save(est, tmp_path / "lmc")
    assert np.array_equal(vi.load(tmp_path / "lmc").predict(X[150:]), mean)
    # One output: n_latent_gps is ignored, as for SVGPRegressor.
    single = SGPRRegressor(n_inducing=10, n_latent_gps=3, max_iter=5, random_state=0).fit(X, Y[:, 0])
    assert isinstance(single.kernel_, vi.kernels.SquaredExponential)
    with pytest.raises(ValueError, match="n_latent_gps"):
        SGPRRegressor(n_inducing=10, n_latent_gps=0).fit(X, Y)

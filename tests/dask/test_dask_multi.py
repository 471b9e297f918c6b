"""SVGP with several latent GPs on a Dask cluster (docs/math.md sections 10.3 and 11): fits on
dask arrays equal the in-process fits with the same seed, the full-data ELBO is the in-process
one, lazy predictions have the in-process shapes and values, and the vi.dask estimators take
several classes and outputs."""

import numpy as np
import pytest

import varinf as vi

da = pytest.importorskip("dask.array")

N = 1500


def _data(n=N, seed=0):
    """X [n, 2], three outputs Y [n, 3] and labels of three classes [n] (0., 1., 2.)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    F = np.stack([np.sin(2 * X[:, 0]), np.cos(X[:, 1]), 0.5 * X.sum(1)], axis=1)  # [n, 3]
    return X, F + 0.1 * rng.normal(size=F.shape), np.argmax(F, axis=1).astype(float)


def _se():
    return vi.kernels.SquaredExponential(lengthscales=np.ones(2))


def _separate(X, n):
    """(a) 3 outputs: one latent GP each, a Gaussian variance each."""
    kernel = vi.kernels.SeparateIndependent([_se() for _ in range(3)])
    return vi.SVGP(kernel, vi.likelihoods.Gaussian([0.1, 0.2, 0.3]), X[:10] + 0.01, num_data=n)


def _robustmax(X, n):
    """(b) 3 classes: RobustMax on 3 latent GPs sharing the kernel."""
    return vi.SVGP(_se(), vi.likelihoods.RobustMax(3), X[:10] + 0.01, num_data=n)


def _coregional(X, n):
    """(c) 3 outputs g = W f of 2 latent GPs, W [3, 2]."""
    W = np.array([[1.0, 0.2], [0.3, -0.8], [0.5, 0.5]])
    kernel = vi.kernels.LinearCoregionalization([_se(), _se()], W)
    return vi.SVGP(kernel, vi.likelihoods.Gaussian(0.1), X[:10] + 0.01, num_data=n)


def _softmax(X, n):
    return vi.SVGP(_se(), vi.likelihoods.Softmax(3, seed=4), X[:10] + 0.01, num_data=n)


CASES = {"separate": (_separate, "Y", True), "robustmax": (_robustmax, "labels", False),
         "coregional": (_coregional, "Y", False)}


def _targets(kind, Y, labels):
    return Y if kind == "Y" else labels


def _away_from_the_prior(model):
    """q_mu at seeded small values. At q(u) = p(u) the gradients of Z and the lengthscales vanish
    (q(f) is the prior's marginal whatever Z), so they are rounding noise, which the first Adam
    step divides by epsilon: the order of the shards' sums would then show at 1e-9."""
    model.q_mu = 0.3 * np.random.default_rng(5).standard_normal(model.q_mu.shape)
    return model


def _chunked(y, rows):
    """y [n] or [n, P] as a dask array whose row chunks are not X's (the fit rechunks them)."""
    return da.from_array(y, chunks=(rows,) + ((1,) if y.ndim == 2 else ()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_multi_latent_fit_equals_the_in_process_fit(client, case):
    build, kind, natgrad = CASES[case]
    X, Y, labels = _data()
    y = _targets(kind, Y, labels)
    local, dist = _away_from_the_prior(build(X, N)), _away_from_the_prior(build(X, N))
    kwargs = dict(iterations=25, batch_size=200, seed=3, natgrad=natgrad, progress=False)
    local.fit(X, y, **kwargs)
    dist.fit(da.from_array(X, chunks=(400, 2)), _chunked(y, 350), **kwargs)
    assert dist.elbo_history_.size == 25
    # The steps carry forward the rounding of two summation orders (test_dask_svgp.py says more).
    np.testing.assert_allclose(dist.elbo_history_, local.elbo_history_, rtol=1e-7)
    np.testing.assert_allclose(dist.q_mu, local.q_mu, rtol=1e-6, atol=1e-8)
    # The full-data ELBO summed over chunks is the in-process one, at the same parameters.
    full = dist.elbo(da.from_array(X, chunks=(500, 2)), _chunked(y, 300))
    assert full == pytest.approx(dist.elbo(X, y), rel=1e-12)


def test_the_kl_term_is_added_once_with_empty_targets_of_the_right_width(client):
    """One chunk or several: the ELBO is the in-process one (the KL-only call reads [0, 3])."""
    X, Y, _ = _data(n=400)
    model = _separate(X, 400)
    want, want_grad = model.elbo(X, Y, return_grad=True)
    for rows in (400, 90):
        got, grad = model.elbo(da.from_array(X, chunks=(rows, 2)), da.from_array(Y, chunks=(rows, 3)),
                               return_grad=True)
        assert got == pytest.approx(want, rel=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-12 * np.max(np.abs(want_grad)))


def test_bad_multi_output_targets_are_named(client):
    X, Y, labels = _data(n=600)
    bad = Y.copy()
    bad[423, 1] = np.nan
    with pytest.raises(ValueError, match=r"y contains NaN or Inf in rows \[400, 600\)"):
        _separate(X, 600).fit(da.from_array(X, chunks=(200, 2)), da.from_array(bad, chunks=(200, 3)),
                              iterations=2, progress=False)
    with pytest.raises(ValueError, match="y must have shape"):
        _separate(X, 600).fit(da.from_array(X, chunks=(200, 2)), da.from_array(Y[:, :2], chunks=(200, 2)),
                              iterations=2, progress=False)
    labels[7] = 3.0
    with pytest.raises(ValueError, match="class labels"):
        _robustmax(X, 600).fit(da.from_array(X, chunks=(200, 2)), da.from_array(labels, chunks=200),
                               iterations=2, progress=False)


@pytest.mark.parametrize("case", sorted(CASES) + ["softmax"])
def test_lazy_multi_latent_predictions(client, case):
    build, kind, _ = CASES.get(case, (_softmax, "labels", False))
    X, Y, labels = _data(n=600)
    y = _targets(kind, Y, labels)
    model = build(X, 600)
    model.fit(X, y, iterations=15, batch_size=100, seed=1, progress=False)
    Xs, width = da.from_array(X[:300], chunks=(64, 2)), 3
    for method in ("predict_f", "predict_y"):
        got, want = getattr(model, method)(Xs), getattr(model, method)(X[:300])
        for g, w in zip(got, want):
            assert isinstance(g, da.Array) and g.shape == w.shape == (300, width)
            assert g.chunks == ((64, 64, 64, 64, 44), (width,))
            np.testing.assert_allclose(g.compute(), w, rtol=1e-12)
    ys = y[:300]
    lpd = model.predict_log_density(Xs, da.from_array(ys, chunks=(100,) + ys.shape[1:]))
    assert lpd.shape == (300,)
    np.testing.assert_allclose(lpd.compute(), model.predict_log_density(X[:300], ys), rtol=1e-12)


def test_lazy_full_output_cov(client):
    X, Y, _ = _data(n=300)
    model = _coregional(X, 300)
    mean, cov = model.predict_f(da.from_array(X, chunks=(70, 2)), full_output_cov=True)
    want_mean, want_cov = model.predict_f(X, full_output_cov=True)
    assert mean.shape == (300, 3) and cov.shape == (300, 3, 3)
    np.testing.assert_allclose(mean.compute(), want_mean, rtol=1e-12)
    np.testing.assert_allclose(cov.compute(), want_cov, rtol=1e-12)


def test_three_class_dask_classifier(client):
    pytest.importorskip("sklearn")
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, _, labels = _data()
    names = np.array(["blue", "green", "red"])[labels.astype(int)]
    clf = vi.dask.SVGPClassifier(n_inducing=10, iterations=40, batch_size=200, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b"])
    clf.fit(dd.from_pandas(frame, npartitions=4), dd.from_pandas(pd.Series(names), npartitions=3))
    assert list(clf.classes_) == ["blue", "green", "red"]
    assert isinstance(clf.model_.likelihood, vi.likelihoods.RobustMax) and clf.model_.num_latent_gps == 3
    local = vi.SVGPClassifier(n_inducing=10, iterations=40, batch_size=200, random_state=0).fit(frame, names)
    np.testing.assert_allclose(clf.model_.elbo_history_, local.model_.elbo_history_, rtol=1e-9)
    Xs = da.from_array(X[:200], chunks=(50, 2))
    proba = clf.predict_proba(Xs)
    assert isinstance(proba, da.Array) and proba.shape == (200, 3)
    plain = clf.to_local()
    assert type(plain) is vi.SVGPClassifier and plain.likelihood == "auto"
    np.testing.assert_allclose(proba.compute(), plain.predict_proba(frame[:200]), rtol=1e-12)
    predicted = clf.predict(Xs)
    assert isinstance(predicted, da.Array)
    np.testing.assert_array_equal(predicted.compute(), plain.predict(frame[:200]))
    assert np.mean(predicted.compute() == names[:200]) > 0.7


def test_softmax_classifier_with_numpy_labels(client):
    pytest.importorskip("sklearn")
    X, _, labels = _data(n=600)
    clf = vi.dask.SVGPClassifier(n_inducing=8, iterations=10, batch_size=100, random_state=1, likelihood="softmax")
    clf.fit(da.from_array(X, chunks=(200, 2)), labels.astype(int) + 5)
    assert list(clf.classes_) == [5, 6, 7] and isinstance(clf.model_.likelihood, vi.likelihoods.Softmax)
    Xs = da.from_array(X[:100], chunks=(30, 2))
    np.testing.assert_allclose(clf.predict_proba(Xs).compute(), clf.to_local().predict_proba(X[:100]), rtol=1e-12)
    with pytest.raises(ValueError, match="bernoulli"):
        vi.dask.SVGPClassifier(likelihood="bernoulli").fit(da.from_array(X, chunks=(200, 2)), labels)


@pytest.mark.parametrize("n_latent_gps", [None, 2])
def test_multi_output_dask_regressor(client, n_latent_gps):
    pytest.importorskip("sklearn")
    X, Y, _ = _data(n=800)
    Y = Y * [1.0, 10.0, 0.1] + [0.0, 5.0, -3.0]
    reg = vi.dask.SVGPRegressor(n_inducing=8, iterations=20, batch_size=100, normalize_y=True, random_state=0,
                                n_latent_gps=n_latent_gps)
    reg.fit(da.from_array(X, chunks=(300, 2)), da.from_array(Y, chunks=(250, 2)))
    assert reg.model_.num_outputs == 3 and reg.y_train_mean_.shape == reg.y_train_std_.shape == (3,)
    np.testing.assert_allclose(reg.y_train_mean_, Y.mean(0), rtol=1e-12)
    np.testing.assert_allclose(reg.y_train_std_, Y.std(0), rtol=1e-12)
    assert reg.noise_variance_.shape == (3,)
    kernel = vi.kernels.SeparateIndependent if n_latent_gps is None else vi.kernels.LinearCoregionalization
    assert isinstance(reg.kernel_, kernel)
    Xs = da.from_array(X[:100], chunks=(40, 2))
    mean, std = reg.predict(Xs, return_std=True)
    assert isinstance(mean, da.Array) and mean.shape == std.shape == (100, 3)
    plain = reg.to_local()
    assert type(plain) is vi.SVGPRegressor and plain.n_latent_gps == n_latent_gps
    want_mean, want_std = plain.predict(X[:100], return_std=True)
    np.testing.assert_allclose(mean.compute(), want_mean, rtol=1e-12)
    np.testing.assert_allclose(std.compute(), want_std, rtol=1e-12)
    local = vi.SVGPRegressor(n_inducing=8, iterations=20, batch_size=100, normalize_y=True, random_state=0,
                             n_latent_gps=n_latent_gps).fit(X, Y)
    np.testing.assert_allclose(mean.compute(), local.predict(X[:100]), rtol=1e-5, atol=1e-6 * np.abs(Y).max())

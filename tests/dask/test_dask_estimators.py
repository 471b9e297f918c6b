"""vi.dask estimators (after lightgbm.dask / xgboost.dask): dask arrays and DataFrames in, lazy
predictions out, the same fit as the local estimator, to_local(), pickling without the client."""

import pickle

import numpy as np
import pytest

import varinf as vi

pytest.importorskip("sklearn")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")


def _data(n=1200, d=2, seed=2):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, 5 + 3 * np.sin(X).sum(1) + 0.1 * rng.normal(size=n)


def _frame(X, parts=4):
    return dd.from_pandas(pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]), npartitions=parts)


def test_import_varinf_does_not_import_dask():
    import subprocess
    import sys
    code = "import sys, varinf; assert 'dask' not in sys.modules and 'distributed' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sgpr_regressor_matches_the_local_estimator(client):
    """The same scalings, inducing inputs and bound as the local estimator, to rounding (with
    max_iter=0: L-BFGS-B's line searches amplify rounding differences between the two sums)."""
    X, y = _data()
    params = dict(n_inducing=15, max_iter=0, normalize_y=True, normalize_X=True, random_state=0)
    local = vi.SGPRRegressor(**params).fit(X, y)
    dist = vi.dask.SGPRRegressor(**params).fit(_frame(X), dd.from_pandas(pd.Series(y), npartitions=4))
    assert list(dist.feature_names_in_) == ["x0", "x1"] and dist.n_features_in_ == 2
    np.testing.assert_allclose(dist.X_scale_, local.X_scale_, rtol=1e-12)
    assert dist.elbo_ == pytest.approx(local.elbo_, rel=1e-10)
    mean, std = dist.predict(da.from_array(X[:300], chunks=(100, 2)), return_std=True)
    assert isinstance(mean, da.Array) and isinstance(std, da.Array)
    want_mean, want_std = local.predict(X[:300], return_std=True)
    np.testing.assert_allclose(mean.compute(), want_mean, rtol=1e-10)
    np.testing.assert_allclose(std.compute(), want_std, rtol=1e-10)
    plain = dist.to_local()
    assert type(plain) is vi.SGPRRegressor and "client" not in plain.get_params()
    np.testing.assert_allclose(plain.predict(X[:300]), mean.compute(), rtol=1e-12)


def test_pickling_drops_the_client_and_the_data(client):
    X, y = _data(n=400)
    dist = vi.dask.SGPRRegressor(n_inducing=8, max_iter=0, client=client)
    dist.fit(da.from_array(X, chunks=(100, 2)), da.from_array(y, chunks=100))
    again = pickle.loads(pickle.dumps(dist))
    assert again.client is None and again.model_.X.shape[0] == 0
    np.testing.assert_allclose(again.predict(X[:20]), dist.predict(X[:20]), rtol=1e-12)


def test_saved_as_the_local_estimator(client, tmp_path):
    X, y = _data(n=400)
    dist = vi.dask.SGPRRegressor(n_inducing=8, max_iter=0).fit(da.from_array(X, chunks=(100, 2)),
                                                              da.from_array(y, chunks=100))
    vi.save(dist, tmp_path / "reg.vinf")
    loaded = vi.load(tmp_path / "reg.vinf")
    assert type(loaded) is vi.SGPRRegressor
    np.testing.assert_allclose(loaded.predict(X[:20]), dist.predict(X[:20]), rtol=1e-12)


def test_closed_client_is_refused(cluster):
    from distributed import Client
    X, y = _data(n=200)
    c = Client(cluster, set_as_default=False)
    c.close()
    with pytest.raises(ValueError, match="client is closed"):
        vi.dask.SGPRRegressor(n_inducing=5, max_iter=0, client=c).fit(da.from_array(X, chunks=100),
                                                                     da.from_array(y, chunks=100))


def test_svgp_regressor_and_classifier_on_the_cluster(client):
    X, y = _data()
    reg = vi.dask.SVGPRegressor(n_inducing=10, iterations=40, normalize_y=True, random_state=0)
    reg.fit(da.from_array(X, chunks=(300, 2)), da.from_array(y, chunks=300))
    local = vi.SVGPRegressor(n_inducing=10, iterations=40, normalize_y=True, random_state=0).fit(X, y)
    np.testing.assert_allclose(reg.predict(X[:50]), local.predict(X[:50]), rtol=1e-6)
    labels = np.where(y > 5, "high", "low")
    clf = vi.dask.SVGPClassifier(n_inducing=10, iterations=40, random_state=0)
    clf.fit(_frame(X), dd.from_pandas(pd.Series(labels), npartitions=4))
    assert list(clf.classes_) == ["high", "low"]
    Xs = da.from_array(X[:200], chunks=(50, 2))
    predicted = clf.predict(Xs)
    assert isinstance(predicted, da.Array)
    np.testing.assert_array_equal(predicted.compute(), clf.to_local().predict(X[:200]))
    np.testing.assert_allclose(clf.predict_proba(Xs).compute(), clf.to_local().predict_proba(X[:200]), rtol=1e-12)
    assert np.mean(predicted.compute() == labels[:200]) > 0.8


def test_numpy_input_works_as_the_local_estimator():
    X, y = _data(n=300)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        dist = vi.dask.SGPRRegressor(n_inducing=8, max_iter=3, random_state=0).fit(X, y)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        local = vi.SGPRRegressor(n_inducing=8, max_iter=3, random_state=0).fit(X, y)
    np.testing.assert_array_equal(dist.predict(X[:10]), local.predict(X[:10]))

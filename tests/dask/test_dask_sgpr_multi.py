"""SGPR with y [n, P] on dask arrays (docs/math.md sections 5.9 and 10.1) against the same model
in memory: bound, gradient, predictions, a saved copy without data, and the Dask
SGPRRegressor with several outputs against to_local()."""

import os

import numpy as np
import pytest

import varinf as vi

da = pytest.importorskip("dask.array")


def _data(n=900, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    Y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1]), X.sum(1)]) + 0.1 * rng.normal(size=(n, 3))
    return X, Y


def _pair(X, Y):
    make = lambda X_, Y_: vi.SGPR(X_, Y_, vi.kernels.Matern52(lengthscales=np.ones(2)), X[:12] + 0.01,  # noqa: E731
                                  noise_variance=0.2, mean="constant")
    return make(X, Y), make(da.from_array(X, chunks=(250, 2)), da.from_array(Y, chunks=(200, 2)))


def test_several_outputs_equal_the_in_memory_model(client, tmp_path):
    X, Y = _data()
    local, dist = _pair(X, Y)
    assert dist.y.chunks[1] == (3,) and dist.num_outputs == 3
    value, grad = local._objective(True)
    dvalue, dgrad = dist._objective(True)
    assert dvalue == pytest.approx(value, rel=1e-10)
    np.testing.assert_allclose(dgrad, grad, rtol=1e-8, atol=1e-10 * np.max(np.abs(grad)))
    Xs = X[:120] * 1.1
    for got, want in zip(dist.predict_y(Xs), local.predict_y(Xs)):
        assert got.shape == (120, 3)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    lazy = dist.predict_f(da.from_array(Xs, chunks=50))
    assert isinstance(lazy[0], da.Array)
    np.testing.assert_allclose(lazy[0].compute(), local.predict_f(Xs)[0], rtol=1e-9, atol=1e-12)
    density = dist.predict_log_density(da.from_array(Xs, chunks=50), da.from_array(Y[:120], chunks=(50, 3)))
    np.testing.assert_allclose(density.compute(), local.predict_log_density(Xs, Y[:120]), rtol=1e-9)
    path = os.fspath(tmp_path / "model.vinf")
    dist.save(path)  # the factor, C [m, 3], without the data
    loaded = vi.load(path)
    assert loaded.num_outputs == 3 and repr(loaded) == repr(dist)
    np.testing.assert_allclose(loaded.predict_f(Xs)[0], local.predict_f(Xs)[0], rtol=1e-9, atol=1e-12)


def test_dask_sgpr_regressor_with_several_outputs(client):
    pytest.importorskip("sklearn")
    X, Y = _data(n=600)
    Y = Y * [1.0, 10.0, 0.1] + [0.0, 5.0, -3.0]
    reg = vi.dask.SGPRRegressor(n_inducing=10, max_iter=15, normalize_y=True, random_state=0)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        reg.fit(da.from_array(X, chunks=(250, 2)), da.from_array(Y, chunks=(200, 3)))
    assert reg.model_.num_outputs == 3 and reg.noise_variance_.shape == (3,)
    np.testing.assert_allclose(reg.y_train_std_, Y.std(0), rtol=1e-12)
    mean, std = reg.predict(da.from_array(X[:90], chunks=(40, 2)), return_std=True)
    assert isinstance(mean, da.Array) and mean.shape == std.shape == (90, 3)
    plain = reg.to_local()
    assert type(plain) is vi.SGPRRegressor
    want_mean, want_std = plain.predict(X[:90], return_std=True)
    np.testing.assert_allclose(mean.compute(), want_mean, rtol=1e-12)
    np.testing.assert_allclose(std.compute(), want_std, rtol=1e-12)

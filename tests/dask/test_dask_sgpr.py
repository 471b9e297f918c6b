"""SGPR and FITC on dask arrays (varinf.dask._partitioned) against the same models in memory:
bound, gradient, factor, predictions, fit; the fixed reduction order; input checks."""

import os
import tracemalloc

import numpy as np
import pytest

import varinf as vi

da = pytest.importorskip("dask.array")

MODELS = [vi.SGPR, vi.FITC]


def _data(n=1500, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X).sum(1) + 0.1 * rng.normal(size=n)
    return X, y


def _pair(cls, X, y, chunks=(400, 2), y_chunks=300, m=15, **kwargs):
    """The model on numpy arrays and on dask arrays, with the same initial parameters."""
    Z = X[:m] + 0.01
    make = lambda X_, y_: cls(X_, y_, vi.kernels.Matern52(lengthscales=np.ones(X.shape[1])), Z,  # noqa: E731
                              noise_variance=0.2, mean="constant", **kwargs)
    return make(X, y), make(da.from_array(X, chunks=chunks), da.from_array(y, chunks=y_chunks))


@pytest.mark.parametrize("cls", MODELS)
def test_objective_gradient_and_factor_equal_the_in_memory_model(cls):
    X, y = _data()
    local, dist = _pair(cls, X, y)
    assert dist.X.chunks[1] == (3,) and dist.y.chunks[0] == dist.X.chunks[0]  # rechunked
    value, grad = local._objective(True)
    dvalue, dgrad = dist._objective(True)
    assert dvalue == pytest.approx(value, rel=1e-10)
    np.testing.assert_allclose(dgrad, grad, rtol=1e-8, atol=1e-10 * np.max(np.abs(grad)))
    assert dist._objective(False) == pytest.approx(local._objective(False), rel=1e-10)
    for a, b in zip(local.compute_qu(), dist.compute_qu()):
        np.testing.assert_allclose(b, a, rtol=1e-8, atol=1e-10)
    if cls is vi.SGPR:
        assert dist.upper_bound() == pytest.approx(local.upper_bound(), rel=1e-10)


@pytest.mark.parametrize("cls", MODELS)
def test_predictions_equal_the_in_memory_model(cls):
    X, y = _data()
    local, dist = _pair(cls, X, y)
    Xs = X[:200] * 1.1
    for method in ("predict_f", "predict_y"):
        for got, want in zip(getattr(dist, method)(Xs), getattr(local, method)(Xs)):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    lazy = dist.predict_log_density(da.from_array(Xs, chunks=70), da.from_array(y[:200], chunks=50))
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), local.predict_log_density(Xs, y[:200]), rtol=1e-9)


@pytest.mark.parametrize("cls", MODELS)
def test_fit_follows_the_in_memory_fit(cls):
    X, y = _data(n=800)
    local, dist = _pair(cls, X, y)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        local.fit(max_iter=8)
    with pytest.warns(RuntimeWarning, match="max_iter"):
        dist.fit(max_iter=8)
    assert dist._objective(False) == pytest.approx(local._objective(False), rel=1e-7)
    np.testing.assert_allclose(dist.Z, local.Z, rtol=1e-6, atol=1e-8)


def test_same_chunking_same_bits_on_any_scheduler(client):
    """The tree sum runs in chunk order, so the rounding does not depend on which worker or
    thread finished first: the local scheduler and the cluster give identical bits."""
    X, y = _data()
    _, dist = _pair(vi.SGPR, X, y)
    on_cluster = dist._objective(True)
    import dask
    with dask.config.set(scheduler="threads"):
        on_threads = dist._objective(True)
    assert on_cluster[0] == on_threads[0]
    np.testing.assert_array_equal(on_cluster[1], on_threads[1])


def test_client_receives_only_statistics(client):
    """Each chunk returns O(m^2 + m d) numbers: the sizes of what the passes send back."""
    X, y = _data(n=3000)
    _, dist = _pair(vi.SGPR, X, y, chunks=(1000, 3), y_chunks=1000, m=10)
    stats = dist._partitioned.sum("sgpr_stats", dist._shared())
    assert sum(np.size(s) for s in stats) == 10 * 10 + 10 + 10 + 4


def test_out_of_core_from_zarr_with_the_local_scheduler(tmp_path):
    """200,000 x 8 rows (12.8 MB) in a zarr store: one evaluation with its gradient reads them
    chunk by chunk, and the client's peak allocation stays below the data's size."""
    zarr = pytest.importorskip("zarr")
    n, d = 200_000, 8
    store = zarr.open(str(tmp_path / "X.zarr"), mode="w", shape=(n, d), chunks=(20_000, d), dtype="f8")
    ystore = zarr.open(str(tmp_path / "y.zarr"), mode="w", shape=(n,), chunks=(20_000,), dtype="f8")
    rng = np.random.default_rng(1)
    for s in range(0, n, 20_000):
        block = rng.normal(size=(20_000, d))
        store[s:s + 20_000] = block
        ystore[s:s + 20_000] = np.sin(block[:, 0])
    X, y = da.from_zarr(str(tmp_path / "X.zarr")), da.from_zarr(str(tmp_path / "y.zarr"))
    import dask
    with dask.config.set(scheduler="threads", num_workers=2):
        tracemalloc.start()
        model = vi.SGPR(X, y, vi.kernels.SquaredExponential(lengthscales=np.ones(d)), np.asarray(X[:20]) + 0.01)
        value, grad = model.elbo(return_grad=True)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert peak < n * d * 8, f"peak {peak / 1e6:.1f} MB for {n * d * 8 / 1e6:.1f} MB of data"


# --- bad input --------------------------------------------------------------------------------------

def test_unknown_chunk_sizes_are_named():
    X, y = _data(n=100)
    Xd = da.from_array(X, chunks=(50, 3))
    Xd = Xd[Xd[:, 0] > -10]  # boolean indexing: unknown (NaN) chunk sizes
    with pytest.raises(ValueError, match=r"X has unknown chunk sizes.*compute_chunk_sizes"):
        vi.SGPR(Xd, da.from_array(y, chunks=50), vi.kernels.SquaredExponential(), 5)


@pytest.mark.parametrize("name", ["X", "y"])
def test_nan_inside_a_chunk_names_the_argument_and_rows(name):
    X, y = _data(n=300)
    (X if name == "X" else y)[170] = np.nan
    with pytest.raises(ValueError, match=rf"{name} contains NaN or Inf in rows \[100, 200\)"):
        vi.SGPR(da.from_array(X, chunks=(100, 3)), da.from_array(y, chunks=100), vi.kernels.SquaredExponential(),
                X[:5])


@pytest.mark.parametrize("model, want", [(vi.SGPR, r"\[n\] or \[n, c\]"), (vi.FITC, "1-D")])
def test_shapes_are_checked(model, want):
    X, y = _data(n=100)
    with pytest.raises(ValueError, match=f"y must be {want} with the 100 rows of X"):
        model(da.from_array(X, chunks=50), da.from_array(y[:90], chunks=50), vi.kernels.SquaredExponential(), 5)
    with pytest.raises(ValueError, match="y must be 1-D"):
        vi.FITC(da.from_array(X, chunks=50), da.from_array(np.c_[y, y], chunks=50), vi.kernels.SquaredExponential(), 5)


def test_exact_gp_refuses_dask_arrays():
    X, y = _data(n=100)
    with pytest.raises(ValueError, match="GPR needs X and y in memory"):
        vi.GPR(da.from_array(X, chunks=50), da.from_array(y, chunks=50), vi.kernels.SquaredExponential())


def test_closed_client_is_a_clear_error(cluster):
    from distributed import Client
    X, y = _data(n=400)
    with Client(cluster, set_as_default=True) as c:
        Xd, yd = c.persist([da.from_array(X, chunks=(100, 3)), da.from_array(y, chunks=100)])
        model = vi.SGPR(Xd, yd, vi.kernels.SquaredExponential(), X[:5])
    with pytest.raises(RuntimeError, match="client or cluster that holds the data is gone"):
        model.elbo(return_grad=True)


# --- saving and copies without data --------------------------------------------------------------------

@pytest.mark.parametrize("cls", MODELS)
def test_saved_model_predicts_from_its_factor(cls, tmp_path):
    X, y = _data(n=600)
    local, dist = _pair(cls, X, y)
    path = os.fspath(tmp_path / "model.vinf")
    dist.save(path)
    loaded = vi.load(path)
    assert repr(loaded) == repr(dist)
    assert loaded._objective(False) == dist._objective(False)
    np.testing.assert_allclose(loaded.predict_y(X[:50])[1], local.predict_y(X[:50])[1], rtol=1e-9)
    with pytest.raises(ValueError, match="holds no training data"):
        loaded.fit()
    loaded.kernel.variance = 2.0  # the factor no longer matches: no silent stale answer
    with pytest.raises(ValueError, match="holds no training data"):
        loaded.predict_f(X[:5])


def test_crafted_factor_is_a_format_error(tmp_path):
    import zipfile
    X, y = _data(n=200)
    _, dist = _pair(vi.SGPR, X, y)
    path = os.fspath(tmp_path / "model.vinf")
    dist.save(path)
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    bad = os.fspath(tmp_path / "bad.vinf")
    L = np.tril(np.ones((15, 15)))
    L[3, 3] = -1.0
    import io
    buf = io.BytesIO()
    np.save(buf, L)
    key = next(k for k in members if k.endswith("factor/L.npy"))
    members[key] = buf.getvalue()
    with zipfile.ZipFile(bad, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(vi.FormatError, match="factor/L must be lower triangular with a positive diagonal"):
        vi.load(bad)


def test_workers_get_the_allocator_settings_the_core_needs(client):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_; importing varinf's core on a worker raises
    glibc's thresholds there too (varinf._allocator)."""
    X, y = _data(n=200)
    _, dist = _pair(vi.SGPR, X, y, chunks=(100, 3), y_chunks=100)
    dist.elbo(return_grad=True)

    def state():
        import os
        from varinf import _allocator
        return "MALLOC_TRIM_THRESHOLD_" in os.environ, _allocator.tuned

    assert all(state == (True, True) for state in client.run(state).values())
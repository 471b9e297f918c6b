"""Workers killed in the middle of a fit cost time, not the result (a cluster of its own: each
killed worker's nanny starts a new one, and Dask recomputes the chunks it held)."""

import os
import signal

import numpy as np
import pytest

import varinf as vi

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
from varinf.dask._partitioned import PartitionedRows  # noqa: E402 (needs dask)


@pytest.fixture(scope="module")
def fragile():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as cluster, distributed.Client(cluster) as client:
        yield client


def _kill_the_workers(client):
    """SIGKILL every worker process (whichever holds the chunks); their nannies start new ones."""
    for pid in client.run(os.getpid).values():
        os.kill(pid, signal.SIGKILL)


def _data(n=3000, d=2):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, d))
    return X, np.sin(2 * X).sum(1) + 0.1 * rng.normal(size=n)


def test_sgpr_fit_survives_killed_workers_with_the_same_bound(fragile, monkeypatch):
    X, y = _data()
    Xd, yd = fragile.persist([da.from_array(X, chunks=(250, 2)), da.from_array(y, chunks=250)])

    def fit():
        model = vi.SGPR(Xd, yd, vi.kernels.SquaredExponential(lengthscales=np.ones(2)), X[:10] + 0.01)
        with pytest.warns(RuntimeWarning, match="max_iter"):
            model.fit(max_iter=25)
        return model

    undisturbed = fit()
    before = set(fragile.run(os.getpid).values())
    passes = []
    original = PartitionedRows.map_sum

    def kill_before_the_fifth_pass(self, function, shared):
        passes.append(1)
        if len(passes) == 5:  # in the middle of L-BFGS-B: the chunks are lost, Dask recomputes them
            _kill_the_workers(fragile)
        return original(self, function, shared)

    monkeypatch.setattr(PartitionedRows, "map_sum", kill_before_the_fifth_pass)
    disturbed = fit()
    assert len(passes) > 5
    assert not before & set(fragile.run(os.getpid).values())  # the workers were replaced
    assert disturbed.elbo() == undisturbed.elbo()  # the same chunks in the same tree: the same bits
    np.testing.assert_array_equal(disturbed.Z, undisturbed.Z)


def test_svgp_fit_survives_killed_workers(fragile):
    X, y = _data()
    Xd, yd = fragile.persist([da.from_array(X, chunks=(250, 2)), da.from_array(y, chunks=250)])
    fragile.wait_for_workers(2)
    make = lambda: vi.SVGP(vi.kernels.SquaredExponential(lengthscales=np.ones(2)), vi.likelihoods.Gaussian(0.1),  # noqa: E731
                           X[:10] + 0.01, num_data=len(y))
    local = make().fit(X, y, iterations=60, batch_size=256, seed=1, progress=False)
    killed = []

    def kill_once(model, step, elbo):
        if not killed:
            killed.append(step)
            _kill_the_workers(fragile)

    model = make()
    with pytest.warns(RuntimeWarning, match="worker was lost at SVGP step"):
        model.fit(Xd, yd, iterations=60, batch_size=256, seed=1, progress=False, callback=kill_once)
    assert killed and model.elbo_history_.size == 60
    # The steps carry forward the rounding of two summation orders (test_dask_svgp.py says more).
    np.testing.assert_allclose(model.elbo_history_, local.elbo_history_, rtol=1e-7)
    np.testing.assert_allclose(model.q_mu, local.q_mu, rtol=1e-7, atol=1e-9)

"""The SGPR and FITC objectives assembled from sums over parts of the rows (the C++ passes that
varinf.dask runs on partitions; docs/math.md sections 10.1-10.2) equal the one-call objectives."""

import numpy as np
import pytest

import varinf as vi
from varinf._loader import core

sparse = core.sparse


@pytest.fixture
def problem():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(230, 3))
    y = np.cos(X).sum(1) + 0.1 * rng.normal(size=230)
    k = vi.kernels.Matern32(variance=1.3, lengthscales=np.array([0.7, 1.1, 1.4]))
    return k.core(), k.theta(), X, y, X[:11] + 0.02, 0.15, np.array([0.3]), 1e-6


def _add(a, b):
    return tuple(x + y for x, y in zip(a, b))


PARTS = (slice(0, 70), slice(70, 71), slice(71, 230))  # one part of a single row


def _rows(problem, part):
    kernel, theta, X, y, *rest = problem
    return (kernel, theta, np.ascontiguousarray(X[part]), np.ascontiguousarray(y[part]), *rest)


def test_sgpr_from_partial_sums_equals_the_bound_and_gradient(problem):
    kernel, theta, X, y, Z, noise, mean, jitter = problem
    stats = [sparse.sgpr_stats(*_rows(problem, p)) for p in PARTS]
    total = _add(_add(stats[0], stats[1]), stats[2])
    assert total[-1] == 230
    (bound, dtheta, dZ, dnoise, dmean, _), adjoints = sparse.sgpr_collapsed_grad(kernel, theta, Z, noise, mean,
                                                                                 jitter, total)
    shares = [sparse.sgpr_data_grad(*_rows(problem, p), adjoints) for p in PARTS]
    want = sparse.sgpr_bound_grad(*problem)
    assert bound == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(dtheta + sum(s[0] for s in shares), want[1], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dZ + sum(s[1] for s in shares), want[2], rtol=1e-9, atol=1e-11)
    assert dnoise == pytest.approx(want[3], rel=1e-10)
    np.testing.assert_allclose(dmean, want[4], rtol=1e-10)
    factor = sparse.sgpr_factor_from_stats(kernel, theta, Z, noise, mean, jitter, total)
    assert factor.upper_bound == pytest.approx(sparse.sgpr_factor(*problem).upper_bound, rel=1e-12)


def test_fitc_from_partial_sums_equals_the_lml_and_gradient(problem):
    kernel, theta, X, y, Z, noise, mean, jitter = problem
    L, used = sparse.inducing_factor(kernel, theta, Z, jitter)
    stats = [sparse.fitc_stats(*_rows(problem, p), L) for p in PARTS]
    factor = sparse.fitc_factor_from_stats(kernel, theta, Z, noise, mean, jitter, L, used,
                                           _add(_add(stats[0], stats[1]), stats[2]))
    shares = [sparse.fitc_data_grad(*_rows(problem, p), factor) for p in PARTS]
    got = sparse.fitc_finish_grad(kernel, theta, Z, noise, mean, jitter, factor,
                                  _add(_add(shares[0], shares[1]), shares[2]))
    want = sparse.fitc_lml_grad(*problem)
    assert got[0] == pytest.approx(want[0], rel=1e-12)
    for g, w in zip(got[1:5], want[1:5]):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11)


def test_malformed_statistics_raise_value_error(problem):
    kernel, theta, X, y, Z, noise, mean, jitter = problem
    stats = sparse.sgpr_stats(*problem)
    with pytest.raises(ValueError, match="wrong number of fields"):
        sparse.sgpr_collapsed_grad(kernel, theta, Z, noise, mean, jitter, stats[:-1])
    with pytest.raises(ValueError, match="wrong shape"):
        sparse.sgpr_collapsed_grad(kernel, theta, Z, noise, mean, jitter, (stats[0][:5],) + stats[1:])
    with pytest.raises(ValueError, match="adjoints"):
        sparse.sgpr_data_grad(*problem, (np.eye(11),))


def test_factor_pickles_as_its_arrays(problem):
    import pickle
    factor = sparse.sgpr_factor(*problem)
    again = pickle.loads(pickle.dumps(factor))
    assert (again.bound, again.upper_bound, again.jitter) == (factor.bound, factor.upper_bound, factor.jitter)
    mean = [sparse.sgpr_predict(*problem, f, problem[2][:5], False)[0] for f in (factor, again)]
    np.testing.assert_array_equal(*mean)

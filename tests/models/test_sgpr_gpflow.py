"""Oracle: varinf's SGPR with y [n, P] against GPflow's SGPR with several columns of Y for
identical parameters (docs/math.md section 5.9): the bound, the upper bound, the predictions and
the optimal q(u). Runs where GPflow is installed (the peers' environment,
../shared/peers-requirements.txt), skips elsewhere."""

import numpy as np
import pytest

import varinf as vi
from _peers import import_peer

gpflow = import_peer("gpflow")
gpflow.config.set_default_float(np.float64)

MEANS = np.array([0.4, -1.0, 2.5])


def _gpflow_sgpr(X, Y, Z, means):
    return gpflow.models.SGPR((X, Y), gpflow.kernels.Matern52(0.9, [1.2, 0.8]), inducing_variable=Z,
                              mean_function=gpflow.mean_functions.Constant(means), noise_variance=0.05)


@pytest.fixture
def data(rng):
    X = rng.uniform(-2, 2, size=(80, 2))
    Y = np.sin(X @ rng.normal(size=(2, 3))) + MEANS + 0.1 * rng.normal(size=(80, 3))
    Z = rng.uniform(-2, 2, size=(9, 2))
    return X, Y, Z


@pytest.fixture
def models(data):
    X, Y, Z = data
    return vi.SGPR(X, Y, vi.kernels.Matern52(0.9, [1.2, 0.8]), Z, noise_variance=0.05, mean=MEANS), \
        _gpflow_sgpr(X, Y, Z, MEANS)


def test_bounds_equal_gpflow(models, data):
    ours, theirs = models
    np.testing.assert_allclose(ours.elbo(), theirs.elbo().numpy(), rtol=1e-8)
    # GPflow 2.11's SGPR.upper_bound counts the log-determinant and constant terms once for all
    # columns of Y (its elbo counts them per column), so for P > 1 it is not a bound on the sum of
    # the columns' log marginal likelihoods; the oracle is the sum of its one-column upper bounds.
    X, Y, Z = data
    upper = sum(_gpflow_sgpr(X, Y[:, p:p + 1], Z, MEANS[p:p + 1]).upper_bound().numpy() for p in range(3))
    np.testing.assert_allclose(ours.upper_bound(), upper, rtol=1e-8)


def test_predictions_and_qu_equal_gpflow(models, rng):
    ours, theirs = models
    Xs = rng.uniform(-2, 2, size=(6, 2))
    for full_cov in (False, True):
        for got, want in zip(ours.predict_f(Xs, full_cov=full_cov), theirs.predict_f(Xs, full_cov=full_cov)):
            np.testing.assert_allclose(got, want.numpy(), rtol=1e-8, atol=1e-10)
    for got, want in zip(ours.predict_y(Xs), theirs.predict_y(Xs)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-8, atol=1e-10)
    mu, S = ours.compute_qu()
    their_mu, their_S = theirs.compute_qu()
    np.testing.assert_allclose(mu - MEANS, their_mu.numpy(), rtol=1e-7, atol=1e-9)  # GPflow's u is of f - mean
    np.testing.assert_allclose(S, their_S.numpy(), rtol=1e-7, atol=1e-9)

"""Oracle: varinf's SVGP with several latent GPs against GPflow's SVGP for identical parameters
(docs/math.md section 11): the ELBO to relative 1e-8 and the predictions, with SharedIndependent,
SeparateIndependent and LinearCoregionalization kernels, shared and separate inducing inputs,
Gaussian and MultiClass (RobustMax) likelihoods; Softmax to Monte Carlo error. Runs where GPflow
is installed (the peers' environment, ../shared/peers-requirements.txt), skips elsewhere."""

import numpy as np
import pytest

import varinf as vi
from varinf import kernels as K
from varinf import likelihoods as Lik
from _peers import import_peer

gpflow = import_peer("gpflow")
tf = import_peer("tensorflow")
gpflow.config.set_default_float(np.float64)

N, M, D, L = 60, 7, 2, 3


@pytest.fixture
def problem(rng):
    X = rng.uniform(-2, 2, size=(N, D))
    Y = np.sin(X @ rng.normal(size=(D, L))) + 0.1 * rng.normal(size=(N, L))
    labels = np.argmax(Y + 0.3 * rng.normal(size=Y.shape), axis=1).astype(float)
    Z = rng.uniform(-2, 2, size=(M, D))
    return X, Y, labels, Z


def variational(rng, q_diag, L=L):
    q_mu = 0.5 * rng.normal(size=(M, L))
    if q_diag:
        return q_mu, np.abs(rng.normal(size=(M, L))) + 0.4
    return q_mu, np.stack([np.tril(0.3 * rng.normal(size=(M, M))) + np.eye(M) for _ in range(L)])


def our_kernels():
    return [K.SquaredExponential(1.3, [0.8, 1.2]), K.Matern52(0.6, [1.1, 0.7]), K.SquaredExponential(0.9, 1.5)]


def their_kernels():
    return [gpflow.kernels.SquaredExponential(1.3, [0.8, 1.2]), gpflow.kernels.Matern52(0.6, [1.1, 0.7]),
            gpflow.kernels.SquaredExponential(0.9, 1.5)]


def pair(structure, Z):
    """(varinf kernel, varinf Z, GPflow kernel, GPflow inducing variable) of one structure."""
    shared_iv = gpflow.inducing_variables.SharedIndependentInducingVariables(
        gpflow.inducing_variables.InducingPoints(Z))
    Zs = np.stack([Z, Z + 0.25, Z - 0.3])
    if structure == "shared":
        return (K.SquaredExponential(1.3, [0.8, 1.2]), Z,
                gpflow.kernels.SharedIndependent(gpflow.kernels.SquaredExponential(1.3, [0.8, 1.2]), output_dim=L),
                shared_iv)
    if structure == "separate":
        return K.SeparateIndependent(our_kernels()), Z, gpflow.kernels.SeparateIndependent(their_kernels()), shared_iv
    if structure == "separate-Z":
        iv = gpflow.inducing_variables.SeparateIndependentInducingVariables(
            [gpflow.inducing_variables.InducingPoints(z) for z in Zs])
        return K.SeparateIndependent(our_kernels()), Zs, gpflow.kernels.SeparateIndependent(their_kernels()), iv
    W = np.array([[1.0, 0.4, -0.3], [0.2, -0.9, 0.5]])
    return (K.LinearCoregionalization(our_kernels(), W), Z,
            gpflow.kernels.LinearCoregionalization(their_kernels(), W), shared_iv)


@pytest.mark.parametrize("structure", ["shared", "separate", "separate-Z", "coregionalization"])
@pytest.mark.parametrize("whiten, q_diag", [(True, False), (False, False), (True, True)])
def test_gaussian_elbo_and_predictions_equal_gpflows(problem, rng, structure, whiten, q_diag):
    X, Y, _, Z = problem
    kernel, Z_ours, their_kernel, iv = pair(structure, Z)
    P = 2 if structure == "coregionalization" else L
    Y = Y[:, :P]
    q_mu, q_sqrt = variational(rng, q_diag)
    ours = vi.SVGP(kernel, Lik.Gaussian(0.2), Z_ours, num_data=4 * N, num_latent_gps=L, whiten=whiten,
                   q_diag=q_diag)
    ours.q_mu, ours.q_sqrt = q_mu, q_sqrt
    theirs = gpflow.models.SVGP(their_kernel, gpflow.likelihoods.Gaussian(0.2), iv, num_latent_gps=L,
                                q_diag=q_diag, whiten=whiten, q_mu=q_mu, q_sqrt=q_sqrt, num_data=4 * N)
    assert ours.elbo(X, Y) == pytest.approx(theirs.elbo((X, Y)).numpy(), rel=1e-8)
    for a, b in zip(ours.predict_f(X[:10]), theirs.predict_f(X[:10])):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-8, atol=1e-10)
    for a, b in zip(ours.predict_y(X[:10]), theirs.predict_y(X[:10])):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-8, atol=1e-10)
    if structure == "coregionalization":
        _, cov = ours.predict_f(X[:10], full_output_cov=True)
        np.testing.assert_allclose(cov, theirs.predict_f(X[:10], full_output_cov=True)[1].numpy(), rtol=1e-8,
                                   atol=1e-10)


@pytest.mark.parametrize("whiten, q_diag", [(True, False), (False, False), (True, True)])
def test_robustmax_elbo_and_predictions_equal_gpflows_multiclass(problem, rng, whiten, q_diag):
    X, _, labels, Z = problem
    q_mu, q_sqrt = variational(rng, q_diag)
    ours = vi.SVGP(K.SquaredExponential(1.3, [0.8, 1.2]), Lik.RobustMax(L), Z, num_data=N, whiten=whiten,
                   q_diag=q_diag)
    ours.q_mu, ours.q_sqrt = q_mu, q_sqrt
    theirs = gpflow.models.SVGP(gpflow.kernels.SquaredExponential(1.3, [0.8, 1.2]), gpflow.likelihoods.MultiClass(L),
                                Z, num_latent_gps=L, q_diag=q_diag, whiten=whiten, q_mu=q_mu, q_sqrt=q_sqrt,
                                num_data=N)
    assert ours.elbo(X, labels) == pytest.approx(theirs.elbo((X, labels[:, None])).numpy(), rel=1e-8)
    np.testing.assert_allclose(ours.predict_y(X[:10])[0], theirs.predict_y(X[:10])[0].numpy(), rtol=1e-8)
    np.testing.assert_allclose(ours.predict_log_density(X[:10], labels[:10]),
                               theirs.predict_log_density((X[:10], labels[:10, None])).numpy(), rtol=1e-8)


def test_softmax_elbo_agrees_with_gpflows_to_monte_carlo_error(problem, rng):
    X, _, labels, Z = problem
    q_mu, q_sqrt = variational(rng, False)
    ours = [vi.SVGP(K.SquaredExponential(1.3, [0.8, 1.2]), Lik.Softmax(L, num_samples=2000, seed=s), Z, num_data=N)
            for s in range(3)]
    for model in ours:
        model.q_mu, model.q_sqrt = q_mu, q_sqrt
    mine = np.array([model.elbo(X, labels) for model in ours])
    softmax = gpflow.likelihoods.Softmax(L)
    softmax.num_monte_carlo_points = 2000
    theirs_model = gpflow.models.SVGP(gpflow.kernels.SquaredExponential(1.3, [0.8, 1.2]), softmax, Z,
                                      num_latent_gps=L, q_mu=q_mu, q_sqrt=q_sqrt, num_data=N)
    tf.random.set_seed(1)
    theirs = np.array([theirs_model.elbo((X, labels[:, None].astype(np.int64))).numpy() for _ in range(3)])
    # Each ELBO sums N rows of S-sample means: the spread of the estimates bounds their error.
    spread = max(np.std(mine), np.std(theirs), 1e-3 * abs(mine.mean()))
    assert abs(mine.mean() - theirs.mean()) < 6 * spread

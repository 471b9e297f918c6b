"""SGPR with a LinearCoregionalization kernel: P outputs mixing Q latent GPs, with the joint
optimal q(u) (docs/math.md section 5.10). The oracles: the dense [nP, nP] model in numpy, the
identities of section 5.10 (Q = 1 is SGPR, W = I is a sum of SGPRs, Z = X is the exact
marginal likelihood), and central differences."""

import numpy as np
import pytest
from scipy.linalg import block_diag

import varinf as vi
from varinf import kernels as K
from varinf.models import sgpr as sgpr_module
from _grad import check_model_gradient

NOISE = 0.2


@pytest.fixture
def data(rng):
    X = rng.uniform(-3, 3, size=(60, 2))  # [n, d]
    g = np.column_stack([np.sin(X[:, 0]), np.cos(2 * X[:, 1])])  # [n, Q]
    W = np.array([[1.0, 0.3], [-0.5, 1.2], [0.8, 0.8]])  # [P, Q]
    Y = g @ W.T + 0.1 * rng.normal(size=(60, 3)) + np.array([0.5, -1.0, 2.0])  # [n, P]
    Z = rng.uniform(-3, 3, size=(9, 2))  # [m, d]
    return X, Y, Z, W


def _kernels():
    return [K.SquaredExponential(1.2, [0.8, 1.5]), K.Matern52(0.7, 1.1)]


def _dense(kernels, W, X, Xs, Z, jitter):
    """The stacked problem's covariances, output-major: Kff [nP, nP], Kuf [mQ, nP], Kuu [mQ, mQ],
    Ksu [n*P, mQ], Kss [n*P, n*P]."""
    P, Q = W.shape

    def mixed(A, B):  # sum_q W_pq W_p'q k_q(A, B), [len(A) P, len(B) P]
        return sum(np.kron(np.outer(W[:, q], W[:, q]), k.K(A, B)) for q, k in enumerate(kernels))

    Kuf = np.vstack([np.kron(W[:, q][None], k.K(Z, X)) for q, k in enumerate(kernels)])
    Ksu = np.hstack([np.kron(W[:, q][:, None], k.K(Xs, Z)) for q, k in enumerate(kernels)])
    Kuu = block_diag(*[k.K(Z) + jitter * np.eye(len(Z)) for k in kernels])
    return mixed(X, X), Kuf, Kuu, Ksu, mixed(Xs, Xs)


def _model(X, Y, Z, W, kernels=None, **kwargs):
    kernel = K.LinearCoregionalization(kernels or _kernels(), W)
    return vi.SGPR(X, Y, kernel, Z, noise_variance=NOISE, **kwargs)


def test_bound_predictions_and_qu_equal_the_dense_model(data):
    X, Y, Z, W = data
    model = _model(X, Y, Z, W, mean="constant")
    Xs = X[:7] + 0.1
    Kff, Kuf, Kuu, Ksu, Kss = _dense(model.kernel.kernels, W, X, Xs, Z, sgpr_module.KUU_JITTER)
    r = (Y - model.mean).T.ravel()  # [nP] output-major
    Qff = Kuf.T @ np.linalg.solve(Kuu, Kuf)
    C = Qff + NOISE * np.eye(r.size)
    want = (-0.5 * r.size * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(C)[1] - 0.5 * r @ np.linalg.solve(C, r)
            - 0.5 * np.trace(Kff - Qff) / NOISE)
    np.testing.assert_allclose(model.elbo(), want, rtol=1e-11)

    Sigma = np.linalg.inv(Kuu + Kuf @ Kuf.T / NOISE)  # [mQ, mQ]
    mean = (Ksu @ Sigma @ Kuf @ r / NOISE).reshape(3, -1).T + model.mean  # [n*, P]
    cov = Kss - Ksu @ np.linalg.solve(Kuu, Ksu.T) + Ksu @ Sigma @ Ksu.T  # [n*P, n*P]
    got_mean, got_var = model.predict_f(Xs)
    np.testing.assert_allclose(got_mean, mean, atol=1e-11)
    np.testing.assert_allclose(got_var, np.diag(cov).reshape(3, -1).T, atol=1e-11)
    full_mean, full_cov = model.predict_f(Xs, full_cov=True)  # [n*, P], [P, n*, n*]
    np.testing.assert_allclose(full_mean, mean, atol=1e-11)
    for p in range(3):
        np.testing.assert_allclose(full_cov[p], cov[7 * p:7 * (p + 1), 7 * p:7 * (p + 1)], atol=1e-11)

    mu_u, S_u = model.compute_qu()  # [m, Q], [mQ, mQ]
    np.testing.assert_allclose(mu_u.T.ravel(), Kuu @ Sigma @ Kuf @ r / NOISE, atol=1e-11)
    np.testing.assert_allclose(S_u, Kuu @ Sigma @ Kuu, atol=1e-11)

    # Samples are joint over points and outputs: their covariance is the dense one.
    draws = model.predict_f_samples(Xs, num_samples=40000, seed=3)  # [S, n*, P]
    assert draws.shape == (40000, 7, 3)
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=0.05)
    empirical = np.cov(draws.transpose(0, 2, 1).reshape(40000, -1).T)
    np.testing.assert_allclose(empirical, cov, atol=0.05 * np.abs(cov).max())


def test_upper_bound_brackets_the_exact_marginal_likelihood(data):
    X, Y, Z, W = data
    model = _model(X, Y, Z, W)
    Kff = _dense(model.kernel.kernels, W, X, X[:1], Z, 0.0)[0]
    exact = _dense_log_marginal(Kff, Y)
    assert model.elbo() <= exact <= model.upper_bound()


def _dense_log_marginal(Kff, Y):
    r = Y.T.ravel()
    C = Kff + NOISE * np.eye(r.size)
    return -0.5 * r.size * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(C)[1] - 0.5 * r @ np.linalg.solve(C, r)


def test_inducing_inputs_at_the_data_give_the_exact_marginal_likelihood(data, monkeypatch):
    X, Y, _, W = data
    X = X[:25]
    monkeypatch.setattr(sgpr_module, "KUU_JITTER", 0.0)
    model = _model(X, Y[:25], X.copy(), W)
    exact = _dense_log_marginal(_dense(model.kernel.kernels, W, X, X[:1], X, 0.0)[0], Y[:25])
    np.testing.assert_allclose(model.elbo(), exact, rtol=1e-6)
    np.testing.assert_allclose(model.upper_bound(), exact, rtol=1e-6)


@pytest.mark.parametrize("mean", [None, "constant"])
def test_one_latent_gp_and_one_output_is_sgpr(data, mean):
    X, Y, Z, _ = data
    kernel = K.Matern32(0.9, [1.1, 0.6])
    plain = vi.SGPR(X, Y[:, 0], kernel, Z, noise_variance=NOISE, mean=mean)
    mixed = vi.SGPR(X, Y[:, 0], K.LinearCoregionalization([kernel], [[1.0]]), Z, noise_variance=NOISE, mean=mean)
    value, grad = mixed.elbo(return_grad=True)
    want_value, want_grad = plain.elbo(return_grad=True)
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    without_W = np.concatenate([np.full(p.size, p.name != "W") for p in mixed.trainable_parameters])
    np.testing.assert_allclose(grad[without_W], want_grad, rtol=1e-9, atol=1e-9)
    Xs = X[:5] + 0.2
    for got, want in zip(mixed.predict_f(Xs), plain.predict_f(Xs)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-12)
    np.testing.assert_allclose(mixed.upper_bound(), plain.upper_bound(), rtol=1e-12)


def test_identity_mixing_is_a_sum_of_independent_sgprs(data):
    X, Y, Z, _ = data
    kernels = _kernels()
    model = _model(X, Y[:, :2], Z, np.eye(2), kernels=kernels, mean=[0.5, -1.0])
    singles = [vi.SGPR(X, Y[:, q], k, Z, noise_variance=NOISE, mean=[0.5, -1.0][q]) for q, k in enumerate(kernels)]
    np.testing.assert_allclose(model.elbo(), sum(s.elbo() for s in singles), rtol=1e-12)
    mean, var = model.predict_f(X[:4])
    for q, single in enumerate(singles):
        want_mean, want_var = single.predict_f(X[:4])
        np.testing.assert_allclose(mean[:, q], want_mean, atol=1e-12)
        np.testing.assert_allclose(var[:, q], want_var, atol=1e-12)


@pytest.mark.parametrize("case", ["separate kernels", "one shared kernel", "one output", "fixed Z"])
def test_gradient_matches_central_differences(data, case):
    X, Y, Z, W = data
    if case == "one shared kernel":
        k = K.SquaredExponential(1.1, [0.9, 1.4])
        model = _model(X, Y, Z, W, kernels=[k, k], mean="constant")
        assert sum(p is k.parameters[0] for p in model.parameters) == 1
    elif case == "one output":
        model = _model(X, Y[:, 0], Z, W[:1], mean="constant")
    else:
        model = _model(X, Y, Z, W, mean="constant", train_Z=case != "fixed Z")
    check_model_gradient(model, h=1e-6, rtol=1e-6)


@pytest.mark.filterwarnings("ignore:L-BFGS-B stopped")
def test_fit_learns_the_mixing_better_than_one_shared_kernel():
    # Three outputs mixing a fast and a slow latent function: coregionalisation with two kernels
    # fits them better (bound per datum) and predicts held-out rows no worse than outputs that
    # share one kernel.
    rng = np.random.default_rng(0)
    X = rng.uniform(-4, 4, size=(600, 1))  # [n, d]
    g = np.column_stack([np.sin(1.5 * X[:, 0]), 0.5 * X[:, 0] * np.cos(0.4 * X[:, 0])])  # [n, Q]
    Y = g @ np.array([[1.0, 0.2], [0.3, 1.0], [1.0, -1.0]]).T + 0.1 * rng.normal(size=(600, 3))  # [n, P]
    Z = np.linspace(-4, 4, 15)[:, None]
    kernel = K.LinearCoregionalization([K.SquaredExponential(1.0, 1.0), K.SquaredExponential(1.0, 2.0)],
                                       rng.normal(size=(3, 2)) / np.sqrt(2))
    mixed = vi.SGPR(X[:300], Y[:300], kernel, Z, noise_variance=0.1, mean="constant")
    before = mixed.elbo()
    mixed.fit(max_iter=500)
    shared = vi.SGPR(X[:300], Y[:300], K.SquaredExponential(1.0, 1.0), Z, noise_variance=0.1, mean="constant")
    shared.fit(max_iter=500)
    assert mixed.elbo() > before
    assert mixed.elbo() / 300 > shared.elbo() / 300 + 0.05
    assert mixed.predict_log_density(X[300:], Y[300:]).mean() > shared.predict_log_density(X[300:], Y[300:]).mean()


def test_save_and_load_give_the_same_model(data, tmp_path):
    X, Y, Z, W = data
    model = _model(X, Y, Z, W, mean="constant")
    model.kernel._W.trainable = False
    model.save(tmp_path / "lmc.npz")
    loaded = vi.load(tmp_path / "lmc.npz")
    assert isinstance(loaded.kernel, K.LinearCoregionalization) and not loaded.kernel._W.trainable
    np.testing.assert_array_equal(loaded.kernel.W, W)
    assert loaded.elbo() == model.elbo()
    for got, want in zip(loaded.predict_f(X[:3]), model.predict_f(X[:3])):
        np.testing.assert_array_equal(got, want)


def test_bad_input_is_refused_with_the_argument_named(data):
    X, Y, Z, W = data
    with pytest.raises(ValueError, match="y must have one column per row of the LinearCoregionalization's W"):
        _model(X, Y[:, :2], Z, W)
    with pytest.raises(ValueError, match="W must be"):
        K.LinearCoregionalization(_kernels(), W[:, :1])
    with pytest.raises(ValueError, match="kernel must be a Kernel"):
        vi.FITC(X, Y[:, 0], K.LinearCoregionalization(_kernels(), W[:1]), Z)
    model = _model(X, Y, Z, W)
    with pytest.raises(ValueError, match="ynew"):
        model.predict_log_density(X[:3], Y[:3, :2])


def test_dask_arrays_are_refused_with_a_clear_message(data):
    da = pytest.importorskip("dask.array")
    X, Y, Z, W = data
    with pytest.raises(ValueError, match="LinearCoregionalization kernel needs X and y in memory"):
        _model(da.from_array(X, chunks=20), da.from_array(Y, chunks=20), Z, W)

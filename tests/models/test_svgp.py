"""SVGP (Hensman et al. 2013): the C++ ELBO and gradient against the numpy reference and central
finite differences, the identities of docs/math.md section 7.13, the C++ training loop, bad input."""


import pathlib

import numpy as np
import pytest

import varinf as vi
from varinf import kernels as K
from varinf._loader import core
from varinf.reference import sparse as ref
from _gil import assert_releases_gil
from _svgp import single_args
from _grad import central_differences, check_model_gradient

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"  # tests/data
VARIANTS = [(True, False), (True, True), (False, False), (False, True)]
IDS = ["whiten-full", "whiten-diag", "unwhiten-full", "unwhiten-diag"]


@pytest.fixture
def data(rng):
    X = rng.uniform(-3, 3, size=(120, 2))  # [n, d]
    y = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, 1]) + 0.1 * rng.normal(size=120)  # [n]
    Z = rng.uniform(-3, 3, size=(9, 2))  # [m, d]
    return X, y, Z


def variational(rng, m, q_diag):
    q_mu = 0.5 * rng.normal(size=m)  # [m]
    if q_diag:
        return q_mu, np.abs(rng.normal(size=m)) + 0.3  # [m]
    return q_mu, np.tril(0.3 * rng.normal(size=(m, m))) + np.eye(m)  # [m, m]


def likelihood_cases():
    """(likelihood, targets from the latent y, VE for the numpy reference or None)."""
    return [
        (vi.likelihoods.Gaussian(0.05), lambda y: y, None),
        (vi.likelihoods.Bernoulli(), lambda y: (y > 0).astype(float), "quadrature"),
        (vi.likelihoods.Poisson(), lambda y: np.round(np.exp(y)), "quadrature"),
        (vi.likelihoods.StudentT(0.3, 4.0), lambda y: y, "quadrature"),
    ]


@pytest.mark.parametrize("lik, targets, ve", likelihood_cases(), ids=["gaussian", "bernoulli", "poisson", "student-t"])
@pytest.mark.parametrize("whiten, q_diag", VARIANTS, ids=IDS)
def test_cpp_elbo_and_gradient(data, rng, whiten, q_diag, lik, targets, ve):
    X, y, Z = data
    Xb, yb = X[:50], targets(y[:50])  # a batch of a data set of 400
    kernel = K.Matern52(1.3, [0.9, 1.4])
    q_mu, q_sqrt = variational(rng, Z.shape[0], q_diag)
    start = dict(theta=kernel.theta(), lik=lik.theta(), Z=Z, q_mu=q_mu, q_sqrt=q_sqrt, mean=np.array([0.2]))

    def evaluate(**changed):
        v = {**start, **changed}
        args = single_args(kernel, v["theta"], lik, v["lik"], v["Z"], v["q_mu"], v["q_sqrt"], whiten, q_diag,
                           v["mean"][0])
        return core.testing.svgp_elbo_grad(args, Xb, yb)

    elbo, kl, grads, _ = evaluate()
    if ve is None:
        expected = ref.svgp_elbo(kernel, Z, q_mu, q_sqrt, Xb, yb, 400, noise=0.05, whiten=whiten, mean=0.2)
    else:  # the likelihood's own expectations (tested in test_likelihoods.py) on the reference's moments
        expected = ref.svgp_elbo(kernel, Z, q_mu, q_sqrt, Xb, yb, 400, whiten=whiten, mean=0.2,
                                 variational_expectations=lambda y, mu, var: np.array(
                                     [lik.variational_expectations(y[i:i + 1], mu[i:i + 1], var[i:i + 1])[0]
                                      for i in range(len(y))]))
    assert elbo == pytest.approx(expected, rel=1e-10)
    assert kl == pytest.approx(ref.svgp_kl(kernel, Z, q_mu, q_sqrt, whiten), rel=1e-10)
    for name, key in [("theta", "theta"), ("lik", "lik_theta"), ("Z", "Z"), ("q_mu", "q_mu"),
                      ("q_sqrt", "q_sqrt"), ("mean", "mean")]:
        fd = central_differences(lambda v: evaluate(**{name: v})[0], start[name], h=1e-5)
        if name == "q_sqrt" and not q_diag:
            fd = np.tril(fd)  # the strict upper triangle is not read
        got = np.atleast_1d(grads[key])
        if got.size == 0:
            continue
        np.testing.assert_allclose(got, fd.reshape(got.shape), rtol=1e-6, atol=1e-6 * np.abs(fd).max(),
                                   err_msg=name)


@pytest.mark.parametrize("whiten, q_diag", VARIANTS, ids=IDS)
def test_model_gradient_is_with_respect_to_unconstrained_parameters(data, whiten, q_diag):
    X, y, Z = data
    # A tied parameter (one variance in two kernels) and a fixed one.
    shared = K.SquaredExponential(1.2, [0.8, 1.3])
    kernel = shared + K.Matern32(0.5, 2.0)
    kernel.kernels[1]._variance = shared._variance
    kernel.kernels[1]._lengthscales.trainable = False
    model = vi.SVGP(kernel, vi.likelihoods.Gaussian(0.1), Z, num_data=300, whiten=whiten, q_diag=q_diag,
                    mean="constant")
    rng = np.random.default_rng(3)
    model.q_mu, model.q_sqrt = variational(rng, Z.shape[0], q_diag)
    check_model_gradient(model, X, y)


def test_optimal_qu_gives_the_sgpr_bound(data):
    X, y, Z = data
    kernel = K.SquaredExponential(1.3, [0.9, 1.4])
    bound = vi.SGPR(X, y, kernel, Z, noise_variance=0.05, mean=0.3).elbo()
    q_mu, Lq = ref.sgpr_optimal_qu_whitened(kernel, X, y, Z, 0.05, mean=0.3)
    whitened = vi.SVGP(kernel, vi.likelihoods.Gaussian(0.05), Z, num_data=len(y), mean=0.3)
    whitened.q_mu, whitened.q_sqrt = q_mu, Lq
    assert whitened.elbo(X, y) == pytest.approx(bound, rel=1e-9)
    # The same q(u) in the unwhitened frame: u = L v.
    L = np.linalg.cholesky(kernel.K(Z) + 1e-6 * np.eye(len(Z)))
    unwhitened = vi.SVGP(kernel, vi.likelihoods.Gaussian(0.05), Z, num_data=len(y), whiten=False, mean=0.3)
    unwhitened.q_mu, unwhitened.q_sqrt = L @ q_mu, L @ Lq
    assert unwhitened.elbo(X, y) == pytest.approx(bound, rel=1e-9)
    # And its predictions are SGPR's.
    sgpr = vi.SGPR(X, y, kernel, Z, noise_variance=0.05, mean=0.3)
    for a, b in zip(whitened.predict_f(X[:20]), sgpr.predict_f(X[:20])):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_inducing_at_data_with_optimal_qu_equals_gpr(data, monkeypatch):
    X, y, _ = data
    X, y = X[:40], y[:40]
    kernel = K.SquaredExponential(1.3, [0.9, 1.4])
    monkeypatch.setattr(vi.models.svgp, "KUU_JITTER", 1e-11)
    q_mu, Lq = ref.sgpr_optimal_qu_whitened(kernel, X, y, X, 0.05, jitter=1e-11)
    model = vi.SVGP(kernel, vi.likelihoods.Gaussian(0.05), X, num_data=len(y))
    model.q_mu, model.q_sqrt = q_mu, Lq
    gpr = vi.GPR(X, y, kernel, noise_variance=0.05)
    assert model.elbo(X, y) == pytest.approx(gpr.log_marginal_likelihood(), abs=1e-5)
    Xs = X[:10] + 0.3
    for a, b in zip(model.predict_y(Xs), gpr.predict_y(Xs)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_minibatch_elbo_averaged_over_a_partition_is_the_full_elbo(data, rng):
    X, y, Z = data
    model = vi.SVGP(K.Matern32(0.9, 1.1), vi.likelihoods.Gaussian(0.2), Z, num_data=len(y))
    model.q_mu, model.q_sqrt = variational(rng, Z.shape[0], False)
    parts = np.array_split(rng.permutation(len(y)), 4)  # equal sizes: 30 each
    average = np.mean([model.elbo(X[p], y[p]) for p in parts])
    assert average == pytest.approx(model.elbo(X, y), rel=1e-11)


def test_blocked_threads_give_the_same_elbo_and_gradient(rng):
    X = rng.normal(size=(3000, 3))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=3000)
    model = vi.SVGP(K.SquaredExponential(1.0, [1.0, 1.5, 2.0]), vi.likelihoods.Gaussian(0.1), X[:30],
                    num_data=3000)
    model.q_mu, model.q_sqrt = variational(rng, 30, False)
    saved = vi.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            vi.set_num_threads(threads)
            results.append(model.elbo(X, y, return_grad=True))
    finally:
        vi.set_num_threads(saved)
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=0, atol=1e-10 * np.abs(results[0][1]).max())


def test_trainer_is_adam_on_the_given_batches(data):
    X, y, Z = data
    model = vi.SVGP(K.SquaredExponential(), vi.likelihoods.Gaussian(0.3), Z, num_data=len(y), mean="constant")
    layout, params = model._layout()
    x = params.get()
    batches = np.stack([np.arange(0, 40), np.arange(40, 80), np.arange(80, 120)])
    trainer = core.sparse.SVGPTrainer(layout, x, 0.05, 0.9, 0.999, 1e-8, 0)
    elbos = core.testing.svgp_run_batches(trainer, X, y, batches)
    # Adam, Kingma & Ba (2015) Algorithm 1, ascending, in numpy.
    m1, m2 = np.zeros_like(x), np.zeros_like(x)
    for t, rows in enumerate(batches, start=1):
        value, g, _, _ = core.sparse.svgp_elbo_grad_x(layout, x, X[rows], y[rows])
        assert value == pytest.approx(elbos[t - 1], rel=1e-12)
        m1 = 0.9 * m1 + 0.1 * g
        m2 = 0.999 * m2 + 0.001 * g ** 2
        x = x + 0.05 * (m1 / (1 - 0.9 ** t)) / (np.sqrt(m2 / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(trainer.x, x, rtol=1e-12, atol=1e-14)


def test_elbo_terms_add_up_and_apply_is_the_step_of_run(data):
    """The batch split in two shares (its scale, the KL in one share) adds up to the batch's
    ELBO and gradient; a trainer stepping from that sum takes the step run() takes on the batch
    its BatchSampler draws (docs/math.md section 10.3); a non-finite ELBO stops it unchanged."""
    X, y, Z = data
    model = vi.SVGP(K.SquaredExponential(), vi.likelihoods.Gaussian(0.3), Z, num_data=len(y), mean="constant")
    layout, params = model._layout()
    x = params.get()
    rows = core.sparse.BatchSampler(11).next(len(y), 40)
    whole = core.sparse.svgp_elbo_grad_x(layout, x, X[rows], y[rows])
    a = core.sparse.svgp_elbo_grad_x(layout, x, X[rows[:15]], y[rows[:15]], scale=len(y) / 40, kl=True)
    b = core.sparse.svgp_elbo_grad_x(layout, x, X[rows[15:]], y[rows[15:]], scale=len(y) / 40, kl=False)
    for k in range(3):
        np.testing.assert_allclose(np.add(a[k], b[k]), whole[k], rtol=1e-11, atol=1e-12 * np.max(np.abs(whole[k])))
    by_run = core.sparse.SVGPTrainer(layout, x, 0.05, 0.9, 0.999, 1e-8, 11)
    by_run.run(X, y, 40, 1)
    by_apply = core.sparse.SVGPTrainer(layout, x, 0.05, 0.9, 0.999, 1e-8, 0)
    assert by_apply.apply(whole[0], whole[1], whole[2])
    np.testing.assert_allclose(by_apply.x, by_run.x, rtol=1e-12, atol=1e-14)
    assert not by_apply.apply(np.nan, whole[1], whole[2])  # the ELBO at the new x is not finite
    assert by_apply.failed and by_apply.failed_step == 2
    np.testing.assert_array_equal(by_apply.x, x)  # back to the last x whose ELBO was finite


def test_fit_is_seeded_and_callback_can_stop(data):
    X, y, Z = data

    def fitted(seed, **kw):
        model = vi.SVGP(K.SquaredExponential(), vi.likelihoods.Gaussian(0.5), Z, num_data=len(y))
        return model.fit(X, y, iterations=60, batch_size=32, seed=seed, progress=False, **kw)

    a, b, c = fitted(1), fitted(1), fitted(2)
    np.testing.assert_array_equal(a.q_mu, b.q_mu)
    np.testing.assert_array_equal(a.elbo_history_, b.elbo_history_)
    assert not np.array_equal(a.elbo_history_, c.elbo_history_)
    assert a.elbo_history_.shape == (60,)
    calls = []
    stopped = fitted(1, callback=lambda model, step, elbo: calls.append(step) or True)
    assert len(calls) == 1 and stopped.elbo_history_.size == calls[0] < 60


def test_non_finite_elbo_stops_training_and_keeps_the_last_finite_parameters(data):
    X, y, Z = data
    model = vi.SVGP(K.SquaredExponential(), vi.likelihoods.Gaussian(0.5), Z, num_data=len(y))
    model.fit(X, y, iterations=20, batch_size=40, seed=0, progress=False)
    before = vi.parameters.ParameterVector(model.parameters).get()
    # Targets whose squared error overflows: the first step's ELBO is -inf.
    with pytest.warns(RuntimeWarning, match="not finite at step 1 of this fit"):
        model.fit(X, 1e160 * y, iterations=50, batch_size=40, seed=0, progress=False)
    assert model.elbo_history_.size == 20 and np.all(np.isfinite(model.elbo_history_))
    np.testing.assert_array_equal(vi.parameters.ParameterVector(model.parameters).get(), before)
    assert np.isfinite(model.elbo(X, y))


def test_inducing_points_default_to_kmeans(data):
    X, y, _ = data
    model = vi.SVGP(K.SquaredExponential(), vi.likelihoods.Gaussian(), 7, num_data=len(y))
    with pytest.raises(ValueError, match="call fit"):
        model.predict_f(X)
    model.fit(X, y, iterations=5, batch_size=20, seed=0, progress=False)
    assert model.Z.shape == (7, 2)
    np.testing.assert_array_equal(vi.models.sgpr.inducing_points(X, 7, seed=3),
                                  vi.models.sgpr.inducing_points(X, 7, seed=3))


def test_regression_reaches_the_sgpr_nlpd():
    # Real data: scikit-learn's diabetes set (442 x 10), standardised, 342 / 100 split.
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_diabetes(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    y = (y - y.mean()) / y.std()
    perm = np.random.default_rng(0).permutation(len(y))
    train, test = perm[:342], perm[342:]
    Z = vi.models.sgpr.inducing_points(X[train], 20, seed=0)
    # The same fixed Z (k-means centres) for both.
    sgpr = vi.SGPR(X[train], y[train], K.SquaredExponential(1.0, np.full(10, 3.0)), Z, noise_variance=0.5,
                   train_Z=False).fit()
    assert sgpr.optimizer_result_.success
    svgp = vi.SVGP(K.SquaredExponential(1.0, np.full(10, 3.0)), vi.likelihoods.Gaussian(0.5), Z,
                   num_data=len(train), train_Z=False)
    svgp.fit(X[train], y[train], iterations=3000, batch_size=64, learning_rate=0.02, seed=0, progress=False)
    nlpd_sgpr = -sgpr.predict_log_density(X[test], y[test]).mean()
    nlpd_svgp = -svgp.predict_log_density(X[test], y[test]).mean()
    assert nlpd_svgp < nlpd_sgpr + 0.05
    assert svgp.elbo(X[train], y[train]) > sgpr.elbo() - 0.02 * len(train)


@pytest.mark.parametrize("call, match", [
    (lambda m, X, y: m.elbo(X[:, :1], y), "X must have 2 columns"),
    (lambda m, X, y: m.fit(X, y, batch_size=0, progress=False), "batch_size must be >= 1"),
    (lambda m, X, y: m.fit(X, y, batch_size=len(y) + 1, progress=False), "batch_size must be at most"),
    (lambda m, X, y: m.fit(X, y, iterations=0, progress=False), "iterations"),
    (lambda m, X, y: m.fit(X, y, learning_rate=-1.0, progress=False), "learning_rate"),
    (lambda m, X, y: m.elbo(X, y[:-1]), "y has"),
    (lambda m, X, y: m.predict_f(np.zeros((3, 5))), "Xnew must have 2 columns"),
])
def test_bad_input_raises_naming_the_argument(data, call, match):
    X, y, Z = data
    model = vi.SVGP(K.SquaredExponential(), vi.likelihoods.Gaussian(), Z, num_data=len(y))
    with pytest.raises(ValueError, match=match):
        call(model, X, y)


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_data=0), "num_data must be >= 1"),
    (dict(Z=np.zeros((4, 2, 1))), r"Z must be \[m, d\] or \[num_latent_gps = 1, m, d\]"),
    (dict(likelihood="gaussian"), "likelihood must be"),
    (dict(mean="linear"), "mean must be"),
])
def test_bad_construction_raises_naming_the_argument(kwargs, match):
    args = dict(kernel=K.SquaredExponential(), likelihood=vi.likelihoods.Gaussian(), Z=np.zeros((4, 2)),
                num_data=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        vi.SVGP(**args)


def load(name):
    table = np.loadtxt(DATA / f"{name}.csv.gz", delimiter=",", skiprows=2)
    return table[:, 1:], table[:, 0]  # X [n, d], y [n]


def test_classification_on_banana():
    # The Banana set (5300 x 2), shipped in tests/data (from river's copy).
    X, y = load("banana")
    perm = np.random.default_rng(0).permutation(len(y))
    train, test = perm[:4000], perm[4000:]
    model = vi.SVGP(K.SquaredExponential(1.0, [1.0, 1.0]), vi.likelihoods.Bernoulli(), 30, num_data=len(train))
    model.fit(X[train], y[train], iterations=6000, batch_size=400, learning_rate=0.03, seed=0, progress=False)
    p, var = model.predict_y(X[test])
    assert np.all((p >= 0) & (p <= 1)) and np.allclose(var, p * (1 - p))
    assert np.mean((p > 0.5) == y[test]) >= 0.88
    assert np.mean(model.predict_log_density(X[test], y[test])) > -0.3


def test_poisson_counts_beat_a_constant_rate():
    # Doctor visits (Australian Health Survey 1977-78, 5190 x 11), shipped in tests/data.
    scipy_stats = pytest.importorskip("scipy.stats")
    X, y = load("doctor_visits")
    X = (X - X.mean(0)) / X.std(0)
    perm = np.random.default_rng(0).permutation(len(y))
    train, test = perm[:4000], perm[4000:]
    model = vi.SVGP(K.SquaredExponential(1.0, np.full(11, 3.0)), vi.likelihoods.Poisson(), 30,
                    num_data=len(train), mean="constant")
    model.fit(X[train], y[train], iterations=1500, batch_size=200, learning_rate=0.03, seed=0, progress=False)
    constant = scipy_stats.poisson.logpmf(y[test], y[train].mean()).mean()
    assert model.predict_log_density(X[test], y[test]).mean() > constant + 0.1
    rate, _ = model.predict_y(X[test])
    assert np.all(rate > 0)


@pytest.mark.parametrize("whiten", [True, False], ids=["whiten", "unwhiten"])
def test_one_natural_gradient_step_with_gamma_one_gives_the_optimal_qu(data, rng, whiten):
    X, y, Z = data
    kernel = K.SquaredExponential(1.3, [0.9, 1.4])
    model = vi.SVGP(kernel, vi.likelihoods.Gaussian(0.05), Z, num_data=len(y), whiten=whiten, mean=0.3)
    model.q_mu, model.q_sqrt = variational(rng, Z.shape[0], False)
    layout, params = model._layout()
    ok, _, x = core.testing.svgp_natgrad_step(layout, params.get(), X, y, 1.0)
    assert ok
    params.set(x)
    q_mu, Lq = ref.sgpr_optimal_qu_whitened(kernel, X, y, Z, 0.05, mean=0.3)
    if not whiten:
        L = np.linalg.cholesky(kernel.K(Z) + 1e-6 * np.eye(len(Z)))
        q_mu, Lq = L @ q_mu, L @ Lq
    np.testing.assert_allclose(model.q_mu, q_mu, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.q_sqrt @ model.q_sqrt.T, Lq @ Lq.T, rtol=1e-8, atol=1e-10)
    assert model.elbo(X, y) == pytest.approx(vi.SGPR(X, y, kernel, Z, noise_variance=0.05, mean=0.3).elbo(),
                                             rel=1e-10)


def test_natural_gradients_in_training(data):
    X, y, Z = data
    kernel = K.SquaredExponential(1.3, [0.9, 1.4])
    # Full batch, gamma = 1, hyperparameters barely moving: q(u) is optimal after the first step.
    model = vi.SVGP(kernel, vi.likelihoods.Gaussian(0.05), Z, num_data=len(y), train_Z=False)
    model.fit(X, y, iterations=2, batch_size=len(y), learning_rate=1e-12, natgrad=True, gamma=1.0,
              progress=False)
    bound = vi.SGPR(X, y, kernel, Z, noise_variance=0.05).elbo()
    assert model.elbo_history_[1] == pytest.approx(bound, rel=1e-8)
    # Minibatches, gamma = 0.1, every parameter learned: near the SGPR optimum, and ahead of Adam
    # alone after the same steps (full q_sqrt), on average over minibatch orders (one order can
    # favour either).
    best = vi.SGPR(X, y, K.SquaredExponential(), Z, noise_variance=0.5).fit().elbo()
    reached = {}
    for natgrad, q_diag in [(True, False), (True, True), (False, False)]:
        for seed in range(3):
            model = vi.SVGP(K.SquaredExponential(), vi.likelihoods.Gaussian(0.5), Z, num_data=len(y),
                            q_diag=q_diag)
            model.fit(X, y, iterations=800, batch_size=40, learning_rate=0.02, natgrad=natgrad, gamma=0.1,
                      seed=seed, progress=False)
            reached[natgrad, q_diag, seed] = model.elbo(X, y)
    for seed in range(3):
        assert reached[True, False, seed] > best - 0.05 * len(y) and reached[True, True, seed] > best - 0.05 * len(y)
    assert (np.mean([reached[True, False, seed] for seed in range(3)])
            > np.mean([reached[False, False, seed] for seed in range(3)]))
    with pytest.raises(ValueError, match="gamma must be in"):
        model.fit(X, y, natgrad=True, gamma=1.5, progress=False)


def test_numpy_reference_step_equals_cpp(data, rng):
    # The benchmark's numpy baseline computes the same ELBO and gradient.
    X, y, Z = data
    kernel = K.SquaredExponential(1.3, [0.9, 1.4])
    q_mu, q_sqrt = variational(rng, Z.shape[0], False)
    args = single_args(kernel, kernel.theta(), vi.likelihoods.Gaussian(0.05), [0.05], Z, q_mu, q_sqrt, True, False,
                       0.0, num_data=1000.0)
    elbo, _, grads, _ = core.testing.svgp_elbo_grad(args, X[:64], y[:64])
    ref_elbo, ref_grads = ref.svgp_elbo_grad_se(Z, q_mu, q_sqrt, 1.3, np.array([0.9, 1.4]), 0.05, X[:64], y[:64],
                                                1000)
    assert ref_elbo == pytest.approx(elbo, rel=1e-11)
    np.testing.assert_allclose(np.r_[ref_grads["variance"], ref_grads["lengthscales"]], grads["theta"], rtol=1e-9)
    for name in ["q_mu", "q_sqrt", "Z"]:
        got = grads[name].reshape(np.shape(ref_grads[name]))  # one latent GP: [m, 1], [1, m, m], [1, m, d]
        np.testing.assert_allclose(ref_grads[name], got, rtol=1e-8, atol=1e-9 * np.abs(got).max())
    assert ref_grads["noise"] == pytest.approx(grads["lik_theta"][0], rel=1e-10)


def test_training_and_predicting_release_the_gil(data):
    """One long C++ call each (the training loop, the ELBO, predictions): another Python thread
    keeps running during it."""
    X, y, Z = data
    model = vi.SVGP(K.SquaredExponential(), vi.likelihoods.Gaussian(0.5), Z, num_data=len(y))
    layout, pv = model._layout()
    trainer = core.sparse.SVGPTrainer(layout, pv.get(), 0.01, 0.9, 0.999, 1e-8, 0)
    assert_releases_gil(lambda: trainer.run(X, y, 60, 3000))
    Xs = np.random.default_rng(5).normal(size=(1000000, 2))
    assert_releases_gil(lambda: model.elbo(Xs, np.sin(Xs[:, 0])))
    assert_releases_gil(lambda: model.predict_f(Xs))


def _diverging_fit(lik, targets, rng):
    X = rng.uniform(-3, 3, size=(200, 1))
    y = targets(np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=200))
    model = vi.SVGP(K.SquaredExponential(), lik, X[::10].copy(), num_data=200)
    start = model.elbo(X, y)
    with pytest.warns(RuntimeWarning, match=r"diverged.*at step \d+ of this fit.*smaller learning_rate \(it was 1000\)"):
        model.fit(X, y, iterations=300, learning_rate=1e3, seed=0, progress=False)
    return model, X, y, start


@pytest.mark.parametrize("lik, targets, ve", likelihood_cases(), ids=["gaussian", "bernoulli", "poisson", "student-t"])
def test_divergence_is_detected_and_the_last_good_parameters_come_back(rng, lik, targets, ve):
    """A learning rate far too large: a warning names the step and the remedy, the model keeps
    the parameters of the last good step and trains on normally afterwards."""
    model, X, y, start = _diverging_fit(lik, targets, rng)
    assert np.isfinite(model.elbo(X, y)) and model.elbo(X, y) >= start - 10 * (abs(start) + len(y))
    healthy = vi.SVGP(K.SquaredExponential(), lik, X[::10].copy(), num_data=200)
    healthy.fit(X, y, iterations=600, learning_rate=0.02, seed=1, progress=False)
    model.fit(X, y, iterations=600, learning_rate=0.02, seed=1, progress=False)
    assert model.elbo(X, y) == pytest.approx(healthy.elbo(X, y), rel=0.05, abs=0.05 * len(y))


def test_divergence_warning_reaches_the_estimator(rng):
    X = rng.uniform(-3, 3, size=(200, 1))
    y = np.sin(2 * X[:, 0])
    est = vi.SVGPRegressor(n_inducing=10, learning_rate=1e3, iterations=100)
    with pytest.warns(RuntimeWarning, match="diverged"):
        est.fit(X, y)
    assert np.all(np.isfinite(est.predict(X)))


def test_raw_values_stay_where_their_gradient_can_bring_them_back(rng):
    """Targets that drive the kernel variance and the noise to their bounds: Adam at a large
    step pushes their raw values down, but never below RAW_MIN, so on data with signal the
    variance grows again."""
    X = rng.uniform(-3, 3, size=(200, 1))
    model = vi.SVGP(K.SquaredExponential(), vi.likelihoods.Gaussian(0.1), X[::10].copy(), num_data=200)
    model.fit(X, np.zeros(200), iterations=400, learning_rate=1.0, seed=0, progress=False)
    raw = np.concatenate([p.raw for p in model.trainable_parameters if p.lower is not None])
    assert raw.min() >= vi.parameters.RAW_MIN
    model.fit(X, np.sin(2 * X[:, 0]), iterations=1500, learning_rate=0.05, seed=0, progress=False)
    assert model.kernel.variance > 0.01  # stuck at 1e-6 when the raw value sinks far below RAW_MIN

"""SGPR with y [n, P]: P outputs sharing the kernel, Z and the noise, each with its own mean
(docs/math.md section 5.9). The oracles: the numpy reference per column, the P one-output
models (the bound is their sum), central differences, and the partitioned passes."""

import numpy as np
import pytest

import varinf as vi
from varinf import kernels as K
from varinf._loader import core
from varinf.reference import sparse as ref
from _grad import central_differences, check_grad, check_model_gradient

sparse = core.sparse
MEANS = np.array([0.3, -1.2, 2.0])
NOISE = 0.07


@pytest.fixture
def data(rng):
    X = rng.uniform(-3, 3, size=(140, 2))  # [n, d]
    f = np.sin(X[:, 0]) + 0.5 * np.cos(2 * X[:, 1])  # [n]
    Y = np.column_stack([f, 2 * f - 1, np.cos(X[:, 0]) + 2]) + 0.1 * rng.normal(size=(140, 3))  # [n, P]
    Z = rng.uniform(-3, 3, size=(12, 2))  # [m, d]
    return X, Y, Z


def _kernel():
    return K.Matern52(1.1, [1.3, 0.7]) + K.Linear(0.3)


def _singles(X, Y, Z, **kwargs):
    return [vi.SGPR(X, Y[:, p], _kernel(), Z, noise_variance=NOISE, mean=MEANS[p], **kwargs)
            for p in range(Y.shape[1])]


def test_bound_is_the_sum_of_the_numpy_references_per_output(data):
    X, Y, Z = data
    model = vi.SGPR(X, Y, _kernel(), Z, noise_variance=NOISE, mean=MEANS)
    want = sum(ref.sgpr_bound(_kernel(), X, Y[:, p], Z, NOISE, MEANS[p]) for p in range(3))
    np.testing.assert_allclose(model.elbo(), want, rtol=1e-10)
    upper = sum(ref.sgpr_upper_bound(_kernel(), X, Y[:, p], Z, NOISE, MEANS[p]) for p in range(3))
    np.testing.assert_allclose(model.upper_bound(), upper, rtol=1e-10)


def test_gradient_is_the_sum_of_the_one_output_gradients(data):
    X, Y, Z = data
    model = vi.SGPR(X, Y, _kernel(), Z, noise_variance=NOISE, mean=MEANS)
    singles = _singles(X, Y, Z)
    args = [m._args() for m in singles]
    got = sparse.sgpr_bound_grad(*model._args())
    want = [sparse.sgpr_bound_grad(*a) for a in args]
    assert got[0] == pytest.approx(sum(w[0] for w in want), rel=1e-12)
    for i in (1, 2, 3):  # theta, Z, noise: shared, so the gradients add up
        np.testing.assert_allclose(got[i], sum(w[i] for w in want), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got[4], np.concatenate([w[4] for w in want]), rtol=1e-9)  # one mean each


@pytest.mark.parametrize("kernel", [K.SquaredExponential(1.4, [0.9, 1.6]), K.Matern32(0.8, 1.2) * K.Constant(0.9)],
                         ids=lambda k: type(k).__name__)
def test_cpp_gradient_matches_central_differences(data, kernel):
    X, Y, Z = data
    kc, theta, jit = kernel.core(), kernel.theta(), 1e-6

    def bound(theta=theta, Z=Z, s2=NOISE, mu=MEANS):
        return sparse.sgpr_factor(kc, theta, X, Y, np.ascontiguousarray(Z), s2, np.asarray(mu), jit).bound

    b, dtheta, dZ, dnoise, dmean, _ = sparse.sgpr_bound_grad(kc, theta, X, Y, Z, NOISE, MEANS, jit)
    assert b == pytest.approx(bound(), rel=1e-12)
    check_grad(lambda t: bound(theta=t), theta, dtheta, h=1e-5, rtol=1e-5, atol=1e-5)
    check_grad(lambda z: bound(Z=z), Z, dZ, h=1e-5, rtol=1e-5, atol=1e-5)
    assert dnoise == pytest.approx(central_differences(lambda s: bound(s2=s[0]), [NOISE], h=1e-5)[0], rel=1e-5)
    check_grad(lambda m: bound(mu=m), MEANS, dmean, h=1e-5, rtol=1e-6, atol=1e-6)


def test_model_gradient_is_that_of_the_unconstrained_parameters(data):
    X, Y, Z = data
    check_model_gradient(vi.SGPR(X, Y, _kernel(), Z, noise_variance=NOISE, mean="constant"), rtol=1e-5)


def test_partial_sums_over_rows_equal_the_one_call_bound(data):
    X, Y, Z = data
    k = _kernel()
    problem = (k.core(), k.theta(), X, Y, Z, NOISE, MEANS, 1e-6)
    parts = (slice(0, 50), slice(50, 51), slice(51, 140))
    rows = [(k.core(), k.theta(), np.ascontiguousarray(X[p]), np.ascontiguousarray(Y[p]), Z, NOISE, MEANS, 1e-6)
            for p in parts]
    stats = [sparse.sgpr_stats(*r) for r in rows]
    total = tuple(sum(field) for field in zip(*stats))
    (bound, dtheta, dZ, dnoise, dmean, _), adjoints = sparse.sgpr_collapsed_grad(*problem[:2], Z, NOISE, MEANS,
                                                                                 1e-6, total)
    shares = [sparse.sgpr_data_grad(*r, adjoints) for r in rows]
    want = sparse.sgpr_bound_grad(*problem)
    assert bound == pytest.approx(want[0], rel=1e-12)
    np.testing.assert_allclose(dtheta + sum(s[0] for s in shares), want[1], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dZ + sum(s[1] for s in shares), want[2], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dmean, want[4], rtol=1e-10)
    with pytest.raises(ValueError, match="wrong shape"):  # statistics of 2 outputs for 3 means
        sparse.sgpr_collapsed_grad(*problem[:2], Z, NOISE, MEANS[:2], 1e-6, total)


def test_predictions_are_the_one_output_predictions_side_by_side(data, rng):
    X, Y, Z = data
    model = vi.SGPR(X, Y, _kernel(), Z, noise_variance=NOISE, mean=MEANS)
    singles = _singles(X, Y, Z)
    Xs = rng.uniform(-3, 3, size=(7, 2))
    mean, var = model.predict_f(Xs)
    assert mean.shape == var.shape == (7, 3)
    for p, single in enumerate(singles):
        m1, v1 = single.predict_f(Xs)
        np.testing.assert_allclose(mean[:, p], m1, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(var[:, p], v1, rtol=1e-10, atol=1e-12)
    mean_c, cov = model.predict_f(Xs, full_cov=True)
    assert cov.shape == (3, 7, 7)
    np.testing.assert_allclose(cov[2], singles[2].predict_f(Xs, full_cov=True)[1], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2).T, var, rtol=1e-10, atol=1e-12)
    ym, yv = model.predict_y(Xs, full_cov=True)
    np.testing.assert_allclose(np.diagonal(yv, axis1=1, axis2=2).T, var + NOISE, rtol=1e-10)
    Ys = Y[:7]
    np.testing.assert_allclose(model.predict_log_density(Xs, Ys),
                               sum(s.predict_log_density(Xs, Ys[:, p]) for p, s in enumerate(singles)), rtol=1e-10)
    mu, S = model.compute_qu()
    assert mu.shape == (12, 3) and S.shape == (12, 12)
    np.testing.assert_allclose(mu[:, 1], singles[1].compute_qu()[0], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(S, singles[1].compute_qu()[1], rtol=1e-9, atol=1e-10)


def test_samples_are_independent_across_outputs_with_the_shared_covariance(data):
    X, Y, Z = data
    model = vi.SGPR(X, Y, _kernel(), Z, noise_variance=NOISE, mean=MEANS)
    Xs = np.array([[0.0, 0.0], [0.4, -1.0]])
    samples = model.predict_f_samples(Xs, num_samples=20000, seed=3)  # [S, 2, 3]
    assert samples.shape == (20000, 2, 3)
    mean, cov = model.predict_f(Xs, full_cov=True)
    centred = samples - mean
    for p in range(3):
        np.testing.assert_allclose(np.cov(centred[:, :, p].T), cov[p], rtol=0, atol=0.035)  # ~4 standard errors
    corr = np.corrcoef(centred[:, 0, 0], centred[:, 0, 1])[0, 1]
    assert abs(corr) < 0.05  # another output gets its own draws


def test_fit_trains_every_mean_and_keeps_shapes(data):
    X, Y, Z = data
    model = vi.SGPR(X, Y, _kernel(), Z, noise_variance=1.0, mean="constant")
    np.testing.assert_allclose(model.mean, Y.mean(0), rtol=1e-12)
    start = model.elbo()
    model.fit(max_iter=60)
    assert model.elbo() > start + 100 and model.mean.shape == (3,)
    assert not np.allclose(model.mean, Y.mean(0))
    assert "mean=[" in repr(model)


def test_one_column_is_one_output(data):
    X, Y, Z = data
    a = vi.SGPR(X, Y[:, :1], _kernel(), Z, noise_variance=NOISE, mean=0.3)
    b = vi.SGPR(X, Y[:, 0], _kernel(), Z, noise_variance=NOISE, mean=0.3)
    assert a.num_outputs == 1 and a.y.shape == (140,)
    assert a.elbo() == b.elbo() and a.predict_f(X[:3])[0].shape == (3,)


def test_bad_input_is_refused_naming_the_argument(data):
    X, Y, Z = data
    model = vi.SGPR(X, Y, _kernel(), Z, noise_variance=NOISE)
    with pytest.raises(ValueError, match="ynew must have the model's 3 output"):
        model.predict_log_density(X[:4], Y[:4, :2])
    with pytest.raises(ValueError, match="ynew must have the model's 3 output"):
        model.predict_log_density(X[:4], Y[:4, 0])
    with pytest.raises(ValueError, match="mean must be .* one number per output"):
        vi.SGPR(X, Y, _kernel(), Z, mean=[0.0, 1.0])
    with pytest.raises(ValueError, match="y must have the 140 rows of X"):
        vi.SGPR(X, Y[:100], _kernel(), Z)
    with pytest.raises(ValueError, match="y contains NaN"):
        vi.SGPR(X, np.where(Y > 2.5, np.nan, Y), _kernel(), Z)
    for model_class in (vi.FITC, vi.GPR):
        with pytest.raises(ValueError, match=r"y must be 1-D \[n\]"):
            model_class(X, Y, _kernel(), *([Z] if model_class is vi.FITC else []))
    with pytest.raises(ValueError, match="FITC takes one output"):
        sparse.fitc_factor(_kernel().core(), _kernel().theta(), X, Y, Z, NOISE, MEANS, 1e-6)


def test_save_and_load_keep_every_output(data, tmp_path):
    X, Y, Z = data
    model = vi.SGPR(X, Y, _kernel(), Z, noise_variance=NOISE, mean=MEANS)
    model.save(tmp_path / "m.vinf")
    again = vi.load(tmp_path / "m.vinf")
    assert again.num_outputs == 3
    np.testing.assert_array_equal(again.mean, MEANS)
    np.testing.assert_allclose(again.elbo(), model.elbo(), rtol=1e-12)
    np.testing.assert_allclose(again.predict_f(X[:5])[0], model.predict_f(X[:5])[0], rtol=1e-12)


def test_two_threads_give_the_same_bound_and_gradient(rng):
    X = rng.normal(size=(6000, 2))
    Y = np.column_stack([np.sin(X[:, 0]), np.cos(X[:, 1])]) + 0.1 * rng.normal(size=(6000, 2))
    results = []
    for threads in (1, 2):
        saved = vi.get_num_threads()
        vi.set_num_threads(threads)
        try:
            results.append(vi.SGPR(X, Y, _kernel(), X[:30].copy(), noise_variance=0.01).elbo(return_grad=True))
        finally:
            vi.set_num_threads(saved)
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-11)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-8, atol=1e-8)

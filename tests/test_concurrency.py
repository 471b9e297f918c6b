"""Several Python threads sharing one fitted model get exactly the results of serial calls.

The bindings release the GIL around every computation, so this checks that predictions and
objectives keep no shared mutable state (the lazily cached posterior factors included)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import varinf as vi
from varinf import kernels as K

pytestmark = pytest.mark.filterwarnings("ignore:L-BFGS-B stopped")

THREADS = 6
REPEATS = 4


def _data(n=120, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, d))
    return X, np.sin(X).sum(axis=1) + 0.1 * rng.normal(size=n)


def _inputs(d, count=THREADS * 2, n=40):
    """Different test inputs for each task [n, d]."""
    rng = np.random.default_rng(1)
    return [rng.uniform(-2, 2, size=(n, d)) for _ in range(count)]


def _parallel_equals_serial(fn, args):
    """fn(arg) called from THREADS Python threads, REPEATS times each, equals serial calls."""
    serial = [fn(a) for a in args]
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in range(REPEATS):
            parallel = list(pool.map(fn, args))
            for s, p in zip(serial, parallel):
                for s_arr, p_arr in zip(s, p):
                    np.testing.assert_array_equal(p_arr, s_arr)


def _gp_models():
    X, y = _data()
    kernel = lambda: K.SquaredExponential(1.0, [1.0, 1.0]) + K.White(0.01)  # noqa: E731
    gpr = vi.GPR(X, y, kernel(), noise_variance=0.1).fit(max_iter=20)
    sgpr = vi.SGPR(X, y, kernel(), Z=10, noise_variance=0.1).fit(max_iter=20)
    fitc = vi.FITC(X, y, kernel(), Z=10, noise_variance=0.1).fit(max_iter=20)
    svgp = vi.SVGP(kernel(), vi.likelihoods.Gaussian(0.1), Z=10, num_data=len(y)).fit(
        X, y, iterations=50, batch_size=32, seed=0, progress=False)
    return {"GPR": gpr, "SGPR": sgpr, "FITC": fitc, "SVGP": svgp}


@pytest.fixture(scope="module")
def gp_models():
    return _gp_models()


@pytest.mark.parametrize("name", ["GPR", "SGPR", "FITC", "SVGP"])
def test_gp_predictions_from_threads_equal_serial(gp_models, name):
    model = gp_models[name]
    _parallel_equals_serial(lambda X: model.predict_f(X) + model.predict_y(X) + model.predict_f(X[:5], True),
                            _inputs(2))


@pytest.mark.parametrize("name", ["GPR", "SGPR", "FITC"])
def test_concurrent_first_predictions_after_a_parameter_change_agree(gp_models, name):
    """The posterior factor is cached lazily: threads that all find it stale must agree."""
    model = gp_models[name]
    args = _inputs(2)
    noise = model.noise_variance
    expected = [model.predict_f(X) for X in args]
    for trial in range(3):
        model.noise_variance = noise * (1.5 + trial)
        model.predict_f(args[0])  # caches the factor of another noise variance
        model.noise_variance = noise  # stale again: every thread below finds it so
        with ThreadPoolExecutor(THREADS) as pool:
            got = list(pool.map(model.predict_f, args))
        for e, g in zip(expected, got):
            np.testing.assert_array_equal(g[0], e[0])
            np.testing.assert_array_equal(g[1], e[1])


@pytest.mark.parametrize("name", ["GPR", "SGPR", "FITC", "SVGP"])
def test_objectives_from_threads_equal_serial(gp_models, name):
    model = gp_models[name]
    X, y = _data()
    if name == "SVGP":
        batches = [(X[i::THREADS], y[i::THREADS]) for i in range(THREADS)]
        fn = lambda b: model.elbo(*b, return_grad=True)  # noqa: E731
    else:
        batches = list(range(THREADS))
        objective = model.log_marginal_likelihood if name in ("GPR", "FITC") else model.elbo
        fn = lambda _: objective(return_grad=True)  # noqa: E731
    _parallel_equals_serial(lambda b: tuple(np.atleast_1d(v) for v in fn(b)), batches)


def test_vae_encode_decode_elbo_from_threads_equal_serial():
    X = (np.random.default_rng(2).random((300, 16)) < 0.3).astype(np.float32)
    model = vi.VAE(16, 3, hidden=(32,), seed=0).fit(X, epochs=2, batch_size=64, progress=False)
    args = [X[i::THREADS] for i in range(THREADS)]
    _parallel_equals_serial(lambda A: model.encode(A) + (model.reconstruct(A), model.elbo(A, k=2, seed=7)), args)


def test_threads_with_different_thread_limits_get_the_same_results(gp_models):
    """varinf's thread count is module-wide; results do not depend on it."""
    model = gp_models["GPR"]
    X = _inputs(2, count=1, n=200)[0]
    expected = model.predict_f(X)
    before = vi.get_num_threads()
    try:
        with ThreadPoolExecutor(4) as pool:
            def call(i):
                vi.set_num_threads(1 + i % 2)
                return model.predict_f(X)
            for mean, var in pool.map(call, range(8)):
                np.testing.assert_allclose(mean, expected[0], rtol=1e-12, atol=1e-14)
                np.testing.assert_allclose(var, expected[1], rtol=1e-12, atol=1e-14)
    finally:
        vi.set_num_threads(before)

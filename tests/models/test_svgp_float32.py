"""SVGP with dtype=np.float32 (docs/math.md section 7.14): the float32 batch products give the
float64 ELBO, gradient and predictions to float32 accuracy for every structure and variant; a
float32 fit reaches the float64 fit; the tolerance check warns where float32 is not enough;
dtype is validated, saved and loaded."""

import warnings

import numpy as np
import pytest

import varinf as vi
from varinf import kernels as K
from varinf import likelihoods as Lik
from varinf.models import svgp as svgp_module
from _svgp import svgp_args
from test_svgp_multi import CASES, IDS, VARIANTS, _model_cases, start_values
from varinf._loader import core


def _evaluate(X, Y, groups, lik, v, whiten, q_diag, single):
    args = svgp_args([(k, v[f"theta{i}"], v[f"Z{i}"], first, count) for i, (k, _, first, count) in enumerate(groups)],
                     lik, v["lik"], v["q_mu"], v["q_sqrt"], whiten, q_diag, v["mean"], W=v.get("W"), single=single)
    return core.testing.svgp_elbo_grad(args, X, Y)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("whiten, q_diag", VARIANTS, ids=IDS)
def test_float32_products_give_the_float64_elbo_and_gradient(rng, case, whiten, q_diag):
    # The float64 path is the one checked against finite differences and the numpy reference
    # (test_svgp_multi.py); float32 must agree with it to float32's accuracy.
    X, Y, groups, lik, start = start_values(rng, case, q_diag)
    elbo64, kl64, grads64, _ = _evaluate(X, Y, groups, lik, start, whiten, q_diag, single=False)
    elbo32, kl32, grads32, _ = _evaluate(X, Y, groups, lik, start, whiten, q_diag, single=True)
    assert kl32 == kl64  # the KL stays in float64
    assert elbo32 == pytest.approx(elbo64, rel=1e-5, abs=1e-5 * 400)
    assert elbo32 != elbo64  # the products did run in float32
    for name, g64 in grads64.items():
        np.testing.assert_allclose(grads32[name], g64, rtol=1e-3, atol=1e-4 * max(np.abs(g64).max(initial=0.0), 1.0),
                                   err_msg=name)


@pytest.mark.parametrize("case", ["shared", "coregionalization", "robustmax", "heteroskedastic"])
def test_float32_predictions_and_model_gradient_match_float64(rng, case, monkeypatch):
    monkeypatch.setattr(svgp_module, "KUU_JITTER_FLOAT32", svgp_module.KUU_JITTER)  # the same model in both
    model, X, y = _model_cases(rng)[case]
    model.fit(X, y, iterations=20, batch_size=40, seed=1, progress=False)
    value64, grad64 = model.elbo(X, y, return_grad=True)
    mean64, var64 = model.predict_f(X)
    model.dtype = np.float32
    value32, grad32 = model.elbo(X, y, return_grad=True)
    mean32, var32 = model.predict_f(X)
    assert value32 == pytest.approx(value64, rel=1e-5)
    np.testing.assert_allclose(grad32, grad64, rtol=1e-3, atol=1e-4 * np.abs(grad64).max())
    np.testing.assert_allclose(mean32, mean64, atol=1e-5 * np.abs(mean64).max())
    np.testing.assert_allclose(var32, var64, atol=1e-5 * np.abs(var64).max())


def _regression(rng, n=3000, noise=0.01):
    X = rng.uniform(-3, 3, size=(n, 2))  # [n, d]
    y = np.sin(X[:, 0]) * np.cos(X[:, 1]) + np.sqrt(noise) * rng.normal(size=n)  # [n]
    return X, y


def test_a_float32_fit_reaches_the_float64_fit(rng):
    X, y = _regression(rng)
    Xtest, ytest = _regression(np.random.default_rng(9), n=1000)
    scores = {}
    for dtype in (np.float64, np.float32):
        model = vi.SVGP(K.SquaredExponential(1.0, [1.0, 1.0]), Lik.Gaussian(0.1), X[:40].copy(), num_data=len(X),
                        dtype=dtype)
        model.fit(X, y, iterations=600, batch_size=200, learning_rate=0.02, seed=3, progress=False)
        scores[dtype] = (model.elbo(X, y) / len(X), -model.predict_log_density(Xtest, ytest).mean())
    (elbo64, nlpd64), (elbo32, nlpd32) = scores[np.float64], scores[np.float32]
    assert elbo32 == pytest.approx(elbo64, abs=0.01)
    assert nlpd32 == pytest.approx(nlpd64, abs=0.01)


def test_fit_warns_when_float32_loses_the_elbo(rng):
    X, y = _regression(rng, n=600, noise=1e-8)
    model = vi.SVGP(K.SquaredExponential(1.0, [1.0, 1.0]), Lik.Gaussian(1e-6), X[:200].copy(), num_data=len(X),
                    dtype=np.float32)
    with pytest.warns(vi.Float32Warning, match="use dtype=np.float64"):
        model.fit(X, y, iterations=1, batch_size=600, progress=False)
    safe = vi.SVGP(K.SquaredExponential(1.0, [1.0, 1.0]), Lik.Gaussian(0.1), X[:20].copy(), num_data=len(X),
                   dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", vi.Float32Warning)
        safe.fit(X, y, iterations=5, batch_size=100, progress=False)


def test_jitter_is_scaled_to_float32(rng):
    X, y = _regression(rng, n=200)
    Z = np.repeat(X[:5], 2, axis=0)  # duplicated inducing inputs: K(Z, Z) is singular
    for dtype, jitter in [(np.float64, svgp_module.KUU_JITTER), (np.float32, svgp_module.KUU_JITTER_FLOAT32)]:
        model = vi.SVGP(K.SquaredExponential(), Lik.Gaussian(0.1), Z, num_data=200, dtype=dtype)
        model_args = model._args()
        assert core.testing.svgp_elbo_grad(model_args, X, y)[3] == jitter


@pytest.mark.parametrize("dtype", [np.float32, "float32", np.dtype("float32"), np.float64, "float64"])
def test_dtype_accepts_numpy_spellings(dtype):
    model = vi.SVGP(K.Matern52(), Lik.Gaussian(), 4, num_data=10, dtype=dtype)
    assert model.dtype is np.dtype(dtype).type
    model = vi.SVGP(K.Matern52(), Lik.Gaussian(), 4, num_data=10)
    model.dtype = dtype  # the attribute takes the same spellings
    assert model.dtype is np.dtype(dtype).type


@pytest.mark.parametrize("dtype", [np.float16, np.int32, "double-ish", complex])
def test_bad_dtype_names_the_argument(dtype):
    with pytest.raises(ValueError, match="dtype must be np.float64 or np.float32"):
        vi.SVGP(K.Matern52(), Lik.Gaussian(), 4, num_data=10, dtype=dtype)
    model = vi.SVGP(K.Matern52(), Lik.Gaussian(), 4, num_data=10)
    with pytest.raises(ValueError, match="dtype must be np.float64 or np.float32"):
        model.dtype = dtype
    assert model.dtype is np.float64


def test_dtype_is_saved_and_loaded(rng, tmp_path):
    X, y = _regression(rng, n=200)
    model = vi.SVGP(K.Matern52(), Lik.Gaussian(0.1), X[:8].copy(), num_data=200, dtype=np.float32)
    model.fit(X, y, iterations=5, batch_size=50, progress=False)
    model.save(tmp_path / "m")
    loaded = vi.load(tmp_path / "m")
    assert loaded.dtype is np.float32 and "dtype=float32" in repr(loaded)
    assert loaded.elbo(X, y) == pytest.approx(model.elbo(X, y), rel=1e-6)


@pytest.mark.parametrize("value", ["int8", "float16", "", 32, None, ["float32"]])
def test_a_crafted_dtype_is_a_format_error(tmp_path, value):
    from _files import _edit_meta
    vi.SVGP(K.Matern52(), Lik.Gaussian(), np.zeros((3, 1)), num_data=10).save(tmp_path / "m")
    _edit_meta(tmp_path / "m", lambda meta: meta["config"].update(dtype=value))
    with pytest.raises(vi.FormatError, match="dtype"):
        vi.load(tmp_path / "m")


@pytest.mark.parametrize("make", [lambda: vi.SVGPRegressor(n_inducing=8, iterations=20, dtype=np.float32),
                                  lambda: vi.SVGPClassifier(n_inducing=8, iterations=20, dtype="float32")])
def test_estimators_train_in_float32_and_save_the_dtype(rng, tmp_path, make):
    from _files import _edit_meta
    X, y = _regression(rng, n=200)
    est = make().fit(X, y if isinstance(make(), vi.SVGPRegressor) else y > 0)
    assert est.model_.dtype is np.float32
    vi.save(est, tmp_path / "est.vi")
    loaded = vi.load(tmp_path / "est.vi")
    assert loaded.get_params()["dtype"] is np.float32 and loaded.model_.dtype is np.float32
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    _edit_meta(tmp_path / "est.vi", lambda meta: meta["config"]["params"].pop("dtype"))  # a file of older varinf
    assert vi.load(tmp_path / "est.vi").get_params()["dtype"] is np.float64


@pytest.mark.parametrize("value", ["int8", "nonsense", 3])
def test_a_crafted_estimator_dtype_is_a_format_error(rng, tmp_path, value):
    from _files import _edit_meta
    X, y = _regression(rng, n=100)
    vi.save(vi.SVGPRegressor(n_inducing=4, iterations=2).fit(X, y), tmp_path / "est.vi")
    _edit_meta(tmp_path / "est.vi", lambda meta: meta["config"]["params"].update(dtype=value))
    with pytest.raises(vi.FormatError, match="dtype"):
        vi.load(tmp_path / "est.vi")

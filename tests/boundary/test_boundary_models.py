"""Boundary properties of the GP models (GPR, SGPR, FITC, SVGP) and the likelihoods: any input
gives a clear Python exception naming the argument (or varinf.LinAlgError naming the matrix) or
a finite result of the right shape; never a crash, never a silent NaN."""

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

import varinf as vi  # noqa: E402
from varinf import kernels as K  # noqa: E402
from varinf import likelihoods as L  # noqa: E402
from varinf.reference import kernels as ref_kernels, sparse as ref_sparse  # noqa: E402

from _boundary import FLOATS, arrays, assert_finite, clean_matrix, outcome, settings_for, valid_or_any  # noqa: E402,E501

KERNELS = [K.SquaredExponential(), K.Matern12(), K.Matern52(1.0, 0.5), K.RationalQuadratic(), K.Periodic(),
           K.Linear(), K.Constant(), K.RBF() * K.Periodic() + K.White(0.1), K.RBF(active_dims=[1])]
NOISE = st.one_of(st.floats(1e-6, 10), st.sampled_from([1e-6, 1e300, 0.1, 0.5]),
                  st.sampled_from([-1.0, 0.0, 1e-300, np.nan, np.inf, "0.1", None, [0.1, 0.2]]))
MEAN = st.one_of(st.sampled_from([None, "zero", "constant", 0.5, -2.0, 1e300]),
                 st.sampled_from(["median", np.nan, [1.0]]))
GP_NAMES = ("X", "y", "Xnew", "ynew", "noise_variance", "mean", "lengthscales", "Z", "num_samples", "max_iter")


def _xy(n, d=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, d))
    return X, np.sin(X).sum(axis=1) + 0.1 * rng.normal(size=n)


def _huge(*values):
    """Whether any value is beyond 1e150, where squares overflow: results may then be +-inf."""
    for v in values:
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if np.any(np.abs(a[np.isfinite(a)]) > 1e150):
            return True
    return False


def _check_gp(model, Xnew, strict=True):
    """Objective (+ gradient) and every prediction: clear errors or finite, shaped results
    (with ``strict`` False, in the overflow regime: shapes, and no crash)."""
    check = assert_finite if strict else (lambda *r, shapes: [np.shape(a) == sh for a, sh in zip(r, shapes)])
    objective = {vi.GPR: "log_marginal_likelihood", vi.FITC: "log_marginal_likelihood", vi.SGPR: "elbo"}[type(model)]
    out = outcome(lambda: getattr(model, objective)(return_grad=True), *GP_NAMES)
    if out is not None:
        value, grad = out
        check(value, grad, shapes=[(), (sum(p.size for p in model.trainable_parameters),)])
    preds = outcome(lambda: (model.predict_f(Xnew), model.predict_f(Xnew, full_cov=True), model.predict_y(Xnew),
                             model.predict_f_samples(Xnew, 2, seed=0)), *GP_NAMES)
    if preds is None:
        return
    (m, v), (mc, c), (my, vy), s = preds
    n = m.shape[0]
    check(m, v, mc, c, my, vy, s, shapes=[(n,), (n,), (n,), (n, n), (n,), (n,), (2, n)])
    if strict:
        assert np.all(v >= 0) and np.all(vy >= v)
    lpd = outcome(lambda: model.predict_log_density(Xnew, np.zeros(n)), *GP_NAMES)
    if lpd is not None:
        check(lpd, shapes=[(n,)])


@st.composite
def regression_data(draw):
    """(X [n, d], y [n], Xnew [k, d]) mostly valid, sometimes any array in one place."""
    n, d, k = draw(st.integers(1, 6)), draw(st.integers(1, 2)), draw(st.integers(1, 4))
    return draw(valid_or_any((n, d))), draw(valid_or_any((n,))), draw(valid_or_any((k, d)))


@settings_for(120)
@given(data=regression_data(), noise=NOISE, mean=MEAN, kernel=st.sampled_from(KERNELS))
def test_gpr_raises_or_is_finite(data, noise, mean, kernel):
    X, y, Xnew = data
    model = outcome(lambda: vi.GPR(X, y, kernel, noise_variance=noise, mean=mean), *GP_NAMES)
    if model is not None:
        _check_gp(model, Xnew, strict=not _huge(X, y, Xnew, noise, mean))


@settings_for(100)
@given(data=regression_data(), Z=st.one_of(valid_or_any((3, 1)), valid_or_any((2, 2)), st.integers(-1, 8),
                                           st.sampled_from([True, 2.0])),
       noise=NOISE, mean=MEAN, cls=st.sampled_from([vi.SGPR, vi.FITC]), kernel=st.sampled_from(KERNELS))
def test_sparse_regression_raises_or_is_finite(data, Z, noise, mean, cls, kernel):
    X, y, Xnew = data
    model = outcome(lambda: cls(X, y, kernel, Z, noise_variance=noise, mean=mean), *GP_NAMES, "m")
    if model is not None:
        _check_gp(model, Xnew, strict=not _huge(X, y, Xnew, Z, noise, mean))


@settings_for(40)
@given(X=clean_matrix(n_min=1, n_max=8), noise=st.floats(1e-3, 10), cls=st.sampled_from([vi.GPR, vi.SGPR, vi.FITC]))
def test_fit_with_a_few_iterations_stays_finite(X, noise, cls):
    y = np.sin(np.asarray(X)[:, 0])
    args = (X, y, K.SquaredExponential()) + ((np.asarray(X)[:3].copy(),) if cls is not vi.GPR else ())
    model = outcome(lambda: cls(*args, noise_variance=noise).fit(max_iter=3), *GP_NAMES)
    if model is not None:
        assert_finite(model.noise_variance, model.kernel.theta())
        assert_finite(*model.predict_f(X))


@pytest.mark.parametrize("max_iter", [0, -1, 1.5, "3", None, True])
def test_fit_rejects_bad_max_iter(max_iter):
    X, y = _xy(5)
    with pytest.raises(ValueError, match="max_iter"):
        vi.GPR(X, y, K.RBF()).fit(max_iter=max_iter)


def test_gpr_matches_numpy_reference_on_fortran_strided_readonly_inputs():
    X, y = _xy(12, d=2, seed=3)
    Xf = np.asfortranarray(np.repeat(X, 2, axis=0)[::2])
    Xf.flags.writeable = False
    model = vi.GPR(Xf, y[::-1][::-1], K.SquaredExponential(1.2, [0.7, 1.3]), noise_variance=0.05, mean=0.2)
    expected = ref_sparse.exact_lml(ref_kernels.SquaredExponential(1.2, [0.7, 1.3]), X, y, 0.05, 0.2)
    assert model.log_marginal_likelihood() == pytest.approx(expected, rel=1e-10)


def test_duplicated_inputs_warn_with_jitter_or_raise_never_nan():
    X = np.zeros((6, 1))  # six identical inputs: K(X, X) has rank one
    y = np.arange(6.0)
    model = vi.GPR(X, y, K.RBF(variance=1e12), noise_variance=1e-6)
    with pytest.warns(vi.linalg.JitterWarning):
        lml = model.log_marginal_likelihood()
    assert np.isfinite(lml)
    sgpr = vi.SGPR(np.linspace(0, 1, 6)[:, None], y, K.RBF(variance=1e12), Z=np.zeros((3, 1)), noise_variance=0.1)
    with pytest.warns(vi.linalg.JitterWarning, match="inducing"):
        assert np.isfinite(sgpr.elbo())
    bad = vi.GPR(np.full((6, 1), 1e200), y, K.Linear(), noise_variance=1e-6)  # K(X, X) overflows
    with pytest.raises(vi.LinAlgError, match="Cholesky of"):
        bad.log_marginal_likelihood()


# --- SVGP --------------------------------------------------------------------------------------------

LIKELIHOODS = [L.Gaussian(0.1), L.Bernoulli(), L.Poisson(), L.StudentT(0.5, 4.0)]


@settings_for(100)
@given(data=regression_data(), Z=st.one_of(valid_or_any((3, 1)), valid_or_any((2, 2)), st.integers(-1, 5),
                                           st.sampled_from([True, 3.0, None])),
       num_data=st.one_of(st.integers(-1, 100), st.sampled_from([1.5, "10", None, True])),
       labels=st.lists(st.sampled_from([0.0, 1.0, 2.0, -1.0, 0.5, np.nan]), min_size=1, max_size=6),
       lik=st.sampled_from(LIKELIHOODS), kernel=st.sampled_from(KERNELS), whiten=st.booleans(), q_diag=st.booleans())
def test_svgp_raises_or_is_finite(data, Z, num_data, labels, lik, kernel, whiten, q_diag):
    X, y, Xnew = data
    if isinstance(y, np.ndarray) and y.shape == (np.shape(X)[0],) and y.dtype == np.float64:
        y = np.resize(np.array(labels), y.shape)  # targets the likelihood may accept
    names = GP_NAMES + ("num_data", "batch_size", "iterations", "m must")
    model = outcome(lambda: vi.SVGP(kernel, lik, Z, num_data=num_data, whiten=whiten, q_diag=q_diag), *names)
    if model is None:
        return
    strict = not _huge(X, y, Xnew, Z)
    out = outcome(lambda: model.elbo(X, y, return_grad=True), *names)
    if out is not None and strict:
        assert_finite(*out)
    fitted = outcome(lambda: model.fit(X, y, iterations=3, batch_size=1, progress=False), *names)
    if fitted is not None:  # a non-finite step stops training, keeping the last finite parameters
        assert_finite(model.q_mu, model.Z)
    preds = outcome(lambda: (model.predict_f(Xnew), model.predict_y(Xnew), model.predict_f_samples(Xnew, 2)), *names)
    if preds is None:
        return
    (m, v), (my, vy), s = preds
    n = m.shape[0]
    if strict:
        assert_finite(m, v, s, shapes=[(n,), (n,), (2, n)])
        assert not np.any(np.isnan(my)) and not np.any(np.isnan(vy))  # a Poisson rate may overflow
    lpd = outcome(lambda: model.predict_log_density(Xnew, np.ones(n)), *names)
    if lpd is not None:
        assert lpd.shape == (n,) and not (strict and np.any(np.isnan(lpd)))


@pytest.mark.parametrize("kwargs, name", [
    ({"iterations": 0}, "iterations"), ({"epochs": -1}, "epochs"), ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 100}, "batch_size"), ({"learning_rate": np.nan}, "learning_rate"),
    ({"learning_rate": "x"}, "learning_rate"), ({"natgrad": True, "gamma": 2.0}, "gamma"),
    ({"iterations": 2, "epochs": 2}, "iterations or epochs"),
])
def test_svgp_fit_rejects_bad_arguments(kwargs, name):
    X, y = _xy(10)
    model = vi.SVGP(K.RBF(), L.Gaussian(), 3, num_data=10)
    with pytest.raises(ValueError, match=name):
        model.fit(X, y, progress=False, **kwargs)


@pytest.mark.parametrize("attr, value", [("q_mu", [np.nan, 0, 0]), ("q_mu", np.zeros(4)), ("q_sqrt", np.eye(4)),
                                         ("q_sqrt", np.full((3, 3), np.inf)), ("Z", np.zeros((3, 2)))])
def test_svgp_setters_check_values(attr, value):
    model = vi.SVGP(K.RBF(), L.Gaussian(), np.zeros((3, 1)), num_data=10)
    with pytest.raises(ValueError, match=attr):
        setattr(model, attr, value)


# --- likelihoods -------------------------------------------------------------------------------------

@settings_for(150)
@given(lik=st.sampled_from(LIKELIHOODS), y=arrays(dims=(1, 2, 3)), mu=arrays(dims=(1, 2)), var=arrays(dims=(1, 2)))
def test_likelihoods_raise_or_are_finite(lik, y, mu, var):
    names = ("y", "mu", "var")
    checked = outcome(lambda: lik.check_targets(y), *names)
    if checked is not None:
        assert_finite(checked)
    ve = outcome(lambda: lik.variational_expectations(y, mu, var), *names)
    if ve is not None:
        assert_finite(*ve)
    pmv = outcome(lambda: lik.predict_mean_and_var(mu, var), *names)
    if pmv is not None:  # a Poisson rate exp(mu + var / 2) may overflow to inf; never NaN
        assert not np.any(np.isnan(pmv[0])) and not np.any(np.isnan(pmv[1]))
    lpd = outcome(lambda: lik.predict_log_density(y, mu, var), *names)
    if lpd is not None:
        assert not np.any(np.isnan(lpd))  # log 0 = -inf is a correct density far in a tail


@pytest.mark.parametrize("make, name", [
    (lambda v: L.Gaussian(v), "variance"), (lambda v: L.StudentT(scale=v), "scale"),
    (lambda v: L.StudentT(df=v), "df"), (lambda v: L.Bernoulli(quadrature_points=v), "quadrature_points"),
    (lambda v: L.Poisson(quadrature_points=v), "quadrature_points"),
    (lambda v: L.StudentT(quadrature_points=v), "quadrature_points"),
])
@pytest.mark.parametrize("value", [0, -1, np.nan, np.inf, "1", None, [1.0, 2.0], 2.5])
def test_likelihood_constructors_name_the_argument(make, name, value):
    lik = outcome(lambda: make(value), name)
    if lik is not None:  # a valid value: the likelihood works (a list: one value per output)
        y = np.array([0.0, 1.0, 2.0]) if isinstance(lik, L.Poisson) else np.array([0.0, 1.0, 1.0])
        shape = (3,) if np.ndim(value) == 0 else (3, len(value))
        y = y if len(shape) == 1 else np.repeat(y[:, None], shape[1], axis=1)
        mean, var = lik.predict_mean_and_var(np.zeros(shape), np.ones(shape))
        assert_finite(mean)
        assert np.all(var > 0)  # inf for a Student-t with df <= 2
        assert_finite(lik.predict_log_density(y, np.zeros(shape), np.ones(shape)))


@settings_for(60)
@given(mu=st.lists(FLOATS, min_size=1, max_size=4), var_scale=st.sampled_from([0.0, 1e-300, 1.0, 1e300]))
def test_gaussian_likelihood_matches_closed_form(mu, var_scale):
    mu = np.array(mu)
    lik = L.Gaussian(0.3)
    y = np.zeros(mu.size)
    var = np.full(mu.size, var_scale)
    out = outcome(lambda: lik.variational_expectations(y, mu, var), "mu", "var", "y")
    if out is None:  # non-finite input, or a noise gradient sum((y - mu)^2 + var) / (2 s2^2) beyond float64
        with np.errstate(over="ignore", invalid="ignore"):
            dnoise = np.sum((y - mu) ** 2 + var) / (2 * 0.3 ** 2)
        assert not np.all(np.isfinite(mu)) or not np.isfinite(dnoise)
        return
    with np.errstate(over="ignore", invalid="ignore"):
        expected = ref_sparse.gaussian_variational_expectations(y, mu, var, 0.3)
    if np.all(np.isfinite(np.sum(expected))):
        np.testing.assert_allclose(out[0], np.sum(expected), rtol=1e-10)


@pytest.mark.parametrize("X", [[[1e300], [-1e300], [0.0]], [[1.7e308], [-1.7e308]], [[5e-324], [0.0]]])
def test_inducing_points_of_huge_or_tiny_inputs_are_finite(X):
    """scipy's kmeans2 crashed (segfault) on inputs whose squared distances overflow."""
    from varinf.models.sgpr import inducing_points
    for m in range(1, len(X) + 1):
        Z = inducing_points(np.array(X), m, seed=0)
        assert Z.shape == (m, 1) and np.all(np.isfinite(Z))

"""Likelihoods: variational expectations and their derivatives against numerical integration
and central finite differences; predictive moments and densities; stable log Phi; bad targets."""

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

import varinf as vi
from varinf._loader import core
from _grad import central_differences

L = vi.likelihoods


def cases():
    """(likelihood, targets [5], log p(y | f) for numerical integration)."""
    nu, scale = 3.0, 0.7
    return [
        (L.Gaussian(0.3), np.array([0.3, -1.2, 2.0, 0.0, 0.7]),
         lambda y, f: scipy.stats.norm.logpdf(y, f, np.sqrt(0.3))),
        (L.Bernoulli(), np.array([1.0, 0.0, 1.0, 0.0, 1.0]),
         lambda y, f: scipy.special.log_ndtr((2 * y - 1) * f)),
        (L.Poisson(), np.array([0.0, 3.0, 1.0, 7.0, 2.0]),
         lambda y, f: scipy.stats.poisson.logpmf(y, np.exp(f))),
        (L.StudentT(scale, nu), np.array([0.3, -1.2, 4.0, 0.0, 0.7]),
         lambda y, f: scipy.stats.t.logpdf(y, nu, loc=f, scale=scale)),
    ]


IDS = ["gaussian", "bernoulli", "poisson", "student-t"]
MU = np.array([0.2, -0.8, 1.5, -2.5, 0.0])   # [5]
VAR = np.array([0.05, 0.7, 0.3, 1.2, 1e-12])  # [5]


def expect(g, mu, var):
    """E_{N(f; mu, var)} g(f) by adaptive quadrature."""
    sd = np.sqrt(var)
    if sd < 1e-6:
        return g(mu)
    return scipy.integrate.quad(lambda f: g(f) * scipy.stats.norm.pdf(f, mu, sd), mu - 12 * sd, mu + 12 * sd,
                                epsabs=1e-13, epsrel=1e-11, limit=200)[0]


@pytest.mark.parametrize("lik, y, logp", cases(), ids=IDS)
def test_variational_expectations_equal_numerical_integration(lik, y, logp):
    total, _, _, _ = lik.variational_expectations(y, MU, VAR)
    expected = sum(expect(lambda f: logp(yi, f), m, v) for yi, m, v in zip(y, MU, VAR))
    # 20-point Gauss-Hermite: ~1e-8 on the heavy-tailed Student-t, far better on the others.
    assert total == pytest.approx(expected, rel=1e-7, abs=1e-8)


@pytest.mark.parametrize("lik, y, logp", cases(), ids=IDS)
def test_variational_expectation_derivatives(lik, y, logp):
    _, dmu, dvar, dtheta = lik.variational_expectations(y, MU, VAR)
    fd_mu = central_differences(lambda mu: lik.variational_expectations(y, mu, VAR)[0], MU)
    # (clipped at 0: entry 4, var 1e-12, is not checked, and var - h must not raise there)
    fd_var = central_differences(lambda var: lik.variational_expectations(y, MU, np.maximum(var, 0.0))[0], VAR)
    for i in range(5):
        assert dmu[i] == pytest.approx(fd_mu[i], rel=1e-6, abs=1e-7)
        if VAR[i] > 1e-3:
            assert dvar[i] == pytest.approx(fd_var[i], rel=1e-6, abs=1e-7)
    for j, p in enumerate(lik.parameters):
        v0 = p.value.copy()

        def ve_at(v):
            p.value = v
            return lik.variational_expectations(y, MU, VAR)[0]

        fd_theta = central_differences(ve_at, v0)
        p.value = v0
        assert dtheta[j] == pytest.approx(float(fd_theta), rel=1e-6)


@pytest.mark.parametrize("lik, y, logp", cases(), ids=IDS)
def test_derivative_in_variance_at_zero_variance_is_half_the_curvature(lik, y, logp):
    # d/dvar E[g] = E[g''] / 2 (Price): at var = 0 it is g''(mu) / 2.
    mu = np.array([0.4])
    _, _, dvar, _ = lik.variational_expectations(y[:1], mu, np.array([0.0]))
    h = 1e-4
    curvature = (logp(y[0], mu[0] + h) - 2 * logp(y[0], mu[0]) + logp(y[0], mu[0] - h)) / h ** 2
    assert dvar[0] == pytest.approx(curvature / 2, rel=1e-5)


@pytest.mark.parametrize("lik, y, logp", cases(), ids=IDS)
def test_predictive_density_and_moments(lik, y, logp):
    mu, var = MU[:4], VAR[:4]
    density = lik.predict_log_density(y[:4], mu, var)
    expected = [np.log(expect(lambda f: np.exp(logp(yi, f)), m, v)) for yi, m, v in zip(y, mu, var)]
    np.testing.assert_allclose(density, expected, rtol=1e-6)
    mean, variance = lik.predict_mean_and_var(mu, var)
    if isinstance(lik, L.Bernoulli):
        p = [expect(scipy.special.ndtr, m, v) for m, v in zip(mu, var)]
        np.testing.assert_allclose(mean, p, rtol=1e-9)
        np.testing.assert_allclose(variance, np.multiply(p, 1 - np.array(p)), rtol=1e-8)
    elif isinstance(lik, L.Poisson):
        rate = [expect(np.exp, m, v) for m, v in zip(mu, var)]
        second = [expect(lambda f: np.exp(2 * f), m, v) for m, v in zip(mu, var)]
        np.testing.assert_allclose(mean, rate, rtol=1e-9)
        np.testing.assert_allclose(variance, np.array(rate) + np.array(second) - np.array(rate) ** 2, rtol=1e-8)
    else:
        np.testing.assert_allclose(mean, mu)
        noise = 0.3 if isinstance(lik, L.Gaussian) else 0.7 ** 2 * 3.0 / (3.0 - 2.0)
        np.testing.assert_allclose(variance, var + noise)


def test_gauss_hermite_rule_integrates_normal_moments():
    x, w = core.testing.gauss_hermite_normal(20)
    moments = [np.sum(w * x ** k) for k in range(0, 40, 2)]
    expected = [scipy.special.factorial2(k - 1) if k else 1.0 for k in range(0, 40, 2)]
    np.testing.assert_allclose(moments, expected, rtol=1e-10)
    assert np.all(w > 0) and np.allclose(x, -x[::-1])


def test_log_ndtr_is_stable_far_in_the_tail():
    z = np.concatenate([-np.logspace(3, -3, 60), np.linspace(-3, 8, 40)])
    np.testing.assert_allclose(core.testing.log_ndtr(z), scipy.special.log_ndtr(z), rtol=1e-12, atol=1e-300)
    safe = z[z > -30]
    ratio = scipy.stats.norm.pdf(safe) / scipy.special.ndtr(safe)
    np.testing.assert_allclose(core.testing.inverse_mills(safe), ratio, rtol=1e-11)
    # In the tail the inverse Mills ratio approaches -z.
    assert core.testing.inverse_mills(np.array([-1e4]))[0] == pytest.approx(1e4, rel=1e-8)


@pytest.mark.parametrize("lik, bad, match", [
    (L.Bernoulli(), [0.0, 1.0, 2.0], "y must hold labels 0 or 1"),
    (L.Bernoulli(), [0.0, -1.0, 1.0], "y must hold labels 0 or 1"),
    (L.Poisson(), [0.0, -1.0, 3.0], "y must hold non-negative integer counts"),
    (L.Poisson(), [0.0, 1.5, 3.0], "y must hold non-negative integer counts"),
])
def test_bad_targets_raise_naming_the_argument(lik, bad, match):
    with pytest.raises(ValueError, match=match):
        lik.check_targets(bad, "y")
    model = vi.SVGP(vi.kernels.SquaredExponential(), lik, np.zeros((2, 1)), num_data=3)
    with pytest.raises(ValueError, match=match):
        model.elbo(np.zeros((3, 1)), bad)
    with pytest.raises(ValueError, match=match.replace("y must", "ynew must")):
        model.predict_log_density(np.zeros((3, 1)), bad)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scale=-1.0), "scale"), (dict(df=0.0), "df must be positive"),
    (dict(quadrature_points=0), "quadrature_points"),
])
def test_bad_student_t_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        L.StudentT(**kwargs)


def _at_offset(a, offset):
    """A copy of the float64 array ``a`` starting ``offset`` doubles into a fresh buffer."""
    buffer = np.empty(a.size + 8)
    out = buffer[offset:offset + a.size]
    out[:] = a
    return out


@pytest.mark.parametrize("lik", [vi.likelihoods.Gaussian(0.3), vi.likelihoods.Poisson(), vi.likelihoods.Bernoulli(),
                                 vi.likelihoods.StudentT(0.5, 4.0)], ids=["gaussian", "poisson", "bernoulli", "student-t"])
def test_predictions_do_not_depend_on_memory_alignment(rng, lik):
    """The same input gives the same output wherever numpy placed it (vectorised exp and log
    round the unaligned head of an array differently)."""
    mu, var = rng.normal(size=37), rng.uniform(0.1, 2.0, size=37)
    y = np.round(np.exp(rng.normal(size=37)))
    if isinstance(lik, vi.likelihoods.Bernoulli):
        y = np.minimum(y, 1.0)
    outputs = [np.r_[lik.predict_mean_and_var(_at_offset(mu, k), _at_offset(var, k))] for k in range(8)]
    densities = [lik.predict_log_density(_at_offset(y, k), _at_offset(mu, k), _at_offset(var, k)) for k in range(8)]
    for out, dens in zip(outputs[1:], densities[1:]):
        np.testing.assert_array_equal(out, outputs[0])
        np.testing.assert_array_equal(dens, densities[0])


@pytest.mark.parametrize("make", [vi.likelihoods.Bernoulli, vi.likelihoods.Poisson,
                                  lambda points: vi.likelihoods.StudentT(1.0, 3.0, points)])
def test_quadrature_points_are_capped_before_building_the_rule(make):
    with pytest.raises(ValueError, match="^quadrature_points must be <= 1000"):
        make(10 ** 5)


@pytest.mark.parametrize("call", [
    lambda c, t, v: c.predict_mean_and_var(t, v[:5], v[:4]),
    lambda c, t, v: c.predict_log_density(t, v[:5], v[:5], v[:3]),
    lambda c, t, v: c.predict_log_density(t, v[:2], v[:5], v[:5]),
    lambda c, t, v: c.variational_expectations(t, v[:5], v[:4], v[:5]),
    lambda c, t, v: c.predict_mean_and_var(np.zeros(3), v[:5], v[:5]),
], ids=["moments-var", "density-var", "density-y", "ve-mu", "theta"])
def test_core_likelihood_calls_check_their_lengths(call):
    """The C++ entry points themselves refuse mismatched lengths (no out-of-bounds read)."""
    lik = vi.likelihoods.Gaussian(0.3)
    with pytest.raises(ValueError, match="inconsistent likelihood arguments"):
        call(lik.core(), lik.theta(), np.ones(5))


def test_variational_expectation_that_overflows_raises_naming_the_inputs():
    """(y - mu)^2 / s2^2 beyond float64: a clear error, not an infinite gradient."""
    with pytest.raises(ValueError, match="overflows for these y, mu and var"):
        vi.likelihoods.Gaussian(0.1).variational_expectations(np.zeros(2), np.full(2, 1.8e153), np.zeros(2))

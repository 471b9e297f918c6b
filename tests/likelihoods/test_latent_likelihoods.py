"""Likelihoods over several latent functions per row (RobustMax, Softmax, heteroscedastic
Gaussian; docs/math.md sections 11.3-11.5): values against independent oracles, every
derivative against central finite differences, predictive probabilities and densities, the
Monte Carlo seeding, bad factory arguments."""

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

from varinf._loader import core
from _grad import check_grad

S = core.sparse
NO_THETA = np.zeros(0)
EPS = 1e-3  # GPflow's RobustMax default

# k = 6 rows, K = 3 latent functions: varied means, variances from 0.01 to 2.5, every label.
MU = np.array([[0.3, -0.5, 1.2], [-1.0, 0.4, 0.2], [2.0, -2.0, 0.0],
               [0.0, 0.1, -0.1], [-0.7, 1.5, 0.9], [0.5, 0.5, -3.0]])  # [6, 3]
VAR = np.array([[0.2, 1.1, 0.5], [0.05, 0.3, 2.0], [1.5, 0.4, 0.1],
                [0.8, 0.8, 0.8], [0.01, 0.6, 1.3], [2.5, 0.2, 0.7]])  # [6, 3]
LABELS = np.array([0.0, 1.0, 2.0, 2.0, 0.0, 1.0])  # [6]


def classes(K):
    """(labels [6], mu [6, K], var [6, K]) for K = 2 or 3."""
    return LABELS % K, MU[:, :K].copy(), VAR[:, :K].copy()


def ell_sum(lik, y, mu, var, row0=0):
    return lik.variational_expectations(NO_THETA, y, mu, var, row0=row0)[0]


def check_derivatives(lik, y, mu, var, rtol=1e-6, atol=1e-7):
    """dmu and dvar [k, L] against central differences of the summed ell."""
    _, dmu, dvar, dtheta = lik.variational_expectations(NO_THETA, y, mu, var)
    assert dmu.shape == dvar.shape == mu.shape and dtheta.shape == (0,)
    check_grad(lambda m: ell_sum(lik, y, m, var), mu, dmu, rtol=rtol, atol=atol)
    check_grad(lambda v: ell_sum(lik, y, mu, v), var, dvar, rtol=rtol, atol=atol)


def check_probabilities(mean, var, atol):
    assert np.all((mean >= 0) & (mean <= 1))
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=0, atol=atol)
    np.testing.assert_allclose(var, mean * (1 - mean), rtol=1e-14, atol=1e-16)


# --- RobustMax ------------------------------------------------------------------------------


def squashed(cdf):
    """GPflow's RobustMax squashes each normal CDF into [1e-6, 1 - 1e-6]."""
    return cdf * (1 - 2e-6) + 1e-6


def robustmax_P_naive(y, mu, var, points=20):
    """GPflow's RobustMax.prob_is_largest written out in numpy: physicists' Gauss-Hermite nodes
    t with weights w / sqrt(pi), x = mu_y + sqrt(2 v_y) t."""
    t, w = np.polynomial.hermite.hermgauss(points)
    P = np.empty(len(y))
    for i, c in enumerate(y.astype(int)):
        x = mu[i, c] + np.sqrt(2 * var[i, c]) * t  # [points]
        cdf = [squashed(scipy.special.ndtr((x - mu[i, j]) / np.sqrt(var[i, j]))) for j in range(mu.shape[1]) if j != c]
        P[i] = np.prod(cdf, axis=0) @ w / np.sqrt(np.pi)
    return P


def robustmax_P_exact(c, mu, var):
    """P(f_c is the largest) for one row by adaptive quadrature."""
    sd = np.sqrt(var)

    def integrand(x):
        others = [squashed(scipy.special.ndtr((x - mu[j]) / sd[j])) for j in range(len(mu)) if j != c]
        return scipy.stats.norm.pdf(x, mu[c], sd[c]) * np.prod(others)

    return scipy.integrate.quad(integrand, mu[c] - 12 * sd[c], mu[c] + 12 * sd[c],
                                epsabs=1e-14, epsrel=1e-12, limit=400)[0]


def robustmax_ell(P, K):
    return np.log1p(-EPS) * P + np.log(EPS / (K - 1)) * (1 - P)


@pytest.mark.parametrize("K", [2, 3])
def test_robustmax_equals_gpflows_quadrature_written_in_numpy(K):
    y, mu, var = classes(K)
    lik = S.robustmax_likelihood(K, EPS, 20)
    assert (lik.num_params, lik.num_latent, lik.num_targets, lik.num_predictive) == (0, K, 1, K)
    P = robustmax_P_naive(y, mu, var)
    assert ell_sum(lik, y, mu, var) == pytest.approx(robustmax_ell(P, K).sum(), rel=1e-12)
    np.testing.assert_allclose(lik.predict_log_density(NO_THETA, y, mu, var),
                               np.log((1 - EPS) * P + EPS / (K - 1) * (1 - P)), rtol=1e-12)


@pytest.mark.parametrize("K", [2, 3])
def test_robustmax_converges_to_the_exact_probability(K):
    """With enough nodes the rule gives P = q(y = argmax f) by adaptive quadrature to 1e-6 (20
    nodes, GPflow's default, are off by up to 2e-3 on the rows where v_y >> v_j)."""
    y, mu, var = classes(K)
    lik = S.robustmax_likelihood(K, EPS, 500)
    P = np.array([robustmax_P_exact(int(c), m, v) for c, m, v in zip(y, mu, var)])
    for i in range(len(y)):
        row = slice(i, i + 1)
        assert ell_sum(lik, y[row], mu[row], var[row]) == pytest.approx(robustmax_ell(P[i], K), abs=1e-6)


@pytest.mark.parametrize("K", [2, 3])
def test_robustmax_derivatives(K):
    y, mu, var = classes(K)
    check_derivatives(S.robustmax_likelihood(K, EPS, 20), y, mu, var)


def test_robustmax_derivatives_with_extreme_means():
    """Phi(z) underflows for some nodes (z < -38): the derivatives come from log Phi sums."""
    y = np.array([0.0, 2.0])
    mu = np.array([[-40.0, 0.0, 1.0], [3.0, -1.0, -45.0]])
    var = np.array([[0.5, 0.2, 0.3], [0.4, 1.0, 0.6]])
    lik = S.robustmax_likelihood(3, EPS, 20)
    _, dmu, dvar, _ = lik.variational_expectations(NO_THETA, y, mu, var)
    assert np.all(np.isfinite(dmu)) and np.all(np.isfinite(dvar))
    check_derivatives(lik, y, mu, var)


def test_robustmax_variance_below_the_floor():
    """Variances are floored at 1e-10 (GPflow's safe_sqrt): below it ell is constant in v."""
    y, mu, var = classes(3)
    var[:, 1] = 0.0
    lik = S.robustmax_likelihood(3, EPS, 20)
    total, _, dvar, _ = lik.variational_expectations(NO_THETA, y, mu, var)
    assert np.all(dvar[:, 1] == 0.0)
    assert total == ell_sum(lik, y, mu, np.where(var == 0.0, 1e-11, var))


@pytest.mark.parametrize("K, points, atol", [(2, 20, 1e-3), (3, 20, 3e-3), (3, 500, 1e-5)])
def test_robustmax_predictive_probabilities(K, points, atol):
    """The class probabilities sum to 1 up to the quadrature's error: each P_c is its own rule
    over f_c, so 20 nodes leave up to 2e-3 on the rows where v_c >> v_j; with 500 nodes what is
    left is GPflow's squashing of each CDF into [1e-6, 1 - 1e-6] (about 1e-6 per class)."""
    y, mu, var = classes(K)
    lik = S.robustmax_likelihood(K, EPS, points)
    mean, pvar = lik.predict_mean_and_var(NO_THETA, mu, var)
    assert mean.shape == pvar.shape == (6, K)
    check_probabilities(mean, pvar, atol)
    np.testing.assert_allclose(lik.predict_log_density(NO_THETA, y, mu, var),
                               np.log(mean[np.arange(6), y.astype(int)]), rtol=1e-14)


# --- Softmax --------------------------------------------------------------------------------


def test_softmax_derivatives():
    y, mu, var = classes(3)
    check_derivatives(S.softmax_likelihood(3, 200, 7), y, mu, var)


def test_softmax_derivative_in_variance_at_zero_is_prices_limit():
    """With v = 0 every sample is mu: d ell/dv_k = -softmax(mu)_k (1 - softmax(mu)_k) / 2."""
    y, mu, _ = classes(3)
    lik = S.softmax_likelihood(3, 50, 7)
    total, dmu, dvar, _ = lik.variational_expectations(NO_THETA, y, mu, np.zeros_like(mu))
    p = scipy.special.softmax(mu, axis=1)
    onehot = np.eye(3)[y.astype(int)]
    assert total == pytest.approx(np.log(p[onehot == 1]).sum(), rel=1e-13)
    np.testing.assert_allclose(dmu, onehot - p, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(dvar, -p * (1 - p) / 2, rtol=1e-13)


def test_softmax_value_agrees_with_a_large_numpy_monte_carlo():
    """20000 samples of the C++ estimate against 10^6 numpy samples, row by row, within four
    combined standard errors (the generators differ, so no exact comparison)."""
    y, mu, var = classes(3)
    lik = S.softmax_likelihood(3, 20000, 11)
    rng = np.random.default_rng(5)
    for i in range(6):
        f = mu[i] + np.sqrt(var[i]) * rng.standard_normal((10 ** 6, 3))  # [10^6, 3]
        logp = scipy.special.log_softmax(f, axis=1)[:, int(y[i])]
        row = slice(i, i + 1)
        se = logp.std() * np.sqrt(1 / 20000 + 1 / 10 ** 6)
        assert abs(ell_sum(lik, y[row], mu[row], var[row], row0=i) - logp.mean()) < 4 * se


def test_softmax_seeding_and_blocking():
    y, mu, var = classes(3)
    lik = S.softmax_likelihood(3, 100, 3)
    full = lik.variational_expectations(NO_THETA, y, mu, var, row0=0)
    again = lik.variational_expectations(NO_THETA, y, mu, var, row0=0)
    for a, b in zip(full, again):
        np.testing.assert_array_equal(a, b)
    shifted = lik.variational_expectations(NO_THETA, y, mu, var, row0=1)
    assert shifted[0] != full[0] and np.all(shifted[1] != full[1])
    other_seed = S.softmax_likelihood(3, 100, 4).variational_expectations(NO_THETA, y, mu, var)
    assert other_seed[0] != full[0]
    # Rows a:b with row0 = a are rows a:b of the whole batch, whatever the cut.
    blocks = [(0, 2), (2, 5), (5, 6)]
    total = 0.0
    for a, b in blocks:
        part = lik.variational_expectations(NO_THETA, y[a:b], mu[a:b], var[a:b], row0=a)
        np.testing.assert_array_equal(part[1], full[1][a:b])
        np.testing.assert_array_equal(part[2], full[2][a:b])
        total += part[0]
    assert total == pytest.approx(full[0], rel=1e-14)


def test_softmax_predictions():
    """Class probabilities from the seeded samples sum to 1; the log density is the log of the
    label's probability from the same samples."""
    y, mu, var = classes(3)
    lik = S.softmax_likelihood(3, 500, 9)
    mean, pvar = lik.predict_mean_and_var(NO_THETA, mu, var)
    assert mean.shape == pvar.shape == (6, 3)
    check_probabilities(mean, pvar, 1e-14)
    logdens = lik.predict_log_density(NO_THETA, y, mu, var)
    np.testing.assert_allclose(logdens, np.log(mean[np.arange(6), y.astype(int)]), rtol=1e-12)
    # A row's prediction depends on its moments alone: the rows reversed, or a subset, give the
    # same values (every row draws the same seeded samples).
    back = slice(None, None, -1)
    assert np.array_equal(lik.predict_mean_and_var(NO_THETA, mu[back], var[back])[0], mean[back])
    assert np.array_equal(lik.predict_log_density(NO_THETA, y[3:], mu[3:], var[3:]), logdens[3:])


@pytest.mark.parametrize("make", [lambda K: S.robustmax_likelihood(K, EPS, 20),
                                  lambda K: S.softmax_likelihood(K, 10, 1)], ids=["robustmax", "softmax"])
def test_invalid_label_gives_nan_not_a_crash(make):
    lik = make(3)
    y, mu, var = classes(3)
    y[2] = 3.0
    total, dmu, dvar, _ = lik.variational_expectations(NO_THETA, y, mu, var)
    assert np.isnan(total) and np.all(np.isnan(dmu[2])) and np.all(np.isnan(dvar[2]))
    assert np.all(np.isfinite(np.delete(dmu, 2, axis=0)))
    logdens = lik.predict_log_density(NO_THETA, y, mu, var)
    assert np.isnan(logdens[2]) and np.all(np.isfinite(np.delete(logdens, 2)))


# --- Heteroscedastic Gaussian ---------------------------------------------------------------

HY = np.array([0.3, -1.2, 2.0, 0.0, 0.7, -0.4])  # [6]
HMU = np.array([[0.2, -0.5], [-0.8, 0.3], [1.5, 1.0], [-2.5, -1.2], [0.0, 0.0], [0.4, 0.8]])  # [6, 2]
HVAR = np.array([[0.05, 0.2], [0.7, 1.1], [0.3, 0.02], [1.2, 0.6], [0.01, 1.5], [0.5, 0.4]])  # [6, 2]


def normal_pdf(x, mu, var):
    return math.exp(-0.5 * (x - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


def expect(g, mu, var):
    """E_{N(x; mu, var)} g(x) by adaptive quadrature (scalar math: the nested integral calls
    the inner one thousands of times)."""
    sd = math.sqrt(var)
    return scipy.integrate.quad(lambda x: g(x) * normal_pdf(x, mu, var), mu - 12 * sd, mu + 12 * sd,
                                epsabs=1e-13, epsrel=1e-12, limit=200)[0]


def log_normal_pdf(y, mu, var):
    return -0.5 * (math.log(2 * math.pi * var) + (y - mu) ** 2 / var)


def test_heteroskedastic_expectation_equals_nested_integration():
    lik = S.heteroskedastic_gaussian_likelihood(20)
    assert (lik.num_params, lik.num_latent, lik.num_targets, lik.num_predictive) == (0, 2, 1, 1)
    for y, m, v in zip(HY, HMU, HVAR):
        exact = expect(lambda g: expect(lambda f: log_normal_pdf(y, f, math.exp(g)), m[0], v[0]), m[1], v[1])
        assert ell_sum(lik, np.array([y]), m[None], v[None]) == pytest.approx(exact, rel=1e-8, abs=1e-8)


def test_heteroskedastic_derivatives():
    check_derivatives(S.heteroskedastic_gaussian_likelihood(20), HY, HMU, HVAR)


def test_heteroskedastic_predictions():
    lik = S.heteroskedastic_gaussian_likelihood(20)
    mean, var = lik.predict_mean_and_var(NO_THETA, HMU, HVAR)
    assert mean.shape == var.shape == (6, 1)
    np.testing.assert_array_equal(mean[:, 0], HMU[:, 0])
    noise = [expect(math.exp, m, v) for m, v in zip(HMU[:, 1], HVAR[:, 1])]  # E[e^g]
    np.testing.assert_allclose(var[:, 0], HVAR[:, 0] + noise, rtol=1e-10)
    logdens = lik.predict_log_density(NO_THETA, HY, HMU, HVAR)
    for i, (y, m, v) in enumerate(zip(HY, HMU, HVAR)):
        exact = math.log(expect(lambda g: normal_pdf(y, m[0], v[0] + math.exp(g)), m[1], v[1]))
        assert logdens[i] == pytest.approx(exact, rel=1e-8, abs=1e-8)


# --- Factory arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("make, match", [
    (lambda: S.robustmax_likelihood(1, EPS, 20), "K >= 2"),
    (lambda: S.robustmax_likelihood(3, 0.0, 20), "epsilon"),
    (lambda: S.robustmax_likelihood(3, 1.0, 20), "epsilon"),
    (lambda: S.robustmax_likelihood(3, float("nan"), 20), "epsilon"),
    (lambda: S.robustmax_likelihood(3, EPS, 0), "points"),
    (lambda: S.robustmax_likelihood(3, EPS, 1001), "points"),
    (lambda: S.softmax_likelihood(1, 10, 0), "K >= 2"),
    (lambda: S.softmax_likelihood(3, 0, 0), "samples"),
    (lambda: S.heteroskedastic_gaussian_likelihood(0), "points"),
    (lambda: S.heteroskedastic_gaussian_likelihood(1001), "points"),
])
def test_bad_factory_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()

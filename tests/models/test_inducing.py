"""Placing inducing inputs (varinf.inducing; docs/math.md section 5.7): greedy conditional
variance against a naive pivoted Cholesky that forms K(X, X), and the choice in every model and
estimator."""

import numpy as np
import pytest

import varinf as vi
from varinf.inducing import greedy_variance, inducing_points


def _naive_greedy(K, m):
    """Indices of greedy maximal conditional variance, recomputed from the full K [n, n]."""
    chosen, d = [], np.diag(K).copy()
    for _ in range(m):
        chosen.append(int(np.argmax(d)))
        Kx = K[:, chosen]  # [n, j]
        d = np.diag(K) - np.einsum("ij,ij->i", Kx, np.linalg.solve(K[np.ix_(chosen, chosen)], Kx.T).T)
        d[chosen] = 0.0
    return chosen


@pytest.mark.parametrize("kernel", [vi.kernels.SquaredExponential(lengthscales=np.array([0.5, 2.0])),
                                    vi.kernels.Matern32(variance=2.0, lengthscales=np.array([1.0, 1.0]))])
def test_greedy_variance_is_the_pivoted_cholesky(kernel):
    X = np.random.default_rng(3).normal(size=(300, 2))
    Z = greedy_variance(X, 25, kernel)
    np.testing.assert_array_equal(Z, X[_naive_greedy(kernel.K(X), 25)])


def test_greedy_variance_leaves_the_smallest_largest_variance():
    """After m picks the largest conditional variance left is below every one picked (the
    greedy order), and tr(Kff - Qff) matches its direct computation."""
    X = np.random.default_rng(4).uniform(-3, 3, size=(400, 1))
    kernel = vi.kernels.SquaredExponential(lengthscales=0.7)
    Z = greedy_variance(X, 12, kernel)
    K_zz, K_zx = kernel.K(Z), kernel.K(Z, X)
    left = kernel.K_diag(X) - np.einsum("ij,ij->j", K_zx, np.linalg.solve(K_zz, K_zx))
    picked = [kernel.K_diag(Z[:1])[0]]
    for j in range(1, 12):
        kz = kernel.K(Z[:j], Z[j:j + 1])[:, 0]
        picked.append(kernel.K_diag(Z[j:j + 1])[0] - kz @ np.linalg.solve(kernel.K(Z[:j]), kz))
    assert np.all(np.diff(picked) <= 1e-12) and left.max() <= picked[-1] + 1e-12


def test_duplicated_rows_cannot_give_more_points_than_they_hold():
    X = np.repeat(np.arange(5.0)[:, None], 10, axis=0)  # 5 distinct rows, 50 in all
    with pytest.raises(ValueError, match="only 5 rows of X have a conditional variance"):
        greedy_variance(X, 6, vi.kernels.SquaredExponential())
    assert greedy_variance(X, 5, vi.kernels.SquaredExponential()).shape == (5, 1)


def test_method_is_checked_and_greedy_needs_the_kernel():
    X = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="method must be one of"):
        inducing_points(X, 5, method="random")
    with pytest.raises(ValueError, match="needs the kernel"):
        inducing_points(X, 5, method="greedy-variance")
    with pytest.raises(ValueError, match="inducing must be one of"):
        vi.SGPR(X, X[:, 0], vi.kernels.SquaredExponential(), 5, inducing="greedy")


def test_every_model_and_estimator_places_by_greedy_variance():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    y = np.sin(X).sum(1) + 0.1 * rng.normal(size=200)
    kernel = lambda: vi.kernels.SquaredExponential(lengthscales=np.ones(2))  # noqa: E731
    want = greedy_variance(X, 10, kernel())
    for cls in (vi.SGPR, vi.FITC):
        np.testing.assert_array_equal(cls(X, y, kernel(), 10, inducing="greedy-variance").Z, want)
    svgp = vi.SVGP(kernel(), vi.likelihoods.Gaussian(), 10, num_data=200, inducing="greedy-variance")
    svgp.fit(X, y, iterations=1, progress=False)
    assert svgp.Z.shape == (10, 2)
    reg = vi.SGPRRegressor(n_inducing=10, max_iter=0, inducing="greedy-variance").fit(X, y)
    np.testing.assert_array_equal(reg.model_.Z, want)
    clf = vi.SVGPClassifier(n_inducing=10, iterations=2, inducing="greedy-variance").fit(X, y > 0)
    assert clf.model_.Z.shape == (10, 2)
    with pytest.raises(ValueError, match="inducing must be one of"):
        vi.SGPRRegressor(inducing="random").fit(X, y)


def test_unplaced_svgp_saves_its_method(tmp_path):
    model = vi.SVGP(vi.kernels.SquaredExponential(), vi.likelihoods.Gaussian(), 4, num_data=10,
                    inducing="greedy-variance")
    model.save(tmp_path / "m.vinf")
    assert vi.load(tmp_path / "m.vinf").inducing == "greedy-variance"

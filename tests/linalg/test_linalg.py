"""Cholesky with jitter, Cholesky reverse mode and triangular solves (docs/math.md section 3)."""

import warnings

import numpy as np
import pytest
import scipy.linalg

import varinf as vi
from varinf.linalg import JitterWarning, cholesky, cholesky_reverse, solve_lower
from _grad import central_differences


def spd(n: int, seed: int = 0) -> np.ndarray:
    """A random well-conditioned SPD matrix [n, n]."""
    X = np.random.default_rng(seed).standard_normal((n, n + 3))  # [n, n + 3]
    return X @ X.T / n + 0.1 * np.eye(n)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    before = vi.get_num_threads()
    vi.set_num_threads(request.param)
    yield request.param
    vi.set_num_threads(before)


# 1..299: Eigen's LLT; >= 300: the blocked algorithm (block 256, parallel pieces of >= 128),
# including orders that are exact and non-multiples of the block size.
@pytest.mark.parametrize("n", [1, 7, 299, 300, 512, 577, 1000])
def test_cholesky_reconstructs_and_matches_numpy(n, threads):
    A = spd(n, seed=n)  # [n, n]
    L = cholesky(A)  # [n, n]
    assert L.flags.f_contiguous and L.dtype == np.float64
    assert np.all(np.triu(L, 1) == 0.0)
    np.testing.assert_allclose(L @ L.T, A, rtol=0, atol=1e-13 * np.abs(A).max())
    np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=0, atol=1e-12)


def test_cholesky_does_not_modify_input_and_accepts_any_layout():
    A = spd(350)  # [350, 350]
    for layout in (A.copy(order="C"), A.copy(order="F"), A[::-1, ::-1].copy()[::-1, ::-1]):
        before = layout.copy()
        np.testing.assert_allclose(cholesky(layout), np.linalg.cholesky(A), atol=1e-12)
        np.testing.assert_array_equal(layout, before)


def test_cholesky_factorises_the_lower_triangle_like_numpy():
    A = spd(400)  # [400, 400]
    garbage = np.tril(A) + np.triu(np.full_like(A, 1e3), 1)  # non-symmetric upper triangle
    np.testing.assert_allclose(cholesky(garbage), np.linalg.cholesky(A), atol=1e-12)


def test_cholesky_inplace_keeps_the_strict_upper_triangle():
    A = np.asfortranarray(spd(500))  # [500, 500]
    B = A.copy(order="F")
    assert vi._core.testing.cholesky_inplace_f(B)
    np.testing.assert_array_equal(np.triu(B, 1), np.triu(A, 1))
    np.testing.assert_allclose(np.tril(B), np.linalg.cholesky(A), atol=1e-12)


def test_cholesky_inplace_reports_failure_without_raising():
    B = np.asfortranarray(-spd(400))  # [400, 400] negative definite
    assert vi._core.testing.cholesky_inplace_f(B) is False


def test_requested_jitter_is_added_without_warning():
    A = spd(50)  # [50, 50]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L = cholesky(A, jitter=1e-3)
    np.testing.assert_allclose(L @ L.T, A + 1e-3 * np.eye(50), atol=1e-13)


@pytest.mark.parametrize("n", [40, 450])
def test_rank_deficient_matrix_succeeds_with_one_warning(n, threads):
    X = np.random.default_rng(1).standard_normal((n, 5))  # [n, 5]
    A = X @ X.T  # [n, n], rank 5
    with pytest.warns(JitterWarning) as record:
        L = cholesky(A, name="Kuu")
    assert len(record) == 1
    message = str(record[0].message)
    assert "Kuu" in message
    # GPy's policy: j = max(0, 1e-6 * mean(diag A)) * 10^i, i = 1..5; the first that works.
    base = 1e-6 * np.mean(np.diag(A))
    used = float(message.split("jitter ")[1].split(" ")[0])
    ratios = used / (base * 10.0 ** np.arange(1, 6))
    assert np.any(np.isclose(ratios, 1.0, rtol=1e-2))
    jitter = base * 10.0 ** np.arange(1, 6)[np.isclose(ratios, 1.0, rtol=1e-2)][0]
    np.testing.assert_allclose(L @ L.T, A + jitter * np.eye(n), atol=1e-10 * np.abs(A).max())


def test_jitter_retries_start_from_the_requested_jitter_when_larger():
    # mean(diag A) ~ 1, so 1e-6 * mean < 1e-4 = jitter: retries are 1e-3, 1e-2, ...; the
    # entry -5e-3 needs a jitter above 5e-3, so 1e-2 is the first that works.
    A = np.diag(np.r_[np.ones(9), -5e-3])  # [10, 10]
    with pytest.warns(JitterWarning, match=r"needed jitter 0\.01 .*asked for 0\.0001"):
        L = cholesky(A, jitter=1e-4)
    np.testing.assert_allclose(np.diag(L) ** 2, np.diag(A) + 1e-2, rtol=1e-12)


def test_jitter_policy_gives_up_after_five_retries():
    # Needs jitter > 1.0 but the last retry is 1e-6 * mean(diag A) * 1e5 ~ 0.09.
    A = np.diag(np.r_[np.ones(9), -1.0])  # [10, 10], mean(diag) = 0.8
    with pytest.raises(vi.LinAlgError, match=r"even with jitter 0\.08 added"):
        cholesky(A, name="Kuu")


@pytest.mark.parametrize("n", [20, 400])
def test_negative_definite_raises_linalgerror_naming_the_matrix(n):
    with pytest.raises(vi.LinAlgError, match="Cholesky of Kuu failed.*not positive definite"):
        cholesky(-spd(n), name="Kuu")


def test_linalgerror_is_a_numpy_linalgerror():
    assert issubclass(vi.LinAlgError, np.linalg.LinAlgError)
    with pytest.raises(np.linalg.LinAlgError, match="K \\+ noise"):
        cholesky(-np.eye(3), name="K + noise")


@pytest.mark.parametrize("n", [10, 350])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_matrix_in_the_core_raises_linalgerror(n, bad):
    # The Python layer rejects NaN first; the core itself must still never return NaN.
    A = spd(n)
    A[n // 2, n // 3] = A[n // 3, n // 2] = bad
    with pytest.raises(vi.LinAlgError, match="Cholesky of Knn failed"):
        vi._core.linalg.cholesky(np.asfortranarray(A), 0.0, "Knn")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_matrix_on_the_diagonal_raises_linalgerror(bad):
    A = spd(320)
    A[5, 5] = bad
    with pytest.raises(vi.LinAlgError, match="Cholesky of Kff failed"):
        vi._core.linalg.cholesky(np.asfortranarray(A), 0.0, "Kff")


def test_logdet_consistency():
    A = spd(60)
    L = cholesky(A)
    np.testing.assert_allclose(2 * np.sum(np.log(np.diag(L))), np.linalg.slogdet(A)[1], rtol=1e-12)


# Convention: Abar = dF/dA treating all n^2 entries as independent, so Abar is symmetric and
# a symmetric perturbation A_ij += e, A_ji += e (i != j) changes F by (Abar_ij + Abar_ji) e,
# while A_ii += e changes it by Abar_ii e.
@pytest.mark.parametrize("n", [1, 6, 35])
def test_cholesky_reverse_against_central_finite_differences(n):
    rng = np.random.default_rng(n)
    A = spd(n, seed=n + 100)  # [n, n]
    W = rng.standard_normal((n, n))  # [n, n]; its upper triangle must not matter

    def F(M):
        return np.sum(W * np.linalg.cholesky(M))  # numpy's L has a zero upper triangle

    Abar = cholesky_reverse(np.linalg.cholesky(A), W)  # [n, n]
    np.testing.assert_allclose(Abar, Abar.T, rtol=0, atol=0)

    def F_of_lower(B):  # the symmetric matrix whose lower triangle is B's
        return F(np.tril(B) + np.tril(B, -1).T)

    fd = central_differences(F_of_lower, A)  # [n, n]; zero above the diagonal
    analytic = Abar + Abar.T - np.diag(np.diag(Abar))
    for i in range(n):
        for j in range(i + 1):
            assert fd[i, j] == pytest.approx(analytic[i, j], rel=1e-6, abs=1e-7)


def test_cholesky_reverse_large_matches_small_formula(threads):
    # The blocked/parallel solves against a dense numpy evaluation of Murray 2016 eq. 10.
    n = 300
    A = spd(n)
    L = np.linalg.cholesky(A)  # [n, n]
    Lbar = np.tril(np.random.default_rng(3).standard_normal((n, n)))  # [n, n]
    P = np.tril(L.T @ Lbar)
    P[np.diag_indices(n)] /= 2
    Linv = np.linalg.inv(L)
    expected = Linv.T @ ((P + P.T) / 2) @ Linv
    np.testing.assert_allclose(cholesky_reverse(L, Lbar), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("k", [1, 5, 700])
@pytest.mark.parametrize("transpose", [False, True])
def test_solve_lower_matches_scipy(k, transpose, threads):
    n = 260
    L = np.linalg.cholesky(spd(n))  # [n, n]
    B = np.random.default_rng(k).standard_normal((n, k))  # [n, k]
    expected = scipy.linalg.solve_triangular(L, B, lower=True, trans="T" if transpose else "N")
    X = solve_lower(L, B, transpose=transpose)  # [n, k]
    np.testing.assert_allclose(X, expected, rtol=1e-10, atol=1e-10)


def test_solve_lower_vector_and_c_ordered_input():
    L = np.ascontiguousarray(np.linalg.cholesky(spd(30)))  # [30, 30] C-ordered
    b = np.arange(30.0)  # [30]
    x = solve_lower(L, b)
    assert x.shape == (30,)
    np.testing.assert_allclose(L @ x, b, atol=1e-10)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((3, 4)), "A must be square"),
        (np.ones(3), "A must be a 2-D array"),
        (np.ones((0, 0)), "A must not be empty"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), "A contains NaN"),
        (np.array([[1.0, 0.0], [0.0, np.inf]]), "A contains NaN"),
        ([["a", "b"], ["c", "d"]], "A must be a numeric"),
    ],
)
def test_cholesky_bad_input_raises_valueerror_naming_the_argument(bad, match):
    with pytest.raises(ValueError, match=match):
        cholesky(bad)


def test_bad_jitter_raises_valueerror():
    with pytest.raises(ValueError, match="jitter"):
        cholesky(np.eye(2), jitter=-1.0)
    with pytest.raises(ValueError, match="jitter"):
        cholesky(np.eye(2), jitter=np.nan)


def test_reverse_and_solve_bad_input_raise_valueerror_naming_the_argument():
    L = np.eye(3)
    with pytest.raises(ValueError, match="Lbar must have the shape of L"):
        cholesky_reverse(L, np.eye(4))
    with pytest.raises(ValueError, match="Lbar contains NaN"):
        cholesky_reverse(L, np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="L must be square"):
        cholesky_reverse(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="B must have 3 rows"):
        solve_lower(L, np.ones((4, 2)))
    with pytest.raises(ValueError, match="B must not be empty"):
        solve_lower(L, np.ones((3, 0)))
    with pytest.raises(ValueError, match="L must be a 2-D array"):
        solve_lower(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="B contains NaN"):
        solve_lower(L, np.array([1.0, np.inf, 0.0]))

// Cholesky with the jitter policy, triangular solves and the Cholesky reverse mode
// (MATH.md section 2). All matrices are column-major; A, L are [n, n].
#include "varinf/linalg.hpp"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <sstream>

#include "varinf/errors.hpp"
#include "varinf/threads.hpp"

namespace varinf {

namespace {

using Eigen::Lower;
using Eigen::Ref;
using ConstMatRefF = Ref<const MatrixXd>;

// Below this order Eigen's own (single-threaded, blocked) LLT is used unchanged.
constexpr Index kSmallOrder = 300;
// Width of the diagonal blocks of the right-looking algorithm (tuned with
// bench/bench_cholesky.py: 128..256 are within a few per cent; 192 was best at n = 2000..4000).
constexpr Index kBlock = 192;
// Work is split into strips of this many columns (trailing update, solves) or rows (panel).
constexpr Index kStrip = 128;

Index ceil_div(Index a, Index b) { return (a + b - 1) / b; }

// LLT of a diagonal block in place, lower triangle only; false when it is not PD.
bool factor_block(Ref<MatrixXd> A11) {  // [b, b]
  return Eigen::internal::llt_inplace<double, Lower>::blocked(A11) == -1;
}

// Panel of the blocked algorithm: A21 <- A21 L11^-T, parallel over strips of rows
// (each row of A21 is an independent triangular solve).
void solve_panel(const ConstMatRefF& L11, Ref<MatrixXd> A21) {  // L11 [b, b], A21 [m, b]
  const Index m = A21.rows(), b = L11.rows();
  const Index strips = ceil_div(m, kStrip);
  const int threads = threads_for(double(m) * double(b) * double(b));
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (Index s = 0; s < strips; ++s) {
    const Index r0 = s * kStrip;
    auto rows = A21.middleRows(r0, std::min(kStrip, m - r0));  // [<=kStrip, b]
    L11.triangularView<Lower>().transpose().solveInPlace<Eigen::OnTheRight>(rows);
  }
}

// Trailing update A22 <- A22 - L21 L21^T on the lower triangle only (a symmetric rank-b
// update), parallel over strips of columns; within a strip the diagonal square is a SYRK
// and the rectangle below it a GEMM. Eigen's GEMM runs single-threaded inside our region.
void update_trailing(const ConstMatRefF& L21, Ref<MatrixXd> A22) {  // L21 [m, b], A22 [m, m]
  const Index m = A22.rows();
  const Index strips = ceil_div(m, kStrip);
  const int threads = threads_for(double(m) * double(m) * double(L21.cols()));
  // Tallest strips first under dynamic scheduling balances the triangle's uneven work.
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (Index s = 0; s < strips; ++s) {
    const Index c = s * kStrip, w = std::min(kStrip, m - c), below = m - c - w;
    const auto Lc = L21.middleRows(c, w);  // [w, b]
    A22.block(c, c, w, w).selfadjointView<Lower>().rankUpdate(Lc, -1.0);
    A22.block(c + w, c, below, w).noalias() -= L21.middleRows(c + w, below) * Lc.transpose();
  }
}

// Blocked right-looking Cholesky (Golub & Van Loan, Matrix Computations 4th ed., Alg. 4.2.2
// in block form): per block column, factor A11, solve the panel, update the trailing matrix.
bool blocked_cholesky(Ref<MatrixXd> A) {  // [n, n]
  const Index n = A.rows();
  for (Index k = 0; k < n; k += kBlock) {
    const Index b = std::min(kBlock, n - k), m = n - k - b;
    if (!factor_block(A.block(k, k, b, b))) return false;
    if (m == 0) break;
    solve_panel(A.block(k, k, b, b), A.block(k + b, k, m, b));
    update_trailing(A.block(k + b, k, m, b), A.block(k + b, k + b, m, m));
  }
  return true;
}

// True when the strict upper triangle and the given diagonal are finite (the lower triangle
// may already be overwritten by a failed factorisation).
bool upper_and_diagonal_finite(const ConstMatRefF& A, const VectorXd& diag) {
  for (Index j = 1; j < A.cols(); ++j) {
    if (!A.col(j).head(j).allFinite()) return false;
  }
  return diag.allFinite();
}

// Restore A + j I from the untouched strict upper triangle and the saved diagonal.
void restore_with_jitter(Ref<MatrixXd> A, const VectorXd& diag, double j) {  // A [n, n]
  A.triangularView<Eigen::StrictlyLower>() = A.transpose();
  A.diagonal() = diag.array() + j;
}

[[noreturn]] void throw_not_pd(const std::string& what, double j) {
  std::ostringstream msg;
  msg << "Cholesky of " << what
      << " failed: the matrix is not positive definite even with jitter " << j
      << " added to its diagonal. Try a larger noise variance, fewer or de-duplicated inducing "
         "points, or standardised inputs.";
  throw LinAlgError(msg.str());
}

[[noreturn]] void throw_not_finite(const std::string& what) {
  throw LinAlgError("Cholesky of " + what +
                    " failed: the matrix contains NaN or infinite values. Check the inputs "
                    "and the hyperparameters (an overflowing kernel variance or lengthscale).");
}

// Split the columns of B [n, k] into strips solved in parallel when the work is large.
template <class Solve>
void for_column_strips(Ref<MatrixXd> B, const Solve& solve) {
  const Index n = B.rows(), k = B.cols();
  const int threads = threads_for(double(n) * double(n) * double(k));
  if (threads == 1 || k < 2 * kStrip) {
    solve(B);
    return;
  }
  const Index width = std::max(kStrip, ceil_div(k, threads));
  const Index strips = ceil_div(k, width);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (Index s = 0; s < strips; ++s) {
    const Index c = s * width;
    solve(B.middleCols(c, std::min(width, k - c)));  // [n, <=width]
  }
}

}  // namespace

bool cholesky_inplace(Ref<MatrixXd> A) {  // [n, n]
  const bool ok = A.rows() < kSmallOrder ? factor_block(A) : blocked_cholesky(A);
  // NaN never fails Eigen's test `x <= 0`, but any NaN in the lower triangle reaches a later
  // diagonal entry, and an Inf ends up as a failure or an Inf/NaN on the diagonal.
  return ok && A.diagonal().allFinite();
}

// GPy's jitchol (GPy/util/linalg.py): on failure retry with jitter * 10 up to 5 times,
// starting from max(jitter, 1e-6 * mean(diag A)).
double cholesky_jitter(Ref<MatrixXd> A, double jitter, const std::string& what) {  // [n, n]
  const VectorXd diag = A.diagonal();  // [n]
  if (jitter != 0.0) A.diagonal().array() += jitter;
  if (cholesky_inplace(A)) return jitter;
  if (!upper_and_diagonal_finite(A, diag)) throw_not_finite(what);
  const double base = std::max(jitter, 1e-6 * diag.mean());
  if (!(base > 0.0)) throw_not_pd(what, jitter);
  double j = base;
  for (int attempt = 1; attempt <= 5; ++attempt) {
    j *= 10.0;
    restore_with_jitter(A, diag, j);
    if (cholesky_inplace(A)) return j;
  }
  throw_not_pd(what, j);
}

// log det(L L^T) = 2 sum_i log L_ii.
double logdet_from_cholesky(const ConstMatRefF& L) {  // [n, n]
  return 2.0 * L.diagonal().array().log().sum();
}

void solve_lower_inplace(const ConstMatRefF& L, Ref<MatrixXd> B) {  // L [n, n], B [n, k]
  for_column_strips(B, [&L](Ref<MatrixXd> part) { L.triangularView<Lower>().solveInPlace(part); });
}

void solve_lower_transpose_inplace(const ConstMatRefF& L, Ref<MatrixXd> B) {  // L [n, n], B [n, k]
  for_column_strips(B, [&L](Ref<MatrixXd> part) {
    L.triangularView<Lower>().transpose().solveInPlace(part);
  });
}

// Murray 2016 (arXiv 1602.07527), eq. 10 in symmetric form: with A = L L^T and
// dF = tr(Lbar^T dL), dL = L Phi(L^-1 dA L^-T) gives dF = tr(P^T L^-1 dA L^-T) with
// P = Phi(L^T Lbar), hence Abar = L^-T sym(P) L^-1, sym(P) = (P + P^T) / 2.
void cholesky_reverse(const ConstMatRefF& L, Ref<MatrixXd> LbarToAbar) {  // both [n, n]
  LbarToAbar.triangularView<Eigen::StrictlyUpper>().setZero();
  const MatrixXd M = L.triangularView<Lower>().transpose() * LbarToAbar;  // [n, n] L^T Lbar
  // S = sym(Phi(M)): off-diagonal M_ij / 2 (i > j) mirrored, diagonal M_ii / 2.
  LbarToAbar.triangularView<Lower>() = 0.5 * M;
  LbarToAbar.triangularView<Eigen::StrictlyUpper>() = LbarToAbar.transpose();
  solve_lower_transpose_inplace(L, LbarToAbar);  // Y = L^-T S           [n, n]
  LbarToAbar.transposeInPlace();                  // Y^T = S L^-1
  solve_lower_transpose_inplace(L, LbarToAbar);  // Abar = L^-T S L^-1  [n, n]
  // Symmetric in exact arithmetic; make it exactly so.
  LbarToAbar.triangularView<Eigen::StrictlyUpper>() = LbarToAbar.transpose();
}

}  // namespace varinf

// Cholesky with the jitter policy, triangular solves and the Cholesky reverse mode
// (docs/math.md section 3). All matrices are column-major; A, L are [n, n].
#include "varinf/linalg.hpp"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "varinf/errors.hpp"
#include "varinf/parallel.hpp"
#include "varinf/threads.hpp"

namespace varinf {

namespace {

using Eigen::Lower;
using Eigen::Ref;
using ConstMatRefF = Ref<const MatrixXd>;

// Below this order Eigen's own (single-threaded, blocked) LLT is used unchanged.
constexpr Index kSmallOrder = 300;
// Width of the diagonal blocks of the right-looking algorithm. Measured at n = 4000 on the
// shared 2-core machine: 256 was 2-10% faster than 192 at 1 and 2 threads, 128 slower; fewer
// blocks also mean fewer thread wake-ups, which cost most when the machine is busy.
constexpr Index kBlock = 256;
// Parallel pieces of panel rows and solve columns hold at least this many.
constexpr Index kStrip = 128;
// Parallel work is split into this many pieces per thread (dynamic scheduling keeps a
// thread whose core is shared with another process from holding everyone up).
constexpr int kPiecesPerThread = 2;

// LLT of a diagonal block in place, lower triangle only; false when it is not PD.
bool factor_block(Ref<MatrixXd> A11) {  // [b, b]
  return Eigen::internal::llt_inplace<double, Lower>::blocked(A11) == -1;
}

// Threads for `work` flops split along a dimension of `length` rows or columns: every
// piece keeps at least kStrip of them.
int threads_for_strips(double work, Index length) {
  return static_cast<int>(std::min<Index>(threads_for(work), std::max<Index>(1, length / kStrip)));
}

// Run f(start, count) over kPiecesPerThread * threads near-equal ranges of [0, total),
// dynamically scheduled; a single call f(0, total) on one thread.
template <class F>
void parallel_ranges(Index total, int threads, const F& f) {
  if (threads == 1) {
    f(Index{0}, total);
    return;
  }
  const int pieces = kPiecesPerThread * threads;
  parallel_for(pieces, threads, [&](Index t) {
    const Index begin = total * t / pieces, end = total * (t + 1) / pieces;
    if (end > begin) f(begin, end - begin);
  });
}

// Panel of the blocked algorithm: A21 <- A21 L11^-T, parallel over ranges of rows
// (each row of A21 is an independent triangular solve).
void solve_panel(const ConstMatRefF& L11, Ref<MatrixXd> A21) {  // L11 [b, b], A21 [m, b]
  const Index m = A21.rows(), b = L11.rows();
  const int threads = threads_for_strips(double(m) * double(b) * double(b), m);
  parallel_ranges(m, threads, [&](Index r0, Index rows) {
    auto part = A21.middleRows(r0, rows);  // [rows, b]
    L11.triangularView<Lower>().transpose().solveInPlace<Eigen::OnTheRight>(part);
  });
}

// Column boundaries c[0..p] splitting the lower triangle of an [m, m] matrix into p column
// strips of equal area: columns [0, c) hold c m - c^2 / 2 of the m^2 / 2 entries.
std::vector<Index> equal_area_columns(Index m, int p) {
  std::vector<Index> c(p + 1, m);
  for (int t = 0; t < p; ++t) {
    c[t] = static_cast<Index>(std::llround(double(m) * (1.0 - std::sqrt(1.0 - double(t) / p))));
  }
  return c;
}

// Trailing update A22 <- A22 - L21 L21^T on the lower triangle only (a symmetric rank-b
// update). One thread: a single Eigen SYRK (rankUpdate). More: kPiecesPerThread column strips
// of equal area, scheduled dynamically (robust when another process holds a core); each is a
// SYRK on its diagonal square and one GEMM below it, single-threaded inside our region.
void update_trailing(const ConstMatRefF& L21, Ref<MatrixXd> A22) {  // L21 [m, b], A22 [m, m]
  const Index m = A22.rows();
  const int threads = threads_for_strips(double(m) * double(m) * double(L21.cols()), m);
  if (threads == 1) {
    A22.selfadjointView<Lower>().rankUpdate(L21, -1.0);
    return;
  }
  const int pieces = kPiecesPerThread * threads;
  const std::vector<Index> c = equal_area_columns(m, pieces);
  parallel_for(pieces, threads, [&](Index t) {
    const Index c0 = c[t], w = c[t + 1] - c0, below = m - c0 - w;
    const auto Lc = L21.middleRows(c0, w);  // [w, b]
    A22.block(c0, c0, w, w).selfadjointView<Lower>().rankUpdate(Lc, -1.0);                        // [w, w]
    A22.block(c0 + w, c0, below, w).noalias() -= L21.middleRows(c0 + w, below) * Lc.transpose();  // [below, w]
  });
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

// Solve for the columns of B [n, k] in parallel ranges when the work is large.
template <class Solve>
void for_column_ranges(Ref<MatrixXd> B, const Solve& solve) {
  const Index n = B.rows(), k = B.cols();
  const int threads = threads_for_strips(double(n) * double(n) * double(k), k);
  parallel_ranges(k, threads, [&](Index c0, Index cols) { solve(B.middleCols(c0, cols)); });
}

// Y = T B for triangular T [n, n] (Eigen's view Mode of `tri`, e.g. W or W.transpose()) and
// B [n, k], parallel over ranges of columns (Eigen's triangular products are single-threaded).
template <int Mode, class Tri>
MatrixXd triangular_times(const Tri& tri, const ConstMatRefF& B) {
  MatrixXd Y(tri.rows(), B.cols());  // [n, k]
  const double work = 0.5 * double(B.rows()) * double(B.rows()) * double(B.cols());
  parallel_ranges(B.cols(), threads_for_strips(work, B.cols()), [&](Index c0, Index cols) {
    Y.middleCols(c0, cols).noalias() = tri.template triangularView<Mode>() * B.middleCols(c0, cols);
  });
  return Y;
}

MatrixXd symmetrised(MatrixXd A) {  // [n, n] lower triangle mirrored into the upper one
  A.triangularView<Eigen::StrictlyUpper>() = A.transpose();
  return A;
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
  for_column_ranges(B, [&L](Ref<MatrixXd> part) { L.triangularView<Lower>().solveInPlace(part); });
}

void solve_lower_transpose_inplace(const ConstMatRefF& L, Ref<MatrixXd> B) {  // L [n, n], B [n, k]
  for_column_ranges(B, [&L](Ref<MatrixXd> part) {
    L.triangularView<Lower>().transpose().solveInPlace(part);
  });
}

// W S W^T = (W (W S)^T)^T and W^T S W = (W^T (W^T S)^T)^T: two left triangular products each.
MatrixXd lower_congruence(const ConstMatRefF& W, const ConstMatRefF& S) {  // both [n, n]
  const MatrixXd WS = triangular_times<Lower>(W, S);  // [n, n]
  return symmetrised(triangular_times<Lower>(W, WS.transpose()).transpose());
}

MatrixXd upper_congruence(const ConstMatRefF& W, const ConstMatRefF& S) {  // both [n, n]
  const MatrixXd WtS = triangular_times<Eigen::Upper>(W.transpose(), S);  // [n, n]
  return symmetrised(triangular_times<Eigen::Upper>(W.transpose(), WtS.transpose()).transpose());
}

// Murray 2016 (arXiv 1602.07527), eq. 10 in symmetric form: with A = L L^T and
// dF = tr(Lbar^T dL), dL = L Phi(L^-1 dA L^-T) gives dF = tr(P^T L^-1 dA L^-T) with
// P = Phi(L^T Lbar), hence Abar = L^-T sym(P) L^-1, sym(P) = (P + P^T) / 2.
void cholesky_reverse(const ConstMatRefF& L, Ref<MatrixXd> LbarToAbar) {  // both [n, n]
  MatrixXd Linv(L.rows(), L.cols());  // [n, n]
  lower_inverse(L, Linv);
  cholesky_reverse(L, Linv, LbarToAbar);
}

void cholesky_reverse(const ConstMatRefF& L, const ConstMatRefF& Linv, Ref<MatrixXd> LbarToAbar) {
  LbarToAbar.triangularView<Eigen::StrictlyUpper>().setZero();
  MatrixXd S = triangular_times<Eigen::Upper>(L.transpose(), LbarToAbar);  // [n, n] L^T Lbar
  // sym(Phi(M)): off-diagonal M_ij / 2 (i > j) mirrored, diagonal M_ii / 2.
  S.triangularView<Eigen::StrictlyUpper>() = S.transpose();
  S *= 0.5;
  LbarToAbar = upper_congruence(Linv, S);  // L^-T S L^-1
}

}  // namespace varinf

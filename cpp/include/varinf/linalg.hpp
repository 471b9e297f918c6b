// Cholesky factorisation with the jitter policy, triangular solves and the Cholesky reverse
// mode (docs/math.md section 3). Factorisations work in place on column-major buffers.
#pragma once

#include <string>

#include "varinf/types.hpp"

namespace varinf {

// Factorise A = L L^T in place: on success the lower triangle holds L, the strict upper
// triangle is untouched. Blocked right-looking algorithm whose trailing update is a parallel
// GEMM, so it gains from threads at large n. Returns false when A is not positive definite
// (then the lower triangle is garbage).
bool cholesky_inplace(Eigen::Ref<MatrixXd> A);

// The jitter policy. Factorise A + jitter I in place (jitter may be 0). When that fails, retry
// with j = max(jitter, 1e-6 * mean(diag A)) times 10, 100, ..., 10^5 (GPy's jitchol; the
// original lower triangle is restored from the untouched upper one between tries). Throws
// LinAlgError naming `what` with advice when every try fails. Returns the jitter that worked
// (which the caller may report when it exceeds the jitter asked for).
// A must be symmetric with both triangles filled [n, n].
double cholesky_jitter(Eigen::Ref<MatrixXd> A, double jitter, const std::string& what);

// log det(L L^T) = 2 sum log diag L.
double logdet_from_cholesky(const Eigen::Ref<const MatrixXd>& L);

// B <- L^-1 B and B <- L^-T B for lower-triangular L [n, n] and B [n, k], parallel over
// blocks of columns of B when k is large.
void solve_lower_inplace(const Eigen::Ref<const MatrixXd>& L, Eigen::Ref<MatrixXd> B);
void solve_lower_transpose_inplace(const Eigen::Ref<const MatrixXd>& L, Eigen::Ref<MatrixXd> B);

// W = L^-1 [n, n] for lower-triangular L (LAPACK's trtri, n^3 / 3 flops): independent column
// panels solved on the threads (column j of W is zero above row j). The strict upper triangle
// of W is set to zero.
void lower_inverse(const Eigen::Ref<const MatrixXd>& L, Eigen::Ref<MatrixXd> W);

// W S W^T and W^T S W [n, n] for lower-triangular W and symmetric S [n, n] (with W = L^-1:
// whitening L^-1 S L^-T and its reverse L^-T S L^-1), as two triangular products; the result
// is made exactly symmetric.
MatrixXd lower_congruence(const Eigen::Ref<const MatrixXd>& W, const Eigen::Ref<const MatrixXd>& S);
MatrixXd upper_congruence(const Eigen::Ref<const MatrixXd>& W, const Eigen::Ref<const MatrixXd>& S);

// out = A^-1 [n, n] (both triangles) from A's Cholesky factor L, like LAPACK's potri:
// W = L^-1 (lower_inverse), then A^-1 = W^T W panel by panel with triangular products,
// skipping the zero blocks: about 2 n^3 / 3 flops in all, like
// LAPACK (2.3 n^3 for dense solves), with the panels spread over threads.
void cholesky_inverse(const Eigen::Ref<const MatrixXd>& L, Eigen::Ref<MatrixXd> out);

// Reverse mode through A = L L^T (I. Murray 2016, arXiv 1602.07527, eq. 10):
// P = Phi(L^T Lbar) (lower triangle, diagonal halved), Abar = L^-T sym(P) L^-1, where
// sym(P) = (P + P^T) / 2. On entry LbarToAbar holds dF/dL (only its lower triangle is read);
// on return it holds the symmetric dF/dA (both triangles). O(n^3).
void cholesky_reverse(const Eigen::Ref<const MatrixXd>& L, Eigen::Ref<MatrixXd> LbarToAbar);
// The same when the caller already holds Linv = L^-1 [n, n] (lower_inverse): the two solves
// become triangular products.
void cholesky_reverse(const Eigen::Ref<const MatrixXd>& L, const Eigen::Ref<const MatrixXd>& Linv,
                      Eigen::Ref<MatrixXd> LbarToAbar);

}  // namespace varinf

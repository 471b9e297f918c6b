// Private helpers of the sparse models (SGPR, FITC, SVGP): the inducing covariance's Cholesky
// factor and the collapsed bounds' inner factor. Their sums over blocks of data rows use
// reduce_row_blocks (varinf/parallel.hpp).
#pragma once

#include "varinf/kernels.hpp"
#include "varinf/linalg.hpp"
#include "varinf/types.hpp"

namespace varinf::detail {

// L = chol(K(Z, Z) + jitter I) [m, m], strict upper triangle zero; `used` gets the jitter the
// factorisation needed (the jitter policy of docs/math.md section 3.2).
inline MatrixXd inducing_cholesky(const Kernel& kernel, const double* theta, MatRef Z, double jitter,
                                  double& used) {
  const Index m = Z.rows();
  MatrixXd L(m, m);
  Eigen::Map<RowMatrixXd> as_rows(L.data(), m, m);  // symmetric: same matrix either order
  kernel.K_sym(theta, Z, as_rows);
  used = cholesky_jitter(L, jitter, "K(Z, Z) (inducing inputs)");
  L.triangularView<Eigen::StrictlyUpper>().setZero();
  return L;
}

// Lower Cholesky factor LB of Bm = I + W / s [m, m] (docs/math.md section 5.2), for the
// collapsed bounds of SGPR and of coregionalised outputs.
inline MatrixXd inner_cholesky(const MatrixXd& W, double s, const char* what) {
  MatrixXd B = W / s;  // [m, m]
  B.diagonal().array() += 1.0;
  cholesky_jitter(B, 0.0, what);
  B.triangularView<Eigen::StrictlyUpper>().setZero();
  return B;
}

}  // namespace varinf::detail

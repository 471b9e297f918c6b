// L^-1 (LAPACK's dtrtri) and A^-1 from A = L L^T (dpotri), in column panels on the threads
// (docs/math.md sections 3.4 and 9.1).
#include <algorithm>

#include "varinf/linalg.hpp"
#include "varinf/parallel.hpp"
#include "varinf/threads.hpp"

namespace varinf {

namespace {
constexpr Index kPanel = 64;
}

void lower_inverse(const Eigen::Ref<const MatrixXd>& L, Eigen::Ref<MatrixXd> W) {
  const Index n = L.rows();
  const Index panels = (n + kPanel - 1) / kPanel;
  W.setZero();
  const int nt = threads_for(double(n) * n * n / 3.0);
  // Panel [j0, j1) of W solves L[j0:, j0:] W[j0:, j0:j1] = I[j0:, j0:j1]; rows above j0 are 0.
  parallel_for(panels, nt, [&](Index p) {
    const Index j0 = p * kPanel, w = std::min(kPanel, n - j0), m = n - j0;
    auto panel = W.block(j0, j0, m, w);  // [m, w]
    panel.topRows(w).setIdentity();
    L.block(j0, j0, m, m).triangularView<Eigen::Lower>().solveInPlace(panel);
  });
}

void cholesky_inverse(const Eigen::Ref<const MatrixXd>& L, Eigen::Ref<MatrixXd> out) {
  const Index n = L.rows();
  const Index panels = (n + kPanel - 1) / kPanel;
  MatrixXd W(n, n);  // [n, n] L^-1, lower triangular
  lower_inverse(L, W);
  const int nt = threads_for(double(n) * n * n);
  // A^-1 = W^T W. Its panel [j0:, j0:j1] only needs rows k >= j0 of W (W[k, j] = 0 for k < j),
  // and W[j0:, j0:]^T is upper triangular: a triangular-times-dense product (TRMM, m^2 w
  // flops; LAPACK's dlauum does the same work).
  parallel_for(panels, nt, [&](Index p) {
    const Index j0 = p * kPanel, w = std::min(kPanel, n - j0), m = n - j0;
    out.block(j0, j0, m, w).noalias() =  // [m, w]
        W.block(j0, j0, m, m).transpose().triangularView<Eigen::Upper>() * W.block(j0, j0, m, w);
  });
  out.triangularView<Eigen::StrictlyUpper>() = out.transpose();
}

}  // namespace varinf

// Private helpers of the sparse models (SGPR, SVGP): the inducing covariance's Cholesky factor
// and sums over blocks of data rows spread over threads.
//
// over_row_blocks:
// Each thread owns an accumulator (its own copy of the sufficient statistics or gradients) and
// a contiguous run of blocks (static schedule); the accumulators are then combined in thread
// order, so a result is the same from run to run for a given thread count. Inside the region
// every thread limits its own OpenMP setting to 1, so the kernel calls and Eigen products in a
// block run on that thread alone (no nested pools, no oversubscription). With one thread the
// region is inactive and the kernel and Eigen keep their own parallelism.
#pragma once

#include <omp.h>

#include <algorithm>
#include <vector>

#include "varinf/kernels.hpp"
#include "varinf/linalg.hpp"
#include "varinf/threads.hpp"
#include "varinf/types.hpp"

namespace varinf::detail {

// L = chol(K(Z, Z) + jitter I) [m, m], strict upper triangle zero; `used` gets the jitter the
// factorisation needed (the jitter policy of MATH.md section 2).
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

// Rows per block: about `target` doubles of a [width, rows] block, within [32, 4096].
inline Index rows_per_block(Index width, Index target = Index(1) << 18) {
  return std::clamp<Index>(target / std::max<Index>(width, 1), 32, 4096);
}

// acc = make(); body(start, rows, acc) for each block of [0, n); returns the accumulators
// of the threads that ran, in thread order (the caller combines them).
template <class Acc, class Make, class Body>
std::vector<Acc> over_row_blocks(Index n, Index block, double work, Make make, Body body) {
  const Index num_blocks = (n + block - 1) / block;
  const int nt = static_cast<int>(std::max<Index>(1, std::min<Index>(threads_for(work), num_blocks)));
  std::vector<Acc> accs(nt);
#pragma omp parallel num_threads(nt)
  {
    if (nt > 1) omp_set_num_threads(1);  // this thread's setting only, for the region's life
    Acc acc = make();
#pragma omp for schedule(static)
    for (Index k = 0; k < num_blocks; ++k) {
      const Index start = k * block;
      body(start, std::min(block, n - start), acc);
    }
    accs[omp_get_thread_num()] = std::move(acc);
  }
  return accs;
}

}  // namespace varinf::detail

// Private helpers of the sparse models (SGPR, SVGP): the inducing covariance's Cholesky factor
// and sums over blocks of data rows spread over threads.
//
// over_row_blocks:
// Each thread owns an accumulator (its own copy of the sufficient statistics or gradients) and
// a contiguous run of blocks (static schedule); the accumulators are then combined in thread
// order, so a result is the same from run to run for a given thread count. Inside the region
// every thread limits its own OpenMP setting to 1, so the kernel calls and Eigen products in a
// block run on that thread alone (no nested pools, no oversubscription).
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
// factorisation needed (the jitter policy of docs/math.md section 3).
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
// of the threads that ran, in thread order (the caller combines them). Blocks have at most
// max_block rows and are cut so that every thread `work` deserves gets one or more.
template <class Acc, class Make, class Body>
std::vector<Acc> over_row_blocks(Index n, Index max_block, double work, Make make, Body body) {
  const int want = threads_for(work);
  const Index block = std::clamp<Index>((n + want - 1) / want, 32, std::max<Index>(max_block, 32));
  const Index num_blocks = (n + block - 1) / block;
  const int nt = static_cast<int>(std::min<Index>(want, num_blocks));
  std::vector<Acc> accs(nt);
  int team = nt;  // the runtime may grant fewer threads than asked for
  if (nt == 1) {
    // Too little work for threads: keep Eigen's products (which split at ~50k flops) and the
    // kernel on this thread too; a pool's wake-up costs more here, far more on a busy machine.
    struct OneThread {
      int saved = omp_get_max_threads();
      OneThread() { omp_set_num_threads(1); }
      ~OneThread() { omp_set_num_threads(saved); }
    } one;
    accs[0] = make();
    for (Index start = 0; start < n; start += block) body(start, std::min(block, n - start), accs[0]);
    return accs;
  }
#pragma omp parallel num_threads(nt)
  {
    omp_set_num_threads(1);  // this thread's setting only, for the region's life
#pragma omp single
    team = omp_get_num_threads();
    Acc acc = make();
#pragma omp for schedule(static)
    for (Index k = 0; k < num_blocks; ++k) {
      const Index start = k * block;
      body(start, std::min(block, n - start), acc);
    }
    accs[omp_get_thread_num()] = std::move(acc);
  }
  accs.resize(team);
  return accs;
}

}  // namespace varinf::detail

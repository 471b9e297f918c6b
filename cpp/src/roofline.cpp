#include "varinf/roofline.hpp"

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "varinf/errors.hpp"
#include "varinf/parallel.hpp"

namespace varinf {

namespace {

void require_in(long long value, long long lo, long long hi, const char* name) {
  if (value < lo || value > hi)
    throw InvalidArgument(std::string(name) + " must be in [" + std::to_string(lo) + ", " +
                          std::to_string(hi) + "], got " + std::to_string(value));
}

// Median of the (unsorted) samples; the mean of the two middle ones for an even count.
double median(std::vector<double> s) {
  std::sort(s.begin(), s.end());
  return 0.5 * (s[(s.size() - 1) / 2] + s[s.size() / 2]);
}

template <typename T>
double gemm_gflops_t(Index n, int threads, int reps) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;  // [n, n], column-major
  // Entries in [-0.5, 0.5): the values do not change GEMM's speed as long as none is denormal.
  const auto fill = [n](Index seed) {
    return Mat::NullaryExpr(n, n, [seed](Index i, Index j) {
      return static_cast<T>(static_cast<double>((7 * i + 13 * j + seed) % 17) / 17.0 - 0.5);
    });
  };
  const Mat A = fill(1), B = fill(5);
  Mat C(n, n);
  OmpLimit limit(threads);  // Eigen's GEMM follows the calling thread's OpenMP limit
  C.noalias() = A * B;      // warm-up: C's pages, Eigen's packing buffers, the thread pool
  std::vector<double> seconds(static_cast<std::size_t>(reps));
  using Clock = std::chrono::steady_clock;
  for (double& s : seconds) {
    const auto start = Clock::now();
    C.noalias() = A * B;
    s = std::chrono::duration<double>(Clock::now() - start).count();
  }
  volatile T sink = C(n - 1, n - 1);  // C is read: the products cannot be optimised away
  (void)sink;
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  return flops / std::max(median(seconds), 1e-12) / 1e9;
}

}  // namespace

double gemm_gflops(Index n, Precision precision, int threads, int reps) {
  require_in(n, 1, 8192, "n");
  require_in(threads, 1, 1024, "threads");
  require_in(reps, 1, 1000, "reps");
  return precision == Precision::f32 ? gemm_gflops_t<float>(n, threads, reps)
                                     : gemm_gflops_t<double>(n, threads, reps);
}

}  // namespace varinf

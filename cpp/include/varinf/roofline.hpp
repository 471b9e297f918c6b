// The GEMM rate of this build of the core: the yardstick the benchmarks report each hot path
// against (achieved GFLOP/s as a percentage of what Eigen's matrix product reaches here).
#pragma once

#include "varinf/types.hpp"

namespace varinf {

enum class Precision { f64, f32 };

// GFLOP/s of C = A B with A, B, C [n, n] column-major (Eigen's GEMM, 2 n^3 flops a product) on
// `threads` OpenMP threads whatever varinf's own thread count: one untimed warm-up product,
// then the median wall time of `reps` products. Throws InvalidArgument unless 1 <= n <= 8192,
// 1 <= threads <= 1024 and 1 <= reps <= 1000.
double gemm_gflops(Index n, Precision precision, int threads, int reps);

}  // namespace varinf

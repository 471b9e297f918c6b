// Python binding of the GEMM-rate measurement the benchmarks report hot paths against.
#include "common.hpp"
#include "varinf/roofline.hpp"

namespace varinf::bindings {

namespace {

Precision precision_of(const std::string& dtype) {
  if (dtype == "float64") return Precision::f64;
  if (dtype == "float32") return Precision::f32;
  throw InvalidArgument("dtype must be 'float64' or 'float32', got '" + dtype + "'");
}

double gemm_gflops_py(Index n, const std::string& dtype, int threads, int reps) {
  const Precision precision = precision_of(dtype);
  NoGil nogil;  // gemm_gflops sets its own thread count inside
  return gemm_gflops(n, precision, threads, reps);
}

}  // namespace

void bind_roofline(py::module_ testing) {
  testing.def("gemm_gflops", &gemm_gflops_py, py::arg("n"), py::arg("dtype"), py::arg("threads"),
              py::arg("reps") = 5,
              "GFLOP/s (2 n^3 / median seconds / 1e9) of Eigen's [n, n] x [n, n] product in this "
              "build, dtype 'float64' or 'float32', on `threads` OpenMP threads whatever "
              "varinf's thread count: one warm-up, then the median of `reps` timed products. "
              "Raises ValueError unless 1 <= n <= 8192, 1 <= threads <= 1024, 1 <= reps <= 1000.");
}

}  // namespace varinf::bindings

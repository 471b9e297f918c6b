// Include-first header for every bind_*.cpp: pybind11, numpy and Eigen glue, and the helpers
// that keep the boundary copy-free. Only the bindings know about Python.
#pragma once

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "varinf/parallel.hpp"
#include "varinf/threads.hpp"
#include "varinf/types.hpp"

namespace varinf::bindings {

namespace py = pybind11;

// Arrays that pybind11 maps to Eigen::Ref without copying: C-contiguous float64.
using CArray = py::array_t<double, py::array::c_style>;
using FArray = py::array_t<double, py::array::f_style>;

// A new C-ordered float64 numpy array [rows, cols] to be filled from C++ (numpy's allocator
// is markedly faster than Eigen's for large results on this machine).
inline CArray new_matrix(Index rows, Index cols) { return CArray({rows, cols}); }
inline CArray new_vector(Index n) { return CArray(n); }

// Views of numpy buffers as Eigen matrices (no copy). The caller guarantees the layout.
inline Eigen::Map<RowMatrixXd> as_matrix(CArray& a) {
  return {a.mutable_data(), a.shape(0), a.ndim() > 1 ? a.shape(1) : 1};
}
inline Eigen::Map<VectorXd> as_vector(CArray& a) { return {a.mutable_data(), a.shape(0)}; }
inline Eigen::Map<MatrixXd> as_fmatrix(FArray& a) {
  return {a.mutable_data(), a.shape(0), a.shape(1)};
}

// While alive, Eigen's GEMM (which follows the calling thread's OpenMP limit) uses the same
// thread count as varinf's own parallel regions; the previous limit is restored afterwards.
struct ThreadScope : OmpLimit {
  ThreadScope() : OmpLimit(num_threads()) {}
};

// The computation releases the GIL and syncs the thread count. Safe because the C++ core
// touches only the Eigen views of numpy buffers that the caller keeps alive for the call.
struct NoGil {
  ThreadScope threads;
  py::gil_scoped_release release;
};

// (mean [n*], variance [n*] or covariance [n*, n*]) as new numpy arrays, filled without the
// GIL by predict_var(mean, var) or predict_cov(mean, cov). Every model's predict uses this.
template <class PredictVar, class PredictCov>
py::tuple predict_moments(Index ns, bool full_cov, PredictVar predict_var, PredictCov predict_cov) {
  CArray mean = new_vector(ns);
  CArray var = full_cov ? new_matrix(ns, ns) : new_vector(ns);
  auto mean_v = as_vector(mean);
  {
    NoGil nogil;
    if (full_cov) {
      auto cov_m = as_matrix(var);
      predict_cov(mean_v, cov_m);
    } else {
      auto var_v = as_vector(var);
      predict_var(mean_v, var_v);
    }
  }
  return py::make_tuple(mean, var);
}

void bind_threads(py::module_& m);
void bind_errors(py::module_& m);
void bind_kernels(py::module_& m);
void bind_gp(py::module_& m);
void bind_linalg(py::module_& m);
void bind_sparse(py::module_& m);
void bind_vae(py::module_& m);

}  // namespace varinf::bindings

// Include-first header for every bind_*.cpp: pybind11, numpy and Eigen glue, and the one copy
// of the helpers that keep the boundary copy-free and checked. Only the bindings know about
// Python (pybind11 is included nowhere else).
#pragma once

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "varinf/errors.hpp"
#include "varinf/parallel.hpp"
#include "varinf/threads.hpp"
#include "varinf/types.hpp"

namespace varinf::bindings {

namespace py = pybind11;

// C-contiguous numpy arrays, which map to Eigen row-major views without a copy.
template <typename T>
using Array = py::array_t<T, py::array::c_style>;
using CArray = Array<double>;

template <typename T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using ColVec = Eigen::Matrix<T, Eigen::Dynamic, 1>;

// ---- Argument checks -------------------------------------------------------------------
// Python (varinf.models, varinf.kernels, ...) validates every argument first; the bindings
// re-check the sizes they rely on so that a misuse of this private module raises instead of
// reading out of bounds. Every check raises varinf::InvalidArgument, the C++ core's own
// exception, which bind_errors.cpp maps to ValueError: one mapping for the whole module.
inline void require(bool ok, const std::string& message) {
  if (!ok) throw InvalidArgument(message);
}

template <typename T>
void require_shape(const Array<T>& a, Index rows, Index cols, const char* name) {
  require(a.ndim() == 2 && a.shape(0) == rows && a.shape(1) == cols,
          std::string(name) + " must have shape (" + std::to_string(rows) + ", " + std::to_string(cols) + ")");
}

// Xnew [n*, d] for a model whose training inputs are X [n, d].
inline void require_new_inputs(const Array<double>& X, const Array<double>& Xnew) {
  require(Xnew.ndim() == 2 && Xnew.shape(1) == X.shape(1), "Xnew must have as many columns as X");
}

// ---- Views (no copy; the caller has checked the shape) ---------------------------------
// Read-only: a 2-D array as [rows, cols] (a 1-D array as one column), a 1-D array as a vector.
template <typename T>
Eigen::Map<const RowMat<T>> view(const Array<T>& a) {
  return {a.data(), a.shape(0), a.ndim() > 1 ? a.shape(1) : 1};
}
template <typename T>
Eigen::Map<const ColVec<T>> vview(const Array<T>& a) {
  return {a.data(), a.shape(0)};
}
// Writable, for outputs allocated here.
template <typename T>
Eigen::Map<RowMat<T>> as_matrix(Array<T>& a) {
  return {a.mutable_data(), a.shape(0), a.ndim() > 1 ? a.shape(1) : 1};
}
template <typename T>
Eigen::Map<ColVec<T>> as_vector(Array<T>& a) {
  return {a.mutable_data(), a.shape(0)};
}

// ---- New arrays ------------------------------------------------------------------------
// A new C-ordered float64 numpy array to be filled from C++ (numpy's allocator is markedly
// faster than Eigen's for large results on this machine).
inline CArray new_matrix(Index rows, Index cols) { return CArray({rows, cols}); }
inline CArray new_vector(Index n) { return CArray(n); }

// Copies of C++-owned results as new numpy arrays.
inline CArray copy_out(const VectorXd& v) { return CArray(v.size(), v.data()); }
inline CArray copy_out(const std::vector<double>& v) { return CArray(py::ssize_t(v.size()), v.data()); }
inline CArray copy_out(const RowMatrixXd& M) {
  CArray out = new_matrix(M.rows(), M.cols());
  as_matrix(out) = M;
  return out;
}

// ---- Threads and the GIL ---------------------------------------------------------------
// While alive, Eigen's GEMM (which follows the calling thread's OpenMP limit) uses the same
// thread count as varinf's own parallel regions; the previous limit is restored afterwards.
struct ThreadScope : OmpLimit {
  ThreadScope() : OmpLimit(num_threads()) {}
};

// Every computation runs inside a NoGil scope, entered only after the arguments are checked
// and the output arrays allocated (both need the GIL). Releasing the GIL is safe because the
// work inside touches no Python object, only:
//  - Eigen views of numpy arguments: pybind11's argument casters hold a reference to each
//    array until the call returns, so another thread cannot free them meanwhile;
//  - output arrays allocated by this call, which no other thread has seen yet;
//  - Kernel and Likelihood objects, which are immutable after construction;
//  - the state of the object the method is called on (trainers, Adam, a Vae's parameters).
//    What such an object points into (the kernel and likelihood of SVGPArgs, the Vae and the
//    data of a VaeTrainer) is kept alive by py::keep_alive. As with numpy arrays, two Python
//    threads calling into the same stateful object at once race; varinf's Python layer never
//    does, and one object per thread is safe.
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

// One function per concern; module.cpp passes each the submodule it fills (and `testing`,
// the submodule of entry points only tests and benchmarks use).
void bind_errors();
void bind_threads(py::module_ m);
void bind_kernels(py::module_ m);
void bind_linalg(py::module_ m, py::module_ testing);
void bind_gp(py::module_ m);
void bind_sparse(py::module_ m, py::module_ testing);
void bind_latent_likelihoods(py::module_ m);  // into sparse, by bind_sparse
void bind_svgp(py::module_ m, py::module_ testing);  // into sparse, by bind_sparse
void bind_sgpr_lmc(py::module_ m);  // into sparse, by bind_sparse
void bind_vae(py::module_ m, py::module_ testing);
void bind_roofline(py::module_ testing);  // the GEMM rate benchmarks compare against

}  // namespace varinf::bindings

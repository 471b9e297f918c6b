// Python bindings of the Cholesky factorisation, its reverse mode and triangular solves.
#include <algorithm>
#include <tuple>

#include "common.hpp"
#include "varinf/linalg.hpp"

namespace varinf::bindings {

namespace {

// Any float64 2-D numpy array, viewed without a copy whatever its strides.
using AnyMatrix = Eigen::Ref<const MatrixXd, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;

// F-ordered float64 arrays: the factorisations work in place on column-major buffers.
using FArray = py::array_t<double, py::array::f_style>;

// A new F-ordered float64 numpy array [rows, cols] to be filled from C++, and its view.
FArray new_fmatrix(Index rows, Index cols) { return FArray({rows, cols}); }
Eigen::Map<MatrixXd> as_fmatrix(FArray& a) { return {a.mutable_data(), a.shape(0), a.shape(1)}; }

// dst = src tile by tile, so that reading a C-ordered src (a transposed layout) stays in
// cache: a plain column-by-column copy of a C-ordered [4000, 4000] array took ~60 ms more.
// An F-contiguous src is one contiguous block: a plain (vectorised) copy.
void copy_tiled(const AnyMatrix& src, Eigen::Ref<MatrixXd> dst) {  // both [r, c]
  if (src.innerStride() == 1 && src.outerStride() == src.rows()) {
    dst = Eigen::Map<const MatrixXd>(src.data(), src.rows(), src.cols());
    return;
  }
  constexpr Index kTile = 64;
  for (Index j = 0; j < src.cols(); j += kTile) {
    const Index cols = std::min(kTile, src.cols() - j);
    for (Index i = 0; i < src.rows(); i += kTile) {
      const Index rows = std::min(kTile, src.rows() - i);
      dst.block(i, j, rows, cols) = src.block(i, j, rows, cols);
    }
  }
}

FArray copy_to_fmatrix(const AnyMatrix& A) {  // [r, c]
  FArray out = new_fmatrix(A.rows(), A.cols());
  auto view = as_fmatrix(out);
  {
    NoGil nogil;
    copy_tiled(A, view);
  }
  return out;
}

// L = chol(A + jitter I) as a new F-ordered array with its strict upper triangle zeroed.
std::tuple<FArray, double> cholesky(const AnyMatrix& A, double jitter, const std::string& what) {
  FArray L = new_fmatrix(A.rows(), A.cols());  // [n, n]
  auto view = as_fmatrix(L);
  double used = 0.0;
  {
    NoGil nogil;
    copy_tiled(A, view);  // the one copy; factorised in place below
    used = cholesky_jitter(view, jitter, what);
    view.triangularView<Eigen::StrictlyUpper>().setZero();
  }
  return {L, used};
}

bool cholesky_inplace_f(FArray A) {  // [n, n], F-ordered, overwritten
  auto view = as_fmatrix(A);
  NoGil nogil;
  return cholesky_inplace(view);
}

FArray cholesky_reverse_py(const AnyMatrix& L, const AnyMatrix& Lbar) {  // both [n, n]
  const Eigen::Ref<const MatrixXd> Lf = L;  // copies only when L is not F-contiguous
  FArray Abar = copy_to_fmatrix(Lbar);     // [n, n]
  auto view = as_fmatrix(Abar);
  NoGil nogil;
  cholesky_reverse(Lf, view);
  return Abar;
}

FArray solve_lower_py(const AnyMatrix& L, const AnyMatrix& B, bool transpose) {  // [n,n], [n,k]
  const Eigen::Ref<const MatrixXd> Lf = L;
  FArray X = copy_to_fmatrix(B);  // [n, k]
  auto view = as_fmatrix(X);
  NoGil nogil;
  if (transpose) {
    solve_lower_transpose_inplace(Lf, view);
  } else {
    solve_lower_inplace(Lf, view);
  }
  return X;
}

}  // namespace

void bind_linalg(py::module_ m, py::module_ testing) {
  m.def("cholesky", &cholesky, py::arg("A"), py::arg("jitter"), py::arg("what"),
        "(L, jitter_used): chol(A + jitter I) with GPy's jitter retries; L is a new F-ordered "
        "array, lower triangular. Raises varinf.LinAlgError naming `what` on failure.");
  testing.def("cholesky_inplace_f", &cholesky_inplace_f, py::arg("A").noconvert(),
        "Factorise an F-ordered float64 array in place (lower triangle); False if not PD.");
  m.def("cholesky_reverse", &cholesky_reverse_py, py::arg("L"), py::arg("Lbar"),
        "dF/dA (symmetric) from L = chol(A) and dF/dL (lower triangle read); Murray 2016.");
  m.def("solve_lower", &solve_lower_py, py::arg("L"), py::arg("B"), py::arg("transpose") = false,
        "L^-1 B (or L^-T B when transpose) for lower-triangular L, as a new array.");
}

}  // namespace varinf::bindings

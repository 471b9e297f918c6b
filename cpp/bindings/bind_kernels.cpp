// Kernel objects and their matrix / gradient evaluations. Each call checks the sizes it is
// given (theta against num_params, input widths against each other).
#include <string>

#include "common.hpp"
#include "varinf/kernels.hpp"

namespace varinf::bindings {

namespace {

void check_theta(const Kernel& k, const CArray& theta) {
  require(theta.ndim() == 1 && theta.shape(0) == k.num_params(),
        "theta must have " + std::to_string(k.num_params()) + " entries");
}

void check_same_width(const CArray& X1, const CArray& X2) {
  require(X1.ndim() == 2 && X2.ndim() == 2 && X1.shape(1) == X2.shape(1),
        "X1 and X2 must be 2-D with the same number of columns");
}

// (dL/dtheta [p], dL/dX [n, d] or None): contract(dtheta, dX) accumulates into zeroed buffers
// without the GIL.
template <class Contract>
py::tuple gradients(const Kernel& k, const CArray& X, bool want_dX, Contract contract) {
  CArray dtheta = new_vector(k.num_params());
  CArray dX = want_dX ? new_matrix(X.shape(0), X.shape(1)) : new_matrix(0, 0);
  auto dt = as_vector(dtheta);
  auto dx = as_matrix(dX);
  {
    NoGil nogil;
    dt.setZero();
    dx.setZero();
    contract(dt.data(), dx);
  }
  return py::make_tuple(dtheta, want_dX ? py::object(dX) : py::none());
}

}  // namespace

void bind_kernels(py::module_ m) {
  py::class_<Kernel, KernelPtr> cls(m, "Kernel", "An immutable kernel structure; values come in theta.");
  cls.def_property_readonly("num_params", &Kernel::num_params)
      .def("K", [](const Kernel& k, const CArray& theta, const CArray& X1, const CArray& X2) {
            check_theta(k, theta);
            check_same_width(X1, X2);
            CArray out = new_matrix(X1.shape(0), X2.shape(0));
            auto o = as_matrix(out);
            { NoGil nogil; k.K(theta.data(), view(X1), view(X2), o); }
            return out;
          }, py::arg("theta"), py::arg("X1"), py::arg("X2"), "K(X1, X2) [n1, n2]")
      .def("K_sym", [](const Kernel& k, const CArray& theta, const CArray& X) {
            check_theta(k, theta);
            check_same_width(X, X);
            CArray out = new_matrix(X.shape(0), X.shape(0));
            auto o = as_matrix(out);
            { NoGil nogil; k.K_sym(theta.data(), view(X), o); }
            return out;
          }, py::arg("theta"), py::arg("X"), "K(X, X) [n, n], White noise included")
      .def("K_diag", [](const Kernel& k, const CArray& theta, const CArray& X) {
            check_theta(k, theta);
            check_same_width(X, X);
            CArray out = new_vector(X.shape(0));
            auto o = as_vector(out);
            { NoGil nogil; k.K_diag(theta.data(), view(X), o); }
            return out;
          }, py::arg("theta"), py::arg("X"), "diag K(X, X) [n]")
      .def("grad", [](const Kernel& k, const CArray& theta, const CArray& X1, const CArray& X2,
                      const CArray& Kbar, bool want_dX) {
            check_theta(k, theta);
            check_same_width(X1, X2);
            require(Kbar.ndim() == 2 && Kbar.shape(0) == X1.shape(0) && Kbar.shape(1) == X2.shape(0),
                  "Kbar must have shape [n1, n2]");
            return gradients(k, X1, want_dX, [&](double* dt, MatOut dx) {
              k.grad(theta.data(), view(X1), view(X2), view(Kbar), dt, dx);
            });
          }, py::arg("theta"), py::arg("X1"), py::arg("X2"), py::arg("Kbar"), py::arg("want_dX") = false,
          "(dL/dtheta [p], dL/dX1 [n1, d] or None) given Kbar = dL/dK(X1, X2)")
      .def("grad_sym", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& Kbar,
                          bool want_dX) {
            check_theta(k, theta);
            check_same_width(X, X);
            require(Kbar.ndim() == 2 && Kbar.shape(0) == X.shape(0) && Kbar.shape(1) == X.shape(0),
                  "Kbar must have shape [n, n]");
            return gradients(k, X, want_dX, [&](double* dt, MatOut dx) {
              k.grad_sym(theta.data(), view(X), view(Kbar), dt, dx);
            });
          }, py::arg("theta"), py::arg("X"), py::arg("Kbar"), py::arg("want_dX") = false,
          "(dL/dtheta, dL/dX or None) given a symmetric Kbar = dL/dK(X, X)")
      .def("grad_diag", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& kbar,
                           bool want_dX) {
            check_theta(k, theta);
            check_same_width(X, X);
            require(kbar.ndim() == 1 && kbar.shape(0) == X.shape(0), "kbar must have shape [n]");
            return gradients(k, X, want_dX, [&](double* dt, MatOut dx) {
              k.grad_diag(theta.data(), view(X), vview(kbar), dt, dx);
            });
          }, py::arg("theta"), py::arg("X"), py::arg("kbar"), py::arg("want_dX") = false,
          "(dL/dtheta, dL/dX or None) given kbar = dL/d diag K(X)");

  m.def("squared_exponential", &make_squared_exponential, py::arg("num_lengthscales"));
  m.def("matern12", &make_matern12, py::arg("num_lengthscales"));
  m.def("matern32", &make_matern32, py::arg("num_lengthscales"));
  m.def("matern52", &make_matern52, py::arg("num_lengthscales"));
  m.def("rational_quadratic", &make_rational_quadratic, py::arg("num_lengthscales"));
  m.def("periodic", &make_periodic, py::arg("num_lengthscales"));
  m.def("linear", &make_linear, py::arg("num_variances"));
  m.def("constant", &make_constant);
  m.def("white", &make_white);
  m.def("sum", &make_sum, py::arg("children"));
  m.def("product", &make_product, py::arg("children"));
  m.def("active_dims", &make_active_dims, py::arg("child"), py::arg("dims"));
}

}  // namespace varinf::bindings

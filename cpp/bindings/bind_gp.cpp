// Exact GP regression. The GPRFactor object keeps the Cholesky factor between predictions.
#include "common.hpp"
#include "varinf/gpr.hpp"

namespace varinf::bindings {

namespace {

GPRProblem problem(const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                   double noise, double mean) {
  require(theta.ndim() == 1 && theta.shape(0) == k.num_params() && X.ndim() == 2 && y.ndim() == 1 &&
              y.shape(0) == X.shape(0),
          "inconsistent GPR arguments (theta, X [n, d], y [n])");
  return {k, theta.data(), view(X), vview(y), noise, mean};
}

}  // namespace

void bind_gp(py::module_ m) {
  py::class_<GPRFactor>(m, "GPRFactor", "Cholesky factor of K(X, X) + noise I and alpha.")
      .def_readonly("lml", &GPRFactor::lml)
      .def_readonly("jitter", &GPRFactor::jitter);

  m.def("gpr_factor", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                         double noise, double mean) {
    const GPRProblem p = problem(k, theta, X, y, noise, mean);
    NoGil nogil;
    return gpr_factor(p);
  }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("noise"), py::arg("mean"));

  m.def("gpr_lml_grad", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                           double noise, double mean) {
    const GPRProblem p = problem(k, theta, X, y, noise, mean);
    GPRGradient g;
    {
      NoGil nogil;
      g = gpr_lml_grad(p);
    }
    return py::make_tuple(g.lml, copy_out(g.dtheta), g.dnoise, g.dmean, g.jitter);
  }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("noise"), py::arg("mean"),
  "(lml, dlml/dtheta, dlml/dnoise, dlml/dmean, jitter)");

  m.def("gpr_predict", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                          double noise, double mean, const GPRFactor& f, const CArray& Xnew,
                          bool full_cov) {
    const GPRProblem p = problem(k, theta, X, y, noise, mean);
    require_new_inputs(X, Xnew);
    return predict_moments(
        Xnew.shape(0), full_cov,
        [&](VecOut mu, VecOut var) { gpr_predict(p, f, view(Xnew), mu, var); },
        [&](VecOut mu, MatOut cov) { gpr_predict_cov(p, f, view(Xnew), mu, cov); });
  }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("noise"), py::arg("mean"), py::arg("factor"), py::arg("Xnew"),
  py::arg("full_cov"), "latent (mean [n*], variance [n*] or covariance [n*, n*])");
}

}  // namespace varinf::bindings

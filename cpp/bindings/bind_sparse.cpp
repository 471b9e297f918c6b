// Sparse GP models: SGPR (and FITC) collapsed bounds, SVGP ELBO and training loop.
#include "common.hpp"
#include "varinf/sgpr.hpp"

namespace varinf::bindings {

namespace {

MatRef view(const CArray& a) { return Eigen::Map<const RowMatrixXd>(a.data(), a.shape(0), a.shape(1)); }
VecRef vview(const CArray& a) { return Eigen::Map<const VectorXd>(a.data(), a.shape(0)); }

// Arguments are validated by varinf.models; the sizes are re-checked here so a misuse of this
// private module raises instead of reading out of bounds.
SGPRProblem sgpr_problem(const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                         const CArray& Z, double noise, double mean, double jitter) {
  if (theta.ndim() != 1 || theta.shape(0) != k.num_params() || X.ndim() != 2 || y.ndim() != 1 ||
      y.shape(0) != X.shape(0) || Z.ndim() != 2 || Z.shape(1) != X.shape(1) || Z.shape(0) < 1)
    throw py::value_error("inconsistent SGPR arguments (theta, X [n, d], y [n], Z [m, d])");
  return {k, theta.data(), view(X), vview(y), view(Z), noise, mean, jitter};
}

void check_new(const CArray& X, const CArray& Xnew) {
  if (Xnew.ndim() != 2 || Xnew.shape(1) != X.shape(1))
    throw py::value_error("Xnew must have as many columns as X");
}

void bind_sgpr(py::module_& m) {
  py::class_<SGPRFactor>(m, "SGPRFactor", "Factors of the SGPR posterior and the bounds.")
      .def_readonly("bound", &SGPRFactor::bound)
      .def_readonly("upper_bound", &SGPRFactor::upper_bound)
      .def_readonly("jitter", &SGPRFactor::jitter);

  m.def("sgpr_factor", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                          const CArray& Z, double noise, double mean, double jitter) {
    const SGPRProblem p = sgpr_problem(k, theta, X, y, Z, noise, mean, jitter);
    NoGil nogil;
    return sgpr_factor(p);
  });

  m.def("sgpr_bound_grad", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                              const CArray& Z, double noise, double mean, double jitter) {
    const SGPRProblem p = sgpr_problem(k, theta, X, y, Z, noise, mean, jitter);
    SGPRGradient g;
    {
      NoGil nogil;
      g = sgpr_bound_grad(p);
    }
    CArray dZ = new_matrix(g.dZ.rows(), g.dZ.cols());
    as_matrix(dZ) = g.dZ;
    return py::make_tuple(g.bound, CArray(g.dtheta.size(), g.dtheta.data()), dZ, g.dnoise, g.dmean,
                          g.jitter);
  }, "(bound, dF/dtheta, dF/dZ, dF/dnoise, dF/dmean, jitter)");

  m.def("sgpr_predict", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                           const CArray& Z, double noise, double mean, double jitter,
                           const SGPRFactor& f, const CArray& Xnew, bool full_cov) {
    const SGPRProblem p = sgpr_problem(k, theta, X, y, Z, noise, mean, jitter);
    check_new(X, Xnew);
    const Index ns = Xnew.shape(0);
    CArray mu = new_vector(ns);
    CArray var = full_cov ? new_matrix(ns, ns) : new_vector(ns);
    auto mu_v = as_vector(mu);
    {
      NoGil nogil;
      if (full_cov) {
        auto cov_m = as_matrix(var);
        sgpr_predict_cov(p, f, view(Xnew), mu_v, cov_m);
      } else {
        auto var_v = as_vector(var);
        sgpr_predict(p, f, view(Xnew), mu_v, var_v);
      }
    }
    return py::make_tuple(mu, var);
  }, "latent (mean [n*], variance [n*] or covariance [n*, n*])");

  m.def("sgpr_qu", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                      const CArray& Z, double noise, double mean, double jitter, const SGPRFactor& f) {
    const SGPRProblem p = sgpr_problem(k, theta, X, y, Z, noise, mean, jitter);
    const Index mz = Z.shape(0);
    CArray mu = new_vector(mz), S = new_matrix(mz, mz);
    auto mu_v = as_vector(mu);
    auto S_m = as_matrix(S);
    {
      NoGil nogil;
      sgpr_qu(p, f, mu_v, S_m);
    }
    return py::make_tuple(mu, S);
  }, "optimal q(u): (mean [m], covariance [m, m])");
}

}  // namespace

void bind_sparse(py::module_& m) { bind_sgpr(m); }

}  // namespace varinf::bindings

// Likelihoods over several latent functions per row (latent_likelihoods.hpp): the SVGP's view of
// every likelihood, and the evaluations Python's predictions and the tests call.
#include "common.hpp"
#include "varinf/latent_likelihoods.hpp"

namespace varinf::bindings {

namespace {

// Checks theta [num_params], Y [k, c] (a 1-D Y when c = 1) and mu, var [k, L]; returns k.
Index latent_rows(const LatentLikelihood& l, const CArray& theta, const CArray* Y, const CArray& mu,
                  const CArray& var) {
  const Index k = mu.ndim() == 2 ? mu.shape(0) : -1;
  bool ok = theta.ndim() == 1 && theta.shape(0) == l.num_params() && mu.ndim() == 2 &&
            mu.shape(1) == l.num_latent() && var.ndim() == 2 && var.shape(0) == k &&
            var.shape(1) == l.num_latent();
  if (Y) ok = ok && Y->shape(0) == k && (Y->ndim() == 1 ? l.num_targets() == 1
                                                          : Y->ndim() == 2 && Y->shape(1) == l.num_targets());
  require(ok, "inconsistent likelihood arguments (theta [num_params], Y [k, targets], mu [k, L], var [k, L])");
  return k;
}

}  // namespace

void bind_latent_likelihoods(py::module_ m) {
  py::class_<LatentLikelihood, LatentLikelihoodPtr>(
      m, "LatentLikelihood", "A likelihood over L latent functions per row; values come in theta.")
      .def_property_readonly("num_params", &LatentLikelihood::num_params)
      .def_property_readonly("num_latent", &LatentLikelihood::num_latent)
      .def_property_readonly("num_targets", &LatentLikelihood::num_targets)
      .def_property_readonly("num_predictive", &LatentLikelihood::num_predictive)
      .def("variational_expectations", [](const LatentLikelihood& l, const CArray& theta, const CArray& Y,
                                          const CArray& mu, const CArray& var, Index row0) {
        const Index k = latent_rows(l, theta, &Y, mu, var), L = l.num_latent();
        MatrixXd dmu(k, L), dvar(k, L);
        VectorXd dtheta = VectorXd::Zero(l.num_params());
        double ell;
        {
          NoGil nogil;
          const MatrixXd mu_c = view(mu), var_c = view(var);  // [k, L] column-major
          ell = l.variational_expectations(theta.data(), row0, view(Y), mu_c, var_c, dmu, dvar, dtheta.data());
        }
        return py::make_tuple(ell, copy_out(RowMatrixXd(dmu)), copy_out(RowMatrixXd(dvar)), copy_out(dtheta));
      }, py::arg("theta"), py::arg("Y"), py::arg("mu"), py::arg("var"), py::arg("row0") = 0,
      "(sum of E[log p(y|f)], d/dmu [k, L], d/dvar [k, L], d/dtheta summed)")
      .def("predict_mean_and_var", [](const LatentLikelihood& l, const CArray& theta, const CArray& mu,
                                      const CArray& var) {
        const Index k = latent_rows(l, theta, nullptr, mu, var);
        CArray ym = new_matrix(k, l.num_predictive()), yv = new_matrix(k, l.num_predictive());
        auto ym_m = as_matrix(ym);
        auto yv_m = as_matrix(yv);
        {
          NoGil nogil;
          const MatrixXd mu_c = view(mu), var_c = view(var);
          l.predict_mean_and_var(theta.data(), mu_c, var_c, ym_m, yv_m);
        }
        return py::make_tuple(ym, yv);
      }, py::arg("theta"), py::arg("mu"), py::arg("var"), "(mean, variance) of y, [k, num_predictive] each")
      .def("predict_log_density", [](const LatentLikelihood& l, const CArray& theta, const CArray& Y,
                                     const CArray& mu, const CArray& var) {
        CArray out = new_vector(latent_rows(l, theta, &Y, mu, var));
        auto o = as_vector(out);
        {
          NoGil nogil;
          const MatrixXd mu_c = view(mu), var_c = view(var);
          l.predict_log_density(theta.data(), view(Y), mu_c, var_c, o);
        }
        return out;
      }, py::arg("theta"), py::arg("Y"), py::arg("mu"), py::arg("var"), "log p(y) [k] under q(f)");
  m.def("columns_likelihood", &make_columns, py::arg("pointwise"), py::arg("P"), py::arg("per_column"));
  m.def("robustmax_likelihood", &make_robustmax, py::arg("K"), py::arg("epsilon"), py::arg("points"));
  m.def("softmax_likelihood", &make_softmax, py::arg("K"), py::arg("samples"), py::arg("seed"));
  m.def("heteroskedastic_gaussian_likelihood", &make_heteroskedastic_gaussian, py::arg("points"));
}

}  // namespace varinf::bindings

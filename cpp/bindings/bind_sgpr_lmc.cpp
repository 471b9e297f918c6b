// The collapsed bound for coregionalised outputs (sgpr_lmc.hpp), wired into `sparse` by
// bind_sparse. Every function takes the problem's leading arguments (kernels, thetas, X, Y, Z,
// W, noise, mean, jitter), one kernel and its parameter values per latent GP.
#include <string>
#include <vector>

#include "common.hpp"
#include "varinf/kernels.hpp"
#include "varinf/sgpr_lmc.hpp"

namespace varinf::bindings {

namespace {

// Y is [n, P], W [P, Q], mean [P]; thetas[q] holds kernels[q]'s parameter values.
LMCProblem lmc_problem(const std::vector<KernelPtr>& kernels, const std::vector<CArray>& thetas,
                       const CArray& X, const CArray& Y, const CArray& Z, const CArray& W, double noise,
                       const CArray& mean, double jitter) {
  const Index Q = Index(kernels.size());
  require(Q >= 1 && Index(thetas.size()) == Q, "one theta per kernel, at least one kernel");
  LMCProblem p{{}, {}, view(X), view(Y), view(Z), view(W), noise, vview(mean), jitter};
  for (Index q = 0; q < Q; ++q) {
    require(kernels[q] != nullptr && thetas[q].ndim() == 1 && thetas[q].shape(0) == kernels[q]->num_params(),
            "theta " + std::to_string(q) + " does not match its kernel");
    p.kernels.push_back(kernels[q].get());
    p.thetas.push_back(thetas[q].data());
  }
  require(X.ndim() == 2 && Y.ndim() == 2 && Y.shape(0) == X.shape(0) && Z.ndim() == 2 && Z.shape(0) >= 1 &&
              Z.shape(1) == X.shape(1) && W.ndim() == 2 && W.shape(0) == Y.shape(1) && W.shape(1) == Q &&
              mean.ndim() == 1 && mean.shape(0) == Y.shape(1),
          "inconsistent coregionalised SGPR arguments (X [n, d], Y [n, P], Z [m, d], W [P, Q], mean [P])");
  return p;
}

void require_factor(const LMCProblem& p, const LMCFactor& f) {
  require(f.LB.rows() == p.Z.rows() * p.Q(), "the factor does not match the number of latent GPs");
}

py::list per_latent(const std::vector<VectorXd>& values) {
  py::list out;
  for (const VectorXd& v : values) out.append(copy_out(v));
  return out;
}

}  // namespace

void bind_sgpr_lmc(py::module_ m) {
  py::class_<LMCFactor>(m, "LMCFactor", "Factors of the coregionalised SGPR posterior and the bounds.")
      .def_readonly("bound", &LMCFactor::bound)
      .def_readonly("upper_bound", &LMCFactor::upper_bound)
      .def_readonly("jitter", &LMCFactor::jitter);

#define VARINF_LMC_ARGS                                                                                    \
  py::arg("kernels"), py::arg("thetas"), py::arg("X"), py::arg("Y"), py::arg("Z"), py::arg("W"), py::arg("noise"), \
      py::arg("mean"), py::arg("jitter")
  using Kernels = std::vector<KernelPtr>;
  using Thetas = std::vector<CArray>;

  m.def("lmc_factor", [](const Kernels& k, const Thetas& t, const CArray& X, const CArray& Y, const CArray& Z,
                         const CArray& W, double noise, const CArray& mean, double jitter) {
    const LMCProblem p = lmc_problem(k, t, X, Y, Z, W, noise, mean, jitter);
    NoGil nogil;
    return lmc_factor(p);
  }, VARINF_LMC_ARGS, "the posterior's factors, the bound and the upper bound");

  m.def("lmc_bound_grad", [](const Kernels& k, const Thetas& t, const CArray& X, const CArray& Y, const CArray& Z,
                             const CArray& W, double noise, const CArray& mean, double jitter) {
    const LMCProblem p = lmc_problem(k, t, X, Y, Z, W, noise, mean, jitter);
    LMCGradient g;
    {
      NoGil nogil;
      g = lmc_bound_grad(p);
    }
    return py::make_tuple(g.bound, per_latent(g.dtheta), copy_out(g.dZ), copy_out(g.dW), g.dnoise,
                          copy_out(g.dmean), g.jitter);
  }, VARINF_LMC_ARGS, "(bound, [d/dtheta_q], d/dZ [m, d], d/dW [P, Q], d/dnoise, d/dmean [P], jitter)");

  m.def("lmc_predict", [](const Kernels& k, const Thetas& t, const CArray& X, const CArray& Y, const CArray& Z,
                          const CArray& W, double noise, const CArray& mean, double jitter, const LMCFactor& f,
                          const CArray& Xnew, bool full_cov) {
    const LMCProblem p = lmc_problem(k, t, X, Y, Z, W, noise, mean, jitter);
    require_new_inputs(X, Xnew);
    require_factor(p, f);
    const Index ns = Xnew.shape(0), Q = p.Q();
    CArray mu = new_matrix(ns, Q);
    CArray cov = full_cov ? new_matrix(Q * ns, Q * ns) : new_matrix(ns, Q * Q);
    auto mu_m = as_matrix(mu);
    auto cov_m = as_matrix(cov);
    {
      NoGil nogil;
      if (full_cov) {
        lmc_predict_cov(p, f, view(Xnew), mu_m, cov_m);
      } else {
        lmc_predict(p, f, view(Xnew), mu_m, cov_m);
      }
    }
    return py::make_tuple(mu, cov);
  }, VARINF_LMC_ARGS, py::arg("factor"), py::arg("Xnew"), py::arg("full_cov"),
     "the latent GPs' (means [n*, Q], covariances [n*, Q * Q] per point, or [Q n*, Q n*] with full_cov)");

  m.def("lmc_qu", [](const Kernels& k, const Thetas& t, const CArray& X, const CArray& Y, const CArray& Z,
                     const CArray& W, double noise, const CArray& mean, double jitter, const LMCFactor& f) {
    const LMCProblem p = lmc_problem(k, t, X, Y, Z, W, noise, mean, jitter);
    require_factor(p, f);
    const Index mz = Z.shape(0), Q = p.Q();
    CArray mu = new_matrix(mz, Q), S = new_matrix(mz * Q, mz * Q);
    auto mu_m = as_matrix(mu);
    auto S_m = as_matrix(S);
    {
      NoGil nogil;
      lmc_qu(p, f, mu_m, S_m);
    }
    return py::make_tuple(mu, S);
  }, VARINF_LMC_ARGS, py::arg("factor"), "optimal q(u): (means [m, Q], covariance [mQ, mQ] of the stacked u)");
#undef VARINF_LMC_ARGS
}

}  // namespace varinf::bindings

// The SVGP (svgp.hpp): the ELBO and its gradient, predictions, the layout over the unconstrained
// vector and the trainer. Natural-gradient steps, the ELBO of one SVGPArgs and training on given
// batches are entry points of the testing submodule: the models reach them through SVGPTrainer.
#include <cstdint>
#include <limits>
#include <vector>

#include "common.hpp"
#include "varinf/svgp.hpp"

namespace varinf::bindings {

namespace {

using IndexArray = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

// Rows of Y [n, c] (a 1-D Y when c = 1) for X [n, d].
void require_targets(const LatentLikelihood& lik, const CArray& X, const CArray& Y) {
  const Index c = lik.num_targets();
  require(Y.shape(0) == X.shape(0) && (Y.ndim() == 1 ? c == 1 : Y.ndim() == 2 && Y.shape(1) == c),
          "Y must have one row per row of X and " + std::to_string(c) + " column(s)");
}

// One group of latent GPs as Python holds it: (kernel, theta, Z [m, d], first, count).
struct ArgsGroup {
  KernelPtr kernel;
  CArray theta, Z;
  Index first, count;
};

// The SVGP state as Python holds it (docs/math.md section 11.1): the groups, the likelihood,
// q_mu [m, L], q_sqrt [L, m, m] (or [m, L] when q_diag), W [P, L] (or [0, 0]), mean [L] or [0].
struct SVGPArgs {
  std::vector<ArgsGroup> groups;
  LatentLikelihoodPtr likelihood;
  CArray lik_theta, q_mu, q_sqrt, W;
  bool whiten, q_diag;
  CArray mean;
  double num_data, jitter;
  bool single;  // the batch products in float32

  Index m() const { return q_mu.shape(0); }
  Index L() const { return q_mu.shape(1); }

  SVGPProblem problem() const {
    require(q_mu.ndim() == 2 && m() >= 1 && !groups.empty(), "q_mu must be [m, L]");
    const Index m = this->m(), L = this->L(), d = groups.front().Z.ndim() == 2 ? groups.front().Z.shape(1) : 0;
    bool ok = lik_theta.ndim() == 1 && lik_theta.shape(0) == likelihood->num_params() &&
              (q_diag ? (q_sqrt.ndim() == 2 && q_sqrt.shape(0) == m && q_sqrt.shape(1) == L)
                      : (q_sqrt.ndim() == 3 && q_sqrt.shape(0) == L && q_sqrt.shape(1) == m && q_sqrt.shape(2) == m)) &&
              W.ndim() == 2 && (W.shape(0) == 0 || W.shape(1) == L) && mean.ndim() == 1 &&
              (mean.shape(0) == 0 || mean.shape(0) == L) && d >= 1 &&
              likelihood->num_latent() == (W.shape(0) ? W.shape(0) : L);
    Index next = 0;
    std::vector<LatentGroup> out;
    for (const ArgsGroup& g : groups) {
      ok = ok && g.theta.ndim() == 1 && g.theta.shape(0) == g.kernel->num_params() && g.Z.ndim() == 2 &&
           g.Z.shape(0) == m && g.Z.shape(1) == d && g.first == next && g.count >= 1;
      next += g.count;
      if (ok) out.push_back({*g.kernel, g.theta.data(), view(g.Z), g.first, g.count});
    }
    require(ok && next == L, "inconsistent SVGP arguments (groups, likelihood, q_mu [m, L], q_sqrt, W, mean)");
    const Eigen::Map<const RowMatrixXd> qs(q_sqrt.data(), q_diag ? m : L * m, q_diag ? L : m);
    const Eigen::Map<const RowMatrixXd> mixing(W.data(), W.shape(0), W.shape(1));  // [P, L] or [0, 0]
    return {out, *likelihood, lik_theta.data(), view(q_mu), qs, mixing, whiten, q_diag, vview(mean), num_data, jitter,
            single};
  }

  void check_inputs(const CArray& X) const {
    require(X.ndim() == 2 && X.shape(1) == groups.front().Z.shape(1), "X must have as many columns as Z");
  }
};

SVGPArgs make_args(const std::vector<py::tuple>& groups, LatentLikelihoodPtr likelihood, CArray lik_theta,
                   CArray q_mu, CArray q_sqrt, CArray W, bool whiten, bool q_diag, CArray mean, double num_data,
                   double jitter, bool single) {
  SVGPArgs a{{}, std::move(likelihood), lik_theta, q_mu, q_sqrt, W, whiten, q_diag, mean, num_data, jitter, single};
  for (const py::tuple& g : groups) {
    require(g.size() == 5, "a group is (kernel, theta, Z, first, count)");
    a.groups.push_back({g[0].cast<KernelPtr>(), g[1].cast<CArray>(), g[2].cast<CArray>(), g[3].cast<Index>(),
                        g[4].cast<Index>()});
  }
  return a;
}

void bind_args(py::module_ m) {
  py::class_<SVGPArgs>(m, "SVGPArgs", "The SVGP parameters at one point (a view of numpy arrays).")
      .def(py::init(&make_args), py::arg("groups"), py::arg("likelihood"), py::arg("lik_theta"), py::arg("q_mu"),
           py::arg("q_sqrt"), py::arg("W"), py::arg("whiten"), py::arg("q_diag"), py::arg("mean"),
           py::arg("num_data"), py::arg("jitter"), py::arg("single") = false);

  m.def("svgp_predict", [](const SVGPArgs& a, const CArray& Xnew) {
    const SVGPProblem p = a.problem();
    a.check_inputs(Xnew);
    CArray mean = new_matrix(Xnew.shape(0), a.L()), var = new_matrix(Xnew.shape(0), a.L());
    auto mean_m = as_matrix(mean);
    auto var_m = as_matrix(var);
    {
      NoGil nogil;
      svgp_predict(p, view(Xnew), mean_m, var_m);
    }
    return py::make_tuple(mean, var);
  }, py::arg("args"), py::arg("Xnew"), "latent (mean [n*, L], variance [n*, L])");

  m.def("svgp_predict_cov", [](const SVGPArgs& a, Index l, const CArray& Xnew) {
    const SVGPProblem p = a.problem();
    a.check_inputs(Xnew);
    require(l >= 0 && l < a.L(), "l must name a latent GP");
    return predict_moments(
        Xnew.shape(0), true, [](VecOut, VecOut) {},
        [&](VecOut mu, MatOut cov) { svgp_predict_cov(p, l, view(Xnew), mu, cov); });
  }, py::arg("args"), py::arg("l"), py::arg("Xnew"), "latent GP l's (mean [n*], covariance [n*, n*])");
}

// The ELBO and every gradient of one SVGPArgs, for the finite-difference tests (the models
// train through SVGPLayout's flat vector instead).
void bind_args_testing(py::module_ testing) {
  testing.def("svgp_elbo_grad", [](const SVGPArgs& a, const CArray& X, const CArray& Y) {
    const SVGPProblem p = a.problem();
    a.check_inputs(X);
    require_targets(*a.likelihood, X, Y);
    SVGPGradient g;
    {
      NoGil nogil;
      g = svgp_elbo_grad(p, view(X), view(Y));
    }
    const Index m = a.m(), L = a.L(), d = a.groups.front().Z.shape(1);
    CArray dq_sqrt = copy_out(g.dq_sqrt);
    if (!a.q_diag) dq_sqrt = dq_sqrt.reshape({L, m, m});
    py::dict grads;
    grads["theta"] = copy_out(g.dtheta);
    grads["lik_theta"] = copy_out(g.dlik);
    grads["q_mu"] = copy_out(g.dq_mu);
    grads["q_sqrt"] = dq_sqrt;
    grads["Z"] = copy_out(g.dZ).reshape({Index(a.groups.size()), m, d});
    grads["W"] = copy_out(g.dW);
    grads["mean"] = copy_out(g.dmean);
    return py::make_tuple(g.elbo, g.kl, grads, g.jitter);
  }, py::arg("args"), py::arg("X"), py::arg("Y"), "(elbo, kl, {name: gradient}, jitter)");
}

SVGPLayout make_layout(const std::vector<py::tuple>& groups, LatentLikelihoodPtr likelihood, Index m, Index d,
                       Index L, Index P, bool has_mean, bool whiten, bool q_diag, const IndexArray& index,
                       const CArray& fixed, const CArray& lower, double raw_min, double num_data, double jitter,
                       bool single) {
  SVGPLayout l;
  Index next = 0;
  bool ok = m >= 1 && d >= 1 && L >= 1 && P >= 0 && likelihood->num_latent() == (P ? P : L);
  for (const py::tuple& g : groups) {
    require(g.size() == 3, "a layout group is (kernel, first, count)");
    l.groups.push_back({g[0].cast<KernelPtr>(), g[1].cast<Index>(), g[2].cast<Index>()});
    ok = ok && l.groups.back().first == next && l.groups.back().count >= 1;
    next += l.groups.back().count;
  }
  l.likelihood = std::move(likelihood);
  l.m = m;
  l.d = d;
  l.L = L;
  l.P = P;
  l.has_mean = has_mean;
  l.whiten = whiten;
  l.q_diag = q_diag;
  l.num_data = num_data;
  l.jitter = jitter;
  l.single = single;
  l.raw_min = raw_min;
  l.index.assign(index.data(), index.data() + index.size());
  l.fixed = Eigen::Map<const VectorXd>(fixed.data(), fixed.size());
  l.lower = Eigen::Map<const VectorXd>(lower.data(), lower.size());
  ok = ok && next == L && Index(l.index.size()) == l.num_values() && l.fixed.size() == l.num_values();
  for (Index j : l.index) ok = ok && j < l.lower.size();
  require(ok, "inconsistent SVGP layout");
  return l;
}

void check_data(const SVGPLayout& l, const VectorXd& x, const CArray& X, const CArray& Y) {
  require(x.size() == l.lower.size(), "x has the wrong size for this layout");
  require(X.ndim() == 2 && X.shape(1) == l.d, "X must be [n, d] with d the width of Z");
  require_targets(*l.likelihood, X, Y);
}

void check_data_for(const SVGPTrainer& t, const CArray& X, const CArray& Y) { check_data(t.layout(), t.x(), X, Y); }

void bind_training(py::module_ m) {
  py::class_<SVGPLayout>(m, "SVGPLayout", "How the unconstrained vector x maps onto the SVGP's values.")
      .def(py::init(&make_layout), py::arg("groups"), py::arg("likelihood"), py::arg("m"), py::arg("d"),
           py::arg("L"), py::arg("P"), py::arg("has_mean"), py::arg("whiten"), py::arg("q_diag"), py::arg("index"),
           py::arg("fixed"), py::arg("lower"), py::arg("raw_min"), py::arg("num_data"), py::arg("jitter"),
           py::arg("single") = false)
      .def_property_readonly("num_values", &SVGPLayout::num_values);

  m.def("svgp_elbo_grad_x", [](const SVGPLayout& l, const CArray& x, const CArray& X, const CArray& Y,
                               double scale, bool kl) {
    const VectorXd xv = vview(x);
    check_data(l, xv, X, Y);
    VectorXd grad, grad_values;
    double elbo, jitter;
    {
      NoGil nogil;
      elbo = svgp_elbo_grad_x(l, xv, view(X), view(Y), grad, &jitter, &grad_values, ElboTerms{scale, kl});
    }
    return py::make_tuple(elbo, copy_out(grad), copy_out(grad_values), jitter);
  }, py::arg("layout"), py::arg("x"), py::arg("X"), py::arg("Y"),
        py::arg("scale") = std::numeric_limits<double>::quiet_NaN(), py::arg("kl") = true,
        "(elbo, d elbo / dx, d elbo / d values, jitter): the rows' likelihood terms times scale (NaN: "
        "num_data / rows), minus the KL when kl");

  py::class_<BatchSampler>(m, "BatchSampler", "The SVGP trainer's minibatch order, drawn from a seed.")
      .def(py::init<std::uint64_t>(), py::arg("seed"))
      .def("next", [](BatchSampler& s, Index n, Index batch_size) {
        require(batch_size >= 1 && batch_size <= n, "batch_size must be in [1, n]");
        std::vector<Index> rows;
        s.next(n, batch_size, rows);
        return py::array_t<std::int64_t>(py::ssize_t(rows.size()), rows.data());
      }, py::arg("n"), py::arg("batch_size"), "the next batch's rows of 0..n-1 [batch_size]");

  py::class_<SVGPTrainer>(m, "SVGPTrainer", "Adam on the SVGP ELBO over minibatches, in C++.")
      .def(py::init([](const SVGPLayout& l, const CArray& x0, double lr, double beta1, double beta2,
                       double eps, std::uint64_t seed, double natgrad_gamma) {
             const VectorXd x = vview(x0);
             require(x.size() == l.lower.size(), "x0 has the wrong size for this layout");
             return SVGPTrainer(l, x, AdamOptions{lr, beta1, beta2, eps}, seed, natgrad_gamma);
           }), py::arg("layout"), py::arg("x0"), py::arg("learning_rate"), py::arg("beta1"), py::arg("beta2"),
           py::arg("eps"), py::arg("seed"), py::arg("natgrad_gamma") = 0.0)
      .def("run", [](SVGPTrainer& t, const CArray& X, const CArray& Y, Index batch_size, Index steps) {
        check_data_for(t, X, Y);
        require(batch_size >= 1 && batch_size <= X.shape(0), "batch_size must be in [1, n]");
        std::vector<double> elbos;
        {
          NoGil nogil;
          elbos = t.run(view(X), view(Y), batch_size, steps);
        }
        return copy_out(elbos);
      }, py::arg("X"), py::arg("Y"), py::arg("batch_size"), py::arg("steps"), "ELBO of each step taken [<= steps]")
      .def("apply", [](SVGPTrainer& t, double elbo, const CArray& grad_x, const CArray& grad_values) {
        require(grad_x.ndim() == 1 && grad_x.shape(0) == t.x().size(), "grad_x has the wrong size");
        require(grad_values.ndim() == 1 && grad_values.shape(0) == t.layout().num_values(),
                "grad_values has the wrong size");
        return t.apply(elbo, vview(grad_x), vview(grad_values));
      }, py::arg("elbo"), py::arg("grad_x"), py::arg("grad_values"),
      "one step from an ELBO and its gradient summed elsewhere; False when it failed")
      .def_property_readonly("x", [](const SVGPTrainer& t) { return copy_out(t.x()); })
      .def_property_readonly("failed", &SVGPTrainer::failed)
      .def_property_readonly("collapsed",
                             [](const SVGPTrainer& t) { return t.failure() == SVGPTrainer::Failure::kCollapsed; })
      .def_property_readonly("failed_step", &SVGPTrainer::failed_step);
}

// One natural-gradient step and training on given batches, checked against numpy in the tests
// (SVGPTrainer takes these steps itself, on batches it draws).
void bind_training_testing(py::module_ testing) {
  testing.def("svgp_natgrad_step", [](const SVGPLayout& l, const CArray& x, const CArray& X, const CArray& Y,
                                      double gamma) {
    VectorXd xv = vview(x);
    check_data(l, xv, X, Y);
    require(svgp_natgrad_supported(l), "natural gradients need q_mu and q_sqrt trainable");
    bool ok;
    double elbo;
    {
      NoGil nogil;
      ok = svgp_natgrad_step(l, xv, view(X), view(Y), gamma, elbo);
    }
    return py::make_tuple(ok, elbo, copy_out(xv));
  }, py::arg("layout"), py::arg("x"), py::arg("X"), py::arg("Y"), py::arg("gamma"),
  "(ok, elbo before the step, new x)");

  testing.def("svgp_run_batches", [](SVGPTrainer& t, const CArray& X, const CArray& Y, const IndexArray& batches) {
    check_data_for(t, X, Y);
    require(batches.ndim() == 2, "batches must be [steps, batch_size]");
    const std::int64_t* b = batches.data();
    for (py::ssize_t i = 0; i < batches.size(); ++i)
      require(b[i] >= 0 && b[i] < X.shape(0), "batch row index out of range");
    const Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>
        bm(b, batches.shape(0), batches.shape(1));
    std::vector<double> elbos;
    {
      NoGil nogil;
      elbos = t.run_batches(view(X), view(Y), bm);
    }
    return copy_out(elbos);
  }, py::arg("trainer"), py::arg("X"), py::arg("Y"), py::arg("batches"),
  "trainer.run on the given batches of row indices [steps, batch_size]: the ELBO of each step taken");
}

}  // namespace

void bind_svgp(py::module_ m, py::module_ testing) {
  bind_args(m);
  bind_args_testing(testing);
  bind_training(m);
  bind_training_testing(testing);
}

}  // namespace varinf::bindings

// Sparse GP models: likelihoods and the SGPR (and FITC) collapsed bounds, in one call and by
// partitions of the rows; the SVGP's and the coregionalised SGPR's are wired in from
// bind_svgp.cpp and bind_sgpr_lmc.cpp.
#include <functional>
#include <initializer_list>
#include <limits>
#include <tuple>
#include <utility>

#include "common.hpp"
#include "varinf/likelihoods.hpp"
#include "varinf/sgpr.hpp"

namespace varinf::bindings {

namespace {

// y is [n] (one output) or [n, P], mean [P]: the outputs share the kernel and the noise.
SGPRProblem sgpr_problem(const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                         const CArray& Z, double noise, const CArray& mean, double jitter) {
  require(theta.ndim() == 1 && theta.shape(0) == k.num_params() && X.ndim() == 2 && mean.ndim() == 1 &&
              (y.ndim() == 1 ? mean.shape(0) == 1 : y.ndim() == 2 && y.shape(1) == mean.shape(0)) &&
              y.shape(0) == X.shape(0) && Z.ndim() == 2 && Z.shape(1) == X.shape(1) && Z.shape(0) >= 1,
          "inconsistent SGPR arguments (theta, X [n, d], y [n] or [n, P], Z [m, d], mean [P])");
  return {k, theta.data(), view(X), view(y), view(Z), noise, vview(mean), jitter};
}

// FITC's problems have one output.
SGPRProblem fitc_problem(const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                         const CArray& Z, double noise, const CArray& mean, double jitter) {
  require(y.ndim() == 1, "FITC takes one output: y must be [n]");
  return sgpr_problem(k, theta, X, y, Z, noise, mean, jitter);
}

// The sums over rows (SGPRStats, FITCStats, FITCDataGrad) cross to Python as tuples of
// numpy arrays and floats, field by field, so that Dask can move and add them (docs/math.md
// section 10); tuple_to checks every matrix's shape against m and d before use.
template <class T>
py::tuple to_tuple(T value) {
  return std::apply([](auto&... f) { return py::make_tuple(f...); }, value.fields());
}

template <class M>
void take(const py::handle& h, M& into, Index rows, Index cols) {
  into = h.cast<M>();
  require(into.rows() == rows && into.cols() == cols, "a statistic has the wrong shape");
}
inline void take(const py::handle& h, double& into, Index, Index) { into = h.cast<double>(); }

// shapes: (rows, cols) of each field in order (ignored for the doubles).
template <class T>
T tuple_to(const py::tuple& t, std::initializer_list<std::pair<Index, Index>> shapes) {
  T value;
  auto fields = value.fields();
  constexpr std::size_t count = std::tuple_size_v<decltype(fields)>;
  require(t.size() == count && shapes.size() == count, "statistics: wrong number of fields");
  std::size_t i = 0;
  std::apply([&](auto&... f) { ((take(t[i], f, shapes.begin()[i].first, shapes.begin()[i].second), ++i), ...); },
             fields);
  return value;
}

// The parameters without rows; the outputs are counted by the means [P].
SGPRProblem params_only(const Kernel& k, const CArray& theta, const CArray& Z, double noise, const CArray& mean,
                        double jitter) {
  require(theta.ndim() == 1 && theta.shape(0) == k.num_params() && Z.ndim() == 2 && Z.shape(0) >= 1 &&
              mean.ndim() == 1 && mean.shape(0) >= 1,
          "inconsistent SGPR arguments (theta, Z [m, d], mean [P])");
  return {k, theta.data(), Eigen::Map<const RowMatrixXd>(nullptr, 0, Z.shape(1)),
          Eigen::Map<const RowMatrixXd>(nullptr, 0, mean.shape(0)), view(Z), noise, vview(mean), jitter};
}

py::tuple gradient_tuple(const SGPRGradient& g) {
  return py::make_tuple(g.bound, copy_out(g.dtheta), copy_out(g.dZ), g.dnoise, copy_out(g.dmean), g.jitter);
}

// The partitioned SGPR and FITC (sgpr.hpp): statistics over rows, the collapsed bound from
// their sum, and the reverse pass over rows.
void bind_partitioned(py::module_ m) {
  m.def("sgpr_stats", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                         const CArray& Z, double noise, const CArray& mean, double jitter) {
    const SGPRProblem p = sgpr_problem(k, theta, X, y, Z, noise, mean, jitter);
    SGPRStats st;
    {
      NoGil nogil;
      st = sgpr_stats(p);
    }
    return to_tuple(std::move(st));
  }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("Z"), py::arg("noise"),
        py::arg("mean"), py::arg("jitter"), "(Kuf Kfu [m, m], Kuf R [m, P], Kuf 1 [m], column sums of R [P], |R|^2, tr Kff, n)");

  auto sgpr_sums = [](const py::tuple& t, const SGPRProblem& p) {
    const Index m = p.Z.rows(), P = p.mean.size();
    return tuple_to<SGPRStats>(t, {{m, m}, {m, P}, {m, 1}, {P, 1}, {0, 0}, {0, 0}, {0, 0}});
  };
  m.def("sgpr_factor_from_stats", [sgpr_sums](const Kernel& k, const CArray& theta, const CArray& Z, double noise,
                                              const CArray& mean, double jitter, const py::tuple& stats) {
    const SGPRProblem p = params_only(k, theta, Z, noise, mean, jitter);
    const SGPRStats st = sgpr_sums(stats, p);
    NoGil nogil;
    return sgpr_factor(p, st);
  }, py::arg("kernel"), py::arg("theta"), py::arg("Z"), py::arg("noise"), py::arg("mean"), py::arg("jitter"),
        py::arg("stats"));

  m.def("sgpr_collapsed_grad", [sgpr_sums](const Kernel& k, const CArray& theta, const CArray& Z, double noise,
                                           const CArray& mean, double jitter, const py::tuple& stats) {
    const SGPRProblem p = params_only(k, theta, Z, noise, mean, jitter);
    const SGPRStats st = sgpr_sums(stats, p);
    SGPRAdjoints adj;
    SGPRGradient g;
    {
      NoGil nogil;
      g = sgpr_collapsed_grad(p, st, adj);
    }
    return py::make_tuple(gradient_tuple(g), py::make_tuple(adj.Psibar, adj.Bbar, adj.tkbar));
  }, py::arg("kernel"), py::arg("theta"), py::arg("Z"), py::arg("noise"), py::arg("mean"), py::arg("jitter"),
        py::arg("stats"), "((objective, d/dtheta, d/dZ, d/dnoise, d/dmean [P], jitter) without the data side, "
        "adjoints (dF/dPsi [m, m], dF/dB [m, P], dF/dtr Kff))");

  m.def("sgpr_data_grad", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                             const CArray& Z, double noise, const CArray& mean, double jitter, const py::tuple& adjoints) {
    const SGPRProblem p = sgpr_problem(k, theta, X, y, Z, noise, mean, jitter);
    const Index mz = Z.shape(0);
    require(adjoints.size() == 3, "adjoints must be (Psibar, Bbar, tkbar)");
    SGPRAdjoints adj;
    take(adjoints[0], adj.Psibar, mz, mz);
    take(adjoints[1], adj.Bbar, mz, p.mean.size());
    adj.tkbar = adjoints[2].cast<double>();
    VectorXd dtheta = VectorXd::Zero(k.num_params());
    RowMatrixXd dZ = RowMatrixXd::Zero(mz, Z.shape(1));
    {
      NoGil nogil;
      sgpr_data_grad(p, adj, dtheta.data(), dZ);
    }
    return py::make_tuple(copy_out(dtheta), copy_out(dZ));
  }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("Z"), py::arg("noise"),
        py::arg("mean"), py::arg("jitter"), py::arg("adjoints"), "the data side of (d/dtheta, d/dZ) over these rows");

  m.def("inducing_factor", [](const Kernel& k, const CArray& theta, const CArray& Z, double jitter) {
    CArray no_mean(1);  // K(Z, Z) does not depend on the data's means
    no_mean.mutable_data()[0] = 0.0;
    const SGPRProblem p = params_only(k, theta, Z, 1.0, no_mean, jitter);
    double used = 0.0;
    MatrixXd L;
    {
      NoGil nogil;
      L = inducing_factor(p, used);
    }
    return py::make_tuple(L, used);
  }, py::arg("kernel"), py::arg("theta"), py::arg("Z"), py::arg("jitter"),
        "(L = chol(K(Z, Z) + jitter I) [m, m], the jitter it needed)");

  m.def("fitc_stats", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y, const CArray& Z,
                         double noise, const CArray& mean, double jitter, const MatrixXd& L) {
    const SGPRProblem p = fitc_problem(k, theta, X, y, Z, noise, mean, jitter);
    require(L.rows() == Z.shape(0) && L.cols() == Z.shape(0), "L must be [m, m]");
    FITCStats st;
    {
      NoGil nogil;
      st = fitc_stats(p, L);
    }
    return to_tuple(std::move(st));
  }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("Z"), py::arg("noise"),
        py::arg("mean"), py::arg("jitter"), py::arg("L"),
        "(A Lambda^-1 A^T [m, m], A Lambda^-1 r [m], r^T Lambda^-1 r, sum log lambda, n)");

  m.def("fitc_factor_from_stats", [](const Kernel& k, const CArray& theta, const CArray& Z, double noise,
                                     const CArray& mean, double jitter, const MatrixXd& L, double used,
                                     const py::tuple& stats) {
    const SGPRProblem p = params_only(k, theta, Z, noise, mean, jitter);
    const Index mz = Z.shape(0);
    require(L.rows() == mz && L.cols() == mz, "L must be [m, m]");
    const FITCStats st = tuple_to<FITCStats>(stats, {{mz, mz}, {mz, 1}, {0, 0}, {0, 0}, {0, 0}});
    NoGil nogil;
    return fitc_factor(p, L, used, st);
  }, py::arg("kernel"), py::arg("theta"), py::arg("Z"), py::arg("noise"), py::arg("mean"), py::arg("jitter"),
        py::arg("L"), py::arg("jitter_used"), py::arg("stats"));

  m.def("fitc_data_grad", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                             const CArray& Z, double noise, const CArray& mean, double jitter, const SGPRFactor& f) {
    const SGPRProblem p = fitc_problem(k, theta, X, y, Z, noise, mean, jitter);
    require(f.L.rows() == Z.shape(0), "the factor does not match Z");
    FITCDataGrad g;
    {
      NoGil nogil;
      g = fitc_data_grad(p, f);
    }
    return to_tuple(std::move(g));
  }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("Z"), py::arg("noise"),
        py::arg("mean"), py::arg("jitter"), py::arg("factor"),
        "sums of the reverse pass over these rows (d/dtheta, d/dZ, Lbar, d/dnoise, d/dmean)");

  m.def("fitc_finish_grad", [](const Kernel& k, const CArray& theta, const CArray& Z, double noise, const CArray& mean,
                               double jitter, const SGPRFactor& f, const py::tuple& sums) {
    const SGPRProblem p = params_only(k, theta, Z, noise, mean, jitter);
    const Index mz = Z.shape(0);
    require(f.L.rows() == mz, "the factor does not match Z");
    FITCDataGrad sum = tuple_to<FITCDataGrad>(
        sums, {{k.num_params(), 1}, {mz, Z.shape(1)}, {mz, mz}, {0, 0}, {0, 0}});
    SGPRGradient g;
    {
      NoGil nogil;
      g = fitc_finish_grad(p, f, std::move(sum));
    }
    return gradient_tuple(g);
  }, py::arg("kernel"), py::arg("theta"), py::arg("Z"), py::arg("noise"), py::arg("mean"), py::arg("jitter"),
        py::arg("factor"), py::arg("sums"), "(objective, d/dtheta, d/dZ, d/dnoise, d/dmean, jitter)");
}

void bind_sgpr(py::module_ m) {
  // Pickled as its arrays, so that a fitted model's factor can go to Dask workers.
  py::class_<SGPRFactor>(m, "SGPRFactor", "Factors of the SGPR posterior and the bounds.")
      .def_readonly("bound", &SGPRFactor::bound)
      .def_readonly("upper_bound", &SGPRFactor::upper_bound)
      .def_readonly("jitter", &SGPRFactor::jitter)
      .def(py::pickle(
          [](const SGPRFactor& f) { return py::make_tuple(f.L, f.LB, f.c, f.bound, f.upper_bound, f.jitter); },
          [](const py::tuple& t) {
            require(t.size() == 6, "a pickled SGPRFactor has 6 fields");
            SGPRFactor f;
            f.L = t[0].cast<MatrixXd>();
            const Index m = f.L.rows();
            take(t[1], f.LB, m, m);
            f.c = t[2].cast<MatrixXd>();  // [m, P] (a 1-D c [m]: one output)
            require(f.L.cols() == m && f.c.rows() == m && f.c.cols() >= 1,
                    "a pickled SGPRFactor's L must be square, and c [m, P]");
            f.bound = t[3].cast<double>();
            f.upper_bound = t[4].cast<double>();
            f.jitter = t[5].cast<double>();
            return f;
          }));

  // SGPR's bound and FITC's log marginal likelihood share arguments and results; each checks
  // its arguments with its own problem builder (FITC takes one output).
  using ProblemFn = SGPRProblem (*)(const Kernel&, const CArray&, const CArray&, const CArray&, const CArray&,
                                    double, const CArray&, double);
  using FactorFn = SGPRFactor (*)(const SGPRProblem&);
  using GradFn = SGPRGradient (*)(const SGPRProblem&);
  const std::tuple<const char*, FactorFn, ProblemFn> factors[] = {{"sgpr_factor", &sgpr_factor, &sgpr_problem},
                                                                  {"fitc_factor", &fitc_factor, &fitc_problem}};
  const std::tuple<const char*, GradFn, ProblemFn> grads[] = {{"sgpr_bound_grad", &sgpr_bound_grad, &sgpr_problem},
                                                              {"fitc_lml_grad", &fitc_lml_grad, &fitc_problem}};
  for (const auto& [name, fn, problem] : factors) {
    m.def(name, [fn = fn, problem = problem](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                                             const CArray& Z, double noise, const CArray& mean, double jitter) {
      const SGPRProblem p = problem(k, theta, X, y, Z, noise, mean, jitter);
      NoGil nogil;
      return fn(p);
    }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("Z"), py::arg("noise"),
        py::arg("mean"), py::arg("jitter"));
  }
  for (const auto& [name, fn, problem] : grads) {
    m.def(name, [fn = fn, problem = problem](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                                             const CArray& Z, double noise, const CArray& mean, double jitter) {
      const SGPRProblem p = problem(k, theta, X, y, Z, noise, mean, jitter);
      SGPRGradient g;
      {
        NoGil nogil;
        g = fn(p);
      }
      return gradient_tuple(g);
    }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("Z"), py::arg("noise"),
        py::arg("mean"), py::arg("jitter"), "(objective, d/dtheta, d/dZ, d/dnoise, d/dmean [P], jitter)");
  }

  m.def("sgpr_predict", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                           const CArray& Z, double noise, const CArray& mean, double jitter,
                           const SGPRFactor& f, const CArray& Xnew, bool full_cov) {
    const SGPRProblem p = sgpr_problem(k, theta, X, y, Z, noise, mean, jitter);
    require_new_inputs(X, Xnew);
    require(f.c.cols() == p.mean.size(), "the factor does not match the number of outputs");
    const Index ns = Xnew.shape(0);
    CArray mu = new_matrix(ns, p.mean.size());
    CArray var = full_cov ? new_matrix(ns, ns) : new_vector(ns);
    auto mu_m = as_matrix(mu);
    auto cov_m = as_matrix(var);  // read as [n*, n*] when full_cov,
    auto var_v = as_vector(var);  // else as [n*]
    {
      NoGil nogil;
      if (full_cov) {
        sgpr_predict_cov(p, f, view(Xnew), mu_m, cov_m);
      } else {
        sgpr_predict(p, f, view(Xnew), mu_m, var_v);
      }
    }
    return py::make_tuple(mu, var);
  }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("Z"), py::arg("noise"),
        py::arg("mean"), py::arg("jitter"), py::arg("factor"), py::arg("Xnew"), py::arg("full_cov"),
  "latent (means [n*, P], the outputs' shared variance [n*] or covariance [n*, n*])");

  m.def("sgpr_qu", [](const Kernel& k, const CArray& theta, const CArray& X, const CArray& y,
                      const CArray& Z, double noise, const CArray& mean, double jitter, const SGPRFactor& f) {
    const SGPRProblem p = sgpr_problem(k, theta, X, y, Z, noise, mean, jitter);
    const Index mz = Z.shape(0);
    require(f.c.cols() == p.mean.size(), "the factor does not match the number of outputs");
    CArray mu = new_matrix(mz, p.mean.size()), S = new_matrix(mz, mz);
    auto mu_m = as_matrix(mu);
    auto S_m = as_matrix(S);
    {
      NoGil nogil;
      sgpr_qu(p, f, mu_m, S_m);
    }
    return py::make_tuple(mu, S);
  }, py::arg("kernel"), py::arg("theta"), py::arg("X"), py::arg("y"), py::arg("Z"), py::arg("noise"),
        py::arg("mean"), py::arg("jitter"), py::arg("factor"),
        "optimal q(u): (means [m, P], the shared covariance [m, m])");
}

// Checks theta [num_params] and the per-point vectors (y, mu, var: [k] each); returns k.
Index likelihood_points(const Likelihood& l, const CArray& theta,
                        std::initializer_list<std::reference_wrapper<const CArray>> vectors) {
  const CArray& first = *vectors.begin();
  const Index k = first.ndim() == 1 ? first.shape(0) : -1;
  bool ok = theta.ndim() == 1 && theta.shape(0) == l.num_params();
  for (const CArray& v : vectors) ok = ok && v.ndim() == 1 && v.shape(0) == k;
  require(ok, "inconsistent likelihood arguments (theta [num_params], y [k], mu [k], var [k])");
  return k;
}

void bind_likelihoods(py::module_ m) {
  py::class_<Likelihood, LikelihoodPtr>(m, "Likelihood", "An immutable likelihood; values come in theta.")
      .def_property_readonly("num_params", &Likelihood::num_params)
      .def("variational_expectations", [](const Likelihood& l, const CArray& theta, const CArray& y,
                                          const CArray& mu, const CArray& var) {
        const Index k = likelihood_points(l, theta, {y, mu, var});
        VectorXd dmu(k), dvar(k), dtheta = VectorXd::Zero(l.num_params());
        double ell;
        {
          NoGil nogil;
          ell = l.variational_expectations(theta.data(), vview(y), vview(mu), vview(var), dmu, dvar,
                                           dtheta.data());
        }
        return py::make_tuple(ell, copy_out(dmu), copy_out(dvar), copy_out(dtheta));
      }, py::arg("theta"), py::arg("y"), py::arg("mu"), py::arg("var"),
      "(sum of E[log p(y|f)], d/dmu [k], d/dvar [k], d/dtheta summed)")
      .def("predict_mean_and_var", [](const Likelihood& l, const CArray& theta, const CArray& mu,
                                      const CArray& var) {
        const Index k = likelihood_points(l, theta, {mu, var});
        CArray ym = new_vector(k), yv = new_vector(k);
        auto ym_v = as_vector(ym);
        auto yv_v = as_vector(yv);
        {
          NoGil nogil;
          l.predict_mean_and_var(theta.data(), vview(mu), vview(var), ym_v, yv_v);
        }
        return py::make_tuple(ym, yv);
      }, py::arg("theta"), py::arg("mu"), py::arg("var"), "(mean [k], variance [k]) of y")
      .def("predict_log_density", [](const Likelihood& l, const CArray& theta, const CArray& y,
                                     const CArray& mu, const CArray& var) {
        CArray out = new_vector(likelihood_points(l, theta, {y, mu, var}));
        auto o = as_vector(out);
        {
          NoGil nogil;
          l.predict_log_density(theta.data(), vview(y), vview(mu), vview(var), o);
        }
        return out;
      }, py::arg("theta"), py::arg("y"), py::arg("mu"), py::arg("var"), "log p(y) [k] under q(f)");
  m.def("gaussian_likelihood", &make_gaussian_likelihood);
  m.def("bernoulli_probit_likelihood", &make_bernoulli_probit_likelihood, py::arg("points"));
  m.def("poisson_likelihood", &make_poisson_likelihood, py::arg("points"));
  m.def("student_t_likelihood", &make_student_t_likelihood, py::arg("df"), py::arg("points"));
}

// The quadrature rule and the special functions the likelihoods use, checked against scipy.
void bind_likelihood_testing(py::module_ testing) {
  testing.def("gauss_hermite_normal", [](int points) {
    require(points >= 1, "points must be >= 1");
    VectorXd x, w;
    gauss_hermite_normal(points, x, w);
    return py::make_tuple(copy_out(x), copy_out(w));
  }, py::arg("points"), "(nodes, weights) for E over N(0, 1)");
  testing.def("log_ndtr", py::vectorize(&log_ndtr), py::arg("z"));
  testing.def("inverse_mills", py::vectorize(&inverse_mills), py::arg("z"));
}

}  // namespace

void bind_sparse(py::module_ m, py::module_ testing) {
  bind_likelihoods(m);
  bind_latent_likelihoods(m);
  bind_likelihood_testing(testing);
  bind_sgpr(m);
  bind_sgpr_lmc(m);
  bind_partitioned(m);
  bind_svgp(m, testing);
}

}  // namespace varinf::bindings

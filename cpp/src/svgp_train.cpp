// SVGP training loop (docs/math.md section 7.12): values from the unconstrained vector x, the
// ELBO gradient chained back to x, Adam (Kingma & Ba 2015, Algorithm 1; section 7.11) and
// minibatch sampling (varinf's Rng, random.hpp).
#include <algorithm>
#include <cmath>
#include <functional>

#include "varinf/errors.hpp"
#include "varinf/linalg.hpp"
#include "varinf/random.hpp"
#include "varinf/svgp.hpp"

namespace varinf {

namespace {

// softplus(x) = log(1 + e^x) and its derivative sigmoid(x), stable for large |x| (the
// Parameter transform, docs/math.md section 2.1).
double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
double sigmoid(double x) { return 0.5 * (1.0 + std::tanh(0.5 * x)); }

// The model's values [num values] from x.
VectorXd values_from(const SVGPLayout& l, const VectorXd& x) {
  VectorXd v = l.fixed;
  for (size_t i = 0; i < l.index.size(); ++i) {
    const Index j = l.index[i];
    if (j >= 0) v[i] = std::isnan(l.lower[j]) ? x[j] : softplus(x[j]) + l.lower[j];
  }
  return v;
}

Index tri_size(Index m) { return m * (m + 1) / 2; }

// Where latent GP j's q_mu [m] and q_sqrt entries sit among the values (section 11.1's order).
struct QEntries {
  std::vector<Index> mu, sqrt;
};

QEntries q_entries(const SVGPLayout& l, Index j) {
  const Index mo = l.q_mu_offset(), so = mo + l.m * l.L;
  QEntries e;
  for (Index i = 0; i < l.m; ++i) e.mu.push_back(mo + i * l.L + j);
  if (l.q_diag) {
    for (Index i = 0; i < l.m; ++i) e.sqrt.push_back(so + i * l.L + j);
  } else {
    for (Index k = 0; k < tri_size(l.m); ++k) e.sqrt.push_back(so + j * tri_size(l.m) + k);
  }
  return e;
}

}  // namespace

Index SVGPLayout::num_kernel_params() const {
  Index n = 0;
  for (const SVGPLayoutGroup& g : groups) n += g.kernel->num_params();
  return n;
}

Index SVGPLayout::q_sqrt_size() const { return q_diag ? m * L : L * tri_size(m); }

Index SVGPLayout::q_mu_offset() const {
  return num_kernel_params() + likelihood->num_params() + P * L + (has_mean ? L : 0);
}

Index SVGPLayout::num_values() const {
  return q_mu_offset() + m * L + q_sqrt_size() + Index(groups.size()) * m * d;
}

double svgp_elbo_grad_x(const SVGPLayout& l, const VectorXd& x, MatRef X, MatRef Y, VectorXd& grad_x,
                        double* jitter_used, VectorXd* grad_values, const ElboTerms& terms) {
  const VectorXd v = values_from(l, x);  // [num values]
  const Index kt = l.num_kernel_params(), q = l.likelihood->num_params(), m = l.m, nl = l.L;
  const Index w_off = kt + q, mean_off = w_off + l.P * nl, mo = l.q_mu_offset(), so = mo + m * nl;
  const Index z_off = so + l.q_sqrt_size();
  const Eigen::Map<const RowMatrixXd> W(v.data() + w_off, l.P, l.P ? nl : 0);  // [P, L]
  const Eigen::Map<const VectorXd> mean(v.data() + mean_off, l.has_mean ? nl : 0);
  const Eigen::Map<const RowMatrixXd> q_mu(v.data() + mo, m, nl);
  RowMatrixXd q_sqrt;  // [L m, m] or [m, L]
  if (l.q_diag) {
    q_sqrt = Eigen::Map<const RowMatrixXd>(v.data() + so, m, nl);
  } else {
    q_sqrt = RowMatrixXd::Zero(nl * m, m);
    for (Index j = 0, k = so; j < nl; ++j)
      for (Index i = 0; i < m; ++i)
        for (Index c = 0; c <= i; ++c) q_sqrt(j * m + i, c) = v[k++];
  }
  std::vector<LatentGroup> groups;
  for (Index g = 0, t = 0; g < Index(l.groups.size()); ++g) {
    const SVGPLayoutGroup& lg = l.groups[g];
    groups.push_back({*lg.kernel, v.data() + t, Eigen::Map<const RowMatrixXd>(v.data() + z_off + g * m * l.d, m, l.d),
                      lg.first, lg.count});
    t += lg.kernel->num_params();
  }
  const SVGPProblem prob{groups, *l.likelihood, v.data() + kt, q_mu, q_sqrt, W,
                         l.whiten, l.q_diag, mean, l.num_data, l.jitter, l.single};
  const SVGPGradient g = svgp_elbo_grad(prob, X, Y, terms);
  if (jitter_used) *jitter_used = g.jitter;

  // Gradient with respect to the values, in the same order, then chained to x.
  VectorXd gv(v.size());
  gv.head(kt) = g.dtheta;
  gv.segment(kt, q) = g.dlik;
  gv.segment(w_off, l.P * nl) = Eigen::Map<const VectorXd>(g.dW.data(), l.P * nl);
  gv.segment(mean_off, mean.size()) = g.dmean;
  gv.segment(mo, m * nl) = Eigen::Map<const VectorXd>(g.dq_mu.data(), m * nl);
  if (l.q_diag) {
    gv.segment(so, m * nl) = Eigen::Map<const VectorXd>(g.dq_sqrt.data(), m * nl);
  } else {
    for (Index j = 0, k = so; j < nl; ++j)
      for (Index i = 0; i < m; ++i)
        for (Index c = 0; c <= i; ++c) gv[k++] = g.dq_sqrt(j * m + i, c);
  }
  gv.tail(g.dZ.size()) = Eigen::Map<const VectorXd>(g.dZ.data(), g.dZ.size());
  grad_x.setZero(x.size());
  for (size_t i = 0; i < l.index.size(); ++i) {
    const Index j = l.index[i];
    if (j >= 0) grad_x[j] += std::isnan(l.lower[j]) ? gv[i] : gv[i] * sigmoid(x[j]);
  }
  if (grad_values) *grad_values = std::move(gv);
  return g.elbo;
}

namespace {

// Natural-gradient step on q(u_j) of one latent GP (Salimbeni, Eleftheriadis & Hensman 2018,
// eq. 6 and section 3; docs/math.md section 7.10): with natural parameters theta1 = S^-1 m,
// theta2 = -S^-1 / 2 and expectation parameters eta1 = m, eta2 = S + m m^T,
// theta <- theta + gamma dL/deta, where
//   dL/deta2 = dL/dS,  dL/deta1 = dL/dm - 2 (dL/dS) m.
// dL/dS comes from dL/dLq by the Cholesky reverse mode (S = Lq Lq^T; docs/math.md section 3).
// So S'^-1 = S^-1 - 2 gamma dL/dS and m' = S' (S^-1 m + gamma (dL/dm - 2 dL/dS m)).
// The latent GPs' q(u_j) are independent factors of q, so each takes its own step. Writes the
// new values into x; false when the new precision is not positive definite.
bool natural_step(const SVGPLayout& l, VectorXd& x, const VectorXd& v, const VectorXd& gv, double gamma,
                  const QEntries& e) {
  const Index m = l.m;
  VectorXd mu(m), mubar(m), new_mu(m), new_sqrt(Index(e.sqrt.size()));  // [m], [m], [m], [q_sqrt size]
  for (Index i = 0; i < m; ++i) {
    mu[i] = v[e.mu[i]];
    mubar[i] = gv[e.mu[i]];
  }
  if (l.q_diag) {
    Eigen::ArrayXd sd(m), sdbar(m);  // [m]
    for (Index i = 0; i < m; ++i) {
      sd[i] = v[e.sqrt[i]];
      sdbar[i] = gv[e.sqrt[i]];
    }
    const Eigen::ArrayXd Sbar = sdbar / (2.0 * sd);
    const Eigen::ArrayXd prec = sd.square().inverse() - 2.0 * gamma * Sbar;
    if (!(prec > 0.0).all()) return false;
    const Eigen::ArrayXd theta1 = mu.array() / sd.square() + gamma * (mubar.array() - 2.0 * Sbar * mu.array());
    new_mu = (theta1 / prec).matrix();
    new_sqrt = prec.rsqrt().matrix();
  } else {
    MatrixXd Lq = MatrixXd::Zero(m, m), Sbar = MatrixXd::Zero(m, m);  // [m, m]
    for (Index i = 0, k = 0; i < m; ++i)
      for (Index j = 0; j <= i; ++j, ++k) {
        Lq(i, j) = v[e.sqrt[k]];
        Sbar(i, j) = gv[e.sqrt[k]];
      }
    cholesky_reverse(Lq, Sbar);  // dL/dLq -> dL/dS
    MatrixXd P(m, m);            // [m, m] S^-1, then the new precision
    cholesky_inverse(Lq, P);
    const VectorXd theta1 = P * mu + gamma * (mubar - 2.0 * Sbar * mu);  // [m]
    P -= 2.0 * gamma * Sbar;
    if (!cholesky_inplace(P)) return false;
    MatrixXd S(m, m);  // [m, m] the new covariance
    cholesky_inverse(P, S);
    new_mu.noalias() = S * theta1;
    if (!cholesky_inplace(S)) return false;
    for (Index i = 0, k = 0; i < m; ++i)
      for (Index j = 0; j <= i; ++j) new_sqrt[k++] = S(i, j);
  }
  if (!new_mu.allFinite() || !new_sqrt.allFinite()) return false;
  for (Index i = 0; i < m; ++i) x[l.index[e.mu[i]]] = new_mu[i];
  for (Index i = 0; i < new_sqrt.size(); ++i) x[l.index[e.sqrt[i]]] = new_sqrt[i];
  return true;
}

// One natural step per latent GP; x unchanged unless every one succeeds.
bool natural_steps(const SVGPLayout& l, VectorXd& x, const VectorXd& gv, double gamma) {
  const VectorXd v = values_from(l, x);
  VectorXd next = x;
  for (Index j = 0; j < l.L; ++j)
    if (!natural_step(l, next, v, gv, gamma, q_entries(l, j))) return false;
  x = std::move(next);
  return true;
}

}  // namespace

bool svgp_natgrad_supported(const SVGPLayout& l) {
  const Index mo = l.q_mu_offset(), count = l.m * l.L + l.q_sqrt_size();
  for (Index i = mo; i < mo + count; ++i) {
    const Index j = l.index[i];
    if (j < 0 || !std::isnan(l.lower[j])) return false;
    for (Index k = 0; k < Index(l.index.size()); ++k)
      if (l.index[k] == j && k != i) return false;  // q(u) tied to another value
  }
  return true;
}

bool svgp_natgrad_step(const SVGPLayout& l, VectorXd& x, MatRef X, MatRef Y, double gamma, double& elbo) {
  VectorXd grad_x, gv;
  elbo = svgp_elbo_grad_x(l, x, X, Y, grad_x, nullptr, &gv);
  return std::isfinite(elbo) && gv.allFinite() && natural_steps(l, x, gv, gamma);
}

SVGPTrainer::SVGPTrainer(SVGPLayout layout, VectorXd x0, AdamOptions adam, std::uint64_t seed,
                         double natgrad_gamma)
    : layout_(std::move(layout)),
      x_(std::move(x0)),
      x_last_(x_),
      adam_(x_.size(), adam),
      gamma_(natgrad_gamma),
      sampler_(seed) {
  if (gamma_ > 0.0) {
    if (!svgp_natgrad_supported(layout_))
      throw InvalidArgument("natural gradients need q_mu and q_sqrt trainable and untied");
    const Index mo = layout_.q_mu_offset();
    for (Index i = mo; i < mo + layout_.m * layout_.L + layout_.q_sqrt_size(); ++i)
      q_entries_.push_back(layout_.index[i]);
  }
}

// One Adam step descending -ELBO from the batch (Xb, Yb).
SVGPTrainer::Failure SVGPTrainer::step(MatRef Xb, MatRef Yb, double& elbo) {
  ElboTerms terms;
  terms.draw = static_cast<Index>(adam_.t()) * Xb.rows();  // fresh Monte Carlo noise every step
  elbo = svgp_elbo_grad_x(layout_, x_, Xb, Yb, grad_, nullptr, gamma_ > 0.0 ? &grad_values_ : nullptr, terms);
  return update(elbo);
}

// The step from the ELBO and its gradient in grad_ (and grad_values_ with natural gradients):
// with natural gradients, q(u) takes the natural step instead (its Adam gradient is zeroed).
SVGPTrainer::Failure SVGPTrainer::update(double elbo) {
  if (!std::isfinite(elbo) || !grad_.allFinite()) return Failure::kNotFinite;
  if (std::isnan(first_elbo_)) first_elbo_ = elbo;
  if (elbo < first_elbo_ - kCollapseFactor * (std::abs(first_elbo_) + layout_.num_data)) return Failure::kCollapsed;
  x_last_ = x_;  // the last good point
  if (gamma_ > 0.0) {
    if (!grad_values_.allFinite()) return Failure::kNotFinite;
    for (Index j : q_entries_) grad_[j] = 0.0;
    if (!natural_steps(layout_, x_, grad_values_, gamma_)) return Failure::kNotFinite;
  }
  grad_ = -grad_;
  adam_.step(x_.data(), grad_.data());
  keep_above_raw_min();
  return Failure::kNone;
}

// A failed step stops training at the last good point.
void SVGPTrainer::stop(Failure failure) {
  failure_ = failure;
  failed_step_ = adam_.t() + 1;
  x_ = x_last_;
}

bool SVGPTrainer::apply(double elbo, const VectorXd& grad_x, const VectorXd& grad_values) {
  if (failed()) return false;
  grad_ = grad_x;
  grad_values_ = grad_values;
  const Failure failure = update(elbo);
  if (failure != Failure::kNone) stop(failure);
  return !failed();
}

// Projected Adam: a raw value pushed below raw_min returns there, where its gradient can
// still bring it back (natural steps move untransformed entries only).
void SVGPTrainer::keep_above_raw_min() {
  for (Index j = 0; j < x_.size(); ++j)
    if (!std::isnan(layout_.lower[j])) x_[j] = std::max(x_[j], layout_.raw_min);
}

namespace {

void gather(MatRef X, MatRef Y, const std::vector<Index>& rows, RowMatrixXd& Xb, RowMatrixXd& Yb) {
  Xb.resize(Index(rows.size()), X.cols());
  Yb.resize(Index(rows.size()), Y.cols());
  for (size_t i = 0; i < rows.size(); ++i) {
    Xb.row(i) = X.row(rows[i]);
    Yb.row(i) = Y.row(rows[i]);
  }
}

}  // namespace

std::vector<double> SVGPTrainer::advance(MatRef X, MatRef Y, Index steps, const BatchRows& fill) {
  std::vector<double> elbos;
  std::vector<Index> rows;
  RowMatrixXd Xb, Yb;  // [B, d], [B, c]
  for (Index s = 0; s < steps && !failed(); ++s) {
    fill(s, rows);
    gather(X, Y, rows, Xb, Yb);
    double elbo;
    Failure failure;
    try {
      failure = step(Xb, Yb, elbo);
    } catch (const LinAlgError&) {  // K(Z, Z) not factorisable even with jitter: as non-finite
      failure = Failure::kNotFinite;
    }
    if (failure != Failure::kNone) {
      stop(failure);
      break;
    }
    elbos.push_back(elbo);
  }
  return elbos;
}

std::vector<double> SVGPTrainer::run(MatRef X, MatRef Y, Index batch_size, Index steps) {
  return advance(X, Y, steps, [&](Index, std::vector<Index>& rows) { sampler_.next(X.rows(), batch_size, rows); });
}

std::vector<double> SVGPTrainer::run_batches(MatRef X, MatRef Y, const BatchMatrix& batches) {
  return advance(X, Y, batches.rows(), [&](Index s, std::vector<Index>& rows) {
    rows.resize(batches.cols());
    for (Index i = 0; i < batches.cols(); ++i) rows[i] = Index(batches(s, i));
  });
}

}  // namespace varinf

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

Index q_sqrt_size(const SVGPLayout& l) { return l.q_diag ? l.m : l.m * (l.m + 1) / 2; }

// The model's values [num values] from x.
VectorXd values_from(const SVGPLayout& l, const VectorXd& x) {
  VectorXd v = l.fixed;
  for (size_t i = 0; i < l.index.size(); ++i) {
    const Index j = l.index[i];
    if (j >= 0) v[i] = std::isnan(l.lower[j]) ? x[j] : softplus(x[j]) + l.lower[j];
  }
  return v;
}

}  // namespace

Index SVGPLayout::num_values() const {
  return kernel->num_params() + likelihood->num_params() + (has_mean ? 1 : 0) + m + q_sqrt_size(*this) +
         m * d;
}

double svgp_elbo_grad_x(const SVGPLayout& l, const VectorXd& x, MatRef X, VecRef y, VectorXd& grad_x,
                        double* jitter_used, VectorXd* grad_values, const ElboTerms& terms) {
  const VectorXd v = values_from(l, x);  // [num values]
  const Index p = l.kernel->num_params(), q = l.likelihood->num_params(), m = l.m;
  Index off = p + q;
  const double mean = l.has_mean ? v[off++] : 0.0;
  const Eigen::Map<const VectorXd> q_mu(v.data() + off, m);
  off += m;
  RowMatrixXd q_sqrt;  // [m, m] or [m, 1]
  if (l.q_diag) {
    q_sqrt = Eigen::Map<const VectorXd>(v.data() + off, m);
  } else {
    q_sqrt = RowMatrixXd::Zero(m, m);
    for (Index i = 0, k = off; i < m; ++i)
      for (Index j = 0; j <= i; ++j) q_sqrt(i, j) = v[k++];
  }
  const Index z_off = off + q_sqrt_size(l);
  const Eigen::Map<const RowMatrixXd> Z(v.data() + z_off, m, l.d);
  const SVGPProblem prob{*l.kernel, v.data(), *l.likelihood, v.data() + p, Z, q_mu, q_sqrt,
                         l.whiten, l.q_diag, mean, l.num_data, l.jitter};
  const SVGPGradient g = svgp_elbo_grad(prob, X, y, terms);
  if (jitter_used) *jitter_used = g.jitter;

  // Gradient with respect to the values, in the same order, then chained to x.
  VectorXd gv(v.size());
  gv.head(p) = g.dtheta;
  gv.segment(p, q) = g.dlik;
  off = p + q;
  if (l.has_mean) gv[off++] = g.dmean;
  gv.segment(off, m) = g.dq_mu;
  off += m;
  if (l.q_diag) {
    gv.segment(off, m) = g.dq_sqrt.col(0);
  } else {
    for (Index i = 0, k = off; i < m; ++i)
      for (Index j = 0; j <= i; ++j) gv[k++] = g.dq_sqrt(i, j);
  }
  gv.segment(z_off, m * l.d) = Eigen::Map<const VectorXd>(g.dZ.data(), m * l.d);
  grad_x.setZero(x.size());
  for (size_t i = 0; i < l.index.size(); ++i) {
    const Index j = l.index[i];
    if (j >= 0) grad_x[j] += std::isnan(l.lower[j]) ? gv[i] : gv[i] * sigmoid(x[j]);
  }
  if (grad_values) *grad_values = std::move(gv);
  return g.elbo;
}

namespace {

// Where q_mu and q_sqrt sit among the values.
Index q_mu_offset(const SVGPLayout& l) {
  return l.kernel->num_params() + l.likelihood->num_params() + (l.has_mean ? 1 : 0);
}

// Natural-gradient step on q(u) (Salimbeni, Eleftheriadis & Hensman 2018, eq. 6 and section
// 3; docs/math.md section 7.10): with natural parameters theta1 = S^-1 m, theta2 = -S^-1 / 2
// and expectation parameters eta1 = m, eta2 = S + m m^T, theta <- theta + gamma dL/deta, where
//   dL/deta2 = dL/dS,  dL/deta1 = dL/dm - 2 (dL/dS) m.
// dL/dS comes from dL/dLq by the Cholesky reverse mode (S = Lq Lq^T; docs/math.md section 3).
// So S'^-1 = S^-1 - 2 gamma dL/dS and m' = S' (S^-1 m + gamma (dL/dm - 2 dL/dS m)).
// Returns false (x unchanged) when the new precision is not positive definite.
bool natural_step(const SVGPLayout& l, VectorXd& x, const VectorXd& gv, double gamma) {
  const VectorXd v = values_from(l, x);
  const Index m = l.m, mo = q_mu_offset(l), so = mo + m;
  const VectorXd mu = v.segment(mo, m), mubar = gv.segment(mo, m);  // [m]
  VectorXd new_mu(m), new_sqrt(q_sqrt_size(l));
  if (l.q_diag) {
    const Eigen::ArrayXd sd = v.segment(so, m), sdbar = gv.segment(so, m);  // [m]
    const Eigen::ArrayXd Sbar = sdbar / (2.0 * sd);
    const Eigen::ArrayXd prec = sd.square().inverse() - 2.0 * gamma * Sbar;
    if (!(prec > 0.0).all()) return false;
    const Eigen::ArrayXd theta1 = mu.array() / sd.square() + gamma * (mubar.array() - 2.0 * Sbar * mu.array());
    new_mu = (theta1 / prec).matrix();
    new_sqrt = prec.rsqrt().matrix();
  } else {
    MatrixXd Lq = MatrixXd::Zero(m, m), Sbar = MatrixXd::Zero(m, m);  // [m, m]
    for (Index i = 0, k = so; i < m; ++i)
      for (Index j = 0; j <= i; ++j, ++k) {
        Lq(i, j) = v[k];
        Sbar(i, j) = gv[k];
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
  for (Index i = 0; i < m; ++i) x[l.index[mo + i]] = new_mu[i];
  for (Index i = 0; i < new_sqrt.size(); ++i) x[l.index[so + i]] = new_sqrt[i];
  return true;
}

}  // namespace

bool svgp_natgrad_supported(const SVGPLayout& l) {
  const Index mo = q_mu_offset(l), count = l.m + q_sqrt_size(l);
  for (Index i = mo; i < mo + count; ++i) {
    const Index j = l.index[i];
    if (j < 0 || !std::isnan(l.lower[j])) return false;
    for (Index k = 0; k < Index(l.index.size()); ++k)
      if (l.index[k] == j && k != i) return false;  // q(u) tied to another value
  }
  return true;
}

bool svgp_natgrad_step(const SVGPLayout& l, VectorXd& x, MatRef X, VecRef y, double gamma, double& elbo) {
  VectorXd grad_x, gv;
  elbo = svgp_elbo_grad_x(l, x, X, y, grad_x, nullptr, &gv);
  return std::isfinite(elbo) && gv.allFinite() && natural_step(l, x, gv, gamma);
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
    const Index mo = q_mu_offset(layout_);
    for (Index i = mo; i < mo + layout_.m + q_sqrt_size(layout_); ++i) q_entries_.push_back(layout_.index[i]);
  }
}

// One Adam step descending -ELBO from the batch (Xb, yb).
SVGPTrainer::Failure SVGPTrainer::step(MatRef Xb, VecRef yb, double& elbo) {
  elbo = svgp_elbo_grad_x(layout_, x_, Xb, yb, grad_, nullptr, gamma_ > 0.0 ? &grad_values_ : nullptr);
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
    if (!natural_step(layout_, x_, grad_values_, gamma_)) return Failure::kNotFinite;
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

void gather(MatRef X, VecRef y, const std::vector<Index>& rows, RowMatrixXd& Xb, VectorXd& yb) {
  Xb.resize(Index(rows.size()), X.cols());
  yb.resize(Index(rows.size()));
  for (size_t i = 0; i < rows.size(); ++i) {
    Xb.row(i) = X.row(rows[i]);
    yb[i] = y[rows[i]];
  }
}

}  // namespace

std::vector<double> SVGPTrainer::advance(MatRef X, VecRef y, Index steps, const BatchRows& fill) {
  std::vector<double> elbos;
  std::vector<Index> rows;
  RowMatrixXd Xb;  // [B, d]
  VectorXd yb;     // [B]
  for (Index s = 0; s < steps && !failed(); ++s) {
    fill(s, rows);
    gather(X, y, rows, Xb, yb);
    double elbo;
    Failure failure;
    try {
      failure = step(Xb, yb, elbo);
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

std::vector<double> SVGPTrainer::run(MatRef X, VecRef y, Index batch_size, Index steps) {
  return advance(X, y, steps, [&](Index, std::vector<Index>& rows) { sampler_.next(X.rows(), batch_size, rows); });
}

std::vector<double> SVGPTrainer::run_batches(MatRef X, VecRef y, const BatchMatrix& batches) {
  return advance(X, y, batches.rows(), [&](Index s, std::vector<Index>& rows) {
    rows.resize(batches.cols());
    for (Index i = 0; i < batches.cols(); ++i) rows[i] = Index(batches(s, i));
  });
}

}  // namespace varinf

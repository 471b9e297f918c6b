// SVGP training loop: values from the unconstrained vector x, the ELBO gradient chained back to
// x, Adam (Kingma & Ba 2015, Algorithm 1) and minibatch sampling.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "varinf/errors.hpp"
#include "varinf/svgp.hpp"

namespace varinf {

namespace {

// softplus(x) = log(1 + e^x) and its derivative sigmoid(x), stable for large |x|.
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
                        double* jitter_used) {
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
  const SVGPGradient g = svgp_elbo_grad(prob, X, y);
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
  return g.elbo;
}

SVGPTrainer::SVGPTrainer(SVGPLayout layout, VectorXd x0, AdamOptions adam, std::uint64_t seed)
    : layout_(std::move(layout)),
      x_(std::move(x0)),
      m1_(VectorXd::Zero(x_.size())),
      m2_(VectorXd::Zero(x_.size())),
      x_last_(x_),
      adam_(adam),
      rng_(seed) {}

// Adam, Kingma & Ba (2015) Algorithm 1, ascending: x += lr mhat / (sqrt(vhat) + eps).
bool SVGPTrainer::step(MatRef Xb, VecRef yb, double& elbo) {
  elbo = svgp_elbo_grad_x(layout_, x_, Xb, yb, grad_);
  if (!std::isfinite(elbo) || !grad_.allFinite()) return false;
  x_last_ = x_;  // the last point with a finite ELBO
  ++t_;
  m1_ = adam_.beta1 * m1_ + (1.0 - adam_.beta1) * grad_;
  m2_ = adam_.beta2 * m2_ + (1.0 - adam_.beta2) * grad_.cwiseAbs2();
  const double c1 = 1.0 - std::pow(adam_.beta1, double(t_));
  const double c2 = 1.0 - std::pow(adam_.beta2, double(t_));
  x_.array() += adam_.learning_rate * (m1_.array() / c1) / ((m2_.array() / c2).sqrt() + adam_.eps);
  return true;
}

void SVGPTrainer::next_batch(Index n, Index batch_size, std::vector<Index>& rows) {
  if (Index(order_.size()) != n || cursor_ + batch_size > n) {
    order_.resize(n);
    std::iota(order_.begin(), order_.end(), Index(0));
    std::shuffle(order_.begin(), order_.end(), rng_);
    cursor_ = 0;
  }
  rows.assign(order_.begin() + cursor_, order_.begin() + cursor_ + batch_size);
  cursor_ += batch_size;
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
  for (Index s = 0; s < steps && !failed_; ++s) {
    fill(s, rows);
    gather(X, y, rows, Xb, yb);
    double elbo;
    bool ok;
    try {
      ok = step(Xb, yb, elbo);
    } catch (const LinAlgError&) {  // K(Z, Z) not factorisable even with jitter: as non-finite
      ok = false;
    }
    if (!ok) {
      failed_ = true;
      failed_step_ = t_ + 1;
      x_ = x_last_;
      break;
    }
    elbos.push_back(elbo);
  }
  return elbos;
}

std::vector<double> SVGPTrainer::run(MatRef X, VecRef y, Index batch_size, Index steps) {
  return advance(X, y, steps, [&](Index, std::vector<Index>& rows) { next_batch(X.rows(), batch_size, rows); });
}

std::vector<double> SVGPTrainer::run_batches(MatRef X, VecRef y, const BatchMatrix& batches) {
  return advance(X, y, batches.rows(), [&](Index s, std::vector<Index>& rows) {
    rows.resize(batches.cols());
    for (Index i = 0; i < batches.cols(); ++i) rows[i] = Index(batches(s, i));
  });
}

}  // namespace varinf

// Likelihoods (docs/math.md section 7).
#include "varinf/likelihoods.hpp"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>

#include "varinf/constants.hpp"

namespace varinf {

// Golub & Welsch (1969): the nodes of the n-point Gauss-Hermite rule (weight e^-t^2) are the
// eigenvalues of the symmetric tridiagonal Jacobi matrix with off-diagonal sqrt(k / 2), and
// the weights are sqrt(pi) times the squared first components of the unit eigenvectors. For
// E_{N(0,1)}: x = sqrt 2 t, w = weight / sqrt pi.
void gauss_hermite_normal(int points, VectorXd& nodes, VectorXd& weights) {
  MatrixXd J = MatrixXd::Zero(points, points);  // [points, points]
  for (int k = 1; k < points; ++k) J(k, k - 1) = J(k - 1, k) = std::sqrt(0.5 * k);
  Eigen::SelfAdjointEigenSolver<MatrixXd> eig(J);
  nodes = std::sqrt(2.0) * eig.eigenvalues();
  weights = eig.eigenvectors().row(0).transpose().array().square();
}

namespace {

constexpr double kSqrtHalf = 0.70710678118654752440;

// Phi(z) = phi(z) / (-z) * (1 - 1/z^2 + 3/z^4 - 15/z^6 + ...) for z -> -inf (Abramowitz &
// Stegun 26.2.12); below z = -30 eight terms are exact to double precision.
double mills_series(double z) {
  const double u = 1.0 / (z * z);
  double term = 1.0, sum = 1.0;
  for (int k = 1; k <= 8; ++k) {
    term *= -(2.0 * k - 1.0) * u;
    sum += term;
  }
  return sum;
}

constexpr double kTailStart = -30.0;

}  // namespace

// log Phi(z) = log1p(-erfc(z / sqrt 2) / 2) for z > 0 (no cancellation near 1),
// log(erfc(-z / sqrt 2) / 2) while erfc does not underflow, then the asymptotic series:
// log Phi(z) = -z^2/2 - log(-z) - log sqrt(2 pi) + log(series).
double log_ndtr(double z) {
  if (z > 0.0) return std::log1p(-0.5 * std::erfc(z * kSqrtHalf));
  if (z > kTailStart) return std::log(0.5 * std::erfc(-z * kSqrtHalf));
  return -0.5 * z * z - std::log(-z) - kLogSqrt2Pi + std::log(mills_series(z));
}

// phi(z) / Phi(z); in the tail -z / series.
double inverse_mills(double z) {
  if (z > kTailStart) return std::exp(-0.5 * z * z - kLogSqrt2Pi - log_ndtr(z));
  return -z / mills_series(z);
}

namespace {

// p(y | f) = N(y; f, s2), theta = [s2]. With f ~ N(mu, v):
//   ell = -1/2 log 2pi - 1/2 log s2 - ((y - mu)^2 + v) / (2 s2)          (docs/math.md section 7)
//   dell/dmu = (y - mu) / s2, dell/dv = -1 / (2 s2),
//   dell/ds2 = -1 / (2 s2) + ((y - mu)^2 + v) / (2 s2^2);
// predictive y ~ N(mu, v + s2).
class Gaussian final : public Likelihood {
 public:
  Index num_params() const override { return 1; }

  double variational_expectations(const double* theta, VecRef y, VecRef mu, VecRef var, VecOut dmu,
                                  VecOut dvar, double* dtheta) const override {
    const double s2 = theta[0];
    const Index k = y.size();
    dmu = (y - mu) / s2;
    dvar.setConstant(-0.5 / s2);
    const double sq = (y - mu).squaredNorm() + var.sum();  // sum (y - mu)^2 + v
    dtheta[0] += -0.5 * k / s2 + 0.5 * sq / (s2 * s2);
    return -0.5 * k * (kLog2Pi + std::log(s2)) - 0.5 * sq / s2;
  }

  void predict_mean_and_var(const double* theta, VecRef mu, VecRef var, VecOut ymean,
                            VecOut yvar) const override {
    ymean = mu;
    yvar = var.array() + theta[0];
  }

  void predict_log_density(const double* theta, VecRef y, VecRef mu, VecRef var,
                           VecOut out) const override {
    for (Index i = 0; i < y.size(); ++i) {
      const double v = var[i] + theta[0], r = y[i] - mu[i];
      out[i] = -0.5 * (kLog2Pi + std::log(v) + r * r / v);
    }
  }
};

// The value of log p(y | f), its first two derivatives in f and its gradient in theta.
struct LogDensity {
  double lp = 0.0, d1 = 0.0, d2 = 0.0;
  double dtheta[1] = {0.0};  // at most one parameter here
};

// Likelihoods integrated by Gauss-Hermite quadrature (docs/math.md section 7):
//   E[g(f)] ~ sum_k w_k g(mu + sd x_k) with sd = sqrt(var); its exact derivatives
//   d/dmu = sum_k w_k g'(f_k),  d/dvar = sum_k w_k g'(f_k) x_k / (2 sd)
// (so the gradient is that of the objective computed); as sd -> 0 the latter tends to
// g''(mu) / 2 (Price's theorem), used below sd = kMinSd. The predictive density
// log p(y*) = log sum_k w_k p(y* | f_k) (log-sum-exp) uses a finer rule of kPredictPoints.

class Quadrature : public Likelihood {
 public:
  explicit Quadrature(int points) {
    gauss_hermite_normal(points, x_, w_);
    gauss_hermite_normal(std::max(points, kPredictPoints), px_, pw_);
  }

  double variational_expectations(const double* theta, VecRef y, VecRef mu, VecRef var, VecOut dmu,
                                  VecOut dvar, double* dtheta) const override {
    const Index q = num_params();
    double total = 0.0;
    for (Index i = 0; i < y.size(); ++i) {
      const double sd = std::sqrt(std::max(var[i], 0.0));
      double e = 0.0, g1 = 0.0, g1x = 0.0, g2 = 0.0;
      for (Index k = 0; k < x_.size(); ++k) {
        const LogDensity ld = log_density(theta, y[i], mu[i] + sd * x_[k]);
        e += w_[k] * ld.lp;
        g1 += w_[k] * ld.d1;
        g1x += w_[k] * ld.d1 * x_[k];
        g2 += w_[k] * ld.d2;
        for (Index j = 0; j < q; ++j) dtheta[j] += w_[k] * ld.dtheta[j];
      }
      total += e;
      dmu[i] = g1;
      dvar[i] = sd > kMinSd ? 0.5 * g1x / sd : 0.5 * g2;
    }
    return total;
  }

  void predict_log_density(const double* theta, VecRef y, VecRef mu, VecRef var,
                           VecOut out) const override {
    VectorXd terms(px_.size());  // [predict points]
    for (Index i = 0; i < y.size(); ++i) {
      const double sd = std::sqrt(std::max(var[i], 0.0));
      for (Index k = 0; k < px_.size(); ++k)
        terms[k] = std::log(pw_[k]) + log_density(theta, y[i], mu[i] + sd * px_[k]).lp;
      const double top = terms.maxCoeff();
      // Every term -inf (y* impossible under every node): the density is 0, its log -inf.
      out[i] = std::isinf(top) ? top : top + std::log((terms.array() - top).exp().sum());
    }
  }

 protected:
  virtual LogDensity log_density(const double* theta, double y, double f) const = 0;

 private:
  VectorXd x_, w_;    // [points] nodes and weights for E_{N(0, 1)}
  VectorXd px_, pw_;  // the finer rule for predictive densities
};

// p(y | f) = Phi((2y - 1) f). With s = 2y - 1, z = s f and r = phi(z) / Phi(z):
// d/df log Phi(z) = s r, d2/df2 = -r (z + r). Predictive p(y = 1) = Phi(mu / sqrt(1 + var)).
class BernoulliProbit final : public Quadrature {
 public:
  using Quadrature::Quadrature;
  Index num_params() const override { return 0; }

  void predict_mean_and_var(const double*, VecRef mu, VecRef var, VecOut ymean,
                            VecOut yvar) const override {
    for (Index i = 0; i < mu.size(); ++i) {
      const double p = std::exp(log_ndtr(mu[i] / std::sqrt(1.0 + var[i])));
      ymean[i] = p;
      yvar[i] = p * (1.0 - p);
    }
  }

  void predict_log_density(const double*, VecRef y, VecRef mu, VecRef var, VecOut out) const override {
    for (Index i = 0; i < y.size(); ++i)
      out[i] = log_ndtr((2.0 * y[i] - 1.0) * mu[i] / std::sqrt(1.0 + var[i]));
  }

 protected:
  LogDensity log_density(const double*, double y, double f) const override {
    const double s = 2.0 * y - 1.0, z = s * f, r = inverse_mills(z);
    LogDensity ld;
    ld.lp = log_ndtr(z);
    ld.d1 = s * r;
    ld.d2 = -r * (z + r);
    return ld;
  }
};

// p(y | f) = Poisson(y; e^f). With f ~ N(mu, var) (docs/math.md section 7):
//   ell = y mu - exp(mu + var / 2) - lgamma(y + 1),  dell/dmu = y - exp(mu + var/2),
//   dell/dvar = -exp(mu + var/2) / 2;  E[y] = exp(mu + var/2),
//   Var[y] = E[y] + (exp(var) - 1) exp(2 mu + var)  (law of total variance).
class PoissonExp final : public Quadrature {
 public:
  using Quadrature::Quadrature;
  Index num_params() const override { return 0; }

  double variational_expectations(const double*, VecRef y, VecRef mu, VecRef var, VecOut dmu,
                                  VecOut dvar, double*) const override {
    double total = 0.0;
    for (Index i = 0; i < y.size(); ++i) {
      const double rate = std::exp(mu[i] + 0.5 * var[i]);
      total += y[i] * mu[i] - rate - std::lgamma(y[i] + 1.0);
      dmu[i] = y[i] - rate;
      dvar[i] = -0.5 * rate;
    }
    return total;
  }

  void predict_mean_and_var(const double*, VecRef mu, VecRef var, VecOut ymean,
                            VecOut yvar) const override {
    for (Index i = 0; i < mu.size(); ++i) {
      ymean[i] = std::exp(mu[i] + 0.5 * var[i]);
      // The second term is 0 for var = 0, also where exp(2 mu) overflows (no 0 * inf = NaN).
      yvar[i] = ymean[i] + (var[i] > 0.0 ? std::expm1(var[i]) * std::exp(2.0 * mu[i] + var[i]) : 0.0);
    }
  }

 protected:
  LogDensity log_density(const double*, double y, double f) const override {
    LogDensity ld;
    ld.lp = y * f - std::exp(f) - std::lgamma(y + 1.0);
    ld.d1 = y - std::exp(f);
    ld.d2 = -std::exp(f);
    return ld;
  }
};

// Student-t around f with nu degrees of freedom and scale sigma, theta = [sigma]. With
// e = y - f and c = nu sigma^2 + e^2:
//   log p = lgamma((nu+1)/2) - lgamma(nu/2) - log(sqrt(nu pi) sigma) - (nu+1)/2 log(c / (nu sigma^2))
//   d/df = (nu + 1) e / c,  d2/df2 = (nu + 1)(e^2 - nu sigma^2) / c^2,
//   d/dsigma = -1/sigma + (nu + 1) e^2 / (sigma c).
// Predictive mean mu, variance var + sigma^2 nu / (nu - 2) (infinite for nu <= 2).
class StudentT final : public Quadrature {
 public:
  StudentT(double df, int points)
      : Quadrature(points),
        nu_(df),
        log_const_(std::lgamma(0.5 * (df + 1.0)) - std::lgamma(0.5 * df) - 0.5 * std::log(df * M_PI)) {}
  Index num_params() const override { return 1; }

  void predict_mean_and_var(const double* theta, VecRef mu, VecRef var, VecOut ymean,
                            VecOut yvar) const override {
    const double s2 = theta[0] * theta[0];
    ymean = mu;
    yvar = var.array() + (nu_ > 2.0 ? s2 * nu_ / (nu_ - 2.0) : INFINITY);
  }

 protected:
  LogDensity log_density(const double* theta, double y, double f) const override {
    const double sigma = theta[0], e = y - f, ns2 = nu_ * sigma * sigma, c = ns2 + e * e;
    LogDensity ld;
    ld.lp = log_const_ - std::log(sigma) - 0.5 * (nu_ + 1.0) * std::log1p(e * e / ns2);
    ld.d1 = (nu_ + 1.0) * e / c;
    ld.d2 = (nu_ + 1.0) * (e * e - ns2) / (c * c);
    ld.dtheta[0] = -1.0 / sigma + (nu_ + 1.0) * e * e / (sigma * c);
    return ld;
  }

 private:
  double nu_, log_const_;
};

}  // namespace

LikelihoodPtr make_gaussian_likelihood() { return std::make_shared<Gaussian>(); }
LikelihoodPtr make_bernoulli_probit_likelihood(int points) { return std::make_shared<BernoulliProbit>(points); }
LikelihoodPtr make_poisson_likelihood(int points) { return std::make_shared<PoissonExp>(points); }
LikelihoodPtr make_student_t_likelihood(double df, int points) {
  return std::make_shared<StudentT>(df, points);
}

}  // namespace varinf

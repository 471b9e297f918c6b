// Likelihoods (MATH.md section 5).
#include "varinf/likelihoods.hpp"

#include <cmath>

namespace varinf {

namespace {

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

// p(y | f) = N(y; f, s2), theta = [s2]. With f ~ N(mu, v):
//   ell = -1/2 log 2pi - 1/2 log s2 - ((y - mu)^2 + v) / (2 s2)          (MATH.md section 5)
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
    const Eigen::ArrayXd v = var.array() + theta[0];
    out = -0.5 * (kLog2Pi + v.log() + (y - mu).array().square() / v);
  }
};

}  // namespace

LikelihoodPtr make_gaussian_likelihood() { return std::make_shared<Gaussian>(); }

}  // namespace varinf

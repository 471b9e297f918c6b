// The heteroscedastic Gaussian likelihood (docs/math.md section 11.5).
#include <algorithm>
#include <cmath>

#include "varinf/constants.hpp"
#include "varinf/errors.hpp"
#include "varinf/latent_likelihoods.hpp"

namespace varinf {

namespace {

// y ~ N(f, e^g) with f = f_0 ~ N(mu_f, v_f), g = f_1 ~ N(mu_g, v_g) (Lazaro-Gredilla & Titsias
// 2011; Saul et al. 2016), docs/math.md section 11.5. With E[e^-g] = e^(-mu_g + v_g/2) =: e and
// q = (y - mu_f)^2 + v_f:
//   ell = -1/2 log 2pi - 1/2 mu_g - q e / 2,
//   d/dmu_f = (y - mu_f) e,  d/dv_f = -e / 2,  d/dmu_g = (q e - 1) / 2,  d/dv_g = -q e / 4;
// predictive mean mu_f, variance v_f + E[e^g] = v_f + e^(mu_g + v_g/2); the predictive density
// log sum_k w_k N(y; mu_f, v_f + e^(mu_g + sd_g x_k)) by Gauss-Hermite with
// max(points, kPredictPoints) nodes and log-sum-exp.

class HeteroskedasticGaussian final : public LatentLikelihood {
 public:
  explicit HeteroskedasticGaussian(int points) { gauss_hermite_normal(std::max(points, kPredictPoints), x_, w_); }

  Index num_params() const override { return 0; }
  Index num_latent() const override { return 2; }
  Index num_targets() const override { return 1; }
  Index num_predictive() const override { return 1; }

  double variational_expectations(const double*, Index, MatRef Y, ColMatRef mu, ColMatRef var,
                                  ColMatOut dmu, ColMatOut dvar, double*) const override {
    double total = 0.0;
    for (Index i = 0; i < mu.rows(); ++i) {
      const double r = Y(i, 0) - mu(i, 0), e = std::exp(-mu(i, 1) + 0.5 * var(i, 1)), qe = (r * r + var(i, 0)) * e;
      total += -0.5 * (kLog2Pi + mu(i, 1) + qe);
      dmu(i, 0) = r * e;
      dvar(i, 0) = -0.5 * e;
      dmu(i, 1) = 0.5 * (qe - 1.0);
      dvar(i, 1) = -0.25 * qe;
    }
    return total;
  }

  void predict_mean_and_var(const double*, ColMatRef mu, ColMatRef var, MatOut ymean,
                            MatOut yvar) const override {
    for (Index i = 0; i < mu.rows(); ++i) {
      ymean(i, 0) = mu(i, 0);
      yvar(i, 0) = var(i, 0) + std::exp(mu(i, 1) + 0.5 * var(i, 1));
    }
  }

  void predict_log_density(const double*, MatRef Y, ColMatRef mu, ColMatRef var, VecOut out) const override {
    VectorXd terms(x_.size());  // [nodes]
    for (Index i = 0; i < mu.rows(); ++i) {
      const double r = Y(i, 0) - mu(i, 0), sd_g = std::sqrt(std::max(var(i, 1), 0.0));
      for (Index k = 0; k < x_.size(); ++k) {
        const double s2 = var(i, 0) + std::exp(mu(i, 1) + sd_g * x_[k]);
        terms[k] = std::log(w_[k]) - 0.5 * (kLog2Pi + std::log(s2) + r * r / s2);
      }
      const double top = terms.maxCoeff();
      out[i] = top + std::log((terms.array() - top).exp().sum());
    }
  }

 private:
  VectorXd x_, w_;  // [max(points, 100)] nodes and weights for E_{N(0, 1)}
};

}  // namespace

LatentLikelihoodPtr make_heteroskedastic_gaussian(int points) {
  if (points < 1 || points > 1000) throw InvalidArgument("points must be in 1..1000");
  return std::make_shared<HeteroskedasticGaussian>(points);
}

}  // namespace varinf

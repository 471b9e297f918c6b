// Multi-class likelihoods, one latent function per class (docs/math.md sections 11.3 and 11.4).
#include <algorithm>
#include <cmath>

#include "varinf/constants.hpp"
#include "varinf/errors.hpp"
#include "varinf/latent_likelihoods.hpp"
#include "varinf/random.hpp"

namespace varinf {

namespace {

// The class of label y, or -1 unless y is one of 0, ..., K - 1. The caller checks its targets;
// an invalid label gives a NaN row instead of an out-of-bounds read (the evaluations run inside
// OpenMP regions, where they cannot throw).
Index class_of(double y, Index K) {
  return y >= 0.0 && y < static_cast<double>(K) && y == std::floor(y) ? static_cast<Index>(y) : -1;
}

// sum_i row(i, y_i) over the rows of Y [k, 1]; a row whose label is not a class gets NaN
// derivatives and makes the sum NaN.
template <class Row>
double sum_labelled_rows(MatRef Y, Index K, ColMatOut dmu, ColMatOut dvar, Row row) {
  double total = 0.0;
  for (Index i = 0; i < Y.rows(); ++i) {
    const Index y = class_of(Y(i, 0), K);
    if (y < 0) {
      dmu.row(i).setConstant(NAN);
      dvar.row(i).setConstant(NAN);
      total = NAN;
      continue;
    }
    total += row(i, y);
  }
  return total;
}

// RobustMax (Hernandez-Lobato, Hernandez-Lobato & Dupont 2011; GPflow's MultiClass), docs/math.md
// section 11.3: p(y | f) = 1 - eps if y = argmax f, else eps / (K - 1), so with P = q(y = argmax f)
//   ell = log(eps / (K - 1)) + (log(1 - eps) - log(eps / (K - 1))) P,
//   P   = sum_k w_k h_k,  h_k = prod_{j != y} Phi_c(z_kj),  z_kj = (mu_y + s_y x_k - mu_j) / s_j,
// Gauss-Hermite over x ~ N(mu_y, v_y) as GPflow's RobustMax.prob_is_largest, Phi included: GPflow
// squashes each Phi into [c, 1 - c], Phi_c(z) = c + (1 - 2 c) Phi(z), c = 1e-6, and so does this
// (a product of K - 1 of them stays above c^(K - 1); for K > 50 one below 1e-300 may round to 0,
// which is its worth to P). s = sqrt(max(v, 1e-10)), GPflow's floor: as v_j -> 0,
// Phi(z_kj) becomes a step the rule cannot resolve, so below the floor P is constant in v and
// dP/dv = 0. With g_kj = (1 - 2 c) phi(z_kj) prod_{i != j, y} Phi_c(z_ki) = dh_k / dz_kj (as
// h_k / Phi_c(z_kj), which never divides by less than c):
//   dP/dmu_j = -sum_k w_k g_kj / s_j,  dP/ds_j = -sum_k w_k g_kj z_kj / s_j     (j != y)
//   dP/dmu_y = sum_k w_k h'_k,         dP/ds_y = sum_k w_k h'_k x_k,  h'_k = sum_{j != y} g_kj / s_j
// and dP/dv = dP/ds / (2 s).
constexpr double kMinVar = 1e-10;
constexpr double kSquash = 1e-6;  // c

// Phi_c(z) >= c: Phi itself may underflow (erfc to 0) without harm.
double squashed_cdf(double z) { return kSquash + (1.0 - 2.0 * kSquash) * 0.5 * std::erfc(-z * 0.70710678118654752440); }

class RobustMax final : public LatentLikelihood {
 public:
  RobustMax(Index K, double eps, int points)
      : K_(K), hit_(1.0 - eps), miss_(eps / (K - 1)), log_miss_(std::log(miss_)),
        log_ratio_(std::log1p(-eps) - log_miss_) {
    gauss_hermite_normal(points, x_, w_);
  }

  Index num_params() const override { return 0; }
  Index num_latent() const override { return K_; }
  Index num_targets() const override { return 1; }
  Index num_predictive() const override { return K_; }

  double variational_expectations(const double*, Index, MatRef Y, ColMatRef mu, ColMatRef var,
                                  ColMatOut dmu, ColMatOut dvar, double*) const override {
    VectorXd dP_dmu(K_), dP_ds(K_);  // [K]
    return sum_labelled_rows(Y, K_, dmu, dvar, [&](Index i, Index y) {
      const VectorXd m = mu.row(i).transpose(), s = sd(var.row(i).transpose());  // [K]
      const double ell = log_miss_ + log_ratio_ * prob_is_largest(y, m, s, &dP_dmu, &dP_ds);
      for (Index j = 0; j < K_; ++j) {
        dmu(i, j) = log_ratio_ * dP_dmu[j];
        dvar(i, j) = var(i, j) > kMinVar ? log_ratio_ * dP_ds[j] / (2.0 * s[j]) : 0.0;
      }
      return ell;
    });
  }

  // p_c = (1 - eps) P_c + eps / (K - 1) (1 - P_c) with P_c = q(c = argmax f), as GPflow's
  // MultiClass.predict_mean_and_var; the P_c sum to 1 up to the quadrature's error.
  void predict_mean_and_var(const double*, ColMatRef mu, ColMatRef var, MatOut ymean,
                            MatOut yvar) const override {
    for (Index i = 0; i < mu.rows(); ++i) {
      const VectorXd m = mu.row(i).transpose(), s = sd(var.row(i).transpose());  // [K]
      for (Index c = 0; c < K_; ++c) {
        const double p = probability(c, m, s);
        ymean(i, c) = p;
        yvar(i, c) = p * (1.0 - p);
      }
    }
  }

  void predict_log_density(const double*, MatRef Y, ColMatRef mu, ColMatRef var, VecOut out) const override {
    for (Index i = 0; i < mu.rows(); ++i) {
      const Index y = class_of(Y(i, 0), K_);
      out[i] = y < 0 ? NAN : std::log(probability(y, mu.row(i).transpose(), sd(var.row(i).transpose())));
    }
  }

 private:
  static VectorXd sd(const VectorXd& v) { return v.cwiseMax(kMinVar).cwiseSqrt(); }  // s [K]

  double probability(Index y, const VectorXd& m, const VectorXd& s) const {
    return miss_ + (hit_ - miss_) * prob_is_largest(y, m, s, nullptr, nullptr);
  }

  // P for class y, mean m [K] and standard deviations s [K]; with dm, ds non-null also writes
  // dP/dm [K] and dP/ds [K].
  double prob_is_largest(Index y, const VectorXd& m, const VectorXd& s, VectorXd* dm, VectorXd* ds) const {
    VectorXd z(K_), cdf(K_);  // [K] z_kj and Phi_c(z_kj) of node k (entry y unused)
    if (dm) {
      dm->setZero();
      ds->setZero();
    }
    double P = 0.0;
    for (Index k = 0; k < x_.size(); ++k) {
      double h = 1.0;  // h_k
      for (Index j = 0; j < K_; ++j) {
        if (j == y) continue;
        z[j] = (m[y] + s[y] * x_[k] - m[j]) / s[j];
        cdf[j] = squashed_cdf(z[j]);
        h *= cdf[j];
      }
      P += w_[k] * h;
      if (dm) add_derivatives(y, k, s, z, cdf, h, *dm, *ds);
    }
    return P;
  }

  // Adds node k's terms of dP/dm and dP/ds [K] (the formulas above the class).
  void add_derivatives(Index y, Index k, const VectorXd& s, const VectorXd& z, const VectorXd& cdf, double h,
                       VectorXd& dm, VectorXd& ds) const {
    double dh = 0.0;  // h'_k
    for (Index j = 0; j < K_; ++j) {
      if (j == y) continue;
      const double g = (1.0 - 2.0 * kSquash) * h / cdf[j] * std::exp(-0.5 * z[j] * z[j] - kLogSqrt2Pi);
      dm[j] -= w_[k] * g / s[j];
      ds[j] -= w_[k] * g * z[j] / s[j];
      dh += g / s[j];
    }
    dm[y] += w_[k] * dh;
    ds[y] += w_[k] * dh * x_[k];
  }

  Index K_;
  double hit_, miss_, log_miss_, log_ratio_;  // 1 - eps, eps / (K - 1), log(eps / (K - 1)), log(hit / miss)
  VectorXd x_, w_;                            // [points] nodes and weights for E_{N(0, 1)}
};

// Softmax, p(y | f) = softmax(f)_y, by S reparameterised Monte Carlo samples (docs/math.md
// section 11.4): row r (r = row0 + i) draws eps_s ~ N(0, I_K), s = 1..S, from
// Rng(derive_seed(seed, r)), class after class within a sample, and with f_s = mu + sd eps_s,
// p_s = softmax(f_s) and a_s = e_y - p_s (the gradient of log softmax_y at f_s):
//   ell = mean_s log p_sy,  d/dmu = mean_s a_s,  d/dv_k = mean_s a_sk eps_sk / (2 sd_k);
// for sd_k <= kMinSd the last is Price's limit -mean_s p_sk (1 - p_sk) / 2 (half the mean of the
// second derivative of log softmax_y in f_k). Predictions take max(S, 256) samples from one stream
// of the seed, the same for every row, so that a row's prediction depends on its mean and
// variance alone (not on where it sits among the rows asked for, nor on how they are split).
constexpr Index kPredictSamples = 256;
constexpr std::uint64_t kPredictStream = ~std::uint64_t(0);  // no batch has this many rows

class Softmax final : public LatentLikelihood {
 public:
  Softmax(Index K, Index samples, std::uint64_t seed) : K_(K), S_(samples), seed_(seed) {}

  Index num_params() const override { return 0; }
  Index num_latent() const override { return K_; }
  Index num_targets() const override { return 1; }
  Index num_predictive() const override { return K_; }

  double variational_expectations(const double*, Index row0, MatRef Y, ColMatRef mu, ColMatRef var,
                                  ColMatOut dmu, ColMatOut dvar, double*) const override {
    VectorXd dm(K_), dv(K_);  // [K] one row's derivatives
    return sum_labelled_rows(Y, K_, dmu, dvar, [&](Index i, Index y) {
      Rng rng(derive_seed(seed_, static_cast<std::uint64_t>(row0 + i)));
      const double ell = row_expectation(rng, y, mu.row(i).transpose(), var.row(i).transpose(), dm, dv);
      dmu.row(i) = dm.transpose();
      dvar.row(i) = dv.transpose();
      return ell;
    });
  }

  // Class probabilities mean_s softmax(f_s) [K], variance p (1 - p).
  void predict_mean_and_var(const double*, ColMatRef mu, ColMatRef var, MatOut ymean,
                            MatOut yvar) const override {
    VectorXd eps(K_), logp(K_), p(K_);  // [K]
    const Index S = predict_samples();
    for (Index i = 0; i < mu.rows(); ++i) {
      Rng rng(derive_seed(seed_, kPredictStream));
      const VectorXd m = mu.row(i).transpose(), s = sd(var.row(i).transpose());  // [K]
      p.setZero();
      for (Index r = 0; r < S; ++r) {
        draw(rng, m, s, eps, logp);
        p += logp.array().exp().matrix();
      }
      p /= static_cast<double>(S);
      ymean.row(i) = p.transpose();
      yvar.row(i) = p.cwiseProduct(VectorXd::Ones(K_) - p).transpose();
    }
  }

  // log mean_s softmax(f_s)_y by log-sum-exp over the samples.
  void predict_log_density(const double*, MatRef Y, ColMatRef mu, ColMatRef var, VecOut out) const override {
    const Index S = predict_samples();
    VectorXd eps(K_), logp(K_), terms(S);  // [K], [K], [S]
    for (Index i = 0; i < mu.rows(); ++i) {
      const Index y = class_of(Y(i, 0), K_);
      if (y < 0) {
        out[i] = NAN;
        continue;
      }
      Rng rng(derive_seed(seed_, kPredictStream));
      const VectorXd m = mu.row(i).transpose(), s = sd(var.row(i).transpose());  // [K]
      for (Index r = 0; r < S; ++r) {
        draw(rng, m, s, eps, logp);
        terms[r] = logp[y];
      }
      const double top = terms.maxCoeff();
      out[i] = top + std::log((terms.array() - top).exp().sum() / static_cast<double>(S));
    }
  }

 private:
  static VectorXd sd(const VectorXd& v) { return v.cwiseMax(0.0).cwiseSqrt(); }  // sd [K]
  Index predict_samples() const { return std::max(S_, kPredictSamples); }

  // One row's ell with dm = d ell/dmu and dv = d ell/dv [K], for class y, mean m and variance v [K].
  double row_expectation(Rng& rng, Index y, const VectorXd& m, const VectorXd& v, VectorXd& dm,
                         VectorXd& dv) const {
    const VectorXd s = sd(v);           // [K]
    VectorXd eps(K_), logp(K_), a(K_);  // [K]
    // [K] sums over the samples of a_s, a_s eps_s and p_s (1 - p_s)
    VectorXd ga = VectorXd::Zero(K_), gx = VectorXd::Zero(K_), g2 = VectorXd::Zero(K_);
    double ell = 0.0;  // sum_s log p_sy
    for (Index r = 0; r < S_; ++r) {
      draw(rng, m, s, eps, logp);
      ell += logp[y];
      a = logp.array().exp();  // p_s
      g2.array() += a.array() * (1.0 - a.array());
      a = -a;
      a[y] += 1.0;  // a_s = e_y - p_s
      ga += a;
      gx += a.cwiseProduct(eps);
    }
    dm = ga / S_;
    for (Index k = 0; k < K_; ++k) dv[k] = s[k] > kMinSd ? gx[k] / (2.0 * s[k] * S_) : -g2[k] / (2.0 * S_);
    return ell / S_;
  }

  // The next sample: eps [K] ~ N(0, I) and logp [K] = log softmax(m + s eps) (log-sum-exp).
  void draw(Rng& rng, const VectorXd& m, const VectorXd& s, VectorXd& eps, VectorXd& logp) const {
    for (Index k = 0; k < K_; ++k) eps[k] = rng.normal();
    logp = m + s.cwiseProduct(eps);
    const double top = logp.maxCoeff();
    logp.array() -= top + std::log((logp.array() - top).exp().sum());
  }

  Index K_, S_;
  std::uint64_t seed_;
};

void check_classes(Index K) {
  if (K < 2) throw InvalidArgument("a multi-class likelihood needs K >= 2 classes");
}

}  // namespace

LatentLikelihoodPtr make_robustmax(Index K, double epsilon, int points) {
  check_classes(K);
  if (!(epsilon > 0.0 && epsilon < 1.0)) throw InvalidArgument("epsilon must be in (0, 1)");
  if (points < 1 || points > 1000) throw InvalidArgument("points must be in 1..1000");
  return std::make_shared<RobustMax>(K, epsilon, points);
}

LatentLikelihoodPtr make_softmax(Index K, Index samples, std::uint64_t seed) {
  check_classes(K);
  if (samples < 1) throw InvalidArgument("samples must be >= 1");
  return std::make_shared<Softmax>(K, samples, seed);
}

}  // namespace varinf

// Likelihoods over several latent functions per row (docs/math.md section 11): the SVGP's view
// of every likelihood. Row i has L latent values f_i ~ N(mu_i, diag var_i) (independent under q)
// and targets y_i [c]; the likelihood gives the variational expectation
// E_q[log p(y_i | f_i)] with its derivatives in mu_i, var_i and its parameters, the predictive
// moments and the predictive log density.
//
// A pointwise Likelihood (likelihoods.hpp) on P independent columns is one of these
// (make_columns); the multi-class and heteroscedastic likelihoods couple the L values of a row.
// Like a Likelihood, each object is immutable and its parameter values come in as `theta`.
#pragma once

#include <cstdint>
#include <memory>

#include "varinf/likelihoods.hpp"
#include "varinf/types.hpp"

namespace varinf {

// [k, L] column-major: column l of a block is a contiguous vector, as the pointwise
// likelihoods read it.
using ColMatRef = Eigen::Ref<const MatrixXd>;
using ColMatOut = Eigen::Ref<MatrixXd>;

class LatentLikelihood {
 public:
  virtual ~LatentLikelihood() = default;

  virtual Index num_params() const = 0;
  virtual Index num_latent() const = 0;      // L: columns of mu and var
  virtual Index num_targets() const = 0;     // c: columns of Y
  virtual Index num_predictive() const = 0;  // columns of the predictive mean and variance

  // Y [k, c]; mu, var, dmu, dvar [k, L]. Writes dmu = d ell / d mu and dvar = d ell / d var
  // for every row, adds sum_i d ell_i / d theta into dtheta [num_params] and returns
  // sum_i ell_i. `row0` is the index of the block's first row in its batch: a Monte Carlo
  // likelihood draws the noise of row row0 + i from its seed and that index, so the value does
  // not depend on how a batch is cut into blocks.
  virtual double variational_expectations(const double* theta, Index row0, MatRef Y, ColMatRef mu,
                                          ColMatRef var, ColMatOut dmu, ColMatOut dvar,
                                          double* dtheta) const = 0;

  // Mean and variance of y (class probabilities and p (1 - p) for the classifiers)
  // [k, num_predictive] under p(y | f), f ~ N(mu, diag var).
  virtual void predict_mean_and_var(const double* theta, ColMatRef mu, ColMatRef var, MatOut ymean,
                                    MatOut yvar) const = 0;

  // log int p(y_i | f) N(f; mu_i, diag var_i) df [k].
  virtual void predict_log_density(const double* theta, MatRef Y, ColMatRef mu, ColMatRef var,
                                   VecOut out) const = 0;
};

using LatentLikelihoodPtr = std::shared_ptr<LatentLikelihood>;

// A pointwise likelihood on P independent columns: y_ip depends on f_ip alone. With
// per_column, column p has its own parameters theta[p q, (p + 1) q) (q = the pointwise
// likelihood's count; num_params = P q); otherwise the P columns share theta [q].
LatentLikelihoodPtr make_columns(LikelihoodPtr pointwise, Index P, bool per_column);

// Multi-class likelihoods, y_i in {0, ..., K - 1} (c = 1), one latent function per class
// (L = K); the predictive mean is the class probabilities [K].
// RobustMax (Hernandez-Lobato et al. 2011): p(y | f) = 1 - eps if y = argmax f, else
// eps / (K - 1); one-dimensional Gauss-Hermite quadrature with `points` nodes.
LatentLikelihoodPtr make_robustmax(Index K, double epsilon, int points);
// Softmax, p(y | f) = softmax(f)_y: `samples` reparameterised Monte Carlo samples per row,
// drawn from `seed` and the row's index (see row0 above).
LatentLikelihoodPtr make_softmax(Index K, Index samples, std::uint64_t seed);

// Heteroscedastic Gaussian (Lazaro-Gredilla & Titsias 2011; Saul et al. 2016): y ~ N(f_0, e^f_1),
// L = 2, c = 1, no parameters; the variational expectation in closed form.
LatentLikelihoodPtr make_heteroskedastic_gaussian(int points);

}  // namespace varinf

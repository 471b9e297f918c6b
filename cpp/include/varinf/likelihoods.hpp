// Likelihoods p(y | f) for the SVGP (docs/math.md section 7): the variational expectation
// E_{N(f; mu, v)}[log p(y | f)] with its derivatives with respect to mu, v and the likelihood
// parameters, predictive moments of y and the predictive log density.
//
// Like a Kernel, a Likelihood is an immutable description; its parameter values (constrained)
// come in on every call as `theta`, so one object serves many threads.
#pragma once

#include <memory>

#include "varinf/types.hpp"

namespace varinf {

class Likelihood {
 public:
  virtual ~Likelihood() = default;

  virtual Index num_params() const = 0;

  // For each i, ell_i = E_{N(f; mu_i, var_i)} log p(y_i | f): writes dmu_i = d ell_i / d mu_i
  // and dvar_i = d ell_i / d var_i, adds sum_i d ell_i / d theta into dtheta [num_params],
  // and returns sum_i ell_i. All vectors [k].
  virtual double variational_expectations(const double* theta, VecRef y, VecRef mu, VecRef var,
                                          VecOut dmu, VecOut dvar, double* dtheta) const = 0;

  // Mean and variance of y under p(y | f) with f ~ N(mu, var).
  // The prediction methods run scalar loops over the caller's arrays: Eigen's vectorised exp
  // and log treat the unaligned head of a mapped array in scalar code, so one input would
  // round differently depending on where the caller's buffer happens to start.
  virtual void predict_mean_and_var(const double* theta, VecRef mu, VecRef var, VecOut ymean,
                                    VecOut yvar) const = 0;

  // log of the predictive density of y: log int p(y | f) N(f; mu, var) df.
  virtual void predict_log_density(const double* theta, VecRef y, VecRef mu, VecRef var,
                                   VecOut out) const = 0;
};

using LikelihoodPtr = std::shared_ptr<Likelihood>;

// Gaussian, theta = [noise variance]: everything in closed form.
LikelihoodPtr make_gaussian_likelihood();
// Bernoulli with the probit link, y in {0, 1}, no parameters: Gauss-Hermite quadrature with
// `points` nodes for the variational expectation; predictive moments in closed form.
LikelihoodPtr make_bernoulli_probit_likelihood(int points);
// Poisson with the exp link (rate e^f), y in {0, 1, 2, ...}, no parameters: the variational
// expectation and moments in closed form, the predictive density by quadrature.
LikelihoodPtr make_poisson_likelihood(int points);
// Student-t with `df` degrees of freedom (fixed) around f, theta = [scale]: quadrature.
LikelihoodPtr make_student_t_likelihood(double df, int points);

// Gauss-Hermite rule for E_{N(0, 1)}: x_k, w_k with sum_k w_k g(x_k) ~ E[g(z)], z ~ N(0, 1)
// (the physicists' nodes times sqrt 2 and weights over sqrt pi), by Golub-Welsch.
void gauss_hermite_normal(int points, VectorXd& nodes, VectorXd& weights);
// The predictive density log p(y*) = log sum_k w_k p(y* | f_k) uses at least this many nodes,
// more than the variational expectation: p(y* | f) may peak in the tail of N(mu, var).
inline constexpr int kPredictPoints = 100;
// Below this sd, d/dvar of an expectation over N(mu, var) takes its limit as sd -> 0, half the
// second derivative at mu (Price's theorem), instead of dividing by sd.
inline constexpr double kMinSd = 1e-8;

// log Phi(z), the log of the standard normal CDF, without underflow for very negative z, and
// the inverse Mills ratio phi(z) / Phi(z).
double log_ndtr(double z);
double inverse_mills(double z);

}  // namespace varinf

// Likelihoods p(y | f) for the SVGP (MATH.md section 5): the variational expectation
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
  virtual void predict_mean_and_var(const double* theta, VecRef mu, VecRef var, VecOut ymean,
                                    VecOut yvar) const = 0;

  // log of the predictive density of y: log int p(y | f) N(f; mu, var) df.
  virtual void predict_log_density(const double* theta, VecRef y, VecRef mu, VecRef var,
                                   VecOut out) const = 0;
};

using LikelihoodPtr = std::shared_ptr<Likelihood>;

// Gaussian, theta = [noise variance]: everything in closed form.
LikelihoodPtr make_gaussian_likelihood();

}  // namespace varinf

// Stochastic variational GP (Hensman, Fusi & Lawrence 2013; MATH.md section 5): the minibatch
// ELBO and its gradient with respect to q(u), Z, the kernel, the likelihood and the mean, in
// one call, and latent predictions.
//
// q(u) = N(q_mu, S), S = Lq Lq^T with Lq = q_sqrt lower triangular (or diagonal, q_diag).
// Whitened (the default): u = L v with Kuu = L L^T and q(v) = N(q_mu, S), p(v) = N(0, I).
#pragma once

#include "varinf/kernels.hpp"
#include "varinf/likelihoods.hpp"
#include "varinf/types.hpp"

namespace varinf {

struct SVGPProblem {
  const Kernel& kernel;
  const double* theta;  // kernel parameter values
  const Likelihood& likelihood;
  const double* lik_theta;  // likelihood parameter values
  MatRef Z;                 // [m, d] inducing inputs
  VecRef q_mu;              // [m]
  MatRef q_sqrt;            // [m, m] (lower triangle read) or [m, 1] when q_diag
  bool whiten;
  bool q_diag;
  double mean;      // constant prior mean of f
  double num_data;  // n: the batch's likelihood terms are scaled by n / batch size
  double jitter;    // added to the diagonal of K(Z, Z)
};

struct SVGPGradient {
  double elbo;           // (n / B) sum_batch E[log p(y | f)] - KL
  double kl;             // KL[q(u) || p(u)]
  VectorXd dtheta;       // [p] kernel parameter values
  VectorXd dlik;         // [q] likelihood parameter values
  VectorXd dq_mu;        // [m]
  RowMatrixXd dq_sqrt;   // [m, m] lower triangular (or [m, 1] when q_diag)
  RowMatrixXd dZ;        // [m, d]
  double dmean;
  double jitter;         // jitter the factorisation of K(Z, Z) used
};

// The ELBO on the batch (X [B, d], y [B]) and its gradient.
SVGPGradient svgp_elbo_grad(const SVGPProblem& p, MatRef X, VecRef y);

// Latent predictive mean and variance of f at Xnew [n*, d], in blocks of rows on the threads.
void svgp_predict(const SVGPProblem& p, MatRef Xnew, VecOut mean, VecOut var);
// Latent predictive mean and full covariance [n*, n*].
void svgp_predict_cov(const SVGPProblem& p, MatRef Xnew, VecOut mean, MatOut cov);

}  // namespace varinf

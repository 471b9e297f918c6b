// Exact Gaussian-process regression (Rasmussen & Williams 2006, GPML Alg. 2.1 and eq. 5.9).
#pragma once

#include "varinf/kernels.hpp"
#include "varinf/types.hpp"

namespace varinf {

// What a GP regression model is, at fixed hyperparameters.
struct GPRProblem {
  const Kernel& kernel;
  const double* theta;  // kernel parameter values
  MatRef X;             // [n, d] training inputs
  VecRef y;             // [n] training targets
  double noise;         // Gaussian noise variance s2n
  double mean;          // constant prior mean
};

// The factorisation predictions need: Ky = K(X, X) + s2n I = L L^T, alpha = Ky^-1 (y - mean).
struct GPRFactor {
  MatrixXd L;      // [n, n] lower triangle holds L (upper: Ky)
  VectorXd alpha;  // [n]
  double jitter;   // diagonal jitter the factorisation needed beyond s2n (0 normally)
  double lml;      // log marginal likelihood
};

GPRFactor gpr_factor(const GPRProblem& p);

struct GPRGradient {
  double lml;
  VectorXd dtheta;  // [p] dLML / d kernel parameter values
  double dnoise;    // dLML / d s2n
  double dmean;     // dLML / d mean
  double jitter;
};

// The log marginal likelihood and its gradient in one pass.
GPRGradient gpr_lml_grad(const GPRProblem& p);

// Latent predictive mean and variance at Xnew [n*, d], in blocks of rows so that no
// [n, n*] matrix is formed for large n*.
void gpr_predict(const GPRProblem& p, const GPRFactor& f, MatRef Xnew, VecOut mean, VecOut var);
// Latent predictive mean and full covariance [n*, n*].
void gpr_predict_cov(const GPRProblem& p, const GPRFactor& f, MatRef Xnew, VecOut mean, MatOut cov);

}  // namespace varinf

// Sparse GP regression: Titsias (2009) collapsed variational bound, its gradient and
// predictions (docs/math.md section 5).
//
// The data enter the bound only through sufficient statistics summed over data points:
// P = Kuf Kfu [m, m], b = Kuf r [m] (r = y - mean), r^T r and tr(Kff). They are accumulated
// over blocks of rows on the threads, so memory is O(m^2 + block * m) whatever n is; the
// reverse pass runs over the blocks again with dF/dKuf = 2 Pbar Kuf + bbar r^T.
#pragma once

#include "varinf/kernels.hpp"
#include "varinf/types.hpp"

namespace varinf {

struct SGPRProblem {
  const Kernel& kernel;
  const double* theta;  // kernel parameter values
  MatRef X;             // [n, d] training inputs
  VecRef y;             // [n] training targets
  MatRef Z;             // [m, d] inducing inputs
  double noise;         // Gaussian noise variance s2n
  double mean;          // constant prior mean
  double jitter;        // added to the diagonal of K(Z, Z) (docs/math.md section 3: 1e-6)
};

// What predictions need, and the values of the bounds.
struct SGPRFactor {
  MatrixXd L;          // [m, m] lower: chol(K(Z, Z) + jitter I)
  MatrixXd LB;         // [m, m] lower: chol(I + L^-1 Kuf Kfu L^-T / s2n)
  VectorXd c;          // [m] LB^-1 L^-1 Kuf (y - mean) / s2n
  double bound;        // Titsias (2009) eq. 9, the collapsed ELBO
  double upper_bound;  // Titsias (2014) upper bound on the log marginal likelihood
  double jitter;       // jitter the factorisation of K(Z, Z) used
};

SGPRFactor sgpr_factor(const SGPRProblem& p);

struct SGPRGradient {
  double bound;
  VectorXd dtheta;  // [p] dF / d kernel parameter values
  RowMatrixXd dZ;   // [m, d] dF / dZ
  double dnoise;    // dF / d s2n
  double dmean;     // dF / d mean
  double jitter;
};

// The bound and its gradient in one call: two passes over the data.
SGPRGradient sgpr_bound_grad(const SGPRProblem& p);

// Latent predictive mean and variance at Xnew [n*, d] (blocks of rows on the threads).
void sgpr_predict(const SGPRProblem& p, const SGPRFactor& f, MatRef Xnew, VecOut mean, VecOut var);
// Latent predictive mean and full covariance [n*, n*].
void sgpr_predict_cov(const SGPRProblem& p, const SGPRFactor& f, MatRef Xnew, VecOut mean,
                      MatOut cov);
// The optimal q(u) = N(mu, S) of u = f(Z) (Titsias 2009 eq. 10): mu [m], S [m, m].
void sgpr_qu(const SGPRProblem& p, const SGPRFactor& f, VecOut mu, MatOut S);

// FITC (Snelson & Ghahramani 2006): the exact log marginal likelihood of the model
// y ~ N(mean, Qff + Lambda), Lambda = diag(Kff - Qff) + s2n I, on the same blocked machinery.
// The factor has the same meaning for predictions (sgpr_predict, sgpr_qu work unchanged);
// its `bound` holds the FITC log marginal likelihood and `upper_bound` is NaN.
SGPRFactor fitc_factor(const SGPRProblem& p);
SGPRGradient fitc_lml_grad(const SGPRProblem& p);

}  // namespace varinf

// The collapsed bound (Titsias 2009) for P outputs that mix Q latent GPs, y_p = sum_q W_pq g_q
// + mean_p + noise (linear coregionalisation), with the optimal joint q(u) of the Q latent GPs'
// inducing values (docs/math.md section 5.10). It is the SGPR bound of one problem with the
// stacked inducing values u = [u_1; ...; u_Q] [mQ] and the stacked targets vec(R) [nP]:
// Kuu = blockdiag(K_q(Z, Z)), Cov(u_q, f_p(x)) = W_pq K_q(Z, x). The data enter through
// statistics of the stacked Kuf = [K_1(Z, X); ...; K_Q(Z, X)] [mQ, n], which do not depend on
// W, so W's gradient costs nothing per row.
#pragma once

#include <vector>

#include "varinf/kernels.hpp"
#include "varinf/types.hpp"

namespace varinf {

struct LMCProblem {
  std::vector<const Kernel*> kernels;  // [Q] kernel of latent GP q
  std::vector<const double*> thetas;   // [Q] its parameter values
  MatRef X;                            // [n, d] training inputs
  MatRef Y;                            // [n, P] training targets
  MatRef Z;                            // [m, d] inducing inputs, shared by the latent GPs
  MatRef W;                            // [P, Q] mixing matrix
  double noise;                        // Gaussian noise variance s2n, shared by the outputs
  VecRef mean;                         // [P] constant prior mean of each output
  double jitter;                       // added to the diagonal of each K_q(Z, Z)
  Index Q() const { return Index(kernels.size()); }
};

struct LMCFactor {
  MatrixXd L;          // [mQ, mQ] lower, block diagonal: chol(K_q(Z, Z) + jitter I) per block
  MatrixXd LB;         // [mQ, mQ] lower: chol(I + L^-1 Phi L^-T / s2n)
  VectorXd c;          // [mQ] LB^-1 L^-1 Kuf vec(R) / s2n
  double bound;        // the collapsed bound
  double upper_bound;  // Titsias (2014) upper bound on the log marginal likelihood
  double jitter;       // the largest jitter a factorisation of K_q(Z, Z) used
};

LMCFactor lmc_factor(const LMCProblem& p);

struct LMCGradient {
  double bound;
  std::vector<VectorXd> dtheta;  // [Q] dF / d theta_q
  RowMatrixXd dZ;                // [m, d]
  RowMatrixXd dW;                // [P, Q]
  double dnoise;
  VectorXd dmean;                // [P]
  double jitter;
};

// The bound and its gradient: two passes over the rows.
LMCGradient lmc_bound_grad(const LMCProblem& p);

// The latent GPs' predictive means [n*, Q] and, per point, their covariance [n*, Q * Q]
// (row i is the [Q, Q] matrix of point i, row-major): the optimal q(u) couples the latent GPs.
void lmc_predict(const LMCProblem& p, const LMCFactor& f, MatRef Xnew, MatOut mean, MatOut cov);
// The same with the joint covariance of all points [Q n*, Q n*] (index q n* + i).
void lmc_predict_cov(const LMCProblem& p, const LMCFactor& f, MatRef Xnew, MatOut mean, MatOut cov);
// The optimal q(u) of the stacked u: means [m, Q] (column q = u_q), covariance [mQ, mQ].
void lmc_qu(const LMCProblem& p, const LMCFactor& f, MatOut mu, MatOut S);

}  // namespace varinf

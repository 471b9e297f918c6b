// Sparse GP regression: Titsias (2009) collapsed variational bound, its gradient and
// predictions (docs/math.md section 5).
//
// The targets may have P columns (outputs) that share the kernel, the inducing inputs and the
// noise, each with its own constant mean, as GPflow's SGPR with Y [n, P]; the bound is the sum of
// the P columns' bounds (docs/math.md section 5.9). The data enter it only through sufficient
// statistics summed over data points: Psi = Kuf Kfu [m, m], B = Kuf R [m, P] (R = Y - mean),
// |R|^2 and tr(Kff). They are accumulated over blocks of rows on the threads, so memory is
// O(m^2 + block * m) whatever n is; the reverse pass runs over the blocks again with
// dF/dKuf = 2 Psibar Kuf + Bbar R^T.
#pragma once

#include <tuple>

#include "varinf/kernels.hpp"
#include "varinf/types.hpp"

namespace varinf {

struct SGPRProblem {
  const Kernel& kernel;
  const double* theta;  // kernel parameter values
  MatRef X;             // [n, d] training inputs
  MatRef Y;             // [n, P] training targets, one column per output (FITC: P = 1)
  MatRef Z;             // [m, d] inducing inputs
  double noise;         // Gaussian noise variance s2n, shared by the outputs
  VecRef mean;          // [P] constant prior mean of each output
  double jitter;        // added to the diagonal of K(Z, Z) (docs/math.md section 3: 1e-6)
};

// What predictions need, and the values of the bounds.
struct SGPRFactor {
  MatrixXd L;          // [m, m] lower: chol(K(Z, Z) + jitter I)
  MatrixXd LB;         // [m, m] lower: chol(I + L^-1 Kuf Kfu L^-T / s2n)
  MatrixXd c;          // [m, P] LB^-1 L^-1 Kuf (Y - mean) / s2n
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
  VectorXd dmean;   // [P] dF / d mean
  double jitter;
};

// The bound and its gradient in one call: two passes over the data.
SGPRGradient sgpr_bound_grad(const SGPRProblem& p);

// ---- The same on partitions of the rows (docs/math.md section 10.1) -------------------------
// sgpr_bound_grad is these three steps on p's rows; on Dask the first and last run where the
// rows lie, their results summed over the partitions, and the middle one runs once.

// The data's sufficient statistics over p's rows (docs/math.md section 5.1); the statistics of
// disjoint sets of rows add up field by field.
struct SGPRStats {
  MatrixXd Psi;   // [m, m] Kuf Kfu
  MatrixXd B;     // [m, P] Kuf R, R = Y - mean
  VectorXd ku1;   // [m] Kuf 1 (for the means' gradient)
  VectorXd rsum;  // [P] the column sums of R
  double rr = 0.0, tk = 0.0, n = 0.0;  // |R|^2 (all columns), tr Kff, number of rows
  auto fields() { return std::tie(Psi, B, ku1, rsum, rr, tk, n); }
};
SGPRStats sgpr_stats(const SGPRProblem& p);

// What the data side of the gradient needs: dF/dPsi [m, m], dF/dB [m, P], dF/d tr Kff.
struct SGPRAdjoints {
  MatrixXd Psibar;
  MatrixXd Bbar;
  double tkbar = 0.0;
};

// From the statistics of all the rows (p's own rows are not read): the factor (the bounds),
// and the bound's gradient except the terms that sgpr_data_grad adds (dtheta and dZ through
// Kuf and diag Kff), whose adjoints go to `adj`.
SGPRFactor sgpr_factor(const SGPRProblem& p, const SGPRStats& st);
SGPRGradient sgpr_collapsed_grad(const SGPRProblem& p, const SGPRStats& st, SGPRAdjoints& adj);

// The data side of dF/dtheta [p] and dF/dZ [m, d] over p's rows, added to dtheta and dZ.
void sgpr_data_grad(const SGPRProblem& p, const SGPRAdjoints& adj, double* dtheta, RowMatrixXd& dZ);

// Latent predictive means [n*, P] and the outputs' shared variance [n*] at Xnew [n*, d] (blocks
// of rows on the threads).
void sgpr_predict(const SGPRProblem& p, const SGPRFactor& f, MatRef Xnew, MatOut mean, VecOut var);
// Latent predictive means [n*, P] and the shared full covariance [n*, n*].
void sgpr_predict_cov(const SGPRProblem& p, const SGPRFactor& f, MatRef Xnew, MatOut mean,
                      MatOut cov);
// The optimal q(u) = N(mu, S) of u = f(Z) (Titsias 2009 eq. 10): mu [m, P], S [m, m] shared.
void sgpr_qu(const SGPRProblem& p, const SGPRFactor& f, MatOut mu, MatOut S);

// FITC (Snelson & Ghahramani 2006): the exact log marginal likelihood of the model
// y ~ N(mean, Qff + Lambda), Lambda = diag(Kff - Qff) + s2n I, on the same blocked machinery.
// The factor has the same meaning for predictions (sgpr_predict, sgpr_qu work unchanged);
// its `bound` holds the FITC log marginal likelihood and `upper_bound` is NaN.
SGPRFactor fitc_factor(const SGPRProblem& p);
SGPRGradient fitc_lml_grad(const SGPRProblem& p);

// ---- FITC on partitions of the rows (docs/math.md section 10.2) ------------------------------
// lambda_i needs L = chol(K(Z, Z) + jitter I) [m, m] where the rows are: inducing_factor
// first, then statistics over the rows, the factor from their sum, and the reverse pass over
// the rows, whose sum fitc_finish_grad turns into the gradient.
MatrixXd inducing_factor(const SGPRProblem& p, double& jitter_used);

struct FITCStats {
  MatrixXd W;  // [m, m] A Lambda^-1 A^T, A = L^-1 Kuf
  VectorXd e;  // [m] A Lambda^-1 r
  double rr = 0.0, logdet_lam = 0.0, n = 0.0;  // r^T Lambda^-1 r, sum log lambda, rows
  auto fields() { return std::tie(W, e, rr, logdet_lam, n); }
};
FITCStats fitc_stats(const SGPRProblem& p, const MatrixXd& L);
SGPRFactor fitc_factor(const SGPRProblem& p, const MatrixXd& L, double jitter, const FITCStats& st);

// Sums of the reverse pass over rows (docs/math.md section 6.3); they add up over partitions.
struct FITCDataGrad {
  VectorXd dtheta;  // [p]
  RowMatrixXd dZ;   // [m, d]
  MatrixXd Lbar;    // [m, m] lower
  double dnoise = 0.0, dmean = 0.0;
  auto fields() { return std::tie(dtheta, dZ, Lbar, dnoise, dmean); }
};
FITCDataGrad fitc_data_grad(const SGPRProblem& p, const SGPRFactor& f);
// The gradient from the reverse pass's sum over all the rows.
SGPRGradient fitc_finish_grad(const SGPRProblem& p, const SGPRFactor& f, FITCDataGrad sum);

}  // namespace varinf

// Stochastic variational GP (Hensman, Fusi & Lawrence 2013; docs/math.md section 7): the minibatch
// ELBO and its gradient with respect to q(u), Z, the kernel, the likelihood and the mean, in
// one call, and latent predictions.
//
// q(u) = N(q_mu, S), S = Lq Lq^T with Lq = q_sqrt lower triangular (or diagonal, q_diag).
// Whitened (the default): u = L v with Kuu = L L^T and q(v) = N(q_mu, S), p(v) = N(0, I).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "varinf/kernels.hpp"
#include "varinf/latent_likelihoods.hpp"
#include "varinf/optim.hpp"
#include "varinf/random.hpp"
#include "varinf/types.hpp"

namespace varinf {

// L latent GPs f_1..f_L, independent a priori, each with q(u_l) = N(q_mu[:, l], S_l) at m
// inducing inputs (GPflow's layout; docs/math.md section 11.1). Latent GPs that share a kernel
// and inducing inputs form a group: one K(Z, Z) and one K(Z, X) per block serve all of them.
// With a mixing matrix W [P, L] (linear coregionalisation) the likelihood sees g = W f.
struct LatentGroup {
  const Kernel& kernel;
  const double* theta;  // kernel parameter values
  MatRef Z;             // [m, d] inducing inputs
  Index first, count;   // the group's latent GPs: first, ..., first + count - 1
};

struct SVGPProblem {
  std::vector<LatentGroup> groups;  // in order of their latent GPs, covering 0..L-1
  const LatentLikelihood& likelihood;
  const double* lik_theta;  // likelihood parameter values
  MatRef q_mu;              // [m, L]
  MatRef q_sqrt;            // [L m, m]: rows l m..(l + 1) m - 1 hold Lq_l (lower triangle read), or [m, L] when q_diag
  MatRef W;                 // [P, L] mixing, or [0, 0]: the likelihood sees f itself
  bool whiten;
  bool q_diag;
  VecRef mean;      // [L] constant prior means of f, or [0] (zero mean)
  double num_data;  // n: the batch's likelihood terms are scaled by n / batch size
  double jitter;    // added to the diagonal of each K(Z, Z)
  bool single = false;  // the products on the batch in float32 (svgp.cpp; docs/math.md section 7.14)

  Index m() const { return q_mu.rows(); }
  Index num_latent() const { return q_mu.cols(); }
  bool mixing() const { return W.rows() > 0; }
};

struct SVGPGradient {
  double elbo;           // (n / B) sum_batch E[log p(y | f)] - KL
  double kl;             // sum_l KL[q(u_l) || p(u_l)]
  VectorXd dtheta;       // the groups' kernel parameter values, one group after the other
  VectorXd dlik;         // [q] likelihood parameter values
  RowMatrixXd dq_mu;     // [m, L]
  RowMatrixXd dq_sqrt;   // [L m, m] lower triangular blocks (or [m, L] when q_diag)
  RowMatrixXd dZ;        // [G m, d]: rows g m..(g + 1) m - 1 for group g
  RowMatrixXd dW;        // [P, L] (or [0, 0])
  VectorXd dmean;        // [L] (or [0])
  double jitter;         // the largest jitter a factorisation of K(Z, Z) used
};

// Which terms of the ELBO a call adds up: the likelihood terms of its rows times `scale` (NaN:
// num_data / rows) and, with `kl`, -KL. A minibatch split across workers: each adds its rows'
// terms with scale = num_data / (global batch size) and no KL, and the KL is added once
// (docs/math.md section 10.3); the sum is the ELBO of the whole batch. A Monte Carlo likelihood
// draws the noise of row i from its seed and draw + i (the trainer sets draw = step x batch
// size, so each step draws afresh; one evaluation is a deterministic function of the values).
struct ElboTerms {
  double scale = std::numeric_limits<double>::quiet_NaN();
  bool kl = true;
  Index draw = 0;
};

// The ELBO on the batch (X [B, d], Y [B, c]) and its gradient.
SVGPGradient svgp_elbo_grad(const SVGPProblem& p, MatRef X, MatRef Y, const ElboTerms& terms = {});

// Latent predictive means and variances of f at Xnew [n*, d]: [n*, L] each, in blocks of rows
// on the threads.
void svgp_predict(const SVGPProblem& p, MatRef Xnew, MatOut mean, MatOut var);
// Latent GP l's predictive mean [n*] and full covariance [n*, n*].
void svgp_predict_cov(const SVGPProblem& p, Index l, MatRef Xnew, VecOut mean, MatOut cov);

// ---------------------------------------------------------------------------------------------
// Training: Adam on an unconstrained vector x, the minibatch loop and sampling in C++.
//
// The model's values, flattened in one order (docs/math.md section 11.1): [the kernel theta of
// each group, likelihood theta (q), W (P L row-major, when mixing), mean (0 or L), q_mu (m L,
// [m, L] row-major), q_sqrt (for each latent GP the m (m + 1) / 2 lower-triangle entries row by
// row, or m L as [m, L] row-major when q_diag), the Z of each group (m d row-major)]. With one
// latent GP this is [theta, lik theta, mean, q_mu, q_sqrt, Z]. Value i is fixed[i] when
// index[i] < 0, else it comes from x[index[i]]: softplus(x) + lower when lower[index[i]] is
// finite (the Parameter transform of docs/math.md section 2.1), x itself when lower is NaN.
// Several values may share one x entry (tied parameters, e.g. one Z for several groups); their
// gradients add up.
struct SVGPLayoutGroup {
  KernelPtr kernel;
  Index first = 0, count = 1;  // its latent GPs
};

struct SVGPLayout {
  std::vector<SVGPLayoutGroup> groups;
  LatentLikelihoodPtr likelihood;
  Index m = 0, d = 0, L = 1, P = 0;  // P: rows of W, 0 without mixing
  bool has_mean = false, whiten = true, q_diag = false;
  std::vector<Index> index;  // [num values]
  VectorXd fixed;            // [num values]
  VectorXd lower;            // [x size]; NaN where x is the value itself
  // Smallest raw value of a transformed entry: below it softplus' derivative (the sigmoid)
  // is too small for a gradient step to bring the value back (docs: Parameter.RAW_MIN).
  double raw_min = -std::numeric_limits<double>::infinity();
  double num_data = 1.0;
  double jitter = 1e-6;
  bool single = false;  // SVGPProblem::single

  Index num_kernel_params() const;  // of all groups
  Index q_sqrt_size() const;        // of all latent GPs
  Index q_mu_offset() const;        // where q_mu starts among the values
  Index num_values() const;
};

// The ELBO on a batch and its gradient with respect to x (dELBO/dx [x size]); when asked,
// also the gradient with respect to the values [num values].
double svgp_elbo_grad_x(const SVGPLayout& layout, const VectorXd& x, MatRef X, MatRef Y,
                        VectorXd& grad_x, double* jitter_used = nullptr,
                        VectorXd* grad_values = nullptr, const ElboTerms& terms = {});

// Natural gradients (Salimbeni et al. 2018), one step per latent GP, need q_mu and q_sqrt
// trainable, untransformed and untied.
bool svgp_natgrad_supported(const SVGPLayout& layout);
// One natural-gradient step of size gamma on q(u) alone, from the ELBO on (X, Y); false (x
// unchanged) when the ELBO is not finite or the new covariance is not positive definite.
bool svgp_natgrad_step(const SVGPLayout& layout, VectorXd& x, MatRef X, MatRef Y, double gamma,
                       double& elbo);

// Adam (optim.hpp, PyTorch's rule; docs/math.md sections 7.11-7.12) ascending the ELBO over
// x, with minibatches drawn without replacement by a BatchSampler (random.hpp: a seed gives
// the same batches on every platform). State persists between calls to run(), so a Python loop can call back every k
// steps. Each Adam step keeps the transformed entries of x at or above layout.raw_min.
// A step that diverges stops the run and x is restored to the last good point (failed()
// tells; failed_step() is the step's number, failure() why):
//  - kNotFinite: the ELBO or its gradient is not finite, or K(Z, Z) cannot be factorised;
//  - kCollapsed: the ELBO fell below e0 - kCollapseFactor (|e0| + num_data), with e0 the ELBO
//    of the first step, i.e. more than ten times its starting magnitude plus ten nats per datum
//    below where training started (far beyond minibatch noise: a step size that is too large).
class SVGPTrainer {
 public:
  // natgrad_gamma > 0: natural-gradient steps of that size on q(u), Adam on the rest.
  SVGPTrainer(SVGPLayout layout, VectorXd x0, AdamOptions adam, std::uint64_t seed,
              double natgrad_gamma = 0.0);

  // Up to `steps` steps on batches of `batch_size` rows of (X [n, d], Y [n, c]); returns the
  // ELBO of each step taken.
  std::vector<double> run(MatRef X, MatRef Y, Index batch_size, Index steps);
  // The same with given batches: row indices [steps, batch_size] (for side-by-side runs).
  using BatchMatrix =
      Eigen::Ref<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
  std::vector<double> run_batches(MatRef X, MatRef Y, const BatchMatrix& batches);
  // One step from an ELBO and its gradient evaluated elsewhere, e.g. summed over the workers
  // that hold the batch's rows (docs/math.md section 10.3): grad_x [x size] and, with natural
  // gradients, grad_values [num values]. The same checks as run(); false when it failed.
  bool apply(double elbo, const VectorXd& grad_x, const VectorXd& grad_values);

  const VectorXd& x() const { return x_; }
  const SVGPLayout& layout() const { return layout_; }
  enum class Failure { kNone, kNotFinite, kCollapsed };
  static constexpr double kCollapseFactor = 10.0;

  bool failed() const { return failure_ != Failure::kNone; }
  Failure failure() const { return failure_; }
  Index failed_step() const { return failed_step_; }

 private:
  using BatchRows = std::function<void(Index step, std::vector<Index>& rows)>;
  std::vector<double> advance(MatRef X, MatRef Y, Index steps, const BatchRows& fill);
  Failure step(MatRef Xb, MatRef Yb, double& elbo);  // x unchanged unless kNone
  Failure update(double elbo);                       // from grad_ (and grad_values_)
  void stop(Failure failure);
  void keep_above_raw_min();

  SVGPLayout layout_;
  VectorXd x_, x_last_, grad_;  // parameters, last finite x, gradient (of -ELBO for Adam)
  Adam<double> adam_;
  double gamma_;
  std::vector<Index> q_entries_;  // entries of x holding q(u) (natural gradients)
  VectorXd grad_values_;          // [num values] (natural gradients)
  Failure failure_ = Failure::kNone;
  Index failed_step_ = -1;
  double first_elbo_ = std::numeric_limits<double>::quiet_NaN();  // e0, of the first step
  BatchSampler sampler_;  // the minibatch order (random.hpp: the same on every platform)
};

}  // namespace varinf

#include "varinf/gpr.hpp"

#include <algorithm>
#include <cmath>

#include "varinf/constants.hpp"
#include "varinf/linalg.hpp"

namespace varinf {

namespace {

// K(X, X) + s2n I into a column-major buffer [n, n] (symmetric, so the row-major kernel
// output is the same matrix).
MatrixXd noisy_covariance(const GPRProblem& p) {
  const Index n = p.X.rows();
  MatrixXd Ky(n, n);
  Eigen::Map<RowMatrixXd> as_rows(Ky.data(), n, n);
  p.kernel.K_sym(p.theta, p.X, as_rows);
  Ky.diagonal().array() += p.noise;
  return Ky;
}

}  // namespace

// GPML Alg. 2.1 lines 2-3 and 5 (docs/math.md section 4.1): L = chol(Ky), alpha = L^T \ (L \ (y - m)),
// log p(y|X) = -1/2 r^T alpha - sum_i log L_ii - n/2 log 2 pi.
GPRFactor gpr_factor(const GPRProblem& p) {
  const Index n = p.X.rows();
  GPRFactor f{noisy_covariance(p), VectorXd(), 0.0, 0.0};
  f.jitter = cholesky_jitter(f.L, 0.0, "K(X, X) + noise_variance * I");
  const VectorXd r = p.y.array() - p.mean;  // [n]
  f.alpha = f.L.triangularView<Eigen::Lower>().solve(r);
  f.lml = -0.5 * f.alpha.squaredNorm() - 0.5 * logdet_from_cholesky(f.L) - 0.5 * n * kLog2Pi;
  f.L.triangularView<Eigen::Lower>().transpose().solveInPlace(f.alpha);
  return f;
}

// GPML eq. 5.9: dLML/dtheta = 1/2 tr((alpha alpha^T - Ky^-1) dKy/dtheta). With
// Kbar = 1/2 (alpha alpha^T - Ky^-1) [n, n] the kernel's fused contraction gives every kernel
// parameter; the noise gets tr(Kbar) and the constant mean sum(alpha).
GPRGradient gpr_lml_grad(const GPRProblem& p) {
  const GPRFactor f = gpr_factor(p);
  const Index n = p.X.rows();
  MatrixXd Kbar(n, n);  // [n, n]
  cholesky_inverse(f.L, Kbar);
  Kbar *= -0.5;
  Kbar.noalias() += 0.5 * f.alpha * f.alpha.transpose();
  GPRGradient g{f.lml, VectorXd::Zero(p.kernel.num_params()), Kbar.trace(), f.alpha.sum(), f.jitter};
  p.kernel.grad_sym(p.theta, p.X, Eigen::Map<const RowMatrixXd>(Kbar.data(), n, n), g.dtheta.data(),
                    no_input_grad());
  return g;
}

// GPML Alg. 2.1 lines 4 and 6: mean = K*^T alpha + m, v = L \ K*, var = k** - v^T v.
void gpr_predict(const GPRProblem& p, const GPRFactor& f, MatRef Xnew, VecOut mean, VecOut var) {
  const Index n = p.X.rows(), ns = Xnew.rows();
  // Rows per block: about 4M doubles of cross-covariance at a time.
  const Index block = std::clamp<Index>((Index(1) << 22) / std::max<Index>(n, 1), 64, 4096);
  RowMatrixXd Ks;  // [b, n] K(Xnew_block, X)
  MatrixXd V;      // [n, b] L^-1 K(X, Xnew_block)
  for (Index s = 0; s < ns; s += block) {
    const Index b = std::min(block, ns - s);
    const auto Xb = Xnew.middleRows(s, b);
    Ks.resize(b, n);
    p.kernel.K(p.theta, Xb, p.X, Ks);
    mean.segment(s, b).noalias() = Ks * f.alpha;
    mean.segment(s, b).array() += p.mean;
    V = Ks.transpose();
    solve_lower_inplace(f.L, V);
    p.kernel.K_diag(p.theta, Xb, var.segment(s, b));
    var.segment(s, b) -= V.colwise().squaredNorm().transpose();
  }
}

void gpr_predict_cov(const GPRProblem& p, const GPRFactor& f, MatRef Xnew, VecOut mean, MatOut cov) {
  const Index n = p.X.rows(), ns = Xnew.rows();
  RowMatrixXd Ks(ns, n);  // [n*, n]
  p.kernel.K(p.theta, Xnew, p.X, Ks);
  mean.noalias() = Ks * f.alpha;
  mean.array() += p.mean;
  MatrixXd V = Ks.transpose();  // [n, n*]
  solve_lower_inplace(f.L, V);
  p.kernel.K_sym(p.theta, Xnew, cov);
  cov.noalias() -= V.transpose() * V;
}

}  // namespace varinf

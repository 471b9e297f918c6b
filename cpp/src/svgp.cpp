// SVGP minibatch ELBO and its reverse pass (Hensman, Fusi & Lawrence 2013; docs/math.md section 7).
//
// Notation: Kuu = K(Z, Z) + jitter I = L L^T [m, m], Kuf = K(Z, X_batch) [m, k],
// A = L^-1 Kuf [m, k], G = A (whitened) or L^-T A = Kuu^-1 Kuf (unwhitened) [m, k],
// T = Lq^T G [m, k]. Then (docs/math.md section 7)
//   mu  = G^T q_mu + mean,  var = diag Kff - colsum(A^2) + colsum(T^2)           [k]
//   ELBO = (n / B) sum_i E_{N(f; mu_i, var_i)} log p(y_i | f) - KL[q || p].
// Reverse pass, with gmu = dELBO/dmu, gv = dELBO/dvar and D = diag(gv):
//   dq_mu += G gmu;  dLq += 2 G D T^T (lower);  Gbar = q_mu gmu^T + 2 Lq T D;  Abar = -2 A D
//   (+ Gbar whitened);  unwhitened G = L^-T A: H = L^-1 Gbar, Abar += H, Lbar -= G H^T;
//   A = L^-1 Kuf: Kufbar = L^-T Abar, Lbar -= Kufbar A^T  (docs/math.md section 3, triangular solve)
// and Kuubar = cholesky_reverse(L, Lbar) (Murray 2016). The batch is cut into blocks of rows,
// one run of blocks per thread, each thread with its own [m, m] accumulators.
// L^-1 is formed once per call (m^3 / 3 flops), so that every L^-1 X and L^-T X on a block is
// a triangular product: Eigen's triangular solves run their diagonal blocks in scalar code,
// its triangular products run entirely in the vectorised GEMM kernel.
#include "varinf/svgp.hpp"

#include <cmath>
#include <tuple>

#include "sparse_common.hpp"
#include "varinf/linalg.hpp"
#include "varinf/parallel.hpp"

namespace varinf {

namespace {

using Eigen::Lower;

// Lq [m, m] lower triangular (a diagonal matrix when q_diag).
MatrixXd q_factor(const SVGPProblem& p) {
  const Index m = p.Z.rows();
  if (p.q_diag) return p.q_sqrt.col(0).asDiagonal().toDenseMatrix();
  MatrixXd Lq = MatrixXd::Zero(m, m);
  Lq.triangularView<Lower>() = p.q_sqrt;
  return Lq;
}

// K(Z, Z)'s factor and inverse, and q(u)'s factor.
struct Factors {
  double jitter = 0.0;  // the jitter K(Z, Z) needed (declared first: L's initialiser sets it)
  MatrixXd L;           // [m, m] lower: chol(K(Z, Z) + jitter I)
  MatrixXd Linv;        // [m, m] lower: L^-1
  MatrixXd Lq;          // [m, m] lower (q_diag: diagonal)

  explicit Factors(const SVGPProblem& p)
      : L(detail::inducing_cholesky(p.kernel, p.theta, p.Z, p.jitter, jitter)),
        Linv(L.rows(), L.cols()),
        Lq(q_factor(p)) {
    lower_inverse(L, Linv);
  }
  auto Li() const { return Linv.triangularView<Lower>(); }                 // L^-1
  auto LiT() const { return Linv.transpose().triangularView<Eigen::Upper>(); }  // L^-T
};

// Forward quantities of one block of rows: the marginals of f (docs/math.md section 7.2).
struct Block {
  MatrixXd A;   // [m, k] L^-1 Kuf
  MatrixXd Gu;  // [m, k] L^-T A (unwhitened only)
  MatrixXd T;   // [m, k] Lq^T G
  VectorXd mu;  // [k]
  VectorXd var; // [k]
  const MatrixXd& G(bool whiten) const { return whiten ? A : Gu; }
};

void forward(const SVGPProblem& p, const Factors& F, MatRef Xb, Block& b) {
  const Index m = p.Z.rows(), k = Xb.rows();
  const MatrixXd& Lq = F.Lq;
  MatrixXd Kuf(m, k);  // K(Xb, Z) [k, m] row-major is Kuf [m, k] column-major: no copy
  Eigen::Map<RowMatrixXd> Kfu(Kuf.data(), k, m);
  p.kernel.K(p.theta, Xb, p.Z, Kfu);
  b.A.noalias() = F.Li() * Kuf;
  if (!p.whiten) b.Gu.noalias() = F.LiT() * b.A;
  const MatrixXd& G = b.G(p.whiten);
  b.mu.noalias() = G.transpose() * p.q_mu;
  b.mu.array() += p.mean;
  if (p.q_diag) {
    b.T.noalias() = Lq.diagonal().asDiagonal() * G;
  } else {
    b.T.noalias() = Lq.triangularView<Lower>().transpose() * G;
  }
  b.var.resize(k);
  p.kernel.K_diag(p.theta, Xb, b.var);
  b.var -= b.A.colwise().squaredNorm().transpose();
  b.var += b.T.colwise().squaredNorm().transpose();
}

// Per-thread sums of the batch terms.
struct Acc {
  double ell = 0.0, dmean = 0.0;
  VectorXd dtheta, dlik, dq_mu;  // [p], [q], [m]
  MatrixXd dLq;                  // [m, m] (lower) or [m, 1] (q_diag)
  MatrixXd Lbar;                 // [m, m] lower: dELBO/dL
  RowMatrixXd dZ;                // [m, d]
  auto fields() { return std::tie(ell, dmean, dtheta, dlik, dq_mu, dLq, Lbar, dZ); }
};

// Adds the likelihood terms of block b (the k rows Xb [k, d], yb [k]) and their reverse pass
// (docs/math.md section 7.5) into acc.
void reverse(const SVGPProblem& p, const Factors& F, MatRef Xb, VecRef yb, double scale, const Block& b,
             Acc& acc) {
  const Index k = Xb.rows();
  const MatrixXd& Lq = F.Lq;
  VectorXd gmu(k), gv(k);  // [k]
  VectorXd dlik = VectorXd::Zero(p.likelihood.num_params());
  acc.ell += scale * p.likelihood.variational_expectations(p.lik_theta, yb, b.mu, b.var, gmu, gv, dlik.data());
  acc.dlik += scale * dlik;
  gmu *= scale;
  gv *= scale;
  acc.dmean += gmu.sum();
  const MatrixXd& G = b.G(p.whiten);
  acc.dq_mu.noalias() += G * gmu;
  const VectorXd gv2 = 2.0 * gv;                    // [k]
  const MatrixXd TD2 = b.T * gv2.asDiagonal();      // [m, k] 2 T D
  MatrixXd Abar = p.q_mu * gmu.transpose();         // [m, k] Gbar, then Abar in place
  if (p.q_diag) {
    acc.dLq.col(0) += G.cwiseProduct(TD2).rowwise().sum();
    Abar.noalias() += Lq.diagonal().asDiagonal() * TD2;
  } else {
    acc.dLq.triangularView<Lower>() += G * TD2.transpose();
    Abar.noalias() += Lq.triangularView<Lower>() * TD2;
  }
  if (!p.whiten) {
    Abar = F.Li() * Abar;  // H = L^-1 Gbar [m, k]
    acc.Lbar.triangularView<Lower>() -= G * Abar.transpose();
  }
  Abar.noalias() -= b.A * gv2.asDiagonal();
  const RowMatrixXd Kbar = F.LiT() * Abar;  // [m, k] Kufbar = L^-T Abar
  acc.Lbar.triangularView<Lower>() -= Kbar * b.A.transpose();
  p.kernel.grad(p.theta, p.Z, Xb, Kbar, acc.dtheta.data(), acc.dZ);
  p.kernel.grad_diag(p.theta, Xb, gv, acc.dtheta.data(), no_input_grad());
}

// Adds -KL[q(u) || p(u)] and its gradient (docs/math.md section 7.3); returns KL. With
// V = L^-1 Lq [m, m], a = L^-1 q_mu [m] (unwhitened) or V = Lq, a = q_mu (whitened):
//   KL = 1/2 (||V||_F^2 + ||a||^2 - m - 2 sum log|diag Lq| [+ 2 sum log diag L])
//   d(-KL)/dLq = -L^-T V + diag(1 / diag Lq),  d(-KL)/dq_mu = -L^-T a,
//   d(-KL)/dL = L^-T (V V^T + a a^T) - diag(1 / diag L)        (unwhitened only)
double add_kl(const SVGPProblem& p, const Factors& F, Acc& acc) {
  const MatrixXd& L = F.L;
  const MatrixXd& Lq = F.Lq;
  const Index m = Lq.rows();
  MatrixXd V = Lq;          // [m, m]
  VectorXd a = p.q_mu;      // [m]
  if (!p.whiten) {
    V = F.Li() * Lq;
    a = F.Li() * p.q_mu;
  }
  const VectorXd dq = Lq.diagonal();  // [m]
  double kl = 0.5 * (V.squaredNorm() + a.squaredNorm() - m) - dq.array().abs().log().sum();
  MatrixXd LtV = V;    // [m, m] L^-T V
  VectorXd Lta = a;    // [m] L^-T a
  if (!p.whiten) {
    kl += 0.5 * logdet_from_cholesky(L);
    LtV = F.LiT() * V;
    Lta = F.LiT() * a;
    MatrixXd VVaa = V * V.transpose();  // [m, m]
    VVaa.noalias() += a * a.transpose();
    VVaa = F.LiT() * VVaa;
    acc.Lbar.triangularView<Lower>() += VVaa;
    acc.Lbar.diagonal().array() -= L.diagonal().array().inverse();
  }
  acc.dq_mu -= Lta;
  if (p.q_diag) {
    acc.dLq.col(0) += dq.array().inverse().matrix() - LtV.diagonal();
  } else {
    acc.dLq.triangularView<Lower>() -= LtV;
    acc.dLq.diagonal() += dq.array().inverse().matrix();
  }
  return kl;
}

}  // namespace

SVGPGradient svgp_elbo_grad(const SVGPProblem& p, MatRef X, VecRef y, const ElboTerms& terms) {
  const Index B = X.rows(), m = p.Z.rows(), d = p.Z.cols();
  SVGPGradient out;
  const Factors F(p);
  out.jitter = F.jitter;
  const double scale = std::isnan(terms.scale) ? p.num_data / double(B) : terms.scale;
  auto make = [&] {
    Acc a;
    a.dtheta = VectorXd::Zero(p.kernel.num_params());
    a.dlik = VectorXd::Zero(p.likelihood.num_params());
    a.dq_mu = VectorXd::Zero(m);
    a.dLq = MatrixXd::Zero(m, p.q_diag ? 1 : m);
    a.Lbar = MatrixXd::Zero(m, m);
    a.dZ = RowMatrixXd::Zero(m, d);
    return a;
  };
  auto body = [&](Index s, Index k, Acc& acc) {
    Block b;
    forward(p, F, X.middleRows(s, k), b);
    reverse(p, F, X.middleRows(s, k), y.segment(s, k), scale, b, acc);
  };
  Acc acc = reduce_row_blocks<Acc>(B, rows_per_block(m), 12.0 * B * m * m, make, body);
  out.kl = terms.kl ? add_kl(p, F, acc) : 0.0;
  out.elbo = acc.ell - out.kl;
  // Through Kuu = L L^T into Z and the kernel parameters.
  cholesky_reverse(F.L, F.Linv, acc.Lbar);
  p.kernel.grad_sym(p.theta, p.Z, Eigen::Map<const RowMatrixXd>(acc.Lbar.data(), m, m),
                    acc.dtheta.data(), acc.dZ);
  out.dtheta = std::move(acc.dtheta);
  out.dlik = std::move(acc.dlik);
  out.dq_mu = std::move(acc.dq_mu);
  out.dZ = std::move(acc.dZ);
  out.dmean = acc.dmean;
  if (!p.q_diag) acc.dLq.triangularView<Eigen::StrictlyUpper>().setZero();
  out.dq_sqrt = acc.dLq;
  return out;
}

void svgp_predict(const SVGPProblem& p, MatRef Xnew, VecOut mean, VecOut var) {
  const Index m = p.Z.rows();
  const Factors F(p);
  for_row_blocks(Xnew.rows(), rows_per_block(m), 4.0 * Xnew.rows() * m * m, [&](Index s, Index k) {
    Block b;
    forward(p, F, Xnew.middleRows(s, k), b);
    mean.segment(s, k) = b.mu;
    var.segment(s, k) = b.var;
  });
}

// Full covariance [n*, n*]: K** - A^T A + T^T T over all of Xnew at once (docs/math.md section 7.9).
void svgp_predict_cov(const SVGPProblem& p, MatRef Xnew, VecOut mean, MatOut cov) {
  const Factors F(p);
  Block b;
  forward(p, F, Xnew, b);
  mean = b.mu;
  p.kernel.K_sym(p.theta, Xnew, cov);
  cov.noalias() -= b.A.transpose() * b.A;
  cov.noalias() += b.T.transpose() * b.T;
}

}  // namespace varinf

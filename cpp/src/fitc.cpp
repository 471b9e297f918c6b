// FITC (Snelson & Ghahramani 2006; docs/math.md section 6), in the whitened frame of the SGPR
// code. Notation: Kuu = L L^T, A = L^-1 Kuf [m, n] (a_i its columns), lambda_i = kff_i -
// |a_i|^2 + s2 (the diagonal of Kff - Qff + s2 I), r = y - mean, W = A Lambda^-1 A^T [m, m],
// Bm = I + W = LB LB^T, e = A Lambda^-1 r [m], c = LB^-1 e [m]. By Woodbury and the matrix determinant lemma,
//   log N(y; mean, Qff + Lambda) = -n/2 log 2pi - 1/2 sum log lambda - sum log diag LB
//                                  - 1/2 r^T Lambda^-1 r + 1/2 c^T c.
// Gradient, with g = LB^-T c and H = dF/dBm = -(Bm^-1 + g g^T) / 2, w = r / lambda:
//   dF/dlambda_i = -1/(2 lambda_i) + w_i^2 / 2 - a_i^T H a_i / lambda_i^2 - (g^T a_i) w_i / lambda_i
//   dF/da_i      = 2 H a_i / lambda_i + g w_i - 2 (dF/dlambda_i) a_i
//   dF/dr_i      = g^T a_i / lambda_i - w_i,   dF/ds2 = sum_i dF/dlambda_i,  dF/dkff_i = dF/dlambda_i
// then Kufbar = L^-T Abar, Lbar = -Kufbar A^T and Kuubar = cholesky_reverse(L, Lbar).
// Both passes recompute A block by block: memory O(m^2 + block m).
#include <cmath>
#include <limits>
#include <tuple>

#include "sparse_common.hpp"
#include "varinf/constants.hpp"
#include "varinf/linalg.hpp"
#include "varinf/parallel.hpp"
#include "varinf/sgpr.hpp"

namespace varinf {

namespace {

struct FitcBlock {
  MatrixXd A;    // [m, k] L^-1 Kuf
  VectorXd lam;  // [k] diag(Kff - Qff) + s2
  VectorXd r;    // [k] y - mean
};

void block(const SGPRProblem& p, const MatrixXd& L, Index s, Index k, FitcBlock& b) {
  const Index m = p.Z.rows();
  const auto Xb = p.X.middleRows(s, k);
  b.A.resize(m, k);  // K(Xb, Z) [k, m] row-major is Kuf [m, k] column-major: no copy
  Eigen::Map<RowMatrixXd> Kfu(b.A.data(), k, m);
  p.kernel.K(p.theta, Xb, p.Z, Kfu);
  L.triangularView<Eigen::Lower>().solveInPlace(b.A);
  b.lam.resize(k);
  p.kernel.K_diag(p.theta, Xb, b.lam);
  b.lam -= b.A.colwise().squaredNorm().transpose();
  b.lam.array() += p.noise;
  b.r = p.Y.col(0).segment(s, k).array() - p.mean[0];  // FITC takes one output
}

}  // namespace

MatrixXd inducing_factor(const SGPRProblem& p, double& jitter_used) {
  return detail::inducing_cholesky(p.kernel, p.theta, p.Z, p.jitter, jitter_used);
}

// Sums over the data (docs/math.md section 6.2), block by block.
FITCStats fitc_stats(const SGPRProblem& p, const MatrixXd& L) {
  const Index n = p.X.rows(), m = p.Z.rows();
  auto make = [m] { return FITCStats{MatrixXd::Zero(m, m), VectorXd::Zero(m)}; };
  auto body = [&](Index s, Index k, FITCStats& acc) {
    FitcBlock b;
    block(p, L, s, k, b);
    const VectorXd isd = b.lam.array().rsqrt();  // [k] lambda^-1/2
    acc.W.selfadjointView<Eigen::Lower>().rankUpdate(b.A * isd.asDiagonal());
    acc.e.noalias() += b.A * (b.r.array() / b.lam.array()).matrix();
    acc.rr += (b.r.array().square() / b.lam.array()).sum();
    acc.logdet_lam += b.lam.array().log().sum();
    acc.n += double(k);
  };
  FITCStats st = reduce_row_blocks<FITCStats>(n, rows_per_block(m), 2.0 * n * m * m, make, body);
  st.W.triangularView<Eigen::StrictlyUpper>() = st.W.transpose();
  return st;
}

SGPRFactor fitc_factor(const SGPRProblem&, const MatrixXd& L, double jitter, const FITCStats& st) {
  SGPRFactor f;
  f.L = L;
  f.jitter = jitter;
  f.LB = st.W;
  f.LB.diagonal().array() += 1.0;
  cholesky_jitter(f.LB, 0.0, "I + L^-1 Kuf Lambda^-1 Kfu L^-T (FITC)");
  f.LB.triangularView<Eigen::StrictlyUpper>().setZero();
  f.c = f.LB.triangularView<Eigen::Lower>().solve(st.e);
  f.bound = -0.5 * st.n * kLog2Pi - 0.5 * st.logdet_lam - 0.5 * logdet_from_cholesky(f.LB) - 0.5 * st.rr +
            0.5 * f.c.squaredNorm();
  f.upper_bound = std::numeric_limits<double>::quiet_NaN();
  return f;
}

SGPRFactor fitc_factor(const SGPRProblem& p) {
  double jitter = 0.0;
  const MatrixXd L = inducing_factor(p, jitter);
  return fitc_factor(p, L, jitter, fitc_stats(p, L));
}

FITCDataGrad fitc_data_grad(const SGPRProblem& p, const SGPRFactor& f) {
  const Index n = p.X.rows(), m = p.Z.rows(), np = p.kernel.num_params();
  const MatrixXd& L = f.L;
  MatrixXd H(m, m);  // [m, m] dF/dBm
  cholesky_inverse(f.LB, H);
  const VectorXd g = f.LB.triangularView<Eigen::Lower>().transpose().solve(f.c.col(0));  // [m]
  H.noalias() += g * g.transpose();
  H *= -0.5;

  auto make = [&] {
    return FITCDataGrad{VectorXd::Zero(np), RowMatrixXd::Zero(m, p.Z.cols()), MatrixXd::Zero(m, m)};
  };
  auto body = [&](Index s, Index k, FITCDataGrad& acc) {
    FitcBlock b;
    block(p, L, s, k, b);
    const MatrixXd HA = H * b.A;                          // [m, k]
    const VectorXd ga = b.A.transpose() * g;              // [k] g^T a_i
    const Eigen::ArrayXd w = b.r.array() / b.lam.array();  // [k]
    const Eigen::ArrayXd il = b.lam.array().inverse();     // [k]
    const Eigen::ArrayXd aHa = b.A.cwiseProduct(HA).colwise().sum().transpose().array();  // [k]
    const VectorXd lbar = (-0.5 * il + 0.5 * w.square() - aHa * il.square() - ga.array() * w * il).matrix();
    MatrixXd Abar = 2.0 * HA * il.matrix().asDiagonal();  // [m, k]
    Abar.noalias() += g * w.matrix().transpose();
    Abar.noalias() -= 2.0 * b.A * lbar.asDiagonal();
    acc.dnoise += lbar.sum();
    acc.dmean -= (ga.array() * il - w).sum();
    p.kernel.grad_diag(p.theta, p.X.middleRows(s, k), lbar, acc.dtheta.data(), no_input_grad());
    L.triangularView<Eigen::Lower>().transpose().solveInPlace(Abar);  // Kufbar = L^-T Abar
    acc.Lbar.triangularView<Eigen::Lower>() -= Abar * b.A.transpose();
    const RowMatrixXd Kbar = Abar;  // [m, k]
    p.kernel.grad(p.theta, p.Z, p.X.middleRows(s, k), Kbar, acc.dtheta.data(), acc.dZ);
  };
  return reduce_row_blocks<FITCDataGrad>(n, rows_per_block(m), 5.0 * n * m * m, make, body);
}

SGPRGradient fitc_finish_grad(const SGPRProblem& p, const SGPRFactor& f, FITCDataGrad sum) {
  const Index m = p.Z.rows();
  cholesky_reverse(f.L, sum.Lbar);  // now Kuubar
  p.kernel.grad_sym(p.theta, p.Z, Eigen::Map<const RowMatrixXd>(sum.Lbar.data(), m, m), sum.dtheta.data(),
                    sum.dZ);
  SGPRGradient out;
  out.bound = f.bound;
  out.jitter = f.jitter;
  out.dtheta = std::move(sum.dtheta);
  out.dZ = std::move(sum.dZ);
  out.dnoise = sum.dnoise;
  out.dmean = VectorXd::Constant(1, sum.dmean);
  return out;
}

SGPRGradient fitc_lml_grad(const SGPRProblem& p) {
  const SGPRFactor f = fitc_factor(p);
  return fitc_finish_grad(p, f, fitc_data_grad(p, f));
}

}  // namespace varinf

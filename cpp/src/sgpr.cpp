// Titsias (2009) collapsed bound, organised around its sufficient statistics (docs/math.md
// section 5). Notation: Kuu = K(Z, Z) + jitter I = L L^T [m, m], P = Kuf Kfu [m, m],
// b = Kuf r [m] with r = y - mean, W = L^-1 P L^-T [m, m] (= s2 A A^T in docs/math.md section 5),
// Bm = I + W / s2 = LB LB^T, e = L^-1 b, c = LB^-1 e / s2.
//
//   F = -n/2 log 2pi - sum log diag LB - n/2 log s2 - r^T r / (2 s2) + c^T c / 2
//       - (tr Kff - tr W) / (2 s2)                                    (Titsias 2009, eq. 9)
//
// Gradient. With M = Kuu + P / s2 = L Bm L^T, F = -1/2 log det M + 1/2 log det Kuu
// + b^T M^-1 b / (2 s2^2) + tr(Kuu^-1 P) / (2 s2) + ..., and differentiating M^-1 and
// Kuu^-1 and writing the results in the whitened frame (g = LB^-T c, H = (I - Bm^-1) / 2
// - g g^T / 2), which keeps every intermediate well scaled:
//   dF/dP   = L^-T H L^-1 / s2
//   dF/dKuu = L^-T (H - W / (2 s2)) L^-1
//   dF/db   = L^-T g / s2,   dF/d(r^T r) = dF/d(tr Kff) = -1 / (2 s2)
//   dF/ds2  = -n / (2 s2) + (r^T r + tr Kff - tr W) / (2 s2^2) - c^T c / s2
//             + (tr(I - Bm^-1) / s2 + g^T W g / s2^2) / 2
// and dF/dKuf = 2 (dF/dP) Kuf + (dF/db) r^T, contracted block by block into Z and theta.
#include "varinf/sgpr.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>

#include "sparse_common.hpp"
#include "varinf/constants.hpp"
#include "varinf/linalg.hpp"
#include "varinf/parallel.hpp"

namespace varinf {

SGPRStats sgpr_stats(const SGPRProblem& p) {
  const Index n = p.X.rows(), m = p.Z.rows();
  auto make = [m] {
    return SGPRStats{MatrixXd::Zero(m, m), VectorXd::Zero(m), VectorXd::Zero(m)};
  };
  auto body = [&p, m](Index s, Index k, SGPRStats& acc) {
    RowMatrixXd Kuf(m, k);  // [m, k]
    p.kernel.K(p.theta, p.Z, p.X.middleRows(s, k), Kuf);
    const VectorXd r = p.y.segment(s, k).array() - p.mean;  // [k]
    acc.P.selfadjointView<Eigen::Lower>().rankUpdate(Kuf);
    acc.b.noalias() += Kuf * r;
    acc.ku1 += Kuf.rowwise().sum();
    acc.rr += r.squaredNorm();
    acc.rsum += r.sum();
    VectorXd kd(k);  // [k]
    p.kernel.K_diag(p.theta, p.X.middleRows(s, k), kd);
    acc.tk += kd.sum();
    acc.n += double(k);
  };
  SGPRStats total = reduce_row_blocks<SGPRStats>(n, rows_per_block(m), double(n) * m * m, make, body);
  total.P.triangularView<Eigen::StrictlyUpper>() = total.P.transpose();
  return total;
}

namespace {

// Lower Cholesky factor LB of Bm = I + W / s [m, m] (docs/math.md section 5.2).
MatrixXd inner_cholesky(const MatrixXd& W, double s, const char* what) {
  MatrixXd B = W / s;  // [m, m]
  B.diagonal().array() += 1.0;
  cholesky_jitter(B, 0.0, what);
  B.triangularView<Eigen::StrictlyUpper>().setZero();
  return B;
}

// Everything the bound and its gradient share.
struct Collapsed {
  SGPRFactor f;
  MatrixXd Linv;  // [m, m] L^-1
  MatrixXd W;  // [m, m]
  VectorXd e;  // [m]
  double trW;
};

// The bound (docs/math.md section 5.2) and everything its gradient shares; the upper bound
// (section 5.4) only when asked (predictions and reports need it, the optimiser's evaluations
// do not).
Collapsed collapse(const SGPRProblem& p, const SGPRStats& st, bool with_upper_bound) {
  const Index m = p.Z.rows();
  const double n = st.n, s2 = p.noise;
  Collapsed o;
  o.f.L = detail::inducing_cholesky(p.kernel, p.theta, p.Z, p.jitter, o.f.jitter);
  o.Linv.resize(m, m);
  lower_inverse(o.f.L, o.Linv);
  o.W = lower_congruence(o.Linv, st.P);
  o.trW = o.W.trace();
  o.f.LB = inner_cholesky(o.W, s2, "I + L^-1 Kuf Kfu L^-T / noise_variance");
  o.e = o.Linv.triangularView<Eigen::Lower>() * st.b;
  o.f.c = o.f.LB.triangularView<Eigen::Lower>().solve(o.e) / s2;
  const double half_logdet_B = 0.5 * logdet_from_cholesky(o.f.LB);
  const double trace_gap = st.tk - o.trW;  // tr(Kff - Qff) >= 0
  // Titsias (2009) eq. 9.
  o.f.bound = -0.5 * n * (kLog2Pi + std::log(s2)) - half_logdet_B - 0.5 * st.rr / s2 +
              0.5 * o.f.c.squaredNorm() - 0.5 * trace_gap / s2;
  o.f.upper_bound = std::numeric_limits<double>::quiet_NaN();
  if (!with_upper_bound) return o;
  // Titsias (2014), "Variational inference for Gaussian and determinantal point processes",
  // the trace-corrected upper bound as in GPflow's SGPR.upper_bound: the quadratic term with
  // noise s2 + tr(Kff - Qff).
  // tr(Kff - Qff) >= 0, but rounding can take it below 0 when K(Z, Z) is ill-conditioned.
  const double s2u = s2 + std::max(trace_gap, 0.0);
  const MatrixXd LC = inner_cholesky(o.W, s2u, "I + L^-1 Kuf Kfu L^-T / (noise + trace)");
  const VectorXd v = LC.triangularView<Eigen::Lower>().solve(o.e) / s2u;  // [m]
  o.f.upper_bound = -0.5 * n * (kLog2Pi + std::log(s2)) - half_logdet_B - 0.5 * st.rr / s2u +
                    0.5 * v.squaredNorm();
  return o;
}

}  // namespace

SGPRFactor sgpr_factor(const SGPRProblem& p, const SGPRStats& st) { return collapse(p, st, true).f; }

SGPRFactor sgpr_factor(const SGPRProblem& p) { return sgpr_factor(p, sgpr_stats(p)); }

SGPRGradient sgpr_collapsed_grad(const SGPRProblem& p, const SGPRStats& st, SGPRAdjoints& adj) {
  const Collapsed o = collapse(p, st, false);
  const Index m = p.Z.rows();
  const double n = st.n, s2 = p.noise;
  MatrixXd Binv(m, m);  // [m, m] Bm^-1
  cholesky_inverse(o.f.LB, Binv);
  const VectorXd g = o.f.LB.triangularView<Eigen::Lower>().transpose().solve(o.f.c);  // [m]
  MatrixXd H = -0.5 * Binv;  // [m, m]
  H.diagonal().array() += 0.5;
  H.noalias() -= 0.5 * g * g.transpose();
  adj.Pbar = upper_congruence(o.Linv, H) / s2;                              // [m, m]
  const MatrixXd Kuubar = upper_congruence(o.Linv, H - o.W / (2.0 * s2));  // [m, m]
  adj.bbar = o.Linv.transpose().triangularView<Eigen::Upper>() * g / s2;    // [m]
  adj.tkbar = -0.5 / s2;

  SGPRGradient out;
  out.bound = o.f.bound;
  out.jitter = o.f.jitter;
  out.dtheta = VectorXd::Zero(p.kernel.num_params());
  out.dZ = RowMatrixXd::Zero(m, p.Z.cols());
  p.kernel.grad_sym(p.theta, p.Z, Eigen::Map<const RowMatrixXd>(Kuubar.data(), m, m), out.dtheta.data(),
                    out.dZ);
  const double trIBinv = double(m) - Binv.trace();
  out.dnoise = -0.5 * n / s2 + 0.5 * (st.rr + st.tk - o.trW) / (s2 * s2) - o.f.c.squaredNorm() / s2 +
               0.5 * (trIBinv / s2 + g.dot(o.W * g) / (s2 * s2));
  // r = y - mean: dF/dr = Kfu bbar + 2 (dF/d r^T r) r, and dF/dmean = -sum(dF/dr).
  out.dmean = -adj.bbar.dot(st.ku1) + st.rsum / s2;
  return out;
}

namespace {

struct GradAcc {
  VectorXd dtheta;  // [p]
  RowMatrixXd dZ;   // [m, d]
  auto fields() { return std::tie(dtheta, dZ); }
};

}  // namespace

// dF/dtheta and dF/dZ through Kuf and diag Kff: Kbar = 2 Pbar Kuf + bbar r^T [m, k] block by
// block (docs/math.md section 5.3).
void sgpr_data_grad(const SGPRProblem& p, const SGPRAdjoints& adj, double* dtheta, RowMatrixXd& dZ) {
  const Index n = p.X.rows(), m = p.Z.rows(), np = p.kernel.num_params();
  const MatrixXd Pbar2 = 2.0 * adj.Pbar;  // [m, m]
  auto make = [&] { return GradAcc{VectorXd::Zero(np), RowMatrixXd::Zero(m, p.Z.cols())}; };
  auto body = [&](Index s, Index k, GradAcc& acc) {
    const auto Xb = p.X.middleRows(s, k);
    RowMatrixXd Kuf(m, k);  // [m, k]
    p.kernel.K(p.theta, p.Z, Xb, Kuf);
    const VectorXd r = p.y.segment(s, k).array() - p.mean;  // [k]
    RowMatrixXd Kbar(m, k);  // [m, k]
    Kbar.noalias() = Pbar2 * Kuf;
    Kbar.noalias() += adj.bbar * r.transpose();
    p.kernel.grad(p.theta, p.Z, Xb, Kbar, acc.dtheta.data(), acc.dZ);
    p.kernel.grad_diag(p.theta, Xb, VectorXd::Constant(k, adj.tkbar), acc.dtheta.data(), no_input_grad());
  };
  const GradAcc acc = reduce_row_blocks<GradAcc>(n, rows_per_block(m), 2.0 * n * m * m, make, body);
  Eigen::Map<VectorXd>(dtheta, np) += acc.dtheta;
  dZ += acc.dZ;
}

SGPRGradient sgpr_bound_grad(const SGPRProblem& p) {
  SGPRAdjoints adj;
  SGPRGradient out = sgpr_collapsed_grad(p, sgpr_stats(p), adj);
  sgpr_data_grad(p, adj, out.dtheta.data(), out.dZ);
  return out;
}

// t1 = L^-1 Kus, t2 = LB^-1 t1: mean = t2^T c + mean, var = kss - colsum(t1^2) + colsum(t2^2)
// (docs/math.md section 5.6; GPflow SGPR.predict_f).
void sgpr_predict(const SGPRProblem& p, const SGPRFactor& f, MatRef Xnew, VecOut mean, VecOut var) {
  const Index ns = Xnew.rows(), m = p.Z.rows();
  for_row_blocks(ns, rows_per_block(m), 2.0 * ns * m * m, [&](Index s, Index k) {
    const auto Xb = Xnew.middleRows(s, k);
    RowMatrixXd Ksu(k, m);  // [k, m]; its buffer read column-major is Kus [m, k]
    p.kernel.K(p.theta, Xb, p.Z, Ksu);
    Eigen::Map<MatrixXd> T(Ksu.data(), m, k);  // [m, k]
    solve_lower_inplace(f.L, T);
    p.kernel.K_diag(p.theta, Xb, var.segment(s, k));
    var.segment(s, k) -= T.colwise().squaredNorm().transpose();
    solve_lower_inplace(f.LB, T);
    var.segment(s, k) += T.colwise().squaredNorm().transpose();
    mean.segment(s, k).noalias() = T.transpose() * f.c;
    mean.segment(s, k).array() += p.mean;
  });
}

void sgpr_predict_cov(const SGPRProblem& p, const SGPRFactor& f, MatRef Xnew, VecOut mean,
                      MatOut cov) {
  const Index ns = Xnew.rows(), m = p.Z.rows();
  RowMatrixXd Ksu(ns, m);  // [n*, m]
  p.kernel.K(p.theta, Xnew, p.Z, Ksu);
  Eigen::Map<MatrixXd> T(Ksu.data(), m, ns);  // [m, n*] Kus
  solve_lower_inplace(f.L, T);
  p.kernel.K_sym(p.theta, Xnew, cov);
  cov.noalias() -= T.transpose() * T;
  solve_lower_inplace(f.LB, T);
  cov.noalias() += T.transpose() * T;
  mean.noalias() = T.transpose() * f.c;
  mean.array() += p.mean;
}

// Titsias (2009) eq. 10 (docs/math.md section 5.5): mu = Kuu M^-1 Kuf r / s2 + mean =
// L g + mean with g = LB^-T c, and S = Kuu M^-1 Kuu = L Bm^-1 L^T = V^T V with V = LB^-1 L^T.
void sgpr_qu(const SGPRProblem& p, const SGPRFactor& f, VecOut mu, MatOut S) {
  const VectorXd g = f.LB.triangularView<Eigen::Lower>().transpose().solve(f.c);  // [m]
  mu.noalias() = f.L.triangularView<Eigen::Lower>() * g;
  mu.array() += p.mean;
  MatrixXd V = f.L.transpose();  // [m, m]
  solve_lower_inplace(f.LB, V);
  S.noalias() = V.transpose() * V;
}

}  // namespace varinf

// Titsias (2009) collapsed bound, organised around its sufficient statistics (docs/math.md
// section 5), for P outputs that share the kernel and the noise (section 5.9). Notation:
// Kuu = K(Z, Z) + jitter I = L L^T [m, m], Psi = Kuf Kfu [m, m], B = Kuf R [m, P] with
// R = Y - mean [n, P], W = L^-1 Psi L^-T [m, m] (= s2 A A^T in docs/math.md section 5),
// Bm = I + W / s2 = LB LB^T, E = L^-1 B [m, P], C = LB^-1 E / s2 [m, P].
//
//   F = -nP/2 log 2pi - P sum log diag LB - nP/2 log s2 - |R|^2 / (2 s2) + |C|^2 / 2
//       - P (tr Kff - tr W) / (2 s2)                                  (Titsias 2009, eq. 9)
//
// Gradient. With M = Kuu + Psi / s2 = L Bm L^T, F = -P/2 log det M + P/2 log det Kuu
// + tr(B^T M^-1 B) / (2 s2^2) + P tr(Kuu^-1 Psi) / (2 s2) + ..., and differentiating M^-1 and
// Kuu^-1 and writing the results in the whitened frame (G = LB^-T C [m, P],
// H = P (I - Bm^-1) / 2 - G G^T / 2), which keeps every intermediate well scaled:
//   dF/dPsi = L^-T H L^-1 / s2
//   dF/dKuu = L^-T (H - P W / (2 s2)) L^-1
//   dF/dB   = L^-T G / s2,   dF/d|R|^2 = -1 / (2 s2),   dF/d(tr Kff) = -P / (2 s2)
//   dF/ds2  = -nP / (2 s2) + (|R|^2 + P (tr Kff - tr W)) / (2 s2^2) - |C|^2 / s2
//             + (P tr(I - Bm^-1) / s2 + tr(G^T W G) / s2^2) / 2
// and dF/dKuf = 2 (dF/dPsi) Kuf + (dF/dB) R^T, contracted block by block into Z and theta.
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

namespace {

// R = Y - mean for rows [s, s + k): [k, P].
RowMatrixXd residuals(const SGPRProblem& p, Index s, Index k) {
  return p.Y.middleRows(s, k).rowwise() - p.mean.transpose();
}

}  // namespace

SGPRStats sgpr_stats(const SGPRProblem& p) {
  const Index n = p.X.rows(), m = p.Z.rows(), P = p.Y.cols();
  auto make = [m, P] {
    return SGPRStats{MatrixXd::Zero(m, m), MatrixXd::Zero(m, P), VectorXd::Zero(m), VectorXd::Zero(P)};
  };
  auto body = [&p, m](Index s, Index k, SGPRStats& acc) {
    RowMatrixXd Kuf(m, k);  // [m, k]
    p.kernel.K(p.theta, p.Z, p.X.middleRows(s, k), Kuf);
    const RowMatrixXd R = residuals(p, s, k);  // [k, P]
    acc.Psi.selfadjointView<Eigen::Lower>().rankUpdate(Kuf);
    acc.B.noalias() += Kuf * R;
    acc.ku1 += Kuf.rowwise().sum();
    acc.rr += R.squaredNorm();
    acc.rsum += R.colwise().sum().transpose();
    VectorXd kd(k);  // [k]
    p.kernel.K_diag(p.theta, p.X.middleRows(s, k), kd);
    acc.tk += kd.sum();
    acc.n += double(k);
  };
  SGPRStats total = reduce_row_blocks<SGPRStats>(n, rows_per_block(m), double(n) * m * (m + P), make, body);
  total.Psi.triangularView<Eigen::StrictlyUpper>() = total.Psi.transpose();
  return total;
}

namespace {

using detail::inner_cholesky;

// Everything the bound and its gradient share.
struct Collapsed {
  SGPRFactor f;
  MatrixXd Linv;  // [m, m] L^-1
  MatrixXd W;  // [m, m]
  MatrixXd E;  // [m, P]
  double trW;
};

// The bound (docs/math.md section 5.2) and everything its gradient shares; the upper bound
// (section 5.4) only when asked (predictions and reports need it, the optimiser's evaluations
// do not).
Collapsed collapse(const SGPRProblem& p, const SGPRStats& st, bool with_upper_bound) {
  const Index m = p.Z.rows();
  const double n = st.n, s2 = p.noise, P = double(st.B.cols());
  Collapsed o;
  o.f.L = detail::inducing_cholesky(p.kernel, p.theta, p.Z, p.jitter, o.f.jitter);
  o.Linv.resize(m, m);
  lower_inverse(o.f.L, o.Linv);
  o.W = lower_congruence(o.Linv, st.Psi);
  o.trW = o.W.trace();
  o.f.LB = inner_cholesky(o.W, s2, "I + L^-1 Kuf Kfu L^-T / noise_variance");
  o.E = o.Linv.triangularView<Eigen::Lower>() * st.B;
  o.f.c = o.f.LB.triangularView<Eigen::Lower>().solve(o.E) / s2;
  const double half_logdet_B = 0.5 * logdet_from_cholesky(o.f.LB);
  const double trace_gap = st.tk - o.trW;  // tr(Kff - Qff) >= 0
  // Titsias (2009) eq. 9, summed over the P outputs.
  o.f.bound = -0.5 * n * P * (kLog2Pi + std::log(s2)) - P * half_logdet_B - 0.5 * st.rr / s2 +
              0.5 * o.f.c.squaredNorm() - 0.5 * P * trace_gap / s2;
  o.f.upper_bound = std::numeric_limits<double>::quiet_NaN();
  if (!with_upper_bound) return o;
  // Titsias (2014), "Variational inference for Gaussian and determinantal point processes",
  // the trace-corrected upper bound as in GPflow's SGPR.upper_bound: the quadratic term with
  // noise s2 + tr(Kff - Qff).
  // tr(Kff - Qff) >= 0, but rounding can take it below 0 when K(Z, Z) is ill-conditioned.
  const double s2u = s2 + std::max(trace_gap, 0.0);
  const MatrixXd LC = inner_cholesky(o.W, s2u, "I + L^-1 Kuf Kfu L^-T / (noise + trace)");
  const MatrixXd V = LC.triangularView<Eigen::Lower>().solve(o.E) / s2u;  // [m, P]
  o.f.upper_bound = -0.5 * n * P * (kLog2Pi + std::log(s2)) - P * half_logdet_B - 0.5 * st.rr / s2u +
                    0.5 * V.squaredNorm();
  return o;
}

}  // namespace

SGPRFactor sgpr_factor(const SGPRProblem& p, const SGPRStats& st) { return collapse(p, st, true).f; }

SGPRFactor sgpr_factor(const SGPRProblem& p) { return sgpr_factor(p, sgpr_stats(p)); }

SGPRGradient sgpr_collapsed_grad(const SGPRProblem& p, const SGPRStats& st, SGPRAdjoints& adj) {
  const Collapsed o = collapse(p, st, false);
  const Index m = p.Z.rows();
  const double n = st.n, s2 = p.noise, P = double(st.B.cols());
  MatrixXd Binv(m, m);  // [m, m] Bm^-1
  cholesky_inverse(o.f.LB, Binv);
  const MatrixXd G = o.f.LB.triangularView<Eigen::Lower>().transpose().solve(o.f.c);  // [m, P]
  MatrixXd H = -0.5 * P * Binv;  // [m, m]
  H.diagonal().array() += 0.5 * P;
  H.noalias() -= 0.5 * G * G.transpose();
  adj.Psibar = upper_congruence(o.Linv, H) / s2;                                // [m, m]
  const MatrixXd Kuubar = upper_congruence(o.Linv, H - P * o.W / (2.0 * s2));  // [m, m]
  adj.Bbar = o.Linv.transpose().triangularView<Eigen::Upper>() * G / s2;        // [m, P]
  adj.tkbar = -0.5 * P / s2;

  SGPRGradient out;
  out.bound = o.f.bound;
  out.jitter = o.f.jitter;
  out.dtheta = VectorXd::Zero(p.kernel.num_params());
  out.dZ = RowMatrixXd::Zero(m, p.Z.cols());
  p.kernel.grad_sym(p.theta, p.Z, Eigen::Map<const RowMatrixXd>(Kuubar.data(), m, m), out.dtheta.data(),
                    out.dZ);
  const double trIBinv = double(m) - Binv.trace();
  const double trGWG = G.cwiseProduct(o.W * G).sum();
  out.dnoise = -0.5 * n * P / s2 + 0.5 * (st.rr + P * (st.tk - o.trW)) / (s2 * s2) -
               o.f.c.squaredNorm() / s2 + 0.5 * (P * trIBinv / s2 + trGWG / (s2 * s2));
  // R = Y - mean: dF/dR = Kfu Bbar + 2 (dF/d|R|^2) R, and dF/dmean = -(column sums of dF/dR).
  out.dmean = -adj.Bbar.transpose() * st.ku1 + st.rsum / s2;
  return out;
}

namespace {

struct GradAcc {
  VectorXd dtheta;  // [p]
  RowMatrixXd dZ;   // [m, d]
  auto fields() { return std::tie(dtheta, dZ); }
};

}  // namespace

// dF/dtheta and dF/dZ through Kuf and diag Kff: Kbar = 2 Psibar Kuf + Bbar R^T [m, k] block by
// block (docs/math.md section 5.3).
void sgpr_data_grad(const SGPRProblem& p, const SGPRAdjoints& adj, double* dtheta, RowMatrixXd& dZ) {
  const Index n = p.X.rows(), m = p.Z.rows(), np = p.kernel.num_params();
  const MatrixXd Psibar2 = 2.0 * adj.Psibar;  // [m, m]
  auto make = [&] { return GradAcc{VectorXd::Zero(np), RowMatrixXd::Zero(m, p.Z.cols())}; };
  auto body = [&](Index s, Index k, GradAcc& acc) {
    const auto Xb = p.X.middleRows(s, k);
    RowMatrixXd Kuf(m, k);  // [m, k]
    p.kernel.K(p.theta, p.Z, Xb, Kuf);
    RowMatrixXd Kbar(m, k);  // [m, k]
    Kbar.noalias() = Psibar2 * Kuf;
    Kbar.noalias() += adj.Bbar * residuals(p, s, k).transpose();
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

// t1 = L^-1 Kus, t2 = LB^-1 t1: mean = t2^T C + mean, var = kss - colsum(t1^2) + colsum(t2^2)
// (docs/math.md section 5.6; GPflow SGPR.predict_f).
void sgpr_predict(const SGPRProblem& p, const SGPRFactor& f, MatRef Xnew, MatOut mean, VecOut var) {
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
    mean.middleRows(s, k).noalias() = T.transpose() * f.c;
    mean.middleRows(s, k).rowwise() += p.mean.transpose();
  });
}

void sgpr_predict_cov(const SGPRProblem& p, const SGPRFactor& f, MatRef Xnew, MatOut mean,
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
  mean.rowwise() += p.mean.transpose();
}

// Titsias (2009) eq. 10 (docs/math.md section 5.5): mu = Kuu M^-1 Kuf R / s2 + mean =
// L G + mean with G = LB^-T C, and S = Kuu M^-1 Kuu = L Bm^-1 L^T = V^T V with V = LB^-1 L^T.
void sgpr_qu(const SGPRProblem& p, const SGPRFactor& f, MatOut mu, MatOut S) {
  const MatrixXd G = f.LB.triangularView<Eigen::Lower>().transpose().solve(f.c);  // [m, P]
  mu.noalias() = f.L.triangularView<Eigen::Lower>() * G;
  mu.rowwise() += p.mean.transpose();
  MatrixXd V = f.L.transpose();  // [m, m]
  solve_lower_inplace(f.LB, V);
  S.noalias() = V.transpose() * V;
}

}  // namespace varinf

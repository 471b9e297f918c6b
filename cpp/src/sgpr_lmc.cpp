// The collapsed bound for coregionalised outputs (docs/math.md section 5.10). Notation: Q latent
// GPs, m inducing inputs, P outputs, R = Y - mean [n, P]; the stacked Kuf = [K_1(Z, X); ...;
// K_Q(Z, X)] [mQ, n]; block (q, q') of an [mQ, mQ] matrix is its [m, m] block at (q m, q' m).
//
// Statistics (sums over rows): Psi = Kuf Kfu [mQ, mQ], B = Kuf R [mQ, P], Kuf 1 [mQ], the column
// sums of R [P], tk_q = tr K_q(X, X) [Q], |R|^2. With C = W^T W [Q, Q], the stacked problem's
//   Phi = Kuf_big Kfu_big,  block (q, q') = C_qq' Psi_qq'           [mQ, mQ]
//   b = Kuf_big vec(R),     block q = B_q W[:, q]                   [mQ]
//   tr Kff_big = sum_q C_qq tk_q
// and F is Titsias' bound of that one problem with nP targets (sgpr.cpp with P = 1):
//   F = -nP/2 log 2pi s2 - sum log diag LB - |R|^2 / (2 s2) + |c|^2 / 2
//       - (tr Kff_big - tr Wm) / (2 s2),
// L = blockdiag(chol K_q(Z, Z)), Wm = L^-1 Phi L^-T, Bm = I + Wm / s2 = LB LB^T,
// c = LB^-1 L^-1 b / s2. Its gradient with respect to Phi, Kuu, b and tr Kff is sgpr.cpp's; the
// chain rule through Phi, b and tr Kff then gives
//   Psibar_qq' = C_qq' Phibar_qq',  Bbar_q = bbar_q W[:, q]^T,
//   Cbar_qq' = <Phibar_qq', Psi_qq'> - [q = q'] tk_q / (2 s2),
//   Wbar = W (Cbar + Cbar^T) + [B_q^T bbar_q]_q,
// and dF/dKuf = 2 Psibar Kuf + Bbar R^T row block by row block, as for SGPR.
#include "varinf/sgpr_lmc.hpp"

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

using detail::inner_cholesky;

struct LMCStats {
  MatrixXd Psi;   // [mQ, mQ] lower triangle while summing, then both
  MatrixXd B;     // [mQ, P]
  VectorXd ku1;   // [mQ]
  VectorXd rsum;  // [P]
  VectorXd tk;    // [Q]
  double rr = 0.0, n = 0.0;
  auto fields() { return std::tie(Psi, B, ku1, rsum, tk, rr, n); }
};

// The stacked K(Z, Xb) [mQ, k] of a block of rows.
RowMatrixXd stacked_kuf(const LMCProblem& p, MatRef Xb) {
  const Index m = p.Z.rows();
  RowMatrixXd Kuf(m * p.Q(), Xb.rows());
  for (Index q = 0; q < p.Q(); ++q) p.kernels[q]->K(p.thetas[q], p.Z, Xb, Kuf.middleRows(q * m, m));
  return Kuf;
}

RowMatrixXd lmc_residuals(const LMCProblem& p, Index s, Index k) {
  return p.Y.middleRows(s, k).rowwise() - p.mean.transpose();  // [k, P]
}

LMCStats lmc_stats(const LMCProblem& p) {
  const Index n = p.X.rows(), mQ = p.Z.rows() * p.Q(), P = p.Y.cols();
  auto make = [&] {
    return LMCStats{MatrixXd::Zero(mQ, mQ), MatrixXd::Zero(mQ, P), VectorXd::Zero(mQ), VectorXd::Zero(P),
                    VectorXd::Zero(p.Q())};
  };
  auto body = [&p](Index s, Index k, LMCStats& acc) {
    const auto Xb = p.X.middleRows(s, k);
    const RowMatrixXd Kuf = stacked_kuf(p, Xb);  // [mQ, k]
    const RowMatrixXd R = lmc_residuals(p, s, k);  // [k, P]
    acc.Psi.selfadjointView<Eigen::Lower>().rankUpdate(Kuf);
    acc.B.noalias() += Kuf * R;
    acc.ku1 += Kuf.rowwise().sum();
    acc.rsum += R.colwise().sum().transpose();
    acc.rr += R.squaredNorm();
    VectorXd kd(k);  // [k]
    for (Index q = 0; q < p.Q(); ++q) {
      p.kernels[q]->K_diag(p.thetas[q], Xb, kd);
      acc.tk[q] += kd.sum();
    }
    acc.n += double(k);
  };
  LMCStats st = reduce_row_blocks<LMCStats>(n, rows_per_block(mQ), double(n) * mQ * (mQ + P), make, body);
  st.Psi.triangularView<Eigen::StrictlyUpper>() = st.Psi.transpose();
  return st;
}

// A [mQ, mQ] with block (q, q') multiplied by C(q, q') [Q, Q].
MatrixXd scale_blocks(const MatrixXd& A, const MatrixXd& C, Index m) {
  MatrixXd out(A.rows(), A.cols());
  for (Index q = 0; q < C.rows(); ++q)
    for (Index r = 0; r < C.cols(); ++r) out.block(q * m, r * m, m, m) = C(q, r) * A.block(q * m, r * m, m, m);
  return out;
}

// Everything the bound and its gradient share.
struct LMCCollapsed {
  LMCFactor f;
  MatrixXd Linv;  // [mQ, mQ] L^-1, block diagonal
  MatrixXd C;     // [Q, Q] W^T W
  MatrixXd Wm;    // [mQ, mQ] L^-1 Phi L^-T
  double tk;      // tr Kff of the stacked problem
};

// L = blockdiag(chol(K_q(Z, Z) + jitter I)) [mQ, mQ]; `used` gets the largest jitter needed.
MatrixXd stacked_inducing_cholesky(const LMCProblem& p, double& used) {
  const Index m = p.Z.rows();
  MatrixXd L = MatrixXd::Zero(m * p.Q(), m * p.Q());
  used = 0.0;
  for (Index q = 0; q < p.Q(); ++q) {
    double jitter = 0.0;
    L.block(q * m, q * m, m, m) = detail::inducing_cholesky(*p.kernels[q], p.thetas[q], p.Z, p.jitter, jitter);
    used = std::max(used, jitter);
  }
  return L;
}

LMCCollapsed lmc_collapse(const LMCProblem& p, const LMCStats& st, bool with_upper_bound) {
  const Index m = p.Z.rows(), Q = p.Q(), mQ = m * Q;
  const double n = st.n, s2 = p.noise, P = double(p.Y.cols());
  LMCCollapsed o;
  o.f.L = stacked_inducing_cholesky(p, o.f.jitter);
  o.Linv.resize(mQ, mQ);
  lower_inverse(o.f.L, o.Linv);
  o.C = p.W.transpose() * p.W;
  o.Wm = lower_congruence(o.Linv, scale_blocks(st.Psi, o.C, m));
  o.tk = o.C.diagonal().dot(st.tk);
  VectorXd b(mQ);  // [mQ]
  for (Index q = 0; q < Q; ++q) b.segment(q * m, m) = st.B.middleRows(q * m, m) * p.W.col(q);
  const VectorXd e = o.Linv.triangularView<Eigen::Lower>() * b;  // [mQ]
  o.f.LB = inner_cholesky(o.Wm, s2, "I + L^-1 Kuf Kfu L^-T / noise_variance (coregionalised)");
  o.f.c = o.f.LB.triangularView<Eigen::Lower>().solve(e) / s2;
  const double half_logdet_B = 0.5 * logdet_from_cholesky(o.f.LB);
  const double trace_gap = o.tk - o.Wm.trace();  // tr(Kff - Qff) of the stacked problem, >= 0
  const double fit = -0.5 * n * P * (kLog2Pi + std::log(s2)) - half_logdet_B;
  o.f.bound = fit - 0.5 * st.rr / s2 + 0.5 * o.f.c.squaredNorm() - 0.5 * trace_gap / s2;
  o.f.upper_bound = std::numeric_limits<double>::quiet_NaN();
  if (!with_upper_bound) return o;
  // Titsias (2014) as in sgpr.cpp: the quadratic term with noise s2 + tr(Kff - Qff).
  const double s2u = s2 + std::max(trace_gap, 0.0);
  const MatrixXd LC = inner_cholesky(o.Wm, s2u, "I + L^-1 Kuf Kfu L^-T / (noise + trace) (coregionalised)");
  const VectorXd v = LC.triangularView<Eigen::Lower>().solve(e) / s2u;  // [mQ]
  o.f.upper_bound = fit - 0.5 * st.rr / s2u + 0.5 * v.squaredNorm();
  return o;
}

struct LMCGradAcc {
  VectorXd dtheta;  // [sum_q p_q], latent GP q's at its offset
  RowMatrixXd dZ;   // [m, d]
  auto fields() { return std::tie(dtheta, dZ); }
};

// Offsets of each latent GP's parameters in the concatenated dtheta [Q + 1].
std::vector<Index> theta_offsets(const LMCProblem& p) {
  std::vector<Index> at{0};
  for (const Kernel* k : p.kernels) at.push_back(at.back() + k->num_params());
  return at;
}

// dF/dtheta and dF/dZ through the stacked Kuf and diag Kff: Kbar = 2 Psibar Kuf + Bbar R^T
// [mQ, k] per block of rows, its block q contracted with kernel q; tkbar [Q] = dF / d tk_q.
LMCGradAcc data_grad(const LMCProblem& p, const MatrixXd& Psibar, const MatrixXd& Bbar, const VectorXd& tkbar) {
  const Index n = p.X.rows(), m = p.Z.rows(), mQ = m * p.Q();
  const std::vector<Index> at = theta_offsets(p);
  const MatrixXd Psibar2 = 2.0 * Psibar;  // [mQ, mQ]
  auto make = [&] { return LMCGradAcc{VectorXd::Zero(at.back()), RowMatrixXd::Zero(m, p.Z.cols())}; };
  auto body = [&](Index s, Index k, LMCGradAcc& acc) {
    const auto Xb = p.X.middleRows(s, k);
    const RowMatrixXd Kuf = stacked_kuf(p, Xb);  // [mQ, k]
    RowMatrixXd Kbar(mQ, k);                     // [mQ, k]
    Kbar.noalias() = Psibar2 * Kuf;
    Kbar.noalias() += Bbar * lmc_residuals(p, s, k).transpose();
    for (Index q = 0; q < p.Q(); ++q) {
      double* dtheta = acc.dtheta.data() + at[q];
      p.kernels[q]->grad(p.thetas[q], p.Z, Xb, Kbar.middleRows(q * m, m), dtheta, acc.dZ);
      p.kernels[q]->grad_diag(p.thetas[q], Xb, VectorXd::Constant(k, tkbar[q]), dtheta, no_input_grad());
    }
  };
  return reduce_row_blocks<LMCGradAcc>(n, rows_per_block(mQ), 2.0 * n * mQ * mQ, make, body);
}

}  // namespace

LMCFactor lmc_factor(const LMCProblem& p) { return lmc_collapse(p, lmc_stats(p), true).f; }

LMCGradient lmc_bound_grad(const LMCProblem& p) {
  const LMCStats st = lmc_stats(p);
  const LMCCollapsed o = lmc_collapse(p, st, false);
  const Index m = p.Z.rows(), Q = p.Q(), mQ = m * Q, P = p.Y.cols();
  const double n = st.n, s2 = p.noise;
  // dF/dPhi, dF/dKuu, dF/db of the stacked problem (sgpr.cpp's formulas with one output).
  MatrixXd Binv(mQ, mQ);  // [mQ, mQ] Bm^-1
  cholesky_inverse(o.f.LB, Binv);
  const VectorXd g = o.f.LB.triangularView<Eigen::Lower>().transpose().solve(o.f.c);  // [mQ]
  MatrixXd H = -0.5 * Binv;  // [mQ, mQ]
  H.diagonal().array() += 0.5;
  H.noalias() -= 0.5 * g * g.transpose();
  const MatrixXd Phibar = upper_congruence(o.Linv, H) / s2;                  // [mQ, mQ]
  const MatrixXd Kuubar = upper_congruence(o.Linv, H - o.Wm / (2.0 * s2));  // [mQ, mQ]
  const VectorXd bbar = o.Linv.transpose().triangularView<Eigen::Upper>() * g / s2;  // [mQ]

  // Through Phi = Psi o (C x 1), b_q = B_q W[:, q] and tr Kff = sum_q C_qq tk_q.
  MatrixXd Cbar(Q, Q);  // [Q, Q]
  MatrixXd Bbar(mQ, P);  // [mQ, P]
  LMCGradient out;
  out.dW = RowMatrixXd::Zero(P, Q);
  for (Index q = 0; q < Q; ++q) {
    for (Index r = 0; r < Q; ++r)
      Cbar(q, r) = Phibar.block(q * m, r * m, m, m).cwiseProduct(st.Psi.block(q * m, r * m, m, m)).sum();
    Cbar(q, q) -= 0.5 * st.tk[q] / s2;
    Bbar.middleRows(q * m, m).noalias() = bbar.segment(q * m, m) * p.W.col(q).transpose();
    out.dW.col(q) = st.B.middleRows(q * m, m).transpose() * bbar.segment(q * m, m);
  }
  out.dW.noalias() += p.W * (Cbar + Cbar.transpose());
  const VectorXd tkbar = -0.5 * o.C.diagonal() / s2;  // [Q]

  out.bound = o.f.bound;
  out.jitter = o.f.jitter;
  LMCGradAcc acc = data_grad(p, scale_blocks(Phibar, o.C, m), Bbar, tkbar);
  const std::vector<Index> at = theta_offsets(p);
  for (Index q = 0; q < Q; ++q) {
    const RowMatrixXd Kqbar = Kuubar.block(q * m, q * m, m, m);  // [m, m]
    p.kernels[q]->grad_sym(p.thetas[q], p.Z, Kqbar, acc.dtheta.data() + at[q], acc.dZ);
    out.dtheta.push_back(acc.dtheta.segment(at[q], at[q + 1] - at[q]));
  }
  out.dZ = std::move(acc.dZ);
  const double trIBinv = double(mQ) - Binv.trace();
  const double trace_gap = o.tk - o.Wm.trace();
  out.dnoise = -0.5 * n * P / s2 + 0.5 * (st.rr + trace_gap) / (s2 * s2) - o.f.c.squaredNorm() / s2 +
               0.5 * (trIBinv / s2 + g.dot(o.Wm * g) / (s2 * s2));
  // dF/dR = Kfu Bbar - R / s2 and dF/dmean = -(column sums of dF/dR).
  out.dmean = -Bbar.transpose() * st.ku1 + st.rsum / s2;
  return out;
}

namespace {

// T = blockdiag(L_q^-1 K_q(Z, Xb)) [mQ, Q k] (column q k + i: latent GP q at point i) and the
// prior variances kd [k, Q] of the points.
MatrixXd whitened_cross(const LMCProblem& p, const LMCFactor& f, MatRef Xb, RowMatrixXd& kd) {
  const Index m = p.Z.rows(), Q = p.Q(), k = Xb.rows();
  MatrixXd T = MatrixXd::Zero(m * Q, Q * k);
  kd.resize(k, Q);
  VectorXd d(k);  // [k]
  for (Index q = 0; q < Q; ++q) {
    RowMatrixXd Ksu(k, m);  // [k, m]; its buffer read column-major is Kus [m, k]
    p.kernels[q]->K(p.thetas[q], Xb, p.Z, Ksu);
    auto Tq = T.block(q * m, q * k, m, k);
    Tq = Eigen::Map<const MatrixXd>(Ksu.data(), m, k);
    solve_lower_inplace(f.L.block(q * m, q * m, m, m), Tq);
    p.kernels[q]->K_diag(p.thetas[q], Xb, d);
    kd.col(q) = d;
  }
  return T;
}

}  // namespace

// Per point i and latent GPs q, q' (docs/math.md section 5.10): with T2 = LB^-1 T,
//   mean_q = T2_qi^T c,  cov_qq' = [q = q'] (k_q(x_i, x_i) - |T_qi|^2) + T2_qi^T T2_q'i.
void lmc_predict(const LMCProblem& p, const LMCFactor& f, MatRef Xnew, MatOut mean, MatOut cov) {
  const Index ns = Xnew.rows(), Q = p.Q(), mQ = p.Z.rows() * Q;
  for_row_blocks(ns, rows_per_block(mQ * Q), 2.0 * ns * mQ * mQ * Q, [&](Index s, Index k) {
    RowMatrixXd kd;  // [k, Q]
    const MatrixXd T = whitened_cross(p, f, Xnew.middleRows(s, k), kd);  // [mQ, Q k]
    MatrixXd T2 = T;
    solve_lower_inplace(f.LB, T2);
    for (Index i = 0; i < k; ++i) {
      for (Index q = 0; q < Q; ++q) {
        mean(s + i, q) = T2.col(q * k + i).dot(f.c);
        for (Index r = 0; r < Q; ++r) cov(s + i, q * Q + r) = T2.col(q * k + i).dot(T2.col(r * k + i));
        cov(s + i, q * Q + q) += kd(i, q) - T.col(q * k + i).squaredNorm();
      }
    }
  });
}

void lmc_predict_cov(const LMCProblem& p, const LMCFactor& f, MatRef Xnew, MatOut mean, MatOut cov) {
  const Index ns = Xnew.rows(), Q = p.Q();
  RowMatrixXd kd;
  MatrixXd T = whitened_cross(p, f, Xnew, kd);  // [mQ, Q n*]
  cov.noalias() = -T.transpose() * T;           // block diagonal
  RowMatrixXd Kq(ns, ns);                       // [n*, n*]
  for (Index q = 0; q < Q; ++q) {
    p.kernels[q]->K_sym(p.thetas[q], Xnew, Kq);
    cov.block(q * ns, q * ns, ns, ns) += Kq;
  }
  solve_lower_inplace(f.LB, T);
  cov.noalias() += T.transpose() * T;
  const VectorXd mu = T.transpose() * f.c;  // [Q n*]
  mean = Eigen::Map<const MatrixXd>(mu.data(), ns, Q);
}

// mu = L G with G = LB^-T c, S = L Bm^-1 L^T = V^T V with V = LB^-1 L^T (sgpr_qu's formulas).
void lmc_qu(const LMCProblem& p, const LMCFactor& f, MatOut mu, MatOut S) {
  const Index m = p.Z.rows();
  const VectorXd G = f.LB.triangularView<Eigen::Lower>().transpose().solve(f.c);  // [mQ]
  const VectorXd u = f.L.triangularView<Eigen::Lower>() * G;                       // [mQ]
  mu = Eigen::Map<const MatrixXd>(u.data(), m, p.Q());
  MatrixXd V = f.L.transpose();  // [mQ, mQ]
  solve_lower_inplace(f.LB, V);
  S.noalias() = V.transpose() * V;
}

}  // namespace varinf

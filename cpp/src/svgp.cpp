// SVGP minibatch ELBO and its reverse pass (Hensman, Fusi & Lawrence 2013; docs/math.md section 7),
// for L latent GPs in groups that share a kernel and inducing inputs (docs/math.md section 11.1).
//
// Notation for a group: Kuu = K(Z, Z) + jitter I = L L^T [m, m], Kuf = K(Z, X_batch) [m, k],
// A = L^-1 Kuf [m, k], G = A (whitened) or L^-T A = Kuu^-1 Kuf (unwhitened) [m, k]; for each of
// its latent GPs l, T_l = Lq_l^T G [m, k]. Then (docs/math.md section 7)
//   mu_l  = G^T q_mu_l + mean_l,  var_l = diag Kff - colsum(A^2) + colsum(T_l^2)      [k]
//   ELBO = (n / B) sum_i E_{q(f_i)} log p(y_i | f_i) - sum_l KL[q_l || p_l],
// the likelihood reading f = [mu_l, var_l]_l or, with mixing, g = W f (section 11.1).
// Reverse pass, with gmu_l = dELBO/dmu_l, gv_l = dELBO/dvar_l and D_l = diag(gv_l):
//   dq_mu_l += G gmu_l;  dLq_l += 2 G D_l T_l^T (lower);  Gbar = sum_l (q_mu_l gmu_l^T + 2 Lq_l T_l D_l);
//   Abar = -2 A sum_l D_l (+ Gbar whitened);  unwhitened G = L^-T A: H = L^-1 Gbar, Abar += H,
//   Lbar -= G H^T;  A = L^-1 Kuf: Kufbar = L^-T Abar, Lbar -= Kufbar A^T  (docs/math.md section 3)
// and Kuubar = cholesky_reverse(L, Lbar) (Murray 2016). With one latent GP every operation is
// the single-GP one, in the same order. The batch is cut into blocks of rows, one run of blocks
// per thread, each thread with its own accumulators.
// L^-1 is formed once per call (m^3 / 3 flops), so that every L^-1 X and L^-T X on a block is
// a triangular product: Eigen's triangular solves run their diagonal blocks in scalar code,
// its triangular products run entirely in the vectorised GEMM kernel.
// With p.single the products on the batch (every m^2 k term above: A, T_l, Gbar, Kufbar and
// their contributions to Lbar and dLq) run in float32, from float32 copies of L^-1, Lq_l and
// q_mu_l (docs/math.md section 7.14); the kernel matrices, the marginals, the likelihood, the
// per-block sums, K(Z, Z)'s factor, the KL and the Cholesky reverse mode stay in float64.
#include "varinf/svgp.hpp"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <type_traits>

#include "sparse_common.hpp"
#include "varinf/linalg.hpp"
#include "varinf/parallel.hpp"

namespace varinf {

namespace {

using Eigen::Lower;
template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>;
template <class T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <class T>
constexpr bool kDouble = std::is_same_v<T, double>;

// x in float64: x itself (a reference, no copy) when it is float64 already.
template <class X>
decltype(auto) f64(const X& x) {
  return x.template cast<double>();
}

// One group's K(Z, Z) factor and its inverse.
struct GroupFactor {
  double jitter = 0.0;  // the jitter K(Z, Z) needed (declared first: L's initialiser sets it)
  MatrixXd L;           // [m, m] lower: chol(K(Z, Z) + jitter I)
  MatrixXd Linv;        // [m, m] lower: L^-1
  Eigen::MatrixXf Linv32;  // [m, m] L^-1 in float32 (single precision only)

  GroupFactor(const LatentGroup& g, double jitter0, bool single)
      : L(detail::inducing_cholesky(g.kernel, g.theta, g.Z, jitter0, jitter)), Linv(L.rows(), L.cols()) {
    lower_inverse(L, Linv);
    if (single) Linv32 = Linv.cast<float>();
  }
  template <class T>
  const Mat<T>& inv() const {
    if constexpr (kDouble<T>) return Linv; else return Linv32;
  }
  template <class T = double>
  auto Li() const { return inv<T>().template triangularView<Lower>(); }  // L^-1
  template <class T = double>
  auto LiT() const { return inv<T>().transpose().template triangularView<Eigen::Upper>(); }  // L^-T
};

// Latent GP l's q(u) factor Lq_l [m, m] lower triangular (a diagonal matrix when q_diag).
MatrixXd q_factor(const SVGPProblem& p, Index l) {
  const Index m = p.m();
  if (p.q_diag) return p.q_sqrt.col(l).asDiagonal().toDenseMatrix();
  MatrixXd Lq = MatrixXd::Zero(m, m);
  Lq.triangularView<Lower>() = p.q_sqrt.middleRows(l * m, m);
  return Lq;
}

// Every group's K(Z, Z) factor, and every latent GP's q(u) (with float32 copies for the batch
// products when p.single).
struct Factors {
  std::vector<GroupFactor> groups;
  std::vector<MatrixXd> Lq;    // [L] of [m, m]
  std::vector<VectorXd> q_mu;  // [L] of [m]
  std::vector<Eigen::MatrixXf> Lq32;    // [L] of [m, m] (single precision only)
  std::vector<Eigen::VectorXf> q_mu32;  // [L] of [m] (single precision only)
  std::vector<Index> group_of; // [L]
  double jitter = 0.0;         // the largest jitter used

  explicit Factors(const SVGPProblem& p) {
    for (const LatentGroup& g : p.groups) {
      groups.emplace_back(g, p.jitter, p.single);
      jitter = std::max(jitter, groups.back().jitter);
      for (Index l = g.first; l < g.first + g.count; ++l) {
        Lq.push_back(q_factor(p, l));
        q_mu.push_back(p.q_mu.col(l));
        if (p.single) {
          Lq32.push_back(Lq.back().cast<float>());
          q_mu32.push_back(q_mu.back().cast<float>());
        }
        group_of.push_back(Index(groups.size()) - 1);
      }
    }
  }
  template <class T>
  const Mat<T>& Lq_as(Index l) const {
    if constexpr (kDouble<T>) return Lq[l]; else return Lq32[l];
  }
  template <class T>
  const Vec<T>& q_mu_as(Index l) const {
    if constexpr (kDouble<T>) return q_mu[l]; else return q_mu32[l];
  }
};

// A group's forward quantities on one block of rows, the products in T's precision.
template <class T>
struct GroupBlock {
  Mat<T> A;       // [m, k] L^-1 Kuf
  Mat<T> Gu;      // [m, k] L^-T A (unwhitened only)
  VectorXd base;  // [k] diag Kff - colsum(A^2)
  const Mat<T>& G(bool whiten) const { return whiten ? A : Gu; }
};

// The forward quantities of one block of rows: the marginals of every f_l (docs/math.md
// section 7.2).
template <class T>
struct Block {
  std::vector<GroupBlock<T>> g;  // [G]
  std::vector<Mat<T>> T_;        // [L] of [m, k] Lq_l^T G
  MatrixXd mu, var;              // [k, L]
};

// Kuf = K(Z, Xb) [m, k] in T's precision; the kernel runs in float64.
template <class T>
Mat<T> cross_kernel(const LatentGroup& grp, MatRef Xb) {
  const Index m = grp.Z.rows(), k = Xb.rows();
  MatrixXd Kuf(m, k);  // K(Xb, Z) [k, m] row-major is Kuf [m, k] column-major: no copy
  Eigen::Map<RowMatrixXd> Kfu(Kuf.data(), k, m);
  grp.kernel.K(grp.theta, Xb, grp.Z, Kfu);
  if constexpr (kDouble<T>) return Kuf; else return Kuf.cast<T>();
}

template <class T>
void forward(const SVGPProblem& p, const Factors& F, MatRef Xb, Block<T>& b) {
  const Index k = Xb.rows(), nl = p.num_latent();
  b.g.resize(p.groups.size());
  b.T_.resize(nl);
  b.mu.resize(k, nl);
  b.var.resize(k, nl);
  for (size_t gi = 0; gi < p.groups.size(); ++gi) {
    const LatentGroup& grp = p.groups[gi];
    const GroupFactor& f = F.groups[gi];
    GroupBlock<T>& gb = b.g[gi];
    gb.A.noalias() = f.Li<T>() * cross_kernel<T>(grp, Xb);
    if (!p.whiten) gb.Gu.noalias() = f.LiT<T>() * gb.A;
    const Mat<T>& G = gb.G(p.whiten);
    gb.base.resize(k);
    grp.kernel.K_diag(grp.theta, Xb, gb.base);
    gb.base -= f64(gb.A.colwise().squaredNorm().transpose());
    for (Index l = grp.first; l < grp.first + grp.count; ++l) {
      b.mu.col(l).noalias() = f64(G.transpose() * F.q_mu_as<T>(l));
      if (p.mean.size()) b.mu.col(l).array() += p.mean[l];
      if (p.q_diag) {
        b.T_[l].noalias() = F.Lq_as<T>(l).diagonal().asDiagonal() * G;
      } else {
        b.T_[l].noalias() = F.Lq_as<T>(l).template triangularView<Lower>().transpose() * G;
      }
      b.var.col(l) = gb.base + f64(b.T_[l].colwise().squaredNorm().transpose());
    }
  }
}

// Per-thread sums of the batch terms. Blocks of columns (or rows) hold the groups' and the
// latent GPs' parts.
struct Acc {
  double ell = 0.0;
  VectorXd dtheta, dlik, dmean;  // [sum of the groups' p], [q], [L] or [0]
  MatrixXd dq_mu;                // [m, L]
  MatrixXd dLq;                  // [m, L m]: block l lower (or [m, L] when q_diag)
  MatrixXd Lbar;                 // [m, G m]: block g lower, dELBO/dL of group g
  RowMatrixXd dZ;                // [G m, d]
  MatrixXd dW;                   // [P, L] (or [0, 0])
  auto fields() { return std::tie(ell, dtheta, dlik, dmean, dq_mu, dLq, Lbar, dZ, dW); }
};

// Where group g's kernel parameters start in dtheta.
Index theta_offset(const SVGPProblem& p, size_t g) {
  Index off = 0;
  for (size_t i = 0; i < g; ++i) off += p.groups[i].kernel.num_params();
  return off;
}

// The likelihood's terms of block b and their adjoints gmu, gv [k, L] with respect to the
// latent marginals, scaled; with mixing, g = W f (docs/math.md section 11.1):
//   mean_ip = sum_l W_pl mu_il, var_ip = sum_l W_pl^2 v_il, so with adjoints gm, gv [k, P]
//   mubar = gm W, vbar = gv (W o W), Wbar = gm^T mu + 2 W o (gv^T var).
template <class T>
void likelihood_terms(const SVGPProblem& p, Index row0, MatRef Yb, double scale, const Block<T>& b, Acc& acc,
                      MatrixXd& gmu, MatrixXd& gv) {
  const Index k = Yb.rows();
  const MatrixXd W2 = p.W.cwiseAbs2();                                 // [P, L]
  const MatrixXd fmu = p.mixing() ? MatrixXd(b.mu * p.W.transpose()) : MatrixXd();  // [k, P]
  const MatrixXd fvar = p.mixing() ? MatrixXd(b.var * W2.transpose()) : MatrixXd();  // [k, P]
  const MatrixXd& mu = p.mixing() ? fmu : b.mu;
  const MatrixXd& var = p.mixing() ? fvar : b.var;
  MatrixXd gm(k, mu.cols()), gvv(k, mu.cols());  // [k, P] (or [k, L])
  VectorXd dlik = VectorXd::Zero(p.likelihood.num_params());
  acc.ell += scale * p.likelihood.variational_expectations(p.lik_theta, row0, Yb, mu, var, gm, gvv, dlik.data());
  acc.dlik += scale * dlik;
  gm *= scale;
  gvv *= scale;
  if (!p.mixing()) {
    gmu = std::move(gm);
    gv = std::move(gvv);
    return;
  }
  acc.dW.noalias() += gm.transpose() * b.mu;
  acc.dW += 2.0 * p.W.cwiseProduct(gvv.transpose() * b.var);
  gmu.noalias() = gm * p.W;
  gv.noalias() = gvv * W2;
}

// acc's lower triangle += sign X Y^T [m, m], with X, Y [m, k]: Eigen's triangular product (half
// the flops of X Y^T) in X's precision, added to the float64 sum. In float32 the product goes
// to a per-thread scratch [m, m] first (kept by the thread between calls: no allocation per
// block), of which only the lower triangle is written and read (so it is never zeroed whole).
template <class X, class Y>
void add_lower_product(Eigen::Ref<MatrixXd> acc, double sign, const Eigen::MatrixBase<X>& x,
                       const Eigen::MatrixBase<Y>& y) {
  using T = typename X::Scalar;
  if constexpr (kDouble<T>) {
    acc.triangularView<Lower>() += sign * x * y.transpose();
  } else {
    static thread_local Mat<T> part;  // [m, m]
    part.resize(acc.rows(), acc.cols());
    part.template triangularView<Lower>() = x * y.transpose();
    acc.triangularView<Lower>() += sign * part.template cast<double>();
  }
}

// Adds the likelihood terms of block b (the k rows Xb [k, d], Yb [k, c], the first of them
// row0 of the batch) and their reverse pass (docs/math.md section 7.5) into acc.
template <class T>
void reverse(const SVGPProblem& p, const Factors& F, MatRef Xb, MatRef Yb, Index row0, double scale,
             const Block<T>& b, Acc& acc) {
  const Index m = p.m(), k = Xb.rows();
  MatrixXd gmu, gv;  // [k, L]
  likelihood_terms(p, row0, Yb, scale, b, acc, gmu, gv);
  if (p.mean.size()) acc.dmean += gmu.colwise().sum().transpose();
  for (size_t gi = 0; gi < p.groups.size(); ++gi) {
    const LatentGroup& grp = p.groups[gi];
    const GroupFactor& f = F.groups[gi];
    const GroupBlock<T>& gb = b.g[gi];
    const Mat<T>& G = gb.G(p.whiten);
    auto Lbar = acc.Lbar.middleCols(gi * m, m);
    Mat<T> Abar(m, k);   // [m, k] Gbar, then Abar in place
    Vec<T> gmul;         // [k] gmu_l
    VectorXd gvsum;      // [k] 2 gv_l summed over the group
    for (Index l = grp.first; l < grp.first + grp.count; ++l) {
      gmul = gmu.col(l).cast<T>();
      acc.dq_mu.col(l).noalias() += f64(G * gmul);
      const VectorXd gv2 = 2.0 * gv.col(l);
      const Mat<T> TD2 = b.T_[l] * gv2.cast<T>().asDiagonal();  // [m, k] 2 T_l D_l
      if (l == grp.first) {
        Abar.noalias() = F.q_mu_as<T>(l) * gmul.transpose();
        gvsum = gv2;
      } else {
        Abar.noalias() += F.q_mu_as<T>(l) * gmul.transpose();
        gvsum += gv2;
      }
      if (p.q_diag) {
        acc.dLq.col(l) += f64(G.cwiseProduct(TD2).rowwise().sum());
        Abar.noalias() += F.Lq_as<T>(l).diagonal().asDiagonal() * TD2;
      } else {
        add_lower_product(acc.dLq.middleCols(l * m, m), 1.0, G, TD2);
        Abar.noalias() += F.Lq_as<T>(l).template triangularView<Lower>() * TD2;
      }
    }
    if (!p.whiten) {
      Abar = f.Li<T>() * Abar;  // H = L^-1 Gbar [m, k]
      add_lower_product(Lbar, -1.0, G, Abar);
    }
    Abar.noalias() -= gb.A * gvsum.cast<T>().asDiagonal();
    // Kufbar = L^-T Abar [m, k]; in float64 straight into the row-major layout the kernel's
    // reverse mode reads, in float32 cast to it there.
    std::conditional_t<kDouble<T>, RowMatrixXd, Mat<T>> Kbar(m, k);
    Kbar.noalias() = f.LiT<T>() * Abar;
    add_lower_product(Lbar, -1.0, Kbar, gb.A);
    double* dtheta = acc.dtheta.data() + theta_offset(p, gi);
    grp.kernel.grad(grp.theta, grp.Z, Xb, f64(Kbar), dtheta, acc.dZ.middleRows(gi * m, m));
    grp.kernel.grad_diag(grp.theta, Xb, 0.5 * gvsum, dtheta, no_input_grad());
  }
}

// Adds -KL[q(u_l) || p(u_l)] and its gradient for latent GP l (docs/math.md section 7.3);
// returns KL. With V = L^-1 Lq [m, m], a = L^-1 q_mu [m] (unwhitened) or V = Lq, a = q_mu
// (whitened):
//   KL = 1/2 (||V||_F^2 + ||a||^2 - m - 2 sum log|diag Lq| [+ 2 sum log diag L])
//   d(-KL)/dLq = -L^-T V + diag(1 / diag Lq),  d(-KL)/dq_mu = -L^-T a,
//   d(-KL)/dL = L^-T (V V^T + a a^T) - diag(1 / diag L)        (unwhitened only)
double add_kl(const SVGPProblem& p, const Factors& F, Index l, Acc& acc) {
  const Index gi = F.group_of[l], m = p.m();
  const GroupFactor& f = F.groups[gi];
  const MatrixXd& L = f.L;
  const MatrixXd& Lq = F.Lq[l];
  MatrixXd V = Lq;          // [m, m]
  VectorXd a = F.q_mu[l];   // [m]
  if (!p.whiten) {
    V = f.Li() * Lq;
    a = f.Li() * F.q_mu[l];
  }
  const VectorXd dq = Lq.diagonal();  // [m]
  double kl = 0.5 * (V.squaredNorm() + a.squaredNorm() - m) - dq.array().abs().log().sum();
  MatrixXd LtV = V;    // [m, m] L^-T V
  VectorXd Lta = a;    // [m] L^-T a
  if (!p.whiten) {
    auto Lbar = acc.Lbar.middleCols(gi * m, m);
    kl += 0.5 * logdet_from_cholesky(L);
    LtV = f.LiT() * V;
    Lta = f.LiT() * a;
    MatrixXd VVaa = V * V.transpose();  // [m, m]
    VVaa.noalias() += a * a.transpose();
    VVaa = f.LiT() * VVaa;
    Lbar.triangularView<Lower>() += VVaa;
    Lbar.diagonal().array() -= L.diagonal().array().inverse();
  }
  acc.dq_mu.col(l) -= Lta;
  if (p.q_diag) {
    acc.dLq.col(l) += dq.array().inverse().matrix() - LtV.diagonal();
  } else {
    auto dLq = acc.dLq.middleCols(l * m, m);
    dLq.triangularView<Lower>() -= LtV;
    dLq.diagonal() += dq.array().inverse().matrix();
  }
  return kl;
}

Acc zero_acc(const SVGPProblem& p) {
  const Index m = p.m(), nl = p.num_latent(), ng = Index(p.groups.size());
  Acc a;
  a.dtheta = VectorXd::Zero(theta_offset(p, p.groups.size()));
  a.dlik = VectorXd::Zero(p.likelihood.num_params());
  a.dmean = VectorXd::Zero(p.mean.size());
  a.dq_mu = MatrixXd::Zero(m, nl);
  a.dLq = MatrixXd::Zero(m, p.q_diag ? nl : nl * m);
  a.Lbar = MatrixXd::Zero(m, ng * m);
  a.dZ = RowMatrixXd::Zero(ng * m, p.groups.front().Z.cols());
  a.dW = MatrixXd::Zero(p.W.rows(), p.W.cols());
  return a;
}

// Through each Kuu = L L^T into its Z and kernel parameters.
void add_kuu_terms(const SVGPProblem& p, const Factors& F, Acc& acc) {
  const Index m = p.m();
  for (size_t gi = 0; gi < p.groups.size(); ++gi) {
    const LatentGroup& grp = p.groups[gi];
    auto Lbar = acc.Lbar.middleCols(gi * m, m);
    cholesky_reverse(F.groups[gi].L, F.groups[gi].Linv, Lbar);
    grp.kernel.grad_sym(grp.theta, grp.Z, Eigen::Map<const RowMatrixXd>(Lbar.data(), m, m),
                        acc.dtheta.data() + theta_offset(p, gi), acc.dZ.middleRows(gi * m, m));
  }
}

}  // namespace

SVGPGradient svgp_elbo_grad(const SVGPProblem& p, MatRef X, MatRef Y, const ElboTerms& terms) {
  const Index B = X.rows(), m = p.m(), nl = p.num_latent();
  SVGPGradient out;
  const Factors F(p);
  out.jitter = F.jitter;
  const double scale = std::isnan(terms.scale) ? p.num_data / double(B) : terms.scale;
  auto batch_terms = [&](auto precision) {
    using T = decltype(precision);
    return reduce_row_blocks<Acc>(B, rows_per_block(m), 12.0 * B * m * m * nl, [&] { return zero_acc(p); },
                                  [&](Index s, Index k, Acc& acc) {
                                    Block<T> b;
                                    forward(p, F, X.middleRows(s, k), b);
                                    reverse(p, F, X.middleRows(s, k), Y.middleRows(s, k), terms.draw + s, scale, b, acc);
                                  });
  };
  Acc acc = p.single ? batch_terms(float()) : batch_terms(double());
  out.kl = 0.0;
  if (terms.kl)
    for (Index l = 0; l < nl; ++l) out.kl += add_kl(p, F, l, acc);
  out.elbo = acc.ell - out.kl;
  add_kuu_terms(p, F, acc);
  out.dtheta = std::move(acc.dtheta);
  out.dlik = std::move(acc.dlik);
  out.dq_mu = acc.dq_mu;
  out.dZ = std::move(acc.dZ);
  out.dW = acc.dW;
  out.dmean = std::move(acc.dmean);
  if (p.q_diag) {
    out.dq_sqrt = acc.dLq;
  } else {
    out.dq_sqrt.resize(nl * m, m);
    for (Index l = 0; l < nl; ++l) {
      auto block = acc.dLq.middleCols(l * m, m);
      block.triangularView<Eigen::StrictlyUpper>().setZero();
      out.dq_sqrt.middleRows(l * m, m) = block;
    }
  }
  return out;
}

void svgp_predict(const SVGPProblem& p, MatRef Xnew, MatOut mean, MatOut var) {
  const Index m = p.m();
  const Factors F(p);
  auto marginals = [&](auto precision) {
    for_row_blocks(Xnew.rows(), rows_per_block(m), 4.0 * Xnew.rows() * m * m * p.num_latent(), [&](Index s, Index k) {
      Block<decltype(precision)> b;
      forward(p, F, Xnew.middleRows(s, k), b);
      mean.middleRows(s, k) = b.mu;
      var.middleRows(s, k) = b.var;
    });
  };
  if (p.single) marginals(float()); else marginals(double());
}

// Full covariance [n*, n*] of latent GP l: K** - A^T A + T^T T over all of Xnew at once
// (docs/math.md section 7.9), in float64 whatever p.single says: the difference of two
// [n*, n*] products cancels where the data pin f down.
void svgp_predict_cov(const SVGPProblem& p, Index l, MatRef Xnew, VecOut mean, MatOut cov) {
  const Factors F(p);
  Block<double> b;
  forward(p, F, Xnew, b);
  const Index gi = F.group_of[l];
  const LatentGroup& grp = p.groups[gi];
  mean = b.mu.col(l);
  grp.kernel.K_sym(grp.theta, Xnew, cov);
  cov.noalias() -= b.g[gi].A.transpose() * b.g[gi].A;
  cov.noalias() += b.T_[l].transpose() * b.T_[l];
}

}  // namespace varinf

// Kernel matrices and fused gradient contractions (docs/math.md section 1).
//
// Stationary kernels work row by row: for row i of X1 the scaled squared distances to every
// row of X2 are accumulated one input dimension at a time over a contiguous [n2] buffer (the
// scaled X2 is stored transposed, [d, n2]), so the inner loops are long, vectorised and exact
// (no |a|^2 + |b|^2 - 2ab cancellation). The gradient pass recomputes r2 for its row and
// contracts Kbar's row on the fly: O(n2) memory per thread, dK/dtheta is never formed.
#include "varinf/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "varinf/parallel.hpp"
#include "varinf/threads.hpp"

namespace varinf {

using Eigen::ArrayXd;

MatOut no_input_grad() {
  static RowMatrixXd empty;
  return empty;
}

// K(X, X) is K(X1 = X, X2 = X) for every kernel but White.
void Kernel::K_sym(const double* theta, MatRef X, MatOut out) const { K(theta, X, X, out); }

// d/dX sum_ij Kbar_ij k(x_i, x_j) for symmetric Kbar: the second argument of k contributes
// what the first does (k(x, y) = k(y, x)), so the total is twice the first-argument gradient.
void Kernel::grad_sym(const double* theta, MatRef X, MatRef Kbar, double* dtheta,
                      MatOut dX) const {
  if (dX.rows() == 0) {
    grad(theta, X, X, Kbar, dtheta, dX);
    return;
  }
  RowMatrixXd dX1 = RowMatrixXd::Zero(X.rows(), X.cols());  // [n, d]
  grad(theta, X, X, Kbar, dtheta, dX1);
  dX += 2.0 * dX1;
}

namespace {

// Runs body(i, workspace, acc) for the rows i of [0, n) on the threads `work` deserves, in
// chunks of kRowsPerChunk rows taken dynamically (a thread slowed by another process simply
// takes fewer chunks). Each thread makes its own workspace; acc points at the [num_acc]
// accumulator of row i's chunk. The chunks' accumulators are summed in chunk order at the
// end, so the result is the same whatever thread ran which chunk, and for any thread count.
constexpr Index kRowsPerChunk = 16;

template <class Make, class Body>
ArrayXd parallel_rows(Index n, double work, Index num_acc, Make make, Body body) {
  const Index chunks = (n + kRowsPerChunk - 1) / kRowsPerChunk;
  RowMatrixXd acc = RowMatrixXd::Zero(chunks, num_acc);  // [chunks, num_acc]
  parallel_for(chunks, threads_for(work), make, [&](Index c, auto& workspace) {
    double* a = acc.row(c).data();
    for (Index i = c * kRowsPerChunk; i < std::min(n, (c + 1) * kRowsPerChunk); ++i) body(i, workspace, a);
  });
  ArrayXd total = ArrayXd::Zero(num_acc);
  for (Index c = 0; c < chunks; ++c) total += acc.row(c).transpose().array();
  return total;
}

// Scaled input differences beyond this give r2 > 1e300 (capped) and k = 0 for stationary kernels.
constexpr double kCap = 1e150;
// Pairs closer than this (r2 in lengthscale units) are near-coincident for kernels whose df/dr2
// is singular at 0: there, per pair, the expanded gradient sums keep about eps |a|^2 / r2 of
// relative accuracy, 1e-8 for |a| <= 100 at this r2 (docs/math.md section 1.6).
constexpr double kNearR2 = 1e-4;

// Lengthscales broadcast to one per input dimension: [d].
ArrayXd per_dim(const double* values, Index count, Index d) {
  return count == 1 ? ArrayXd::Constant(d, values[0]) : ArrayXd(Eigen::Map<const ArrayXd>(values, d));
}

// X / l with one lengthscale per column: [n, d].
RowMatrixXd scaled(MatRef X, const ArrayXd& l) {
  return X.array().rowwise() / l.transpose();
}

// ---------------------------------------------------------------------------------------------
// Stationary kernels: k = variance * f(r2; extra), r2 = sum_k (x_k - x'_k)^2 / l_k^2.
// A Shape gives f, df/dr2 and df/d(extra) elementwise over a row of r2 values.

// SE: f = exp(-r2 / 2).
struct SEShape {
  static constexpr int num_extra = 0;
  static constexpr bool kSingularAtZero = false;
  static void value(const double*, const ArrayXd& r2, ArrayXd& f) { f = (-0.5 * r2).exp(); }
  static void derivs(const double*, const ArrayXd& r2, ArrayXd& f, ArrayXd& df, ArrayXd*) {
    f = (-0.5 * r2).exp();
    df = -0.5 * f;
  }
};

// Matern 1/2: f = exp(-r). df/dr2 = -exp(-r) / (2 r) is unbounded at r = 0, where every term
// it multiplies vanishes faster ((x - x')^2 for lengthscales); there we take 0.
struct Matern12Shape {
  static constexpr int num_extra = 0;
  static constexpr bool kSingularAtZero = true;
  static void value(const double*, const ArrayXd& r2, ArrayXd& f) { f = (-r2.sqrt()).exp(); }
  static void derivs(const double*, const ArrayXd& r2, ArrayXd& f, ArrayXd& df, ArrayXd*) {
    const ArrayXd r = r2.sqrt();
    f = (-r).exp();
    df = (r2 > 0.0).select(-0.5 * f / r, 0.0);
  }
};

// Matern 3/2: f = (1 + sqrt3 r) exp(-sqrt3 r); df/dr2 = -3/2 exp(-sqrt3 r) (no 1/r).
struct Matern32Shape {
  static constexpr int num_extra = 0;
  static constexpr bool kSingularAtZero = false;
  static void value(const double*, const ArrayXd& r2, ArrayXd& f) {
    const ArrayXd s = (3.0 * r2).sqrt();
    f = (1.0 + s) * (-s).exp();
  }
  static void derivs(const double*, const ArrayXd& r2, ArrayXd& f, ArrayXd& df, ArrayXd*) {
    const ArrayXd s = (3.0 * r2).sqrt();
    const ArrayXd e = (-s).exp();
    f = (1.0 + s) * e;
    df = -1.5 * e;
  }
};

// Matern 5/2: f = (1 + sqrt5 r + 5 r2 / 3) exp(-sqrt5 r); df/dr2 = -5/6 (1 + sqrt5 r) exp(-sqrt5 r).
struct Matern52Shape {
  static constexpr int num_extra = 0;
  static constexpr bool kSingularAtZero = false;
  static void value(const double*, const ArrayXd& r2, ArrayXd& f) {
    const ArrayXd s = (5.0 * r2).sqrt();
    f = (1.0 + s + (5.0 / 3.0) * r2) * (-s).exp();
  }
  static void derivs(const double*, const ArrayXd& r2, ArrayXd& f, ArrayXd& df, ArrayXd*) {
    const ArrayXd s = (5.0 * r2).sqrt();
    const ArrayXd e = (-s).exp();
    f = (1.0 + s + (5.0 / 3.0) * r2) * e;
    df = (-5.0 / 6.0) * (1.0 + s) * e;
  }
};

// Rational quadratic: f = b^-alpha with b = 1 + r2 / (2 alpha) (GPML eq. 4.19);
// df/dr2 = -f / (2 b); df/dalpha = f (1 - 1/b - log b).
struct RQShape {
  static constexpr int num_extra = 1;
  static constexpr bool kSingularAtZero = false;
  static void value(const double* extra, const ArrayXd& r2, ArrayXd& f) {
    const double alpha = extra[0];
    f = (-alpha * (1.0 + r2 / (2.0 * alpha)).log()).exp();
  }
  static void derivs(const double* extra, const ArrayXd& r2, ArrayXd& f, ArrayXd& df,
                     ArrayXd* dextra) {
    const double alpha = extra[0];
    const ArrayXd b = 1.0 + r2 / (2.0 * alpha);
    const ArrayXd logb = b.log();
    f = (-alpha * logb).exp();
    df = -0.5 * f / b;
    dextra[0] = f * (1.0 - 1.0 / b - logb);
  }
};

template <class Shape>
class Stationary final : public Kernel {
 public:
  explicit Stationary(Index num_lengthscales) : L_(num_lengthscales) {}

  // theta = [variance, lengthscales [L], extra [num_extra]]
  Index num_params() const override { return 1 + L_ + Shape::num_extra; }

  void K(const double* theta, MatRef X1, MatRef X2, MatOut out) const override {
    const Setup s(theta, L_, X1, X2);
    const Index n2 = X2.rows();
    parallel_rows(
        X1.rows(), double(X1.rows()) * n2 * (X1.cols() + 10), 0,
        [&] { return std::pair<ArrayXd, ArrayXd>(ArrayXd(n2), ArrayXd(n2)); },
        [&](Index i, std::pair<ArrayXd, ArrayXd>& buf, double*) {
          s.row_r2(i, buf.first);
          Shape::value(s.extra, buf.first, buf.second);
          out.row(i) = s.variance * buf.second.matrix().transpose();
        });
  }

  void K_diag(const double* theta, MatRef X, VecOut out) const override {
    out.setConstant(theta[0]);  // f(0) = 1 for every shape
  }

  // dL/dvariance = sum Kbar f; dL/dl_k = sum G (-2 (a_k - b_k)^2 / l_k);
  // dL/dX1_ik = sum_j G_ij 2 (a_ik - b_jk) / l_k, with G = Kbar * variance * df/dr2 and a, b
  // the scaled inputs (r2 = sum_k (a_k - b_k)^2). Expanding (a - b)^2 = a^2 - 2 a b + b^2, the
  // sums over j of one row are g1 = sum_j G_j, gb = B^T G and gb2 = (B^2)^T G [d]: two
  // matrix-vector products, 2 d flops per pair. Setup centres the inputs on X2's midrange, so
  // the expansion loses nothing to a large common offset. The scaled inputs are capped at
  // +-kCap = 1e150 here: beyond it r2 is capped at 1e300 and G = 0, and the cap keeps
  // 0 * inf = NaN out of the sums (it changes nothing where G is not 0).
  // Accumulators: [sum Kbar f, sum G (a_k - b_k)^2 for each k [d], sum Kbar df/dextra [E]].
  void grad(const double* theta, MatRef X1, MatRef X2, MatRef Kbar, double* dtheta,
            MatOut dX1) const override {
    const Setup s(theta, L_, X1, X2);
    const Index n2 = X2.rows(), d = X1.cols();
    const bool want_dX = dX1.rows() > 0;
    const RowMatrixXd BTc = s.BT.cwiseMax(-kCap).cwiseMin(kCap);  // [d, n2]
    const RowMatrixXd BT2 = BTc.array().square();                  // [d, n2]
    const ArrayXd acc = parallel_rows(
        X1.rows(), double(X1.rows()) * n2 * (3 * d + 20), 1 + d + Shape::num_extra,
        [&] { return GradState(n2, d); },
        [&](Index i, GradState& st, double* a) {
          s.row_r2(i, st.r2);
          Shape::derivs(s.extra, st.r2, st.f, st.df, st.dextra);
          const auto kbar = Kbar.row(i).transpose().array();  // [n2]
          a[0] += (kbar * st.f).sum();
          for (int e = 0; e < Shape::num_extra; ++e) a[1 + d + e] += (kbar * st.dextra[e]).sum();
          st.G = kbar * (s.variance * st.df);
          if constexpr (Shape::kSingularAtZero) {
            // Nearly coincident pairs take direct differences: the expanded sums below carry an
            // absolute error eps (a^2 + b^2) |G|, and here |G| ~ 1/r grows without bound
            // (docs/math.md section 1.6).
            for (Index j = 0; j < n2; ++j) {
              if (!(st.r2[j] < kNearR2) || st.G[j] == 0.0) continue;
              for (Index k = 0; k < d; ++k) {
                const double diff = std::clamp(s.A(i, k), -kCap, kCap) - BTc(k, j);
                a[1 + k] += st.G[j] * diff * diff;
                if (want_dX) dX1(i, k) += 2.0 / s.l[k] * st.G[j] * diff;
              }
              st.G[j] = 0.0;
            }
          }
          const double g1 = st.G.sum();
          st.gb.noalias() = BTc * st.G.matrix();   // [d]
          st.gb2.noalias() = BT2 * st.G.matrix();  // [d]
          for (Index k = 0; k < d; ++k) {
            const double ak = std::clamp(s.A(i, k), -kCap, kCap);
            a[1 + k] += ak * ak * g1 - 2.0 * ak * st.gb[k] + st.gb2[k];
            if (want_dX) dX1(i, k) -= 2.0 / s.l[k] * (st.gb[k] - ak * g1);
          }
        });
    dtheta[0] += acc[0];
    // dr2/dl_k = -2 (a_k - b_k)^2 / l_k; an isotropic lengthscale sums over k.
    for (Index k = 0; k < d; ++k) dtheta[1 + (L_ == 1 ? 0 : k)] -= 2.0 / s.l[k] * acc[1 + k];
    for (int e = 0; e < Shape::num_extra; ++e) dtheta[1 + L_ + e] += s.variance * acc[1 + d + e];
  }

  void grad_diag(const double*, MatRef, VecRef kbar, double* dtheta, MatOut) const override {
    dtheta[0] += kbar.sum();
  }

 private:
  // Scaled inputs for one call, centred on c = X2's column midranges (differences are
  // unchanged; a midrange, unlike a mean, cannot overflow): A = (X1 - c) / l [n1, d],
  // BT = ((X2 - c) / l)^T [d, n2].
  struct Setup {
    Setup(const double* theta, Index L, MatRef X1, MatRef X2)
        : variance(theta[0]), extra(theta + 1 + L), l(per_dim(theta + 1, L, X1.cols())) {
      const Eigen::RowVectorXd c =  // [d]
          X2.rows() > 0 ? Eigen::RowVectorXd(0.5 * X2.colwise().maxCoeff() + 0.5 * X2.colwise().minCoeff())
                        : Eigen::RowVectorXd::Zero(X2.cols());
      A = scaled(X1.rowwise() - c, l);
      BT = scaled(X2.rowwise() - c, l).transpose();
    }
    // r2 [n2] between row i of X1 and every row of X2.
    // Capped at 1e300: an overflowing distance must give k = 0, not inf * exp(-inf) = NaN
    // (Matern's polynomial factor).
    void row_r2(Index i, ArrayXd& r2) const {
      r2 = (BT.row(0).transpose().array() - A(i, 0)).square();
      for (Index k = 1; k < A.cols(); ++k) r2 += (BT.row(k).transpose().array() - A(i, k)).square();
      r2 = r2.min(1e300);
    }
    double variance;
    const double* extra;
    ArrayXd l;       // [d]
    RowMatrixXd A;   // [n1, d]
    RowMatrixXd BT;  // [d, n2]
  };

  struct GradState {  // per-thread row buffers
    GradState(Index n2, Index d) : r2(n2), f(n2), df(n2), G(n2), gb(d), gb2(d) {
      for (auto& a : dextra) a.resize(n2);
    }
    ArrayXd r2, f, df, G;                                          // [n2]
    VectorXd gb, gb2;                                              // [d]
    ArrayXd dextra[Shape::num_extra > 0 ? Shape::num_extra : 1];  // [n2] each
  };

  Index L_;
};

// ---------------------------------------------------------------------------------------------
// Periodic (exp-sine-squared; MacKay 1998, GPflow's Periodic(SquaredExponential)):
// k = variance exp(-2 E), E = sum_k sin^2(u_k) / l_k^2, u_k = pi (x_k - x'_k) / p.
// dk/dl_k = k 4 sin^2(u_k) / l_k^3; dk/dp = k (2/p) sum_k sin(2 u_k) u_k / l_k^2;
// dk/dx_k = -k (2 pi / p) sin(2 u_k) / l_k^2.
// sin(u) and cos(u) per pair come from the angle-difference identities, sin(a - b) =
// sin a cos b - cos a sin b, with sines and cosines computed once per point: O(n d)
// transcendental calls instead of O(n1 n2 d).
class Periodic final : public Kernel {
 public:
  explicit Periodic(Index num_lengthscales) : L_(num_lengthscales) {}
  // theta = [variance, lengthscales [L], period]
  Index num_params() const override { return 2 + L_; }

  void K(const double* theta, MatRef X1, MatRef X2, MatOut out) const override {
    const Setup s(theta, L_, X1, X2);
    const Index n2 = X2.rows();
    parallel_rows(
        X1.rows(), double(X1.rows()) * n2 * (X1.cols() * 6 + 10), 0,
        [&] { return RowState(n2, X1.cols()); },
        [&](Index i, RowState& st, double*) {
          s.row(i, st);
          // exp into a buffer of ours first: evaluated straight into `out` (numpy's memory),
          // which elements took the vectorised exp and which the scalar one would depend on
          // the buffer's address, and the last bit of K with it.
          st.f = (-2.0 * st.E).exp();
          out.row(i) = s.variance * st.f.matrix().transpose();
        });
  }

  void K_diag(const double* theta, MatRef, VecOut out) const override { out.setConstant(theta[0]); }

  void grad(const double* theta, MatRef X1, MatRef X2, MatRef Kbar, double* dtheta,
            MatOut dX1) const override {
    const Setup s(theta, L_, X1, X2);
    const Index n2 = X2.rows(), d = X1.cols();
    const bool want_dX = dX1.rows() > 0;
    // Accumulators: [dvariance, dl [d], dperiod].
    const ArrayXd acc = parallel_rows(
        X1.rows(), double(X1.rows()) * n2 * (d * 16 + 20), 2 + d,
        [&] { return RowState(n2, d); },
        [&](Index i, RowState& st, double* a) {
          s.row(i, st);
          st.f = (-2.0 * st.E).exp();
          const auto kbar = Kbar.row(i).transpose().array();  // [n2]
          a[0] += (kbar * st.f).sum();
          st.G = kbar * (s.variance * st.f);  // Kbar_ij k_ij
          for (Index k = 0; k < d; ++k) {
            const auto sin_u = st.sin_u.row(k).transpose();
            st.sin2u = 2.0 * sin_u * st.cos_u.row(k).transpose();
            // capped: an overflowing x - x' would make G sin2u u = 0 * inf = NaN
            st.u = ((M_PI / s.period) * (X1(i, k) - s.X2T.row(k).transpose().array())).max(-kCap).min(kCap);
            a[1 + k] += 4.0 * s.inv_l2[k] / s.l[k] * (st.G * sin_u.square()).sum();
            a[1 + d] += 2.0 / s.period * s.inv_l2[k] * (st.G * st.sin2u * st.u).sum();
            if (want_dX) dX1(i, k) -= 2.0 * M_PI / s.period * s.inv_l2[k] * (st.G * st.sin2u).sum();
          }
        });
    dtheta[0] += acc[0];
    for (Index k = 0; k < d; ++k) dtheta[1 + (L_ == 1 ? 0 : k)] += acc[1 + k];
    dtheta[1 + L_] += acc[1 + d];
  }

  void grad_diag(const double*, MatRef, VecRef kbar, double* dtheta, MatOut) const override {
    dtheta[0] += kbar.sum();
  }

 private:
  using RowArray = Eigen::Array<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

  struct RowState {  // per-thread row buffers
    RowState(Index n2, Index d) : E(n2), f(n2), G(n2), sin2u(n2), u(n2), sin_u(d, n2), cos_u(d, n2) {}
    ArrayXd E, f, G, sin2u, u;  // [n2]
    RowArray sin_u, cos_u;      // [d, n2] for the current row of X1
  };

  struct Setup {
    Setup(const double* theta, Index L, MatRef X1, MatRef X2)
        : variance(theta[0]), period(theta[1 + L]), l(per_dim(theta + 1, L, X1.cols())),
          inv_l2(l.square().inverse()), X2T(X2.transpose()) {
      const RowArray a1 = (M_PI / period) * X1.array();   // [n1, d]
      const RowArray a2 = (M_PI / period) * X2T.array();  // [d, n2]
      S1 = a1.sin(), C1 = a1.cos(), S2T = a2.sin(), C2T = a2.cos();
    }
    // sin u, cos u [d, n2] and E [n2] between row i of X1 and every row of X2.
    void row(Index i, RowState& st) const {
      st.E.setZero();
      for (Index k = 0; k < S2T.rows(); ++k) {
        st.sin_u.row(k) = S1(i, k) * C2T.row(k) - C1(i, k) * S2T.row(k);
        st.cos_u.row(k) = C1(i, k) * C2T.row(k) + S1(i, k) * S2T.row(k);
        st.E += st.sin_u.row(k).transpose().square() * inv_l2[k];
      }
    }
    double variance, period;
    ArrayXd l, inv_l2;         // [d]
    RowMatrixXd X2T;           // [d, n2]
    RowArray S1, C1;           // [n1, d] sin, cos of pi x / p
    RowArray S2T, C2T;         // [d, n2]
  };

  Index L_;
};

// ---------------------------------------------------------------------------------------------
// Linear: k = sum_k s2_k x_k x'_k = X1 diag(s2) X2^T (one GEMM).
class Linear final : public Kernel {
 public:
  explicit Linear(Index num_variances) : L_(num_variances) {}
  Index num_params() const override { return L_; }

  void K(const double* theta, MatRef X1, MatRef X2, MatOut out) const override {
    const ArrayXd s2 = per_dim(theta, L_, X1.cols());
    out.noalias() = (X1.array().rowwise() * s2.transpose()).matrix() * X2.transpose();
  }

  void K_diag(const double* theta, MatRef X, VecOut out) const override {
    const ArrayXd s2 = per_dim(theta, L_, X.cols());
    out = (X.array().square().rowwise() * s2.transpose()).rowwise().sum().matrix();
  }

  // dL/ds2_k = sum_i X1_ik (Kbar X2)_ik; dL/dX1 = (Kbar X2) diag(s2).
  void grad(const double* theta, MatRef X1, MatRef X2, MatRef Kbar, double* dtheta,
            MatOut dX1) const override {
    const ArrayXd s2 = per_dim(theta, L_, X1.cols());
    const RowMatrixXd KbX2 = Kbar * X2;  // [n1, d]
    accumulate(X1.cwiseProduct(KbX2).colwise().sum().transpose().array(), dtheta);
    if (dX1.rows() > 0) dX1.array() += KbX2.array().rowwise() * s2.transpose();
  }

  // dL/ds2_k = sum_i kbar_i x_ik^2; dL/dx_ik = 2 kbar_i s2_k x_ik.
  void grad_diag(const double* theta, MatRef X, VecRef kbar, double* dtheta,
                 MatOut dX) const override {
    accumulate((X.array().square().colwise() * kbar.array()).colwise().sum().transpose(), dtheta);
    if (dX.rows() > 0) {
      const ArrayXd s2 = per_dim(theta, L_, X.cols());
      dX.array() += 2.0 * ((X.array().colwise() * kbar.array()).rowwise() * s2.transpose());
    }
  }

 private:
  // Per-dimension gradients [d] into theta (summed when the variance is shared).
  void accumulate(const ArrayXd& per_dim_grad, double* dtheta) const {
    if (L_ == 1)
      dtheta[0] += per_dim_grad.sum();
    else
      Eigen::Map<ArrayXd>(dtheta, L_) += per_dim_grad;
  }
  Index L_;
};

// Constant: k = variance.
class Constant final : public Kernel {
 public:
  Index num_params() const override { return 1; }
  void K(const double* theta, MatRef, MatRef, MatOut out) const override { out.setConstant(theta[0]); }
  void K_diag(const double* theta, MatRef, VecOut out) const override { out.setConstant(theta[0]); }
  void grad(const double*, MatRef, MatRef, MatRef Kbar, double* dtheta, MatOut) const override {
    dtheta[0] += Kbar.sum();
  }
  void grad_diag(const double*, MatRef, VecRef kbar, double* dtheta, MatOut) const override {
    dtheta[0] += kbar.sum();
  }
};

// White: k = variance [x == x'] on K(X, X) and diag only; zero on cross-covariances.
class White final : public Kernel {
 public:
  Index num_params() const override { return 1; }
  void K(const double*, MatRef, MatRef, MatOut out) const override { out.setZero(); }
  void K_sym(const double* theta, MatRef, MatOut out) const override {
    out.setZero();
    out.diagonal().setConstant(theta[0]);
  }
  void K_diag(const double* theta, MatRef, VecOut out) const override { out.setConstant(theta[0]); }
  void grad(const double*, MatRef, MatRef, MatRef, double*, MatOut) const override {}
  void grad_sym(const double*, MatRef, MatRef Kbar, double* dtheta, MatOut) const override {
    dtheta[0] += Kbar.trace();
  }
  void grad_diag(const double*, MatRef, VecRef kbar, double* dtheta, MatOut) const override {
    dtheta[0] += kbar.sum();
  }
};

// ---------------------------------------------------------------------------------------------
// Sums and products. The three kinds of evaluation (cross K(X1, X2), symmetric K(X), diag)
// are "modes" so that each combinator is written once.
struct CrossMode {
  MatRef X1, X2;
  using Buffer = RowMatrixXd;
  using In = MatRef;
  Buffer make() const { return Buffer(X1.rows(), X2.rows()); }
  void value(const Kernel& k, const double* th, Buffer& out) const { k.K(th, X1, X2, out); }
  void grad(const Kernel& k, const double* th, In kbar, double* dth, MatOut dX) const {
    k.grad(th, X1, X2, kbar, dth, dX);
  }
};
struct SymMode {
  MatRef X;
  using Buffer = RowMatrixXd;
  using In = MatRef;
  Buffer make() const { return Buffer(X.rows(), X.rows()); }
  void value(const Kernel& k, const double* th, Buffer& out) const { k.K_sym(th, X, out); }
  void grad(const Kernel& k, const double* th, In kbar, double* dth, MatOut dX) const {
    k.grad_sym(th, X, kbar, dth, dX);
  }
};
struct DiagMode {
  MatRef X;
  using Buffer = VectorXd;
  using In = VecRef;
  Buffer make() const { return Buffer(X.rows()); }
  void value(const Kernel& k, const double* th, Buffer& out) const { k.K_diag(th, X, out); }
  void grad(const Kernel& k, const double* th, In kbar, double* dth, MatOut dX) const {
    k.grad_diag(th, X, kbar, dth, dX);
  }
};

// The children of a sum or product and where each one's theta starts.
struct Children {
  explicit Children(std::vector<KernelPtr> k) : kernels(std::move(k)) {
    for (const auto& c : kernels) {
      offsets.push_back(total);
      total += c->num_params();
    }
  }
  std::vector<KernelPtr> kernels;
  std::vector<Index> offsets;  // where each child's theta starts
  Index total = 0;
};

// Sum: K = sum_c K_c; each child sees the same Kbar.
struct SumOp {
  template <class Mode, class Out>
  static void value(const Children& ch, const Mode& m, const double* t, Out out) {
    typename Mode::Buffer tmp = m.make();
    for (size_t c = 0; c < ch.kernels.size(); ++c) {
      m.value(*ch.kernels[c], t + ch.offsets[c], tmp);
      if (c == 0) out = tmp; else out += tmp;
    }
  }
  template <class Mode>
  static void gradient(const Children& ch, const Mode& m, const double* t, typename Mode::In kbar,
                       double* dt, MatOut dX) {
    for (size_t c = 0; c < ch.kernels.size(); ++c)
      m.grad(*ch.kernels[c], t + ch.offsets[c], kbar, dt + ch.offsets[c], dX);
  }
};

// Product: K = prod_c K_c (elementwise); child c sees Kbar * prod_{c' != c} K_c'.
struct ProductOp {
  template <class Mode>
  static std::vector<typename Mode::Buffer> child_values(const Children& ch, const Mode& m,
                                                         const double* t) {
    std::vector<typename Mode::Buffer> values;
    for (size_t c = 0; c < ch.kernels.size(); ++c) {
      values.push_back(m.make());
      m.value(*ch.kernels[c], t + ch.offsets[c], values.back());
    }
    return values;
  }
  template <class Mode, class Out>
  static void value(const Children& ch, const Mode& m, const double* t, Out out) {
    const auto values = child_values(ch, m, t);
    out = values[0];
    for (size_t c = 1; c < values.size(); ++c) out.array() *= values[c].array();
  }
  template <class Mode>
  static void gradient(const Children& ch, const Mode& m, const double* t, typename Mode::In kbar,
                       double* dt, MatOut dX) {
    const auto values = child_values(ch, m, t);
    for (size_t c = 0; c < ch.kernels.size(); ++c) {
      typename Mode::Buffer kbar_c = kbar;
      for (size_t o = 0; o < values.size(); ++o)
        if (o != c) kbar_c.array() *= values[o].array();
      m.grad(*ch.kernels[c], t + ch.offsets[c], kbar_c, dt + ch.offsets[c], dX);
    }
  }
};

template <class Op>
class Combination final : public Kernel {
 public:
  explicit Combination(std::vector<KernelPtr> children) : ch_(std::move(children)) {}
  Index num_params() const override { return ch_.total; }

  void K(const double* t, MatRef X1, MatRef X2, MatOut out) const override {
    Op::value(ch_, CrossMode{X1, X2}, t, out);
  }
  void K_sym(const double* t, MatRef X, MatOut out) const override { Op::value(ch_, SymMode{X}, t, out); }
  void K_diag(const double* t, MatRef X, VecOut out) const override { Op::value(ch_, DiagMode{X}, t, out); }
  void grad(const double* t, MatRef X1, MatRef X2, MatRef Kbar, double* dt, MatOut dX1) const override {
    Op::gradient(ch_, CrossMode{X1, X2}, t, Kbar, dt, dX1);
  }
  void grad_sym(const double* t, MatRef X, MatRef Kbar, double* dt, MatOut dX) const override {
    Op::gradient(ch_, SymMode{X}, t, Kbar, dt, dX);
  }
  void grad_diag(const double* t, MatRef X, VecRef kbar, double* dt, MatOut dX) const override {
    Op::gradient(ch_, DiagMode{X}, t, kbar, dt, dX);
  }

 private:
  Children ch_;
};

// ---------------------------------------------------------------------------------------------
// ActiveDims: the child sees the columns `dims` of X; dX goes back into those columns.
class ActiveDims final : public Kernel {
 public:
  ActiveDims(KernelPtr child, std::vector<Index> dims) : child_(std::move(child)), dims_(std::move(dims)) {}
  Index num_params() const override { return child_->num_params(); }

  void K(const double* t, MatRef X1, MatRef X2, MatOut out) const override {
    child_->K(t, gather(X1), gather(X2), out);
  }
  void K_sym(const double* t, MatRef X, MatOut out) const override { child_->K_sym(t, gather(X), out); }
  void K_diag(const double* t, MatRef X, VecOut out) const override { child_->K_diag(t, gather(X), out); }
  void grad(const double* t, MatRef X1, MatRef X2, MatRef Kbar, double* dt, MatOut dX1) const override {
    with_input_grad(X1, dX1, [&](MatOut dXs) { child_->grad(t, gather(X1), gather(X2), Kbar, dt, dXs); });
  }
  void grad_sym(const double* t, MatRef X, MatRef Kbar, double* dt, MatOut dX) const override {
    with_input_grad(X, dX, [&](MatOut dXs) { child_->grad_sym(t, gather(X), Kbar, dt, dXs); });
  }
  void grad_diag(const double* t, MatRef X, VecRef kbar, double* dt, MatOut dX) const override {
    with_input_grad(X, dX, [&](MatOut dXs) { child_->grad_diag(t, gather(X), kbar, dt, dXs); });
  }

 private:
  RowMatrixXd gather(MatRef X) const {  // [n, |dims|]
    RowMatrixXd out(X.rows(), Index(dims_.size()));
    for (size_t c = 0; c < dims_.size(); ++c) out.col(Index(c)) = X.col(dims_[c]);
    return out;
  }
  // Runs f on a gradient buffer for the active columns and adds it into dX's columns.
  template <class F>
  void with_input_grad(MatRef X, MatOut dX, F f) const {
    if (dX.rows() == 0) {
      f(no_input_grad());
      return;
    }
    RowMatrixXd dXs = RowMatrixXd::Zero(X.rows(), Index(dims_.size()));  // [n, |dims|]
    f(dXs);
    for (size_t c = 0; c < dims_.size(); ++c) dX.col(dims_[c]) += dXs.col(Index(c));
  }

  KernelPtr child_;
  std::vector<Index> dims_;
};

}  // namespace

KernelPtr make_squared_exponential(Index L) { return std::make_shared<Stationary<SEShape>>(L); }
KernelPtr make_matern12(Index L) { return std::make_shared<Stationary<Matern12Shape>>(L); }
KernelPtr make_matern32(Index L) { return std::make_shared<Stationary<Matern32Shape>>(L); }
KernelPtr make_matern52(Index L) { return std::make_shared<Stationary<Matern52Shape>>(L); }
KernelPtr make_rational_quadratic(Index L) { return std::make_shared<Stationary<RQShape>>(L); }
KernelPtr make_periodic(Index L) { return std::make_shared<Periodic>(L); }
KernelPtr make_linear(Index L) { return std::make_shared<Linear>(L); }
KernelPtr make_constant() { return std::make_shared<Constant>(); }
KernelPtr make_white() { return std::make_shared<White>(); }
KernelPtr make_sum(std::vector<KernelPtr> c) { return std::make_shared<Combination<SumOp>>(std::move(c)); }
KernelPtr make_product(std::vector<KernelPtr> c) {
  return std::make_shared<Combination<ProductOp>>(std::move(c));
}
KernelPtr make_active_dims(KernelPtr child, std::vector<Index> dims) {
  return std::make_shared<ActiveDims>(std::move(child), std::move(dims));
}

}  // namespace varinf

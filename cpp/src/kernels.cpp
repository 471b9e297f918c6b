// Kernel matrices and fused gradient contractions (docs/math.md section 1).
//
// Stationary kernels work on blocks of kBlockRows rows of X1, one block per task, with
// per-thread [rows, n2] buffers. A block's scaled squared distances r2 come either from direct
// differences, accumulated one input dimension at a time over contiguous rows of the
// transposed scaled X2 ([d, n2]; exact, no |a|^2 + |b|^2 - 2ab cancellation), or, from
// kGemmMinDim input dimensions on, from one GEMM a.b whose cancelling pairs (r2 small next to
// |a|^2 + |b|^2) are recomputed by direct differences (docs/math.md section 1.6). The gradient
// pass recomputes r2 for its block and contracts Kbar's rows with one GEMM
// G [rows, n2] x B [n2, d]: O(rows (n2 + d)) memory per thread, dK/dtheta is never formed.
#include "varinf/kernels.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "varinf/parallel.hpp"
#include "varinf/threads.hpp"

namespace varinf {

using Eigen::ArrayXd;
using Eigen::RowVectorXd;
using RowArrayXd = Eigen::Array<double, 1, Eigen::Dynamic>;

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

// Runs body(start, rows, workspace, acc) for the blocks of `block` rows of [0, n) on the
// threads `work` deserves, blocks taken dynamically (a thread slowed by another process simply
// takes fewer). Each thread makes its own workspace; acc points at the block's [num_acc]
// accumulator. The blocks' accumulators are summed in block order at the end, so the result is
// the same whatever thread ran which block, and for any thread count. Eigen's products inside a
// block run on the block's thread alone.
template <class Make, class Body>
ArrayXd parallel_blocks(Index n, Index block, double work, Index num_acc, Make make, Body body) {
  const Index blocks = (n + block - 1) / block;
  RowMatrixXd acc = RowMatrixXd::Zero(blocks, num_acc);  // [blocks, num_acc]
  parallel_for(blocks, threads_for(work), make, [&](Index c, auto& workspace) {
    OmpLimit serial(1);
    const Index start = c * block;
    body(start, std::min(block, n - start), workspace, acc.row(c).data());
  });
  ArrayXd total = ArrayXd::Zero(num_acc);
  for (Index c = 0; c < blocks; ++c) total += acc.row(c).transpose().array();
  return total;
}

// body(i, workspace, acc) for every row i of [0, n), in blocks of kRowsPerChunk rows as above.
constexpr Index kRowsPerChunk = 16;

template <class Make, class Body>
ArrayXd parallel_rows(Index n, double work, Index num_acc, Make make, Body body) {
  return parallel_blocks(n, kRowsPerChunk, work, num_acc, make,
                         [&](Index start, Index rows, auto& workspace, double* acc) {
                           for (Index i = start; i < start + rows; ++i) body(i, workspace, acc);
                         });
}

// Scaled input differences beyond this give r2 > 1e300 (capped) and k = 0 for stationary kernels.
constexpr double kCap = 1e150;
// Pairs closer than this (r2 in lengthscale units) are near-coincident for kernels whose df/dr2
// is singular at 0: there, per pair, the expanded gradient sums keep about eps |a|^2 / r2 of
// relative accuracy, 1e-8 for |a| <= 100 at this r2 (docs/math.md section 1.6).
constexpr double kNearR2 = 1e-4;

// Rows of X1 per block (and per task) of the stationary kernels' passes: up to kBlockRows, fewer
// (down to 4) when X2 has more than 256 rows, to keep a block buffer within about kBlockElems
// doubles (cache-resident).
constexpr Index kBlockRows = 32;
constexpr Index kBlockElems = 8192;
// From this many input dimensions on, a block's r2 comes from the GEMM expansion
// r2 = |a|^2 + |b|^2 - 2 a.b (faster there; below, direct differences are as fast or faster).
constexpr Index kGemmMinDim = 24;
// The GEMM expansion is used only while every scaled input is within +-kGemmMaxAbs, so that
// |a|^2, |b|^2 and a.b cannot overflow (beyond, direct differences with the 1e300 cap).
constexpr double kGemmMaxAbs = 1e100;
// Expanded r2 values <= kExactBelow (|a|^2 + |b|^2) + kExactFloor are recomputed by direct
// differences. The expansion's error is at most about 2 (d + 1) eps (|a|^2 + |b|^2), so the
// values kept are within 2 (d + 1) eps / kExactBelow = 128 (d + 1) eps of r2, relatively
// (1.1e-11 at d = 784); kExactFloor keeps underflowing products (absolute error ~1e-321) out
// (docs/math.md section 1.6).
constexpr double kExactBelow = 1.0 / 64;
constexpr double kExactFloor = 1e-200;
// Block buffers (and the transposed scaled X2 of the direct differences) pad their rows to a
// multiple of kLanes columns: direct differences run kLanes columns at a time in registers, and
// every element of r2 and f(r2) takes the same (vectorised) evaluation whatever its column or
// its row's place in a block (so K(X, X) comes out exactly symmetric).
constexpr Index kLanes = 8;

// out = lhs * rhs as GEMMs over chunks of rhs's columns and of the depth, small enough that
// Eigen keeps its packing buffers on the stack (within EIGEN_STACK_ALLOCATION_LIMIT, 128 KB):
// larger ones are allocated on the heap by every product, and their fresh pages cost more
// than a block's product.
constexpr Index kChunkDepth = 256, kChunkCols = 48;

template <class Lhs, class Rhs, class Out>
void chunked_product(const Lhs& lhs, const Rhs& rhs, Out&& out) {
  if (lhs.cols() * rhs.cols() <= kChunkDepth * kChunkCols) {  // small enough as it is
    out.noalias() = lhs * rhs;
    return;
  }
  for (Index j = 0; j < rhs.cols(); j += kChunkCols) {
    const Index nc = std::min(kChunkCols, rhs.cols() - j);
    for (Index k = 0; k < lhs.cols(); k += kChunkDepth) {
      const Index kc = std::min(kChunkDepth, lhs.cols() - k);
      auto part = out.middleCols(j, nc);
      if (k == 0)
        part.noalias() = lhs.middleCols(k, kc) * rhs.block(k, j, kc, nc);
      else
        part.noalias() += lhs.middleCols(k, kc) * rhs.block(k, j, kc, nc);
    }
  }
}

// Lengthscales broadcast to one per input dimension: [d].
ArrayXd per_dim(const double* values, Index count, Index d) {
  return count == 1 ? ArrayXd::Constant(d, values[0]) : ArrayXd(Eigen::Map<const ArrayXd>(values, d));
}

// X / l with one lengthscale per column: [n, d].
template <class M>
RowMatrixXd scaled(const M& X, const ArrayXd& l) {
  return X.array().rowwise() / l.transpose();
}

// Whether every entry of M is within +-bound.
bool within(const RowMatrixXd& M, double bound) { return (M.array().abs() <= bound).all(); }

// M clamped to +-kCap: M itself, or a clamped copy where some entry is beyond.
struct Clamped {
  explicit Clamped(const RowMatrixXd& M)
      : copy(within(M, kCap) ? RowMatrixXd() : RowMatrixXd(M.cwiseMax(-kCap).cwiseMin(kCap))),
        m(copy.size() > 0 ? copy : M) {}
  RowMatrixXd copy;
  const RowMatrixXd& m;
};

// ---------------------------------------------------------------------------------------------
// Stationary kernels: k = variance * f(r2; extra), r2 = sum_k (x_k - x'_k)^2 / l_k^2.
// A Shape gives f, df/dr2 and df/d(extra) elementwise over a block of r2 values.

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

// exp(-s) for s >= 0, exactly 0 where it underflows: Eigen's vectorised exp stops at
// exp(-709.78) ~ 7e-309, which the Matern polynomial factors would scale back up (up to
// 5/3 r2 = 1.7e300 at the r2 cap: Matern 5/2 gave 1.2e-8 for infinitely distant points).
// (Not Eigen's select, which would take the scalar exp.)
ArrayXd decay(const ArrayXd& s) {
  ArrayXd e = (-s).exp();
  for (Index i = 0; i < s.size(); ++i) e[i] = s[i] < 745.2 ? e[i] : 0.0;
  return e;
}

// Matern 3/2: f = (1 + sqrt3 r) exp(-sqrt3 r); df/dr2 = -3/2 exp(-sqrt3 r) (no 1/r).
struct Matern32Shape {
  static constexpr int num_extra = 0;
  static constexpr bool kSingularAtZero = false;
  static void value(const double*, const ArrayXd& r2, ArrayXd& f) {
    const ArrayXd s = (3.0 * r2).sqrt();
    f = (1.0 + s) * decay(s);
  }
  static void derivs(const double*, const ArrayXd& r2, ArrayXd& f, ArrayXd& df, ArrayXd*) {
    const ArrayXd s = (3.0 * r2).sqrt();
    const ArrayXd e = decay(s);
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
    f = (1.0 + s + (5.0 / 3.0) * r2) * decay(s);
  }
  static void derivs(const double*, const ArrayXd& r2, ArrayXd& f, ArrayXd& df, ArrayXd*) {
    const ArrayXd s = (5.0 * r2).sqrt();
    const ArrayXd e = decay(s);
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
    fill(Setup(theta, L_, X1, X2), X1, out);
  }

  // K(X, X). The expansion's GEMM need not round a_i.a_j and a_j.a_i alike, so there the upper
  // triangle is copied from the lower one: exactly symmetric, as direct differences give it.
  void K_sym(const double* theta, MatRef X, MatOut out) const override {
    const Setup s(theta, L_, X, X);
    fill(s, X, out);
    if (!s.gemm) return;
    for (Index i = 0; i + 1 < X.rows(); ++i)
      out.row(i).tail(X.rows() - i - 1) = out.col(i).tail(X.rows() - i - 1).transpose();
  }

  void K_diag(const double* theta, MatRef X, VecOut out) const override {
    out.setConstant(theta[0]);  // f(0) = 1 for every shape
  }

  // dL/dvariance = sum Kbar f; dL/dl_k = sum G (-2 (a_k - b_k)^2 / l_k);
  // dL/dX1_ik = sum_j G_ij 2 (a_ik - b_jk) / l_k, with G = Kbar * variance * df/dr2 and a, b
  // the scaled inputs (r2 = sum_k (a_k - b_k)^2), both sums over j of a block of rows by the
  // expansion (a - b)^2 = a^2 - 2 a b + b^2 (add_expanded_sums: one GEMM G B per block).
  // Setup centres the inputs on X2's midrange, so the expansion loses nothing to a large
  // common offset. The scaled inputs are capped at +-kCap = 1e150 here: beyond it r2 is capped
  // at 1e300 and G = 0, and the cap keeps 0 * inf = NaN out of the sums (it changes nothing
  // where G is not 0).
  // Accumulators: [sum Kbar f, sum G (a_k - b_k)^2 for each k [d], sum Kbar df/dextra [E]].
  void grad(const double* theta, MatRef X1, MatRef X2, MatRef Kbar, double* dtheta,
            MatOut dX1) const override {
    const Setup s(theta, L_, X1, X2);
    const Index d = X1.cols();
    const Clamped B(s.B);                                 // [n2, d]
    const RowMatrixXd B2 = B.m.array().square();          // [n2, d]
    const RowArrayXd two_over_l = 2.0 / s.l.transpose();  // [d]
    const ArrayXd acc = parallel_blocks(
        X1.rows(), s.block, double(X1.rows()) * s.n2 * (3 * d + 20), 1 + d + Shape::num_extra,
        [] { return GradState(); },
        [&](Index start, Index rows, GradState& st, double* a) {
          s.block_r2(X1, start, rows, st);
          st.A = st.A.cwiseMax(-kCap).cwiseMin(kCap);  // after r2, which needs the true values
          Shape::derivs(s.extra, st.r2, st.f, st.df, st.dextra);
          const auto kbar = Kbar.middleRows(start, rows).array();  // [rows, n2]
          a[0] += (kbar * s.view(st.f, rows).array()).sum();
          for (int e = 0; e < Shape::num_extra; ++e)
            a[1 + d + e] += (kbar * s.view(st.dextra[e], rows).array()).sum();
          st.G = (kbar * (s.variance * s.view(st.df, rows).array())).matrix();
          auto dX = dX1.rows() > 0 ? dX1.middleRows(start, rows) : dX1;
          if constexpr (Shape::kSingularAtZero) take_near_pairs(s, B.m, st, a + 1, dX);
          add_expanded_sums(B.m, B2, two_over_l, st, a + 1, dX);
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
  using BlockView = Eigen::Map<RowMatrixXd, 0, Eigen::OuterStride<>>;

  struct BlockState {  // per-thread buffers for a block of rows of X1
    RowMatrixXd A;     // [rows, d] scaled rows
    VectorXd na;       // [rows] |a|^2 (GEMM path)
    ArrayXd r2, f;     // [rows, ld] each
  };

  struct GradState : BlockState {
    ArrayXd df;                                                    // [rows, ld]
    ArrayXd dextra[Shape::num_extra > 0 ? Shape::num_extra : 1];  // [rows, ld] each
    RowMatrixXd G, GB;                                             // [rows, n2], [rows, d]
    VectorXd g1;                                                   // [rows]
    RowVectorXd gcol;                                              // [n2]
  };

  // Scaled inputs for one call, centred on c = X2's column midranges (differences are
  // unchanged; a midrange, unlike a mean, cannot overflow): a = (x1 - c) / l, made per block
  // of rows, and B = (X2 - c) / l [n2, d].
  struct Setup {
    Setup(const double* theta, Index L, MatRef X1, MatRef X2)
        : variance(theta[0]), extra(theta + 1 + L), l(per_dim(theta + 1, L, X1.cols())),
          n2(X2.rows()), ld((n2 + kLanes - 1) / kLanes * kLanes),
          block(std::clamp<Index>(kBlockElems / std::max<Index>(ld, 1), 4, kBlockRows)),
          c(X2.rows() > 0 ? RowVectorXd(0.5 * X2.colwise().maxCoeff() + 0.5 * X2.colwise().minCoeff())
                          : RowVectorXd::Zero(X2.cols())),
          B(scaled(X2.rowwise() - c, l)) {
      gemm = X1.cols() >= kGemmMinDim && within(B, kGemmMaxAbs) &&
             (((X1.rowwise() - c).array().rowwise() / l.transpose()).abs() <= kGemmMaxAbs).all();
      if (gemm) {
        nb = B.rowwise().squaredNorm();
      } else {
        BT = RowMatrixXd::Zero(X2.cols(), ld);
        BT.leftCols(n2) = B.transpose();
      }
    }

    // A block buffer seen as [rows, n2] (row stride ld).
    BlockView view(ArrayXd& buf, Index rows) const {
      return BlockView(buf.data(), rows, n2, Eigen::OuterStride<>(ld));
    }

    // The scaled rows [start, start + rows) of X1 into st.A, and their r2 to every row of X2
    // into st.r2 [rows, ld] (the padding is 0). Capped at 1e300: an overflowing distance must
    // give k = 0, not inf * exp(-inf) = NaN (Matern's polynomial factor).
    void block_r2(MatRef X1, Index start, Index rows, BlockState& st) const {
      st.A = scaled(X1.middleRows(start, rows).rowwise() - c, l);
      st.r2.resize(rows * ld);
      BlockView R = view(st.r2, rows);  // [rows, n2]
      if (gemm) {
        expanded_r2(st, R);
      } else {
        for (Index i = 0; i < rows; ++i) direct_r2(st.A.row(i).data(), st.r2.data() + i * ld);
      }
      for (Index i = 0; i < rows; ++i) st.r2.segment(i * ld + n2, ld - n2).setZero();
    }

    // One row a [d]: r2 [ld] by direct differences, one input dimension after another over
    // kLanes columns at a time held in registers.
    void direct_r2(const double* a, double* r2) const {
      using Lanes = Eigen::Array<double, kLanes, 1>;
      for (Index j = 0; j < ld; j += kLanes) {
        Lanes sum = (Eigen::Map<const Lanes>(&BT(0, j)) - a[0]).square();
        for (Index k = 1; k < BT.rows(); ++k) sum += (Eigen::Map<const Lanes>(&BT(k, j)) - a[k]).square();
        Eigen::Map<Lanes>(r2 + j) = sum.min(1e300);
      }
    }

    // The expansion |a|^2 + |b|^2 - 2 a.b with a.b from one GEMM; the values it may have spoilt
    // by cancellation (<= kExactBelow (|a|^2 + |b|^2) + kExactFloor) are recomputed directly.
    // No cap needed: every scaled input is within kGemmMaxAbs.
    void expanded_r2(BlockState& st, BlockView R) const {
      st.na = st.A.rowwise().squaredNorm();  // [rows]
      chunked_product(st.A, B.transpose(), R);  // a.b [rows, n2]
      for (Index i = 0; i < R.rows(); ++i) {
        for (Index j = 0; j < n2; ++j) {
          const double s = st.na[i] + nb[j];
          const double r2 = s - 2.0 * R(i, j);
          R(i, j) = r2 > kExactBelow * s + kExactFloor ? r2 : (st.A.row(i) - B.row(j)).squaredNorm();
        }
      }
    }

    double variance;
    const double* extra;
    ArrayXd l;          // [d]
    Index n2, ld;       // rows of X2; row stride of the block buffers (n2 padded to kLanes)
    Index block;        // rows per block
    RowVectorXd c;      // [d] centre
    RowMatrixXd B;      // [n2, d]
    bool gemm = false;  // r2 by the expansion, with
    VectorXd nb;        //   |b|^2 [n2]; else by direct differences over
    RowMatrixXd BT;     //   B^T [d, ld] (padded with 0)
  };

  // out = K(X1, X2) [n1, n2] for the inputs of s.
  void fill(const Setup& s, MatRef X1, MatOut out) const {
    parallel_blocks(
        X1.rows(), s.block, double(X1.rows()) * s.n2 * (X1.cols() + 10), 0,
        [] { return BlockState(); },
        [&](Index start, Index rows, BlockState& st, double*) {
          s.block_r2(X1, start, rows, st);
          Shape::value(s.extra, st.r2, st.f);
          out.middleRows(start, rows) = s.variance * s.view(st.f, rows);
        });
  }

  // A block's sums of the pairs left in G, by the expansion (a - b)^2 = a^2 - 2 a b + b^2 with
  // g1 = G 1 [rows], GB = G B [rows, d] (one GEMM, 2 d flops per pair) and G^T 1 [n2] (the b^2
  // term needs no second GEMM: a matrix-vector product with B2 per block):
  //   al [d] += sum_ij G_ij (a_ik - b_jk)^2 = sum_i a_ik (a_ik g1_i - 2 GB_ik) + sum_j (G^T 1)_j b_jk^2
  //   dX [rows, d] += (2 / l_k) sum_j G_ij (a_ik - b_jk) = (2 / l_k) (a_ik g1_i - GB_ik).
  // B: the clamped scaled X2 [n2, d], B2 = B^2.
  static void add_expanded_sums(const RowMatrixXd& B, const RowMatrixXd& B2,
                                const RowArrayXd& two_over_l, GradState& st, double* al, MatOut dX) {
    st.g1 = st.G.rowwise().sum();  // [rows]
    st.GB.resize(st.G.rows(), B.cols());
    chunked_product(st.G, B, st.GB);  // [rows, d]
    st.gcol = st.G.colwise().sum();  // [n2]: G^T 1
    Eigen::Map<RowVectorXd>(al, B.cols()).noalias() += st.gcol * B2;
    Eigen::Map<RowArrayXd> acc(al, B.cols());
    for (Index i = 0; i < st.G.rows(); ++i) {
      const auto ai = st.A.row(i).array();
      acc += ai * (st.g1[i] * ai - 2.0 * st.GB.row(i).array());
      if (dX.rows() > 0) dX.row(i).array() -= two_over_l * (st.GB.row(i).array() - st.g1[i] * ai);
    }
  }

  // Nearly coincident pairs take direct differences and leave G: the expanded sums carry an
  // absolute error eps (a^2 + b^2) |G|, and here |G| ~ 1/r grows without bound (docs/math.md
  // section 1.6). B: the clamped scaled X2 [n2, d]; al, dX as above.
  static void take_near_pairs(const Setup& s, const RowMatrixXd& B, GradState& st, double* al,
                              MatOut dX) {
    for (Index i = 0; i < st.G.rows(); ++i) {
      for (Index j = 0; j < s.n2; ++j) {
        double& g = st.G(i, j);
        if (!(st.r2[i * s.ld + j] < kNearR2) || g == 0.0) continue;
        for (Index k = 0; k < B.cols(); ++k) {
          const double diff = st.A(i, k) - B(j, k);
          al[k] += g * diff * diff;
          if (dX.rows() > 0) dX(i, k) += 2.0 / s.l[k] * g * diff;
        }
        g = 0.0;
      }
    }
  }

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

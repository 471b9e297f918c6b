#include "varinf/vae.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <thread>

#include "varinf/errors.hpp"
#include "varinf/threads.hpp"

namespace varinf {

// ---------------------------------------------------------------------------------------------
// Random numbers (see vae.hpp)

namespace {

// splitmix64 (Steele, Lea & Flood 2014), the seeding generator recommended for xoshiro.
std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

constexpr double kLog2Pi = 1.8378770664093454835606594728112;

// Eigen's GEMM follows the calling thread's OpenMP limit; the VAE code parallelises over data
// itself, so while a guard is alive Eigen runs single-threaded on this thread.
class SerialEigen {
 public:
  SerialEigen() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SerialEigen() { omp_set_num_threads(saved_); }
  SerialEigen(const SerialEigen&) = delete;
  SerialEigen& operator=(const SerialEigen&) = delete;

 private:
  int saved_;
};

// Run body(block, thread) for every block, on `threads` threads when > 1.
template <class F>
void parallel_blocks(Index blocks, int threads, F&& body) {
  if (threads <= 1) {
    for (Index b = 0; b < blocks; ++b) body(b, 0);
    return;
  }
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (Index b = 0; b < blocks; ++b) body(b, omp_get_thread_num());
}

// Weights and biases of an MLP in -> hidden... -> out, in double: no overflow for any sizes.
double mlp_params(double in, const std::vector<Index>& hidden, double out) {
  double total = 0.0;
  for (Index h : hidden) {
    total += (in + 1.0) * static_cast<double>(h);
    in = static_cast<double>(h);
  }
  return total + (in + 1.0) * out;
}

Index macs_per_row(const std::vector<Dense>& net) {
  Index macs = 0;
  for (const Dense& l : net) macs += l.in * l.out;
  return macs;
}

// Rows per evaluation block (data x samples): large enough for GEMM efficiency, small enough
// to stay in cache.
constexpr Index kEvalRows = 512;
// A training step is split over threads only when each thread gets at least this many flops
// and rows: below that the barriers cost more than the parallel GEMMs save.
constexpr double kTrainFlopsPerThread = 2.0e7;
constexpr Index kTrainRowsPerThread = 16;

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spin briefly, then give the core away: a waiting thread must not hold a core that another
// process (or our own descheduled thread) needs.
class Backoff {
 public:
  void pause() {
    if (++spins_ < 2048)
      cpu_relax();
    else
      std::this_thread::yield();
  }

 private:
  int spins_ = 0;
};

// A phase of work items shared by a team without OpenMP barriers. The leader publishes a
// phase; every thread (the leader too) claims items with a compare-and-swap on one atomic word
// (phase id << 24 | next item), and the leader waits until all items are finished. A thread
// that the OS has descheduled holds up nobody unless it holds a claimed item, so 2 threads on
// a busy machine cost little more than 1. Which thread runs an item never changes the result:
// every item writes its own output and the leader combines them in a fixed order.
class PhaseQueue {
 public:
  static constexpr long kQuit = (1L << 38) - 1;

  void publish(long phase, int items) {
    items_.store(items, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    state_.store(pack(phase, 0), std::memory_order_release);
  }
  // The next item of `phase`, or -1 when none is left or the phase is over.
  int claim(long phase) {
    std::uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if (static_cast<long>(s >> 24) != phase) return -1;
      const int i = static_cast<int>(s & 0xFFFFFF);
      if (i >= items_.load(std::memory_order_relaxed)) return -1;
      if (state_.compare_exchange_weak(s, pack(phase, i + 1), std::memory_order_acq_rel,
                                       std::memory_order_acquire))
        return i;
    }
  }
  void finish() { done_.fetch_add(1, std::memory_order_release); }
  void wait_done() const {
    Backoff backoff;
    while (done_.load(std::memory_order_acquire) < items_.load(std::memory_order_relaxed)) backoff.pause();
  }
  // Helpers: wait for a phase other than `seen`.
  long wait_phase(long seen) const {
    Backoff backoff;
    for (;;) {
      const long phase = static_cast<long>(state_.load(std::memory_order_acquire) >> 24);
      if (phase != seen) return phase;
      backoff.pause();
    }
  }

 private:
  static std::uint64_t pack(long phase, int item) {
    return (static_cast<std::uint64_t>(phase) << 24) | static_cast<std::uint64_t>(item);
  }
  std::atomic<std::uint64_t> state_{0};
  std::atomic<int> done_{0};
  std::atomic<int> items_{0};
};

}  // namespace

Rng::Rng(std::uint64_t seed) {
  std::uint64_t x = seed;
  for (auto& s : s_) s = splitmix64(x);
}

// xoshiro256++ (Blackman & Vigna 2019, reference implementation).
std::uint64_t Rng::next() {
  const std::uint64_t result = rotl(s_[0] + s_[3], 23) + s_[0];
  const std::uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

// Marsaglia's polar method (Knuth, TAOCP vol. 2, 3.4.1 Algorithm P): two independent N(0, 1)
// from a point uniform in the unit disc; no trigonometric functions.
double Rng::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  double u, v, s;
  do {
    u = 2.0 * uniform() - 1.0;
    v = 2.0 * uniform() - 1.0;
    s = u * u + v * v;
  } while (s >= 1.0 || s == 0.0);
  const double f = std::sqrt(-2.0 * std::log(s) / s);
  spare_ = v * f;
  has_spare_ = true;
  return u * f;
}

// Lemire (2019), "Fast random integer generation in an interval", Algorithm 5.
std::uint64_t Rng::below(std::uint64_t n) {
  unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
  auto low = static_cast<std::uint64_t>(m);
  if (low < n) {
    const std::uint64_t threshold = (0 - n) % n;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(next()) * n;
      low = static_cast<std::uint64_t>(m);
    }
  }
  return static_cast<std::uint64_t>(m >> 64);
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index) {
  std::uint64_t x = seed;
  std::uint64_t y = splitmix64(x) ^ index;
  return splitmix64(y);
}

// ---------------------------------------------------------------------------------------------
// Activations, in place on a layer's output

namespace {

template <typename Mat>
void activate(Activation act, Mat& Z) {
  auto A = Z.array();
  using T = typename Mat::Scalar;
  switch (act) {
    case Activation::kRelu:
      A = A.max(T(0));
      break;
    case Activation::kTanh:
      A = A.tanh();
      break;
    case Activation::kSoftplus:
      // softplus(z) = max(z, 0) + log(1 + exp(-|z|)), stable for any z. log(1 + e) rather
      // than log1p(e): Eigen vectorises log, not log1p; the absolute error is below 1 ulp of 1.
      A = A.max(T(0)) + (T(1) + (-A.abs()).exp()).log();
      break;
  }
}

// delta *= act'(z), written with the activation's output A = act(z):
// relu' = [A > 0], tanh' = 1 - A^2, softplus' = sigmoid(z) = 1 - exp(-A).
template <typename Mat>
void activation_backward(Activation act, const Mat& A, Mat& delta) {
  using T = typename Mat::Scalar;
  switch (act) {
    case Activation::kRelu: {
      // A plain loop: gcc vectorises it as a blend, Eigen 3.4's select() stays scalar.
      const T* out = A.data();
      T* d = delta.data();
      for (Index i = 0; i < A.size(); ++i) d[i] = out[i] > T(0) ? d[i] : T(0);
      break;
    }
    case Activation::kTanh:
      delta.array() *= T(1) - A.array().square();
      break;
    case Activation::kSoftplus:
      delta.array() *= T(1) - (-A.array()).exp();
      break;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Vae

template <typename T>
Vae<T>::Vae(VaeConfig config) : config_(std::move(config)) {
  const VaeConfig& c = config_;
  if (c.input_dim < 1) throw InvalidArgument("input_dim must be >= 1");
  if (c.latent_dim < 1) throw InvalidArgument("latent_dim must be >= 1");
  for (Index h : c.encoder_hidden)
    if (h < 1) throw InvalidArgument("hidden sizes must be >= 1");
  for (Index h : c.decoder_hidden)
    if (h < 1) throw InvalidArgument("decoder_hidden sizes must be >= 1");
  const bool learn = c.likelihood == Likelihood::kGaussian && c.learn_obs_logvar;
  const double D = static_cast<double>(c.input_dim), J = static_cast<double>(c.latent_dim);
  const double count = mlp_params(D, c.encoder_hidden, 2.0 * J) + mlp_params(J, c.decoder_hidden, D) + (learn ? D : 0.0);
  if (count > static_cast<double>(kMaxParams))
    throw InvalidArgument("input_dim, latent_dim and the hidden sizes give more than 2^31 = " +
                          std::to_string(kMaxParams) + " parameters, the most supported");
  auto build = [this](Index in, const std::vector<Index>& hidden, Index out) {
    std::vector<Dense> net;
    std::vector<Index> sizes = hidden;
    sizes.push_back(out);
    for (Index o : sizes) {
      net.push_back({in, o, num_params_, num_params_ + in * o});
      num_params_ += in * o + o;
      in = o;
    }
    return net;
  };
  encoder_ = build(c.input_dim, c.encoder_hidden, 2 * c.latent_dim);
  decoder_ = build(c.latent_dim, c.decoder_hidden, c.input_dim);
  if (learn) {
    obs_logvar_offset_ = num_params_;
    num_params_ += c.input_dim;
  }
  theta_ = Vec::Zero(num_params_);
}

template <typename T>
void Vae<T>::initialize(std::uint64_t seed) {
  Rng rng(seed);
  for (const auto* net : {&encoder_, &decoder_}) {
    for (const Dense& l : *net) {
      // torch.nn.Linear.reset_parameters: kaiming_uniform_(a = sqrt(5)) gives
      // bound = sqrt(6 / ((1 + 5) fan_in)) = 1 / sqrt(fan_in); the bias uses the same bound.
      const double bound = 1.0 / std::sqrt(static_cast<double>(l.in));
      for (Index i = 0; i < l.in * l.out + l.out; ++i)
        theta_[l.w + i] = static_cast<T>(bound * (2.0 * rng.uniform() - 1.0));
    }
  }
  if (obs_logvar_offset_ >= 0)
    theta_.segment(obs_logvar_offset_, config_.input_dim).setConstant(static_cast<T>(config_.obs_logvar));
}

template <typename T>
void Vae<T>::forward_mlp(const std::vector<Dense>& net, const MatIn& input, std::vector<Mat>& acts) const {
  acts.resize(net.size());
  for (size_t l = 0; l < net.size(); ++l) {
    const Dense& d = net[l];
    const MatIn in = l == 0 ? input : MatIn(acts[l - 1]);  // [N, in]
    Eigen::Map<const Mat> W(theta_.data() + d.w, d.out, d.in);  // [out, in]
    Eigen::Map<const Vec> b(theta_.data() + d.b, d.out);        // [out]
    Mat& out = acts[l];                                          // [N, out]
    out.resize(in.rows(), d.out);
    out.noalias() = in * W.transpose();
    out.rowwise() += b.transpose();
    if (l + 1 < net.size()) activate(config_.activation, out);
  }
}

// Reverse mode of forward_mlp: dout [N, out_last] = dL/d(last output), overwritten; writes
// dL/dW = delta^T in [out, in] and dL/db = sum_rows delta [out] into grad, and dL/d(input)
// [N, in_first] into dinput when given.
template <typename T>
void Vae<T>::backward_mlp(const std::vector<Dense>& net, const MatIn& input, std::vector<Mat>& acts,
                          Mat& dout, T* grad, Mat* dinput, Mat (&buf)[2]) const {
  Mat* delta = &dout;  // [N, out of layer l]
  for (size_t l = net.size(); l-- > 0;) {
    const Dense& d = net[l];
    const MatIn in = l == 0 ? input : MatIn(acts[l - 1]);  // [N, in]
    if (l + 1 < net.size()) activation_backward(config_.activation, acts[l], *delta);
    Eigen::Map<Mat> gW(grad + d.w, d.out, d.in);  // [out, in]
    Eigen::Map<Vec> gb(grad + d.b, d.out);        // [out]
    gW.noalias() = delta->transpose() * in;
    gb = delta->colwise().sum().transpose();
    if (l == 0 && dinput == nullptr) break;
    Mat& next = l > 0 ? buf[l % 2] : *dinput;  // [N, in]
    Eigen::Map<const Mat> W(theta_.data() + d.w, d.out, d.in);
    next.resize(delta->rows(), d.in);
    next.noalias() = *delta * W;
    delta = &next;
  }
}

// log p(x | out) per row (docs/math.md section 8.3):
//   Bernoulli on logits a: sum_d x_d a_d - softplus(a_d);  d/da = x - sigmoid(a)
//   Gaussian, mean m, log variance lv: -1/2 sum_d (log 2 pi + lv_d + (x_d - m_d)^2 exp(-lv_d));
//   d/dm = (x - m) exp(-lv).
template <typename T>
void Vae<T>::log_likelihood(const MatIn& X, Index k, Mat& out, Vec& ll, bool grad_out) const {
  const Index D = config_.input_dim;
  ll.resize(out.rows());
  if (config_.likelihood == Likelihood::kBernoulli) {
    for (Index r = 0; r < out.rows(); ++r) {
      auto a = out.row(r).array();
      const auto x = X.row(r / k).array();
      ll[r] = (x * a - a.max(T(0)) - (T(1) + (-a.abs()).exp()).log()).sum();  // log(1 + e): see activate()
      // sigmoid(a) = 1 / (1 + exp(-a)): no NaN at either end (exp(-a) = inf gives 0), and
      // without Eigen 3.4's scalar-only select().
      if (grad_out) a = x - T(1) / (T(1) + (-a).exp());
    }
    return;
  }
  Eigen::Array<T, 1, Eigen::Dynamic> inv_var(D);  // [D] exp(-lv)
  T sum_lv;
  if (obs_logvar_offset_ >= 0) {
    auto lv = theta_.segment(obs_logvar_offset_, D).array().transpose();
    inv_var = (-lv).exp();
    sum_lv = lv.sum();
  } else {
    inv_var.setConstant(static_cast<T>(std::exp(-config_.obs_logvar)));
    sum_lv = static_cast<T>(D * config_.obs_logvar);
  }
  const T cst = static_cast<T>(D * kLog2Pi) + sum_lv;
  Eigen::Array<T, 1, Eigen::Dynamic> tmp(D);  // [D] x - m
  for (Index r = 0; r < out.rows(); ++r) {
    auto m = out.row(r).array();
    tmp = X.row(r / k).array() - m;
    ll[r] = T(-0.5) * (cst + (tmp.square() * inv_var).sum());
    if (grad_out) m = tmp * inv_var;
  }
}

namespace {

// KL(N(mu, exp(lv)) || N(0, I)) = -1/2 sum_j (1 + lv_j - mu_j^2 - exp(lv_j))
// (Kingma & Welling 2013, appendix B). head row: [mu (J), lv (J)].
template <typename Row>
double kl_row(const Row& head, Index J) {
  const auto mu = head.head(J).array();
  const auto lv = head.tail(J).array();
  return -0.5 * static_cast<double>((1 + lv - mu.square() - lv.exp()).sum());
}

// log p(z) - log q(z | x) for z = mu + exp(lv / 2) eps:
//   -1/2 sum z^2 + 1/2 sum (lv + eps^2)  (the log 2 pi terms cancel).
template <typename RowH, typename RowE, typename RowZ>
double log_prior_ratio(const RowH& head, const RowE& eps, const RowZ& z, Index J) {
  return 0.5 * static_cast<double>(
                   (head.tail(J).array() + eps.array().square() - z.array().square()).sum());
}

// Whether q(z | x)'s scale exp(lv / 2) overflows T for a head row [mu (J), lv (J)]: z is then
// inf or NaN, and so is the decoder's output. The bound is -inf all the same: log p(x | z) is
// bounded above (Bernoulli <= 0, Gaussian <= -1/2 sum_d (log 2 pi + lv_d)), while the KL is
// infinite (ELBO) and every importance weight p(x, z) / q(z | x) vanishes (IWAE).
template <typename Row>
bool scale_overflows(const Row& head, Index J) {
  using T = typename Row::Scalar;
  return !(head.tail(J).array() * T(0.5)).exp().isFinite().all();
}

// z_r = mu_i + exp(lv_i / 2) eps_r for the rows r = i k + s of datum i (reparametrisation,
// Kingma & Welling 2013 eq. 10). head [B, 2J], eps [B k, J], z [B k, J].
template <typename MatH, typename MatE, typename MatZ>
void sample_latent(const MatH& head, const MatE& eps, Index k, Index J, MatZ& z) {
  z.resize(eps.rows(), J);
  for (Index r = 0; r < eps.rows(); ++r) {
    const auto h = head.row(r / k);
    z.row(r).array() = h.head(J).array() + (h.tail(J).array() * 0.5).exp() * eps.row(r).array();
  }
}

}  // namespace

// Per datum L_i and the row weights c_r = dL_i / d ll_r:
//   ELBO: L_i = (1/k) sum_s ll_r - beta KL_i,  c_r = 1/k;
//   IWAE (Burda et al. 2015, eq. 8): L_i = logsumexp_s(lw_r) - log k with
//   lw_r = ll_r + beta (log p(z_r) - log q(z_r | x_i)), c_r = softmax_s(lw_r) (max-shifted).
template <typename T>
double Vae<T>::combine(Index k, T beta, Objective objective, const MatIn& head, const MatIn& eps,
                       const MatIn& z, const Vec& ll, T* values, Vec* c) const {
  const Index J = config_.latent_dim;
  const Index B = head.rows();
  if (c) c->resize(B * k);
  std::vector<double> lw(k);
  double total = 0.0;
  for (Index i = 0; i < B; ++i) {
    if (objective == Objective::kElbo) {
      double sum = 0.0;
      for (Index s = 0; s < k; ++s) sum += ll[i * k + s];
      const double L = sum / k - beta * kl_row(head.row(i), J);
      total += L;
      if (values) values[i] = static_cast<T>(L);
      if (c) c->segment(i * k, k).setConstant(static_cast<T>(1.0 / k));
      continue;
    }
    double mx = -INFINITY;
    for (Index s = 0; s < k; ++s) {
      const Index r = i * k + s;
      lw[s] = ll[r] + beta * log_prior_ratio(head.row(i), eps.row(r), z.row(r), J);
      mx = std::max(mx, lw[s]);
    }
    double sum = 0.0;
    for (Index s = 0; s < k; ++s) sum += std::exp(lw[s] - mx);
    const double L = mx + std::log(sum) - std::log(static_cast<double>(k));
    total += L;
    if (values) values[i] = static_cast<T>(L);
    if (c)
      for (Index s = 0; s < k; ++s) (*c)[i * k + s] = static_cast<T>(std::exp(lw[s] - mx) / sum);
  }
  return total;
}

// Reverse mode of the minibatch objective (see vae.hpp). Shapes: X [B, D], eps [B k, J],
// head = [mu, lv] [B, 2J], z [B k, J], decoder output [B k, D].
template <typename T>
T Vae<T>::loss_grad(const MatIn& X, const MatIn& eps, Index k, T beta, Objective objective, T weight,
                    T* grad, T* values, VaeWorkspace<T>& ws) const {
  SerialEigen serial;
  const Index J = config_.latent_dim;
  const Index D = config_.input_dim;
  const Index B = X.rows();
  forward_mlp(encoder_, X, ws.enc);
  const Mat& head = ws.enc.back();  // [B, 2J]
  sample_latent(head, eps, k, J, ws.z);
  forward_mlp(decoder_, ws.z, ws.dec);
  Mat& dout = ws.dec.back();  // [B k, D] output, then d log p / d output
  log_likelihood(X, k, dout, ws.ll, true);
  const double total = combine(k, beta, objective, head, eps, ws.z, ws.ll, values, &ws.c);
  // loss = -weight sum_i L_i: every row weight carries -weight.
  ws.c *= -weight;
  if (obs_logvar_offset_ >= 0) {
    // d ll_r / d lv_d = -1/2 + 1/2 (x - m)^2 exp(-lv) = -1/2 + 1/2 g_rd^2 exp(lv_d),
    // with g = d ll / d m still unscaled in dout.
    const auto var = theta_.segment(obs_logvar_offset_, D).array().exp().transpose();  // [D]
    Eigen::Map<Vec> glv(grad + obs_logvar_offset_, D);
    glv.setZero();
    for (Index r = 0; r < dout.rows(); ++r)
      glv.array() += ws.c[r] * (T(-0.5) + T(0.5) * dout.row(r).array().square() * var).transpose();
  }
  dout.array().colwise() *= ws.c.array();
  backward_mlp(decoder_, ws.z, ws.dec, dout, grad, &ws.dz, ws.delta);
  // dL/dz from log p(z) in the IWAE weights: -beta z.
  if (objective == Objective::kIwae) ws.dz.array() -= beta * (ws.z.array().colwise() * ws.c.array());
  // Through z = mu + exp(lv / 2) eps: dmu = sum_s dz, dlv = sum_s dz (z - mu) / 2; plus the
  // direct terms: ELBO -beta dKL/dmu = -beta mu, -beta dKL/dlv = -beta (exp(lv) - 1) / 2;
  // IWAE beta d(-log q)/dlv = beta / 2 per sample, i.e. beta / 2 after the softmax weights.
  ws.dhead.resize(B, 2 * J);
  for (Index i = 0; i < B; ++i) {
    auto dmu = ws.dhead.row(i).head(J);
    auto dlv = ws.dhead.row(i).tail(J);
    const auto mu = head.row(i).head(J).array();
    const auto lv = head.row(i).tail(J).array();
    dmu.setZero();
    dlv.setZero();
    for (Index s = 0; s < k; ++s) {
      const Index r = i * k + s;
      dmu += ws.dz.row(r);
      dlv.array() += T(0.5) * ws.dz.row(r).array() * (ws.z.row(r).array() - mu);
    }
    if (objective == Objective::kElbo) {
      dmu.array() += weight * beta * mu;
      dlv.array() += weight * beta * T(0.5) * (lv.exp() - T(1));
    } else {
      dlv.array() -= weight * beta * T(0.5);
    }
  }
  backward_mlp(encoder_, X, ws.enc, ws.dhead, grad, nullptr, ws.delta);
  return static_cast<T>(-weight * total);
}

template <typename T>
void Vae<T>::encode(const MatIn& X, MatMut mu, MatMut logvar) const {
  const Index n = X.rows();
  const Index J = config_.latent_dim;
  const Index blocks = (n + kEvalRows - 1) / kEvalRows;
  const int threads = threads_for(2.0 * n * macs_per_row(encoder_));
  SerialEigen serial;
  std::vector<VaeWorkspace<T>> ws(threads);
  parallel_blocks(blocks, threads, [&](Index b, int tid) {
    const Index lo = b * kEvalRows, m = std::min(kEvalRows, n - lo);
    forward_mlp(encoder_, X.middleRows(lo, m), ws[tid].enc);
    mu.middleRows(lo, m) = ws[tid].enc.back().leftCols(J);
    logvar.middleRows(lo, m) = ws[tid].enc.back().rightCols(J);
  });
}

template <typename T>
void Vae<T>::decode(const MatIn& Z, MatMut out, bool link) const {
  const Index n = Z.rows();
  const Index blocks = (n + kEvalRows - 1) / kEvalRows;
  const int threads = threads_for(2.0 * n * macs_per_row(decoder_));
  const bool sigmoid = link && config_.likelihood == Likelihood::kBernoulli;
  SerialEigen serial;
  std::vector<VaeWorkspace<T>> ws(threads);
  parallel_blocks(blocks, threads, [&](Index b, int tid) {
    const Index lo = b * kEvalRows, m = std::min(kEvalRows, n - lo);
    forward_mlp(decoder_, Z.middleRows(lo, m), ws[tid].dec);
    // The link is applied in the (aligned) workspace, so that the result does not depend on
    // the alignment of the caller's buffer (Eigen's scalar and vector exp differ in the last bit).
    auto a = ws[tid].dec.back().array();
    if (sigmoid) a = T(1) / (T(1) + (-a).exp());
    out.middleRows(lo, m) = ws[tid].dec.back();
  });
}

// Blocks of nb data x kc samples (nb kc ~ kEvalRows); each datum's k samples are streamed in
// chunks of kc with a running sum (ELBO) or a running max-shifted log-sum-exp (IWAE).
template <typename T>
void Vae<T>::bound(const MatIn& X, Index k, Objective objective, std::uint64_t seed, VecMut out) const {
  const Index n = X.rows();
  const Index J = config_.latent_dim;
  const Index kc = std::min(k, kEvalRows);
  const Index nb = std::max<Index>(1, kEvalRows / kc);
  const Index blocks = (n + nb - 1) / nb;
  const int threads = threads_for(2.0 * n * k * macs_per_row(decoder_));
  SerialEigen serial;
  std::vector<VaeWorkspace<T>> ws(threads);
  parallel_blocks(blocks, threads, [&](Index b, int tid) {
    VaeWorkspace<T>& w = ws[tid];
    const Index lo = b * nb, m = std::min(nb, n - lo);
    const auto Xb = X.middleRows(lo, m);  // [m, D]
    forward_mlp(encoder_, Xb, w.enc);
    const Mat head = w.enc.back();  // [m, 2J]
    std::vector<Rng> rngs;
    for (Index i = 0; i < m; ++i) rngs.emplace_back(derive_seed(seed, static_cast<std::uint64_t>(lo + i)));
    std::vector<double> run_max(m, -INFINITY), run_sum(m, 0.0);
    for (Index s0 = 0; s0 < k; s0 += kc) {
      const Index kk = std::min(kc, k - s0);
      w.eps.resize(m * kk, J);
      for (Index i = 0; i < m; ++i)
        for (Index r = i * kk; r < (i + 1) * kk; ++r)
          for (Index j = 0; j < J; ++j) w.eps(r, j) = static_cast<T>(rngs[i].normal());
      sample_latent(head, w.eps, kk, J, w.z);
      forward_mlp(decoder_, w.z, w.dec);
      log_likelihood(Xb, kk, w.dec.back(), w.ll, false);
      for (Index i = 0; i < m; ++i) {
        for (Index r = i * kk; r < (i + 1) * kk; ++r) {
          if (objective == Objective::kElbo) {
            run_sum[i] += w.ll[r];
            continue;
          }
          // lw = ll + log p(z) - log q(z | x); streaming log-sum-exp with a running max.
          const double lw = w.ll[r] + log_prior_ratio(head.row(i), w.eps.row(r), w.z.row(r), J);
          if (lw > run_max[i]) {
            run_sum[i] = run_sum[i] * std::exp(run_max[i] - lw) + 1.0;
            run_max[i] = lw;
          } else {
            run_sum[i] += std::exp(lw - run_max[i]);
          }
        }
      }
    }
    for (Index i = 0; i < m; ++i) {
      const double L = objective == Objective::kElbo
                           ? run_sum[i] / k - kl_row(head.row(i), J)
                           : run_max[i] + std::log(run_sum[i]) - std::log(static_cast<double>(k));
      out[lo + i] = scale_overflows(head.row(i), J) ? -std::numeric_limits<T>::infinity() : static_cast<T>(L);
    }
  });
}

template class Vae<float>;
template class Vae<double>;

// ---------------------------------------------------------------------------------------------
// VaeTrainer

template <typename T>
VaeTrainer<T>::VaeTrainer(Vae<T>& model, const T* X, Index n, TrainOptions options)
    : model_(model),
      X_(X, n, model.config().input_dim),
      options_(options),
      adam_(model.num_params(), options.adam),
      rng_(options.seed),
      range_finite_(kRanges, 1),
      good_(model.theta()),
      first_loss_(std::nan("")) {
  if (n < 1) throw InvalidArgument("X must have at least one row");
  if (options.batch_size < 1) throw InvalidArgument("batch_size must be >= 1");
  if (options.samples < 1) throw InvalidArgument("n_samples must be >= 1");
  if (!(options.beta >= 0.0)) throw InvalidArgument("beta must be >= 0");
  if (!(options.warmup_steps >= 0.0)) throw InvalidArgument("warmup must be >= 0");
  const Index B = std::min(options.batch_size, n);
  // Forward + backward ~ 3 GEMMs per layer, 2 flops per multiply-add.
  const double flops = 6.0 * B * (macs_per_row(model.encoder()) + options.samples * macs_per_row(model.decoder()));
  const int by_work = static_cast<int>(std::max(1.0, flops / kTrainFlopsPerThread));
  const int by_rows = static_cast<int>(std::max<Index>(1, B / kTrainRowsPerThread));
  threads_ = std::min({num_threads(), by_work, by_rows});
  parts_ = threads_;
  grads_.assign(parts_, Vec::Zero(model.num_params()));
  ws_.resize(parts_);
  part_loss_.assign(parts_, 0.0);
  order_.resize(n);
  std::iota(order_.begin(), order_.end(), Index(0));
  start_epoch();
  draw_noise(std::min(options_.batch_size, n));
}

// Fisher-Yates shuffle of the previous epoch's order (Knuth, TAOCP vol. 2, Algorithm P).
template <typename T>
void VaeTrainer<T>::start_epoch() {
  for (Index i = static_cast<Index>(order_.size()) - 1; i > 0; --i)
    std::swap(order_[i], order_[rng_.below(static_cast<std::uint64_t>(i) + 1)]);
  cursor_ = 0;
}

template <typename T>
void VaeTrainer<T>::draw_noise(Index b) {
  eps_.resize(b * options_.samples, model_.config().latent_dim);
  for (Index r = 0; r < eps_.rows(); ++r)
    for (Index j = 0; j < eps_.cols(); ++j) eps_(r, j) = static_cast<T>(rng_.normal());
}

// Linear KL warm-up (Bowman et al. 2016; Sonderby et al. 2016): beta_t = beta min(1, t / T).
template <typename T>
T VaeTrainer<T>::beta_at(long t) const {
  if (options_.warmup_steps <= 0.0) return static_cast<T>(options_.beta);
  return static_cast<T>(options_.beta * std::min(1.0, static_cast<double>(t) / options_.warmup_steps));
}

template <typename T>
void VaeTrainer<T>::gradient_part(int part, long t, Index b) {
  const Index K = options_.samples;
  const Index lo = b * part / parts_, hi = b * (part + 1) / parts_;  // rows of the batch
  VaeWorkspace<T>& w = ws_[part];
  if (hi == lo) {
    part_loss_[part] = 0.0;
    grads_[part].setZero();
    return;
  }
  w.x.resize(hi - lo, X_.cols());
  for (Index j = lo; j < hi; ++j) w.x.row(j - lo) = X_.row(order_[cursor_ + j]);
  part_loss_[part] = model_.loss_grad(w.x, eps_.middleRows(lo * K, (hi - lo) * K), K, beta_at(t),
                                      options_.objective, T(1) / T(b), grads_[part].data(), nullptr, w);
}

template <typename T>
std::pair<Index, Index> VaeTrainer<T>::range(int r) const {
  const Index P = model_.num_params();
  const Index lo = (P * r / kRanges) & ~Index(15);
  const Index hi = r + 1 == kRanges ? P : (P * (r + 1) / kRanges) & ~Index(15);
  return {lo, hi};
}

template <typename T>
void VaeTrainer<T>::reduce_range(int r) {
  const auto [lo, hi] = range(r);
  auto g = grads_[0].segment(lo, hi - lo);
  for (int u = 1; u < parts_; ++u) g += grads_[u].segment(lo, hi - lo);
  range_finite_[r] = g.allFinite();
}

template <typename T>
void VaeTrainer<T>::update_range(int r, long t) {
  const auto [lo, hi] = range(r);
  good_.segment(lo, hi - lo) = model_.theta().segment(lo, hi - lo);
  adam_.update(adam_.coefficients(t), model_.theta().data(), grads_[0].data(), lo, hi);
}

template <typename T>
double VaeTrainer<T>::loss_limit() const {
  if (std::isnan(first_loss_)) return INFINITY;
  return first_loss_ + kCollapseFactor * (std::abs(first_loss_) + static_cast<double>(model_.config().input_dim));
}

// The divergence checks of vae.hpp, in order: loss, gradient, collapse.
template <typename T>
typename VaeTrainer<T>::Divergence VaeTrainer<T>::diagnose(double loss) {
  if (!std::isfinite(loss)) return Divergence::kNonFiniteLoss;
  for (char finite : range_finite_)
    if (!finite) return Divergence::kNonFiniteGradient;
  if (std::isnan(first_loss_)) first_loss_ = loss;
  return loss > loss_limit() ? Divergence::kCollapse : Divergence::kNone;
}

// Thread 0 leads every step; the other threads only help with the items of each phase (the
// batch parts, the reduction over ranges of theta, the update of those ranges), see
// PhaseQueue. Phase ids: 3s + 1, 3s + 2 and 3s + 3.
template <typename T>
typename VaeTrainer<T>::Result VaeTrainer<T>::run(Index steps) {
  Result res;
  if (diverged_.step >= 0) {
    res.diverged = diverged_;
    return res;
  }
  const Index n = X_.rows();
  const long t0 = adam_.t();
  PhaseQueue queue;
  long t = t0;    // the current step, read by helpers after they see its phase
  Index b = 0;    // the current batch size, likewise
  SerialEigen serial;

  auto work = [&](long phase, int item) {
    if (phase % 3 == 1)
      gradient_part(item, t, b);
    else if (phase % 3 == 2)
      reduce_range(item);
    else
      update_range(item, t);
  };
  auto run_phase = [&](long phase, int items) {
    queue.publish(phase, items);
    for (int i; (i = queue.claim(phase)) >= 0;) {
      work(phase, i);
      queue.finish();
    }
    queue.wait_done();
  };
  auto lead = [&]() {
    for (Index s = 0; s < steps; ++s) {
      t = t0 + static_cast<long>(s) + 1;
      b = std::min(options_.batch_size, n - cursor_);
      run_phase(3 * s + 1, parts_);
      double loss = 0.0;
      for (double v : part_loss_) loss += v;
      run_phase(3 * s + 2, kRanges);
      if (const Divergence why = diagnose(loss); why != Divergence::kNone) {
        model_.theta() = good_;
        res.diverged = diverged_ = {t, why, loss};
        break;
      }
      run_phase(3 * s + 3, kRanges);
      res.losses.push_back(loss);
      cursor_ += b;
      if (cursor_ == n) {
        ++epoch_;
        res.epoch_end = true;
        start_epoch();
      }
      draw_noise(std::min(options_.batch_size, n - cursor_));
      if (res.epoch_end) break;
    }
    queue.publish(PhaseQueue::kQuit, 0);
  };
  auto help = [&]() {
    for (long seen = 0;;) {
      const long phase = queue.wait_phase(seen);
      if (phase == PhaseQueue::kQuit) return;
      seen = phase;
      for (int i; (i = queue.claim(phase)) >= 0;) {
        work(phase, i);
        queue.finish();
      }
    }
  };
  if (threads_ > 1) {
#pragma omp parallel num_threads(threads_)
    {
      if (omp_get_thread_num() == 0)
        lead();
      else
        help();
    }
  } else {
    lead();
  }
  adam_.set_t(t0 + static_cast<long>(res.losses.size()));
  return res;
}

template class VaeTrainer<float>;
template class VaeTrainer<double>;

}  // namespace varinf

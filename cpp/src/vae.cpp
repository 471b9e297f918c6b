// The VAE's model: MLP forward and reverse passes, the decoders' log-likelihoods, the ELBO and
// IWAE objectives and their gradient, and batched evaluation (docs/math.md section 8).
#include "varinf/vae.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "vae_activations.hpp"
#include "varinf/constants.hpp"
#include "varinf/errors.hpp"
#include "varinf/parallel.hpp"
#include "varinf/random.hpp"
#include "varinf/threads.hpp"

namespace varinf {

using detail::activate;
using detail::activation_backward;

namespace {

// Weights and biases of an MLP in -> hidden... -> out, in double: no overflow for any sizes.
double mlp_params(double in, const std::vector<Index>& hidden, double out) {
  double total = 0.0;
  for (Index h : hidden) {
    total += (in + 1.0) * static_cast<double>(h);
    in = static_cast<double>(h);
  }
  return total + (in + 1.0) * out;
}

// Rows per evaluation block (data x samples): large enough for GEMM efficiency, small enough
// to stay in cache.
constexpr Index kEvalRows = 512;

}  // namespace

Index macs_per_row(const std::vector<Dense>& net) {
  Index macs = 0;
  for (const Dense& l : net) macs += l.in * l.out;
  return macs;
}

template <typename T>
Vae<T>::Vae(VaeConfig config) : config_(std::move(config)) {
  const VaeConfig& c = config_;
  if (c.input_dim < 1) throw InvalidArgument("input_dim must be >= 1");
  if (c.latent_dim < 1) throw InvalidArgument("latent_dim must be >= 1");
  for (Index h : c.encoder_hidden)
    if (h < 1) throw InvalidArgument("hidden sizes must be >= 1");
  for (Index h : c.decoder_hidden)
    if (h < 1) throw InvalidArgument("decoder_hidden sizes must be >= 1");
  const bool learn = c.observation == ObservationModel::kGaussian && c.learn_obs_logvar;
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

// acts[l] = act(acts[l - 1] W_l^T + b_l) layer by layer, acts[-1] = input [N, in_first]; the
// last layer is linear (docs/math.md section 8.1).
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

// Reverse mode of forward_mlp (docs/math.md section 8.5): dout [N, out_last] =
// dL/d(last output), overwritten; writes
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
  if (config_.observation == ObservationModel::kBernoulli) {
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
  const T cst = static_cast<T>(D * kLog2Pi) + sum_lv;  // D log 2pi + sum_d lv_d
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
// (Kingma & Welling 2013, appendix B; docs/math.md section 8.2). head row: [mu (J), lv (J)].
template <typename Row>
double kl_row(const Row& head, Index J) {
  const auto mu = head.head(J).array();
  const auto lv = head.tail(J).array();
  return -0.5 * static_cast<double>((1 + lv - mu.square() - lv.exp()).sum());
}

// log p(z) - log q(z | x) for z = mu + exp(lv / 2) eps:
//   -1/2 sum z^2 + 1/2 sum (lv + eps^2)  (the log 2 pi terms cancel; docs/math.md section 8.4).
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
// Kingma & Welling 2013 eq. 10; docs/math.md section 8.2). head [B, 2J], eps [B k, J], z [B k, J].
template <typename MatH, typename MatE, typename MatZ>
void sample_latent(const MatH& head, const MatE& eps, Index k, Index J, MatZ& z) {
  z.resize(eps.rows(), J);
  for (Index r = 0; r < eps.rows(); ++r) {
    const auto h = head.row(r / k);
    z.row(r).array() = h.head(J).array() + (h.tail(J).array() * 0.5).exp() * eps.row(r).array();
  }
}

}  // namespace

// Per datum L_i and the row weights c_r = dL_i / d ll_r (docs/math.md sections 8.2, 8.4, 8.5):
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

// Reverse mode of the minibatch objective (see vae.hpp; docs/math.md section 8.5). Shapes:
// X [B, D], eps [B k, J], head = [mu, lv] [B, 2J], z [B k, J], decoder output [B k, D].
template <typename T>
T Vae<T>::loss_grad(const MatIn& X, const MatIn& eps, Index k, T beta, Objective objective, T weight,
                    T* grad, T* values, VaeWorkspace<T>& ws) const {
  OmpLimit serial(1);  // Eigen single-threaded: the VAE parallelises over data itself
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
  OmpLimit serial(1);  // Eigen single-threaded: the VAE parallelises over data itself
  parallel_for(blocks, threads, [] { return VaeWorkspace<T>(); }, [&](Index b, VaeWorkspace<T>& w) {
    const Index lo = b * kEvalRows, m = std::min(kEvalRows, n - lo);
    forward_mlp(encoder_, X.middleRows(lo, m), w.enc);
    mu.middleRows(lo, m) = w.enc.back().leftCols(J);          // [m, J]
    logvar.middleRows(lo, m) = w.enc.back().rightCols(J);     // [m, J]
  });
}

template <typename T>
void Vae<T>::decode(const MatIn& Z, MatMut out, bool link) const {
  const Index n = Z.rows();
  const Index blocks = (n + kEvalRows - 1) / kEvalRows;
  const int threads = threads_for(2.0 * n * macs_per_row(decoder_));
  const bool sigmoid = link && config_.observation == ObservationModel::kBernoulli;
  OmpLimit serial(1);  // Eigen single-threaded: the VAE parallelises over data itself
  parallel_for(blocks, threads, [] { return VaeWorkspace<T>(); }, [&](Index b, VaeWorkspace<T>& w) {
    const Index lo = b * kEvalRows, m = std::min(kEvalRows, n - lo);
    forward_mlp(decoder_, Z.middleRows(lo, m), w.dec);
    // The link is applied in the (aligned) workspace, so that the result does not depend on
    // the alignment of the caller's buffer (Eigen's scalar and vector exp differ in the last bit).
    auto a = w.dec.back().array();  // [m, D]
    if (sigmoid) a = T(1) / (T(1) + (-a).exp());
    out.middleRows(lo, m) = w.dec.back();
  });
}

// Evaluation (docs/math.md section 8.7). Blocks of nb data x kc samples (nb kc ~ kEvalRows);
// each datum's k samples are streamed in chunks of kc with a running sum (ELBO) or a running
// max-shifted log-sum-exp (IWAE).
template <typename T>
void Vae<T>::bound(const MatIn& X, Index k, Objective objective, std::uint64_t seed, VecMut out) const {
  const Index n = X.rows();
  const Index J = config_.latent_dim;
  const Index kc = std::min(k, kEvalRows);
  const Index nb = std::max<Index>(1, kEvalRows / kc);
  const Index blocks = (n + nb - 1) / nb;
  const int threads = threads_for(2.0 * n * k * macs_per_row(decoder_));
  OmpLimit serial(1);  // Eigen single-threaded: the VAE parallelises over data itself
  parallel_for(blocks, threads, [] { return VaeWorkspace<T>(); }, [&](Index b, VaeWorkspace<T>& w) {
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

}  // namespace varinf

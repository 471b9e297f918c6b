// The VAE's training loop (docs/math.md section 8.6): shuffling, minibatches, noise, the
// data-parallel gradient and Adam, with the divergence checks of vae_trainer.hpp.
#include "varinf/vae_trainer.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "phase_queue.hpp"
#include "varinf/errors.hpp"
#include "varinf/parallel.hpp"
#include "varinf/threads.hpp"

namespace varinf {

namespace {

// A training step is split over threads only when each thread gets at least this many flops
// and rows: below that the barriers cost more than the parallel GEMMs save.
constexpr double kTrainFlopsPerThread = 2.0e7;
constexpr Index kTrainRowsPerThread = 16;

}  // namespace

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

// A new epoch's order: the previous epoch's order shuffled (random.hpp's Fisher-Yates).
template <typename T>
void VaeTrainer<T>::start_epoch() {
  shuffle(order_, rng_);
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

// The divergence checks of vae_trainer.hpp, in order: loss, gradient, collapse.
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
// detail::PhaseQueue (phase_queue.hpp). Phase ids: 3s + 1, 3s + 2 and 3s + 3.
template <typename T>
typename VaeTrainer<T>::Result VaeTrainer<T>::run(Index steps) {
  Result res;
  if (diverged_.step >= 0) {
    res.diverged = diverged_;
    return res;
  }
  const Index n = X_.rows();
  const long t0 = adam_.t();
  detail::PhaseQueue queue;
  long t = t0;    // the current step, read by helpers after they see its phase
  Index b = 0;    // the current batch size, likewise
  OmpLimit serial(1);  // Eigen single-threaded: the step parallelises over the batch itself

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
    queue.publish(detail::PhaseQueue::kQuit, 0);
  };
  auto help = [&]() {
    for (long seen = 0;;) {
      const long phase = queue.wait_phase(seen);
      if (phase == detail::PhaseQueue::kQuit) return;
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

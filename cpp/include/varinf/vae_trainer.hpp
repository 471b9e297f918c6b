// The VAE's minibatch training loop (docs/math.md section 8.6) over a Vae (vae.hpp).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <utility>
#include <vector>

#include "varinf/optim.hpp"
#include "varinf/random.hpp"
#include "varinf/types.hpp"
#include "varinf/vae.hpp"

namespace varinf {

// The minibatch training loop: shuffling, minibatches, noise and Adam all in C++, run
// `steps` at a time between returns to Python. Data-parallel when a step is large enough:
// the batch rows are split into `parts` (= threads) slices with a gradient buffer each, the
// buffers are summed in a fixed order and the Adam update is split over ranges of theta.
// The threads claim these items dynamically (no barriers), so a thread that a busy machine
// deschedules does not stall the step, and the result does not depend on which thread ran
// what: a seed gives the same bits for a given thread count. The noise is drawn for the whole
// batch from one stream, so other thread counts differ only in rounding.
//
// Divergence is checked at every step, before its update is applied: the step diverges when
// its minibatch loss (-objective per datum) is not finite, when its gradient is not finite, or
// when the loss has collapsed, i.e. exceeds the first step's loss L1 by more than
// kCollapseFactor (|L1| + D) (D = input_dim; minibatch noise in healthy runs stays orders of
// magnitude below this). The trainer then puts back the last good parameters, those whose
// loss and gradient last passed these checks (the starting ones when step 1 fails), and stops
// for good: later runs take no step, so its Adam moments never act again.
struct TrainOptions {
  Index batch_size = 128;
  Index samples = 1;             // K samples per datum
  Objective objective = Objective::kElbo;
  double beta = 1.0;
  double warmup_steps = 0.0;     // beta ramps linearly from 0 over this many steps
  AdamOptions adam;
  std::uint64_t seed = 0;
};

template <typename T>
class VaeTrainer {
 public:
  using Mat = typename Vae<T>::Mat;
  using Vec = typename Vae<T>::Vec;

  // X [n, D] must outlive the trainer (the binding keeps it alive).
  VaeTrainer(Vae<T>& model, const T* X, Index n, TrainOptions options);

  static constexpr double kCollapseFactor = 1e6;

  enum class Divergence { kNone, kNonFiniteLoss, kNonFiniteGradient, kCollapse };
  struct Diverged {
    long step = -1;  // the global step that diverged (training has stopped), or -1
    Divergence why = Divergence::kNone;
    double loss = 0.0;  // that step's minibatch loss
  };
  struct Result {
    std::vector<double> losses;  // minibatch losses (-objective per datum) of the steps run
    bool epoch_end = false;      // the last step finished an epoch
    Diverged diverged;
  };
  // Run up to `steps` steps, stopping early at the end of an epoch or at a divergence (that
  // step's update is not applied and theta is put back to the last good parameters). Once
  // diverged, every run returns that divergence again without a step.
  Result run(Index steps);

  long step() const { return adam_.t(); }
  long epoch() const { return epoch_; }
  int threads() const { return threads_; }
  double first_loss() const { return first_loss_; }  // loss of step 1 (NaN before it)
  double loss_limit() const;                          // a loss above this has collapsed (inf before step 1)

 private:
  static constexpr int kRanges = 8;  // ranges of theta in the update phase

  void start_epoch();
  void draw_noise(Index b);   // eps_ for the batch at cursor_ of size b
  T beta_at(long t) const;
  // Loss and gradient of slice `part` of the batch of size b at cursor_, step t.
  void gradient_part(int part, long t, Index b);
  // [lo, hi) of range r of theta (multiples of 16 entries).
  std::pair<Index, Index> range(int r) const;
  // grads_[0] += grads_[1..] on range r; records whether the sum is finite there.
  void reduce_range(int r);
  // Save range r of theta as the last good parameters, then apply Adam step t to it.
  void update_range(int r, long t);
  // Whether a step with minibatch loss `loss` diverges (its gradient is reduced already).
  Divergence diagnose(double loss);

  Vae<T>& model_;
  Eigen::Map<const Mat> X_;  // [n, D]
  TrainOptions options_;
  Adam<T> adam_;
  Rng rng_;
  std::vector<Index> order_;  // [n] permutation of the current epoch
  Index cursor_ = 0;          // next position in order_
  long epoch_ = 0;
  int threads_ = 1;
  int parts_ = 1;                        // slices of each batch
  Mat eps_;                              // [B K, J]
  std::vector<Vec> grads_;               // per part [num_params]
  std::vector<VaeWorkspace<T>> ws_;      // per part
  std::vector<double> part_loss_;        // per part
  std::vector<char> range_finite_;       // per range of theta: its summed gradient is finite
  Vec good_;                             // [num_params] the last good parameters
  double first_loss_;                    // loss of step 1
  Diverged diverged_;                    // the divergence, once there was one
};

extern template class VaeTrainer<float>;
extern template class VaeTrainer<double>;

}  // namespace varinf

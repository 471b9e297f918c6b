// Variational auto-encoder (Kingma & Welling 2013) and the importance-weighted bound
// (Burda, Grosse & Salakhutdinov 2015), docs/math.md section 8, with hand-written backprop.
//
// Networks are MLPs of Dense layers y = act(x W^T + b), W [out, in] and b [out] stored like
// torch.nn.Linear, one after the other in a flat parameter vector theta:
//   encoder: D -> hidden... -> 2J (the first J outputs are mu, the last J log variances)
//   decoder: J -> hidden... -> D (Bernoulli logits, or Gaussian means)
//   then, for a Gaussian likelihood with a learned variance, the per-pixel log variance [D].
// The last layer of each network is linear.
//
// Samples: a batch of B data with K samples each is laid out datum-major: row r = i K + k of
// eps, z and the decoder output belongs to datum i, sample k.
//
// Random numbers (training noise, shuffling, evaluation eps, initial weights) come from
// varinf::Rng: xoshiro256++ (Blackman & Vigna 2019) seeded through splitmix64, uniforms from
// the top 53 bits, normals by Marsaglia's polar method (both values of a pair used), shuffling
// by Fisher-Yates with Lemire's nearly-divisionless bounded integers. All of it is written
// here (not std::normal_distribution / std::shuffle, whose output the C++ standard leaves to
// the library), so a seed gives the same numbers everywhere up to the last bit of libm's log.
//
// Threads: the VAE code decides its own parallelism (data-parallel over the rows of a batch,
// or over blocks of data in evaluation) and keeps Eigen's GEMMs single-threaded inside.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <utility>
#include <vector>

#include "varinf/optim.hpp"
#include "varinf/types.hpp"

namespace varinf {

class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();
  double uniform();                      // [0, 1)
  double normal();                       // N(0, 1)
  std::uint64_t below(std::uint64_t n);  // uniform on {0, ..., n - 1}

 private:
  std::uint64_t s_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// A seed for stream `index` derived from `seed` (splitmix64 of both).
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t index);

enum class Activation { kRelu, kTanh, kSoftplus };
enum class Likelihood { kBernoulli, kGaussian };
enum class Objective { kElbo, kIwae };

struct VaeConfig {
  Index input_dim = 0;
  Index latent_dim = 0;
  std::vector<Index> encoder_hidden;
  std::vector<Index> decoder_hidden;
  Activation activation = Activation::kRelu;
  Likelihood likelihood = Likelihood::kBernoulli;
  bool learn_obs_logvar = false;  // Gaussian: learn a per-pixel log variance
  double obs_logvar = 0.0;        // Gaussian: the fixed log variance, or the initial learned one
};

// A Dense layer inside theta: W [out, in] row-major at offset w, b [out] at offset b.
struct Dense {
  Index in, out, w, b;
};

// Scratch of one batch slice (resized on demand, reused across steps; one per trainer part
// or per evaluation thread).
template <typename T>
struct VaeWorkspace {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  std::vector<Mat> enc;  // encoder layer outputs; enc.back() [B, 2J]
  std::vector<Mat> dec;  // decoder layer outputs; dec.back() [B K, D]
  Mat z;                 // [B K, J]
  Mat delta[2];          // backprop ping-pong buffers
  Mat dz;                // [B K, J]
  Mat dhead;             // [B, 2J]
  Mat x;                 // [B, D] gathered minibatch (trainer)
  Mat eps;               // [B K, J] noise (evaluation)
  Vec ll;                // [B K] log p(x | z) per row
  Vec c;                 // [B K] d loss / d log-likelihood per row
};

template <typename T>
class Vae {
 public:
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
  using MatIn = Eigen::Ref<const Mat>;
  using MatMut = Eigen::Ref<Mat>;
  using VecMut = Eigen::Ref<Vec>;

  // Networks of more parameters are refused (InvalidArgument) before anything is allocated:
  // 2^31 parameters are 8 GiB of float32 weights, and training holds several such vectors.
  static constexpr Index kMaxParams = Index(1) << 31;

  explicit Vae(VaeConfig config);

  const VaeConfig& config() const { return config_; }
  const std::vector<Dense>& encoder() const { return encoder_; }
  const std::vector<Dense>& decoder() const { return decoder_; }
  Index obs_logvar_offset() const { return obs_logvar_offset_; }  // -1 when fixed
  Index num_params() const { return num_params_; }
  Vec& theta() { return theta_; }
  const Vec& theta() const { return theta_; }

  // torch.nn.Linear's default: W and b ~ U(-1/sqrt(in), 1/sqrt(in)); learned log variance
  // set to config().obs_logvar.
  void initialize(std::uint64_t seed);

  // The minibatch objective with the noise given. X [B, D], eps [B K, J].
  // Per datum L_i: ELBO  (1/K) sum_k log p(x_i | z_ik) - beta KL(q(z | x_i) || N(0, I)),
  //                IWAE  log (1/K) sum_k w_ik, log w = log p(x | z) + beta (log p(z) - log q(z | x)).
  // Returns sum_i weight * (-L_i) and writes grad = its gradient [num_params] (overwritten),
  // and values[i] = L_i [B] when values is not null. Single-threaded.
  T loss_grad(const MatIn& X, const MatIn& eps, Index k, T beta, Objective objective, T weight,
              T* grad, T* values, VaeWorkspace<T>& ws) const;

  // mu, logvar [n, J] of q(z | x) for X [n, D].
  void encode(const MatIn& X, MatMut mu, MatMut logvar) const;
  // Decoder output for Z [n, J] into out [n, D]: logits or means (link = false), or
  // probabilities or means (link = true).
  void decode(const MatIn& Z, MatMut out, bool link) const;
  // Per-datum bound [n] with k samples each, beta = 1: the ELBO (analytic KL, k-sample
  // reconstruction term) or IWAE_k. Datum i's noise comes from stream derive_seed(seed, i), so
  // the result does not depend on the thread count.
  void bound(const MatIn& X, Index k, Objective objective, std::uint64_t seed, VecMut out) const;

 private:
  void forward_mlp(const std::vector<Dense>& net, const MatIn& input, std::vector<Mat>& acts) const;
  void backward_mlp(const std::vector<Dense>& net, const MatIn& input, std::vector<Mat>& acts,
                    Mat& dout, T* grad, Mat* dinput, Mat (&buf)[2]) const;
  // ws.ll[r] = log p(x_{r / k} | out_r); with grad_out, out is overwritten with
  // d log p / d out (unscaled), and the learned log variance's per-row terms are left for later.
  void log_likelihood(const MatIn& X, Index k, Mat& out, Vec& ll, bool grad_out) const;
  // Per-datum L_i (into values when given) from the rows' log-likelihoods, plus the row
  // weights c_r = dL_i / d ll_r (when c is given); returns sum_i L_i.
  double combine(Index k, T beta, Objective objective, const MatIn& head, const MatIn& eps,
                 const MatIn& z, const Vec& ll, T* values, Vec* c) const;

  VaeConfig config_;
  std::vector<Dense> encoder_, decoder_;
  Index obs_logvar_offset_ = -1;
  Index num_params_ = 0;
  Vec theta_;
};

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

extern template class Vae<float>;
extern template class Vae<double>;
extern template class VaeTrainer<float>;
extern template class VaeTrainer<double>;

}  // namespace varinf

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
// Random numbers (initial weights, evaluation noise; the trainer's noise and shuffling) come
// from varinf::Rng (random.hpp), varinf's own generator, so a seed gives the same numbers
// with every standard library.
//
// Threads: the VAE code decides its own parallelism (data-parallel over the rows of a batch,
// or over blocks of data in evaluation) and keeps Eigen's GEMMs single-threaded inside.
//
// Files: this header and vae.cpp hold the model (the MLPs and the objectives); the training
// loop is vae_trainer.hpp / vae_trainer.cpp, the activations vae_activations.hpp, the
// trainer's spin-wait work sharing phase_queue.hpp, random numbers random.hpp.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "varinf/types.hpp"

namespace varinf {

enum class Activation { kRelu, kTanh, kSoftplus };
// The decoder's observation model p(x | z) (docs/math.md section 8.3). Not a Likelihood
// (likelihoods.hpp): those are the GP models' likelihoods of a latent f.
enum class ObservationModel { kBernoulli, kGaussian };
enum class Objective { kElbo, kIwae };

struct VaeConfig {
  Index input_dim = 0;
  Index latent_dim = 0;
  std::vector<Index> encoder_hidden;
  std::vector<Index> decoder_hidden;
  Activation activation = Activation::kRelu;
  ObservationModel observation = ObservationModel::kBernoulli;
  bool learn_obs_logvar = false;  // Gaussian: learn a per-pixel log variance
  double obs_logvar = 0.0;        // Gaussian: the fixed log variance, or the initial learned one
};

// A Dense layer inside theta: W [out, in] row-major at offset w, b [out] at offset b.
struct Dense {
  Index in, out, w, b;
};

// Multiply-adds per input row of a network: sum over layers of in * out (docs/math.md
// section 9.6); the thread counts of evaluation and training are chosen from it.
Index macs_per_row(const std::vector<Dense>& net);

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

extern template class Vae<float>;
extern template class Vae<double>;

}  // namespace varinf

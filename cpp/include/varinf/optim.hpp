// Adam over a flat parameter vector, with PyTorch's update rule (torch.optim.Adam, the
// single-tensor path of torch 2.x; Kingma & Ba 2015, Algorithm 1 with the bias corrections
// folded into the step size and the denominator):
//   t += 1
//   m = m + (1 - beta1) (g - m)                  (exp_avg.lerp_(grad, 1 - beta1))
//   v = beta2 v + (1 - beta2) g^2
//   theta -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// Generic on purpose (any model that owns one flat theta can use it). The update of a step
// is split into coefficients (once per step) and update(lo, hi) on a range, so that threads
// can update disjoint ranges of theta in parallel; step() is the serial convenience.
#pragma once

#include <Eigen/Core>

#include "varinf/types.hpp"

namespace varinf {

struct AdamOptions {
  double learning_rate = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

template <typename T>
class Adam {
 public:
  using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;

  // Scalars of step t (1-based) shared by every range of that step.
  struct Step {
    T step_size;       // lr / (1 - beta1^t)
    T bias2_sqrt;  // sqrt(1 - beta2^t)
  };

  Adam(Index num_params, AdamOptions options);

  Step coefficients(long t) const;
  // Update theta[lo, hi) with grad[lo, hi) using step coefficients c (m and v likewise).
  void update(const Step& c, T* theta, const T* grad, Index lo, Index hi);
  // One whole serial step: t += 1 and update every entry. theta, grad: [num_params].
  void step(T* theta, const T* grad);

  long t() const { return t_; }
  void set_t(long t) { t_ = t; }
  const AdamOptions& options() const { return options_; }
  Index size() const { return m_.size(); }

 private:
  AdamOptions options_;
  Vec m_;  // [num_params] first moment
  Vec v_;  // [num_params] second moment
  long t_ = 0;
};

extern template class Adam<float>;
extern template class Adam<double>;

}  // namespace varinf

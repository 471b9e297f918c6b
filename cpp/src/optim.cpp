#include "varinf/optim.hpp"

#include <cmath>

#include "varinf/errors.hpp"

namespace varinf {

template <typename T>
Adam<T>::Adam(Index num_params, AdamOptions options)
    : options_(options), m_(Vec::Zero(num_params)), v_(Vec::Zero(num_params)) {
  if (!(options.learning_rate > 0.0)) throw InvalidArgument("learning_rate must be > 0");
  if (!(options.beta1 >= 0.0 && options.beta1 < 1.0)) throw InvalidArgument("beta1 must be in [0, 1)");
  if (!(options.beta2 >= 0.0 && options.beta2 < 1.0)) throw InvalidArgument("beta2 must be in [0, 1)");
  if (!(options.eps >= 0.0)) throw InvalidArgument("eps must be >= 0");
}

// Bias corrections in double, as PyTorch computes them in Python floats.
template <typename T>
typename Adam<T>::Step Adam<T>::coefficients(long t) const {
  const double bc1 = 1.0 - std::pow(options_.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(options_.beta2, static_cast<double>(t));
  return {static_cast<T>(options_.learning_rate / bc1), static_cast<T>(std::sqrt(bc2))};
}

template <typename T>
void Adam<T>::update(const Step& c, T* theta, const T* grad, Index lo, Index hi) {
  const T b1c = static_cast<T>(1.0 - options_.beta1);
  const T b2 = static_cast<T>(options_.beta2);
  const T b2c = static_cast<T>(1.0 - options_.beta2);
  const T eps = static_cast<T>(options_.eps);
  T* m = m_.data();
  T* v = v_.data();
#pragma omp simd
  for (Index i = lo; i < hi; ++i) {
    const T g = grad[i];
    m[i] += b1c * (g - m[i]);
    v[i] = b2 * v[i] + b2c * g * g;
    theta[i] -= c.step_size * (m[i] / (std::sqrt(v[i]) / c.bias2_sqrt + eps));
  }
}

template <typename T>
void Adam<T>::step(T* theta, const T* grad) {
  ++t_;
  update(coefficients(t_), theta, grad, 0, m_.size());
}

template class Adam<float>;
template class Adam<double>;

}  // namespace varinf

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

// Written as Eigen array expressions so that sqrt and the division vectorise (a scalar loop
// with std::sqrt does not, because of errno).
template <typename T>
void Adam<T>::update(const Step& c, T* theta, const T* grad, Index lo, Index hi) {
  using Arr = Eigen::Array<T, Eigen::Dynamic, 1>;
  const Index n = hi - lo;
  Eigen::Map<const Arr> g(grad + lo, n);  // [n]
  Eigen::Map<Arr> th(theta + lo, n);      // [n]
  auto m = m_.segment(lo, n).array();
  auto v = v_.segment(lo, n).array();
  m += static_cast<T>(1.0 - options_.beta1) * (g - m);
  v = static_cast<T>(options_.beta2) * v + static_cast<T>(1.0 - options_.beta2) * g.square();
  th -= c.step_size * (m / (v.sqrt() / c.bias2_sqrt + static_cast<T>(options_.eps)));
}

template <typename T>
void Adam<T>::step(T* theta, const T* grad) {
  ++t_;
  update(coefficients(t_), theta, grad, 0, m_.size());
}

template class Adam<float>;
template class Adam<double>;

}  // namespace varinf

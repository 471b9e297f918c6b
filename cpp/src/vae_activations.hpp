// Hidden-layer activations of the VAE's MLPs and their reverse mode, in place on a layer's
// output (docs/math.md sections 8.1 and 8.5). Private to the core (vae.cpp).
#pragma once

#include "varinf/types.hpp"
#include "varinf/vae.hpp"

namespace varinf::detail {

// Z [N, out] <- act(Z).
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

// delta [N, out] *= act'(z), written with the activation's output A = act(z) [N, out]:
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

}  // namespace varinf::detail

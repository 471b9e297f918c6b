// Covariance functions k(x, x') and their fused gradient contractions (docs/math.md section 1).
//
// A Kernel is an immutable description (type, number of lengthscales, active dimensions,
// children); its parameter values are passed in on every call as a flat array `theta` of
// constrained values, in the order the kernel lists them. So one Kernel object can be used by
// many threads at once, and a model's optimiser owns the only copy of the parameters.
//
// The gradient contractions never form dK/dtheta [n1, n2, p]: given Kbar = dL/dK [n1, n2]
// they accumulate dL/dtheta_p = sum_ij Kbar_ij dK_ij/dtheta_p and dL/dX1 in one pass over
// blocks of rows i, keeping O(rows (n2 + d)) memory per thread.
#pragma once

#include <memory>
#include <vector>

#include "varinf/types.hpp"

namespace varinf {

class Kernel {
 public:
  virtual ~Kernel() = default;

  // Number of scalars in theta for this kernel (children included).
  virtual Index num_params() const = 0;

  // out = K(X1, X2)  [n1, n2]. X1 [n1, d], X2 [n2, d].
  virtual void K(const double* theta, MatRef X1, MatRef X2, MatOut out) const = 0;
  // out = K(X, X)  [n, n], the symmetric training covariance: the only place White noise
  // appears (docs/math.md section 1.3: White is zero on cross-covariances).
  virtual void K_sym(const double* theta, MatRef X, MatOut out) const;
  // out = diag K(X, X)  [n] (White included).
  virtual void K_diag(const double* theta, MatRef X, VecOut out) const = 0;

  // dtheta[p] += sum_ij Kbar_ij dK(X1, X2)_ij / dtheta_p; and when dX1 has rows,
  // dX1 += dL/dX1 [n1, d]. Kbar [n1, n2].
  virtual void grad(const double* theta, MatRef X1, MatRef X2, MatRef Kbar, double* dtheta,
                    MatOut dX1) const = 0;
  // The same for K_sym(X) with a symmetric Kbar [n, n]; dX (when it has rows) gets the total
  // derivative through both arguments of k.
  virtual void grad_sym(const double* theta, MatRef X, MatRef Kbar, double* dtheta,
                        MatOut dX) const;
  // The same for K_diag(X) with kbar = dL/d diag K [n].
  virtual void grad_diag(const double* theta, MatRef X, VecRef kbar, double* dtheta,
                         MatOut dX) const = 0;
};

using KernelPtr = std::shared_ptr<Kernel>;  // shared, never mutated after construction

// An empty matrix to pass as dX1/dX when the input gradient is not wanted.
MatOut no_input_grad();

// Stationary kernels, k = variance * f(r2) with r2 = sum_k (x_k - x'_k)^2 / l_k^2.
// theta = [variance, lengthscales (num_lengthscales: 1 = isotropic, d = ARD), extra...].
KernelPtr make_squared_exponential(Index num_lengthscales);
KernelPtr make_matern12(Index num_lengthscales);
KernelPtr make_matern32(Index num_lengthscales);
KernelPtr make_matern52(Index num_lengthscales);
KernelPtr make_rational_quadratic(Index num_lengthscales);  // extra: alpha
// theta = [variance, lengthscales (1 or d), period].
KernelPtr make_periodic(Index num_lengthscales);
// k = sum_k s2_k x_k x'_k; theta = [variances (1 = shared, or d)].
KernelPtr make_linear(Index num_variances);
// theta = [variance].
KernelPtr make_constant();
KernelPtr make_white();
// theta = [theta of each child, in order].
KernelPtr make_sum(std::vector<KernelPtr> children);
KernelPtr make_product(std::vector<KernelPtr> children);
// The child sees only the columns `dims` of X (dX is scattered back into those columns).
KernelPtr make_active_dims(KernelPtr child, std::vector<Index> dims);

}  // namespace varinf

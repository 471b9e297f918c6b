// Common Eigen aliases. Data matrices are row-major ([n, d] C-contiguous, like numpy) so that
// arrays from Python reach C++ without a copy.
#pragma once

#include <Eigen/Core>
#include <cstdint>

namespace varinf {

using Index = Eigen::Index;
using RowMatrixXd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowMatrixXf = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Eigen::MatrixXd;  // column-major: factorisations work in place on F-ordered buffers
using Eigen::VectorXd;

// Read-only views of caller-owned data (no copy when the layout matches).
using MatRef = Eigen::Ref<const RowMatrixXd>;
using VecRef = Eigen::Ref<const VectorXd>;
// Writable views of caller-owned outputs.
using MatOut = Eigen::Ref<RowMatrixXd>;
using VecOut = Eigen::Ref<VectorXd>;

}  // namespace varinf

// A pointwise likelihood on P independent columns (docs/math.md section 11.2).
#include "varinf/latent_likelihoods.hpp"

#include "varinf/errors.hpp"

namespace varinf {

namespace {

// Column p reads f_p and y_p with the parameters at theta + p * stride (stride = q per column,
// 0 shared). One column is exactly the pointwise likelihood, to the bit.
class Columns final : public LatentLikelihood {
 public:
  Columns(LikelihoodPtr pointwise, Index P, bool per_column)
      : f_(std::move(pointwise)), P_(P), stride_(per_column ? f_->num_params() : 0) {}

  Index num_params() const override { return stride_ ? P_ * stride_ : f_->num_params(); }
  Index num_latent() const override { return P_; }
  Index num_targets() const override { return P_; }
  Index num_predictive() const override { return P_; }

  double variational_expectations(const double* theta, Index, MatRef Y, ColMatRef mu, ColMatRef var,
                                  ColMatOut dmu, ColMatOut dvar, double* dtheta) const override {
    double total = 0.0;
    for (Index p = 0; p < P_; ++p)
      total += f_->variational_expectations(theta + p * stride_, Y.col(p), mu.col(p), var.col(p), dmu.col(p),
                                            dvar.col(p), dtheta + p * stride_);
    return total;
  }

  void predict_mean_and_var(const double* theta, ColMatRef mu, ColMatRef var, MatOut ymean,
                            MatOut yvar) const override {
    VectorXd m(mu.rows()), v(mu.rows());  // [k] (the outputs are row-major)
    for (Index p = 0; p < P_; ++p) {
      f_->predict_mean_and_var(theta + p * stride_, mu.col(p), var.col(p), m, v);
      ymean.col(p) = m;
      yvar.col(p) = v;
    }
  }

  // log p(y_i) = sum_p log p(y_ip): the columns are independent given f and under q.
  void predict_log_density(const double* theta, MatRef Y, ColMatRef mu, ColMatRef var,
                           VecOut out) const override {
    VectorXd lp(mu.rows());  // [k]
    out.setZero();
    for (Index p = 0; p < P_; ++p) {
      f_->predict_log_density(theta + p * stride_, Y.col(p), mu.col(p), var.col(p), lp);
      out += lp;
    }
  }

 private:
  LikelihoodPtr f_;
  Index P_, stride_;
};

}  // namespace

LatentLikelihoodPtr make_columns(LikelihoodPtr pointwise, Index P, bool per_column) {
  if (P < 1) throw InvalidArgument("a likelihood needs at least one column");
  return std::make_shared<Columns>(std::move(pointwise), P, per_column);
}

}  // namespace varinf

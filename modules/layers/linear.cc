#include "modules/layers/linear.h"

#include <algorithm>

#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "modules/layers/common.h"

namespace loom::nn {
namespace {

// True when `axes` are the last axes of an ndim-dimensional input, in order.
bool is_trailing(const Axes& axes, int64_t ndim) {
  for (size_t i = 0; i < axes.size(); ++i)
    if (axes[i] != ndim - int64_t(axes.size()) + int64_t(i)) return false;
  return true;
}

}  // namespace

Tensor Dense::call(const Tensor& x) const { return call(x, Tensor()); }

Tensor Dense::call(const Tensor& x, const Tensor& residual) const {
  LOOM_CHECK(features > 0, ValueError, "Dense at ", path_text(),
             ": features must be positive, got ", features);
  LOOM_CHECK(x.ndim() >= 1, ShapeError, "Dense at ", path_text(),
             ": input must have at least one axis, got shape ", shape_str(x.shape()));
  Tensor kernel = param("kernel", kernel_init, {x.dim(-1), features}, param_dtype);
  Tensor bias = use_bias ? param("bias", bias_init, {features}, param_dtype) : Tensor();
  auto p = detail::promote_dtype({x, kernel, bias}, dtype);
  if (residual.defined() && activation == DenseActivation::None)
    return matmul_bias_add(p[0], p[1], use_bias ? p[2] : Tensor(), residual);
  // The bias and activation in the GEMM's epilogue on CUDA (a pass less over the output for
  // each); the CPU adds and activates after the product.
  Tensor y;
  if (use_bias) {
    const Epilogue ep = activation == DenseActivation::Relu   ? Epilogue::BiasRelu
                        : activation == DenseActivation::Gelu ? Epilogue::BiasGelu
                                                              : Epilogue::Bias;
    y = matmul_bias_act(p[0], p[1], p[2], ep);
  } else {
    y = matmul(p[0], p[1]);
    if (activation == DenseActivation::Relu) y = relu(y);
    if (activation == DenseActivation::Gelu) y = gelu(y);
  }
  return residual.defined() ? residual + y : y;
}

Tensor DenseGeneral::call(const Tensor& x) const { return call(x, Tensor()); }

Tensor DenseGeneral::call(const Tensor& x, const Tensor& residual) const {
  const std::string where = "DenseGeneral at " + path_text();
  LOOM_CHECK(!features.empty(), ValueError, where, ": features must not be empty");
  for (int64_t b = 0; b < int64_t(batch_dims.size()); ++b)
    LOOM_CHECK(std::count(batch_dims.begin(), batch_dims.end(), b) == 1, ValueError, where,
               ": batch_dims ", shape_str(batch_dims),
               " must be consecutive leading dimensions starting from 0");
  int64_t ndim = x.ndim();
  Axes ax = detail::canonical_axes(axis, ndim, where);
  Axes bd = detail::canonical_axes(batch_dims, ndim, where);
  int64_t n_batch = int64_t(bd.size()), n_axis = int64_t(ax.size());
  int64_t n_features = int64_t(features.size());

  Shape batch_shape, kernel_shape, expanded_batch_shape;
  for (int64_t b : bd) batch_shape.push_back(x.dim(b));
  for (int64_t d = 0; d < ndim; ++d) {
    if (std::find(ax.begin(), ax.end(), d) != ax.end()) continue;
    bool is_batch = std::find(bd.begin(), bd.end(), d) != bd.end();
    expanded_batch_shape.push_back(is_batch ? x.dim(d) : 1);
  }
  kernel_shape = batch_shape;
  for (int64_t a : ax) kernel_shape.push_back(x.dim(a));
  for (int64_t f : features) kernel_shape.push_back(f);

  Initializer kinit = kernel_init;
  Initializer kernel_wrap = [kinit, n_batch, n_axis, n_features](random::Key key, const Shape& s,
                                                                   DType dt) {
    int64_t rows = 1, cols = 1;
    for (int64_t i = 0; i < n_batch + n_axis; ++i) rows *= s[size_t(i)];
    for (int64_t i = int64_t(s.size()) - n_features; i < int64_t(s.size()); ++i)
      cols *= s[size_t(i)];
    return kinit(key, {rows, cols}, dt).reshape(s);
  };
  Tensor kernel = param("kernel", kernel_wrap, kernel_shape, param_dtype);
  Tensor bias;
  if (use_bias) {
    Initializer binit = bias_init;
    Initializer bias_wrap = [binit](random::Key key, const Shape& s, DType dt) {
      return binit(key, {shape_numel(s)}, dt).reshape(s);
    };
    Shape bias_shape = batch_shape;
    for (int64_t f : features) bias_shape.push_back(f);
    bias = param("bias", bias_wrap, bias_shape, param_dtype);
  }
  auto p = detail::promote_dtype({x, kernel, bias}, dtype);
  if (n_batch == 0 && is_trailing(ax, ndim)) {
    // x [..., in...] @ kernel [in..., features...]: a Dense over the flattened axes, so the bias
    // goes into the GEMM's epilogue as in Dense.
    int64_t k = 1, n = 1;
    for (int64_t a : ax) k *= x.dim(a);
    for (int64_t f : features) n *= f;
    Shape lead(x.shape().begin(), x.shape().end() - n_axis), out_shape = lead;
    for (int64_t f : features) out_shape.push_back(f);
    lead.push_back(k);
    Tensor x2 = p[0].reshape(lead), w2 = p[1].reshape({k, n});
    Tensor b2 = use_bias ? p[2].reshape({n}) : Tensor();
    if (residual.defined() && residual.shape() == out_shape) {
      Shape flat(lead.begin(), lead.end() - 1);
      flat.push_back(n);
      return matmul_bias_add(x2, w2, b2, residual.reshape(flat)).reshape(out_shape);
    }
    Tensor y = use_bias ? matmul_bias_act(x2, w2, b2, Epilogue::Bias) : matmul(x2, w2);
    y = y.reshape(out_shape);
    return residual.defined() ? residual + y : y;
  }
  DotDims dims;
  dims.lhs_contracting = ax;
  for (int64_t i = 0; i < n_axis; ++i) dims.rhs_contracting.push_back(n_batch + i);
  dims.lhs_batch = bd;
  for (int64_t i = 0; i < n_batch; ++i) dims.rhs_batch.push_back(i);
  Tensor y = dot_general(p[0], p[1], dims);
  if (use_bias) {
    Shape b_shape = expanded_batch_shape;
    for (int64_t f : features) b_shape.push_back(f);
    y = y + p[2].reshape(b_shape);
  }
  return residual.defined() ? residual + y : y;
}

}  // namespace loom::nn

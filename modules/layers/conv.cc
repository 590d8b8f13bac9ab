#include "modules/layers/conv.h"

#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "modules/layers/common.h"

namespace loom::nn {
namespace {

/// Flax flattens every leading batch dim into one (and adds one when there is none).
struct BatchFlattener {
  Shape batch_shape;
  bool reshaped = false;

  Tensor flatten(const Tensor& x, size_t n_spatial, const std::string& where) {
    int64_t n_batch = x.ndim() - int64_t(n_spatial) - 1;
    LOOM_CHECK(n_batch >= 0, ShapeError, where, ": input of shape ", shape_str(x.shape()),
               " has fewer than the ", n_spatial + 1,
               " axes (spatial..., features) its kernel_size needs");
    if (n_batch == 1) return x;
    reshaped = true;
    batch_shape.assign(x.shape().begin(), x.shape().begin() + n_batch);
    Shape flat{-1};
    flat.insert(flat.end(), x.shape().begin() + n_batch, x.shape().end());
    return x.reshape(flat);
  }
  Tensor restore(const Tensor& y) const {
    if (!reshaped) return y;
    Shape out = batch_shape;
    out.insert(out.end(), y.shape().begin() + 1, y.shape().end());
    return y.reshape(out);
  }
};

Shape broadcast_window(const Shape& v, size_t n, const char* what, const std::string& where) {
  if (v.empty()) return Shape(n, 1);
  if (v.size() == 1 && n > 1) return Shape(n, v[0]);
  LOOM_CHECK(v.size() == n, ShapeError, where, ": ", what, " ", shape_str(v),
             " needs one entry per spatial dim (", n, ")");
  return v;
}

}  // namespace

Tensor Conv::call(const Tensor& input) const {
  const std::string where = "Conv at " + path_text();
  LOOM_CHECK(features > 0 && !kernel_size.empty(), ValueError, where,
             ": features (", features, ") must be positive and kernel_size (",
             shape_str(kernel_size), ") non-empty");
  size_t n = kernel_size.size();
  BatchFlattener batch;
  Tensor x = batch.flatten(input, n, where);
  int64_t in_features = x.dim(-1);
  LOOM_CHECK(in_features % feature_group_count == 0 && features % feature_group_count == 0,
             ValueError, where, ": input features ", in_features, " and features ", features,
             " must be divisible by feature_group_count ", feature_group_count);
  Shape kernel_shape = kernel_size;
  kernel_shape.push_back(in_features / feature_group_count);
  kernel_shape.push_back(features);
  Tensor kernel = param("kernel", kernel_init, kernel_shape, param_dtype);
  Tensor bias = use_bias ? param("bias", bias_init, {features}, param_dtype) : Tensor();
  auto p = detail::promote_dtype({x, kernel, bias}, dtype);
  ConvOptions opt;
  opt.strides = broadcast_window(strides, n, "strides", where);
  opt.padding = padding;
  opt.input_dilation = broadcast_window(input_dilation, n, "input_dilation", where);
  opt.kernel_dilation = broadcast_window(kernel_dilation, n, "kernel_dilation", where);
  opt.feature_group_count = feature_group_count;
  Tensor y = use_bias ? conv_bias(p[0], p[1], p[2], opt) : conv(p[0], p[1], opt);
  return batch.restore(y);
}

Tensor ConvTranspose::call(const Tensor& input) const {
  const std::string where = "ConvTranspose at " + path_text();
  LOOM_CHECK(features > 0 && !kernel_size.empty(), ValueError, where,
             ": features (", features, ") must be positive and kernel_size (",
             shape_str(kernel_size), ") non-empty");
  size_t n = kernel_size.size();
  BatchFlattener batch;
  Tensor x = batch.flatten(input, n, where);
  int64_t in_features = x.dim(-1);
  Shape kernel_shape = kernel_size;
  kernel_shape.push_back(transpose_kernel ? features : in_features);
  kernel_shape.push_back(transpose_kernel ? in_features : features);
  Tensor kernel = param("kernel", kernel_init, kernel_shape, param_dtype);
  Tensor bias = use_bias ? param("bias", bias_init, {features}, param_dtype) : Tensor();
  auto p = detail::promote_dtype({x, kernel, bias}, dtype);
  ConvTransposeOptions opt;
  opt.strides = broadcast_window(strides, n, "strides", where);
  bool circular = padding.kind == Padding::Circular;
  opt.padding = circular ? Padding::valid() : padding;
  opt.kernel_dilation = broadcast_window(kernel_dilation, n, "kernel_dilation", where);
  opt.transpose_kernel = transpose_kernel;
  Tensor y = conv_transpose(p[0], p[1], opt);
  if (circular) {
    // Flax: pad the VALID output up to a multiple of in * stride, then fold it periodically.
    std::vector<std::pair<int64_t, int64_t>> pads{{0, 0}};
    Shape scaled;
    for (size_t i = 0; i < n; ++i) {
      int64_t xd = p[0].dim(int64_t(i) + 1) * opt.strides[i], yd = y.dim(int64_t(i) + 1);
      int64_t diff = ((-(yd - xd)) % (2 * xd) + 2 * xd) % (2 * xd);
      scaled.push_back(xd);
      pads.push_back(transpose_kernel ? std::pair{diff / 2, (diff + 1) / 2}
                                      : std::pair{(diff + 1) / 2, diff / 2});
    }
    pads.push_back({0, 0});
    y = pad(y, pads);
    for (int64_t i = 1; i < y.ndim() - 1; ++i) {
      Shape s(y.shape().begin(), y.shape().begin() + i);
      s.push_back(-1);
      s.push_back(scaled[size_t(i - 1)]);
      s.insert(s.end(), y.shape().begin() + i + 1, y.shape().end());
      y = sum(y.reshape(s), {i});
    }
  }
  if (use_bias) y = y + p[2];
  return batch.restore(y);
}

}  // namespace loom::nn

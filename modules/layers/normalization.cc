#include "modules/layers/normalization.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "core/ops/elementwise.h"
#include "core/ops/norm.h"
#include "modules/layers/common.h"

namespace loom::nn {
namespace {

std::mutex g_reducers_mutex;
std::map<std::string, AxisReducer>& reducers() {
  static std::map<std::string, AxisReducer> r;
  return r;
}

bool contains(const Axes& axes, int64_t a) { return std::find(axes.begin(), axes.end(), a) != axes.end(); }

/// The shape of x with every non-feature axis set to 1, and the feature sizes alone.
void feature_shapes(const Tensor& x, const Axes& features, Shape& broadcast, Shape& reduced) {
  broadcast.assign(size_t(x.ndim()), 1);
  reduced.clear();
  for (int64_t a : features) {
    broadcast[size_t(a)] = x.dim(a);
    reduced.push_back(x.dim(a));
  }
}

Tensor cast_if(const Tensor& y, const std::optional<DType>& dtype) {
  return dtype && y.dtype() != *dtype ? y.to(*dtype) : y;
}

/// BatchNorm's residual add and relu applied to the norm's output as Flax writes them.
Tensor epilogue(const Tensor& y, const Tensor& residual, bool with_relu) {
  Tensor out = residual.defined() ? residual + y : y;
  return with_relu ? relu(out) : out;
}

}  // namespace

void set_axis_reducer(const std::string& axis_name, AxisReducer reducer) {
  std::lock_guard<std::mutex> lock(g_reducers_mutex);
  if (reducer) reducers()[axis_name] = std::move(reducer);
  else reducers().erase(axis_name);
}

AxisReducer axis_reducer(const std::string& axis_name) {
  std::lock_guard<std::mutex> lock(g_reducers_mutex);
  auto it = reducers().find(axis_name);
  LOOM_CHECK(it != reducers().end(), ValueError, "no axis reducer is registered for axis_name \"",
             axis_name, "\"; register one with nn::set_axis_reducer(\"", axis_name,
             "\", fn) (the data-parallel setup does this for its communicator)");
  return it->second;
}

Tensor BatchNorm::call(const Tensor& x) const { return normalize(x, use_running_average, Tensor(), false); }

Tensor BatchNorm::call(const Tensor& x, bool running) const { return normalize(x, running, Tensor(), false); }

Tensor BatchNorm::call(const Tensor& x, const Tensor& residual, bool relu) const {
  return normalize(x, use_running_average, residual, relu);
}

Tensor BatchNorm::normalize(const Tensor& x, bool running, const Tensor& residual, bool relu) const {
  const std::string where = "BatchNorm at " + path_text();
  Axes features = detail::canonical_axes(axis, x.ndim(), where);
  std::sort(features.begin(), features.end());
  Axes reduce;
  for (int64_t d = 0; d < x.ndim(); ++d)
    if (!contains(features, d)) reduce.push_back(d);
  Shape broadcast, reduced;
  feature_shapes(x, features, broadcast, reduced);
  Device device = x.device();
  Variable ra_mean = variable("batch_stats", "mean", [&] { return zeros(reduced, DType::F32, device); });
  Variable ra_var = variable("batch_stats", "var", [&] { return ones(reduced, DType::F32, device); });
  Tensor scale = use_scale ? param("scale", scale_init, reduced, param_dtype) : Tensor();
  Tensor bias = use_bias ? param("bias", bias_init, reduced, param_dtype) : Tensor();
  bool last_axis_only = features.size() == 1 && features[0] == x.ndim() - 1;
  if (running) {
    Tensor mean = ra_mean.value(), var = ra_var.value();
    if (!last_axis_only) {
      mean = mean.reshape(broadcast);
      var = var.reshape(broadcast);
      if (scale.defined()) scale = scale.reshape(broadcast);
      if (bias.defined()) bias = bias.reshape(broadcast);
    }
    if (residual.defined() && residual.dtype() != x.dtype())
      return epilogue(cast_if(batch_norm_inference(x, mean, var, scale, bias, epsilon), dtype),
                      residual, relu);
    return batch_norm_inference(x, mean, var, scale, bias, epsilon,
                                {.residual = residual, .relu = relu, .dtype = dtype});
  }
  PmeanFn pmean;
  if (axis_name && !is_initializing()) pmean = axis_reducer(*axis_name);
  // Flax casts the norm's output to `dtype`, then adds the residual and applies the activation:
  // the epilogue's order, so the op takes all three (one pass where the kernels allow) unless the
  // residual's dtype differs from x's.
  bool fuse = !residual.defined() || residual.dtype() == x.dtype();
  BatchNormEpilogue after{.dtype = dtype};
  if (fuse) after.residual = residual, after.relu = relu;
  // The running statistics' update rides in the statistics pass where the kernels allow it.
  RunningStats averages;
  if (!is_initializing()) averages = {ra_mean.value(), ra_var.value(), momentum};
  BatchNormResult r = batch_norm_train(x, scale, bias, epsilon, reduce, pmean, after, averages);
  if (!is_initializing()) {
    ra_mean.set_value(r.running_mean.reshape(reduced));
    ra_var.set_value(r.running_var.reshape(reduced));
  }
  return fuse ? r.y : epilogue(r.y, residual, relu);
}

Tensor LayerNorm::call(const Tensor& x) const {
  const std::string where = "LayerNorm at " + path_text();
  Axes red = detail::canonical_axes(reduction_axes, x.ndim(), where);
  Axes feat = detail::canonical_axes(feature_axes, x.ndim(), where);
  std::sort(red.begin(), red.end());
  std::sort(feat.begin(), feat.end());
  Shape broadcast, reduced;
  feature_shapes(x, feat, broadcast, reduced);
  Tensor scale = use_scale ? param("scale", scale_init, reduced, param_dtype) : Tensor();
  Tensor bias = use_bias ? param("bias", bias_init, reduced, param_dtype) : Tensor();
  if (red == feat) return layer_norm(x, scale, bias, epsilon, red, dtype);
  // Different statistics and feature axes: Flax's _compute_stats / _normalize composed.
  Tensor xf = x.dtype() == DType::F64 ? x : x.to(DType::F32);
  Tensor mu = mean(xf, red, true);
  Tensor var = maximum(mean(square(xf), red, true) - square(mu), zeros_like(mu));
  Tensor mul = rsqrt(var + epsilon);
  if (scale.defined()) mul = mul * scale.reshape(broadcast);
  Tensor y = (x - mu) * mul;
  if (bias.defined()) y = y + bias.reshape(broadcast);
  auto p = detail::promote_dtype({x, scale, bias}, dtype);
  return y.to(p[0].dtype());
}

Tensor RMSNorm::call(const Tensor& x) const {
  const std::string where = "RMSNorm at " + path_text();
  Axes red = detail::canonical_axes(reduction_axes, x.ndim(), where);
  Axes feat = detail::canonical_axes(feature_axes, x.ndim(), where);
  std::sort(red.begin(), red.end());
  std::sort(feat.begin(), feat.end());
  Shape broadcast, reduced;
  feature_shapes(x, feat, broadcast, reduced);
  Tensor scale = use_scale ? param("scale", scale_init, reduced, param_dtype) : Tensor();
  if (red == feat) return rms_norm(x, scale, epsilon, red, dtype);
  Tensor xf = x.dtype() == DType::F64 ? x : x.to(DType::F32);
  Tensor mul = rsqrt(mean(square(xf), red, true) + epsilon);
  if (scale.defined()) mul = mul * scale.reshape(broadcast);
  auto p = detail::promote_dtype({x, scale}, dtype);
  return (x * mul).to(p[0].dtype());
}

Tensor GroupNorm::call(const Tensor& x) const {
  const std::string where = "GroupNorm at " + path_text();
  LOOM_CHECK(num_groups.has_value() != group_size.has_value(), ValueError, where,
             ": either num_groups or group_size should be set (to use group_size, also set "
             "num_groups = std::nullopt to override its default of 32)");
  LOOM_CHECK(x.ndim() >= 2, ShapeError, where, ": input must be [batch, ..., channels], got ",
             shape_str(x.shape()));
  int64_t channels = x.dim(-1);
  int64_t groups = num_groups ? *num_groups : 0;
  if (group_size) {
    LOOM_CHECK(*group_size > 0 && channels % *group_size == 0, ValueError, where,
               ": number of channels (", channels, ") is not a multiple of the group size (",
               *group_size, ")");
    groups = channels / *group_size;
  }
  LOOM_CHECK(groups > 0 && channels % groups == 0, ValueError, where, ": number of groups (",
             groups, ") does not divide the number of channels (", channels, ")");
  Tensor scale = use_scale ? param("scale", scale_init, {channels}, param_dtype) : Tensor();
  Tensor bias = use_bias ? param("bias", bias_init, {channels}, param_dtype) : Tensor();
  return cast_if(group_norm(x, groups, scale, bias, epsilon), dtype);
}

}  // namespace loom::nn

// Normalisations as Flax Linen computes them (flax/linen/normalization.py): statistics in
// float32 or better (float64 stays float64), the fast biased variance
// var = max(0, mean(x^2) - mean(x)^2), y = (x - mean) * (rsqrt(var + eps) * scale) + bias, and a
// result dtype promoted from x, scale and bias (Flax with dtype=None). Scale and bias may be
// undefined (Tensor()) for "absent"; their shape is either the sizes of the normalised (feature)
// axes, placed at those axes (Flax's layout; this reading wins when both apply), or any shape
// broadcastable to x.
//
// Fused CPU and CUDA kernels (forward and backward) cover layer/RMS norm over trailing axes and
// batch norm over all but the last axis; other axis sets are composed from loom ops.
//
// Example:
//   Tensor y = layer_norm(x, params["scale"], params["bias"]);           // over the last axis
//   BatchNormResult r = batch_norm_train(x, scale, bias);                // NHWC, stats over NHW
//   ra_mean = running_average(ra_mean, r.mean, 0.99);                    // the running update
//   r = batch_norm_train(x, scale, bias, 1e-5, {}, {}, {}, {ra_mean, ra_var, 0.99});
//   ra_mean = r.running_mean;                                            // the same, in one call
//   Tensor out = batch_norm_train(y, s, b, 1e-5, {}, {}, {.residual = x, .relu = true}).y;
#pragma once
#include <functional>
#include <optional>

#include "core/ops/reduce.h"
#include "core/tensor.h"

namespace loom {

/// flax.linen.LayerNorm with reduction_axes = feature_axes = axes. `dtype`: the result's dtype
/// (Flax's `dtype`; default promoted from x, scale and bias), written by the kernels directly
/// where they can (a bf16 x with float32 parameters gives bf16 without a float32 intermediate).
Tensor layer_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double epsilon = 1e-6,
                  const Axes& axes = {-1}, std::optional<DType> dtype = {});
/// flax.linen.RMSNorm: y = x * rsqrt(mean(x^2) + eps) * scale (`dtype` as layer_norm's).
Tensor rms_norm(const Tensor& x, const Tensor& scale, double epsilon = 1e-6,
                const Axes& axes = {-1}, std::optional<DType> dtype = {});
/// flax.linen.GroupNorm on NHWC (any rank >= 2): channels (last axis) split into num_groups
/// groups; statistics over every non-batch axis within a group; scale/bias of shape [C].
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& scale, const Tensor& bias,
                  double epsilon = 1e-6);

struct BatchNormResult {
  Tensor y;     // normalised with the batch statistics; differentiable through mean and var
  Tensor mean;  // batch mean over reduce_axes (shape of the kept axes, f32 or f64), detached
  Tensor var;   // biased batch variance, for the running average update, detached
  Tensor running_mean, running_var;  // with RunningStats: their updates (running_average's values)
};
/// Flax BatchNorm's running statistics (its batch_stats), which a training call may update as
/// running_average(average, batch statistic, momentum) does, bit for bit. On a GPU, float32
/// statistics without a pmean are updated by the statistics kernel itself; otherwise by
/// running_average after it.
struct RunningStats {
  Tensor mean, var;  // the averages so far, with as many elements as the kept axes
  double momentum = 0.99;
};
/// Cross-replica hook: receives this replica's stacked [mean(x), mean(x^2)] (shape
/// [2, features...]) and `count`, the number of values each statistic averages here (the product
/// of the reduced axes' sizes, e.g. N*H*W), and returns the statistics of all replicas' values
/// together: the mean over replicas weighted by their counts (dist::pmean_weighted), which is the
/// plain mean when every replica holds the same number of examples. Identity when empty. Must be
/// differentiable with loom ops (its backward is the transpose of that weighted mean), and a
/// collective that every replica runs: the fused kernels (channels last) also call it in the
/// backward pass, on the gradient's [mean(g), mean(g * xhat)], where the composed ops' autodiff
/// runs its transpose; either way one exchange each way.
using PmeanFn = std::function<Tensor(const Tensor& stats, int64_t count)>;
/// What follows the norm in ResNet blocks, y = act(cast(bn(x)) + residual): relu(norm(y)) and
/// relu(residual + norm(y)), with the norm's output first cast to `dtype` when one is given
/// (Flax's `dtype`, e.g. bf16 compute with f32 scale and bias). The fused kernels apply it in the
/// normalisation pass and its backward in the norm's backward passes (no separate cast / add /
/// relu kernels); other paths compose the same ops. The sum rounds bn to its output dtype first,
/// as the separate add would.
struct BatchNormEpilogue {
  Tensor residual;  // optional; the shape, dtype and device of x
  bool relu = false;
  std::optional<DType> dtype = {};  // default: promoted from x, scale and bias
};
/// flax.linen.BatchNorm(use_running_average=False): reduce_axes empty = all but the last axis.
/// y = act(cast(bn(x)) + residual) under an epilogue (mean and var are those of x alone).
BatchNormResult batch_norm_train(const Tensor& x, const Tensor& scale, const Tensor& bias,
                                 double epsilon = 1e-5, const Axes& reduce_axes = {},
                                 const PmeanFn& pmean = {},
                                 const BatchNormEpilogue& epilogue = {},
                                 const RunningStats& running = {});
/// flax.linen.BatchNorm(use_running_average=True): mean/var (the running statistics) and
/// scale/bias broadcast against x (shape [C] for channels-last); y = act(cast(bn(x)) + residual)
/// under an epilogue, in one pass where nothing needs a gradient.
Tensor batch_norm_inference(const Tensor& x, const Tensor& mean, const Tensor& var,
                            const Tensor& scale, const Tensor& bias, double epsilon = 1e-5,
                            const BatchNormEpilogue& epilogue = {});

/// Flax BatchNorm's running statistics update, average * momentum + value * (1 - momentum).
/// Float32 operands of one shape on a GPU, without gradient history, take one kernel with the
/// separate ops' roundings; anything else is those ops.
Tensor running_average(const Tensor& average, const Tensor& value, double momentum);
/// The same for several statistics at once (a BatchNorm's mean and var): those on a GPU share
/// one kernel (ResNet-50 updates 106 statistics per step, in 53 kernels).
std::vector<Tensor> running_average(const std::vector<Tensor>& averages,
                                    const std::vector<Tensor>& values, double momentum);

}  // namespace loom

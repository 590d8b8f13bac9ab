// CUDA batch-norm kernels over the columns (channels) of x [m, c]; same contract as the
// channel_* kernels in kernels/cpu/norm.h, launched on `stream`. Column sums go through
// fixed per-block partials added in a fixed order, so results are deterministic.
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

/// Elements of the accumulation type (float, or double for f64) that channel_stats and
/// channel_backward_sums need as `workspace` for x [m, c].
int64_t channel_workspace_size(int64_t m, int64_t c);

/// A BatchNorm's running statistics, updated by channel_stats from the mean and var it computes
/// as running_average would (out = average * momentum + value * one_minus_momentum, each float32
/// operation rounded): the update's own kernel and graph node are gone (53 a ResNet-50 step).
struct RunningStatsUpdate {
  const float* mean;
  const float* var;
  float* new_mean;
  float* new_var;
  float momentum, one_minus_momentum;
};
/// `running` (optional) takes float32 statistics only: x of float32 or a half type.
void channel_stats(const void* x, DType dtype, int64_t m, int64_t c, void* mean, void* var,
                   void* workspace, Stream stream, const RunningStatsUpdate* running = nullptr);
void channel_normalize(const void* x, DType dtype, void* y, DType out_dtype, const void* mean,
                       const void* var, const void* scale, const void* bias,
                       const void* residual, bool relu, int64_t m, int64_t c, double eps,
                       Stream stream);
/// A BatchNorm + ReLU without a residual can leave its output unsaved: the backward passes
/// recompute where the forward's output was positive from x, with the forward's own statistics,
/// parameters (of the statistics type; scale and bias may be null) and eps, in the same rounded
/// operations as channel_normalize, so the mask has its bits. Each pass then reads x and g
/// where it read x, g and the output. Instead of relu_out, never with it.
struct ReluFromInput {
  const void* var;
  const void* scale;
  const void* bias;
  double eps;
};
void channel_backward_sums(const void* x, DType dtype, const void* g, DType out_dtype,
                           const void* mean, const void* rstd, const void* relu_out, int64_t m,
                           int64_t c, void* sum_g, void* sum_gx, void* g_masked, void* workspace,
                           Stream stream, const ReluFromInput* relu_from_x = nullptr);
void channel_backward_dx(const void* x, DType dtype, const void* g, DType out_dtype,
                         const void* mean, const void* rstd, const void* scale,
                         const void* relu_out, const void* sum_g, const void* sum_gx, void* dx,
                         int64_t m, int64_t c, Stream stream,
                         const ReluFromInput* relu_from_x = nullptr);
/// One statistic's running average: out = average * momentum + value * one_minus_momentum.
struct RunningAverageJob {
  const float* average;
  const float* value;
  float* out;
  int64_t n;
};
/// Every job's update, rounded after each of the three float32 operations as the separate
/// elementwise ops would, in one kernel (a BatchNorm's mean and var together).
void running_average(const std::vector<RunningAverageJob>& jobs, float momentum,
                     float one_minus_momentum, Stream stream);

}  // namespace loom::cuda

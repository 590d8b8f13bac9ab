// BatchNorm (training and inference, the fused epilogue, cross-replica statistics) and the
// running averages of its statistics; declared in core/ops/norm.h with the other normalisations.
#include <algorithm>
#include <tuple>

#include "core/autodiff.h"
#include "core/fusions.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/norm_common.h"
#include "core/ops/shape.h"
#include "core/ops/norm.h"
#include "kernels/cpu/norm.h"
#if LOOM_CUDA
#include "kernels/cuda/batch_norm.h"
#endif

namespace loom {
namespace {

using namespace norm_detail;
using Grads = std::vector<Tensor>;

/// An epilogue's residual: x's shape, dtype and device (or undefined).
void check_residual(const Tensor& res, const Tensor& x, const char* op) {
  if (!res.defined()) return;
  LOOM_CHECK(res.shape() == x.shape(), ShapeError, op, ": residual ", describe(res),
             " must have the shape of the input ", describe(x));
  LOOM_CHECK(res.dtype() == x.dtype(), DTypeError, op, ": residual ", describe(res),
             " must have the dtype of the input ", describe(x));
  LOOM_CHECK(res.device() == x.device(), DeviceError, op, ": residual ", describe(res), " is on ",
             res.device().str(), " but the input ", describe(x), " is on ", x.device().str());
}

/// act(cast(y) + residual): an epilogue composed from loom ops.
Tensor compose_epilogue(Tensor y, const BatchNormEpilogue& epi) {
  if (epi.dtype) y = y.to(*epi.dtype);
  if (epi.residual.defined()) y = y + epi.residual;
  return epi.relu ? relu(y) : y;
}

// --- batch norm ------------------------------------------------------------------------------

/// The cross-replica statistics: `pmean` applied to this replica's stacked [a, b] (each of shape
/// `kept`) averaged over `count` values, returned as the pair in dtype `acc` (shapes of a and b).
std::pair<Tensor, Tensor> pmean_pair(const PmeanFn& pmean, const Tensor& a, const Tensor& b,
                                     const Shape& kept, int64_t count, DType acc) {
  Tensor stacked = stack({a.reshape(kept), b.reshape(kept)}, 0);
  Tensor reduced = pmean(stacked, count);
  LOOM_CHECK(reduced.defined() && reduced.shape() == stacked.shape(), ShapeError,
             "batch_norm_train: pmean must return the shape it was given, ",
             shape_str(stacked.shape()), ", got ",
             reduced.defined() ? shape_str(reduced.shape()) : std::string("an undefined tensor"));
  reduced = reduced.to(acc);
  return {slice_axis(reduced, 0, 0, 1).reshape(a.shape()), slice_axis(reduced, 0, 1, 2).reshape(b.shape())};
}

// The running statistics' update that the CUDA statistics kernel can write itself: float32
// averages of c elements on x's device, without gradient history, and no pmean between the
// kernel's statistics and the ones to average. `keep` holds the contiguous averages.
#if LOOM_CUDA
std::optional<cuda::RunningStatsUpdate> running_update_in_kernel(
    const RunningStats& running, const Tensor& x, int64_t c, DType acc, bool pmean,
    BatchNormResult& result, std::vector<Tensor>& keep) {
  auto fits = [&](const Tensor& t) {
    return t.defined() && t.dtype() == DType::F32 && t.numel() == c && t.device() == x.device() &&
           !autograd::needs_grad({&t});
  };
  if (!x.is_cuda() || pmean || acc != DType::F32 || !fits(running.mean) || !fits(running.var) ||
      !fusion_enabled(Fusion::batch_norm_running_stats_in_kernel))
    return std::nullopt;
  Tensor mean = running.mean.contiguous(), var = running.var.contiguous();
  result.running_mean = Tensor::empty(mean.shape(), DType::F32, x.device());
  result.running_var = Tensor::empty(var.shape(), DType::F32, x.device());
  keep = {mean, var};
  // The scalars as the separate ops see them: the double rounded once to float32.
  return cuda::RunningStatsUpdate{mean.data<float>(), var.data<float>(),
                                  result.running_mean.data<float>(), result.running_var.data<float>(),
                                  float(running.momentum), float(1.0 - running.momentum)};
}
#endif

// Batch norm over the channels of x by the fused kernels: the statistics pass, then the
// normalisation pass (with the epilogue); backward the sums pass, then the input gradient.
// With a pmean (synchronised batch norm across data-parallel replicas) the replicas' statistics
// [mean(x), mean(x^2)] are averaged between the two forward passes, as Flax does, and the
// backward averages the gradient's means [mean(g), mean(g * xhat)] between its two passes in
// the same way: the input gradient of a norm over the joint batch. That second pmean is the
// collective that the composed ops' autodiff runs as the transpose of the first, so the replicas
// exchange as much as before, in the same place; the parameter gradients stay local sums.
BatchNormResult batch_norm_fused(const Tensor& x, const Tensor& scale, const Tensor& sv,
                                 const Tensor& bias, const Tensor& bv, double eps, Dtypes dt,
                                 const BatchNormEpilogue& epi, const PmeanFn& pmean,
                                 [[maybe_unused]] const RunningStats& running) {
  const int64_t c = x.shape().back(), m = c == 0 ? 0 : x.numel() / c;
  DType in_dtype = dt.acc == DType::F64 ? DType::F64 : x.dtype();
  Tensor xc = x.detach().to(in_dtype).contiguous();
  Tensor rc = epi.residual.defined() ? epi.residual.detach().to(in_dtype).contiguous() : Tensor();
  Tensor s = flat_acc(sv, dt.acc), b = flat_acc(bv, dt.acc);
  Tensor mu = Tensor::empty({c}, dt.acc, x.device()), var = Tensor::empty({c}, dt.acc, x.device());
  Tensor y = Tensor::empty(x.shape(), dt.out, x.device());
  const bool with_relu = epi.relu;
  const Shape kept = x.ndim() > 0 ? Shape{x.shape().back()} : Shape{};
  BatchNormResult result;
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY({
      Tensor work = Tensor::empty({cuda::channel_workspace_size(m, c)}, dt.acc, x.device());
      std::vector<Tensor> averages;
      const auto update = running_update_in_kernel(running, x, c, dt.acc, bool(pmean), result, averages);
      cuda::channel_stats(xc.raw_data(), in_dtype, m, c, mu.raw_data(), var.raw_data(),
                          work.raw_data(), stream_of(x), update ? &*update : nullptr);
    });
  } else {
    cpu::channel_stats(xc.raw_data(), in_dtype, m, c, mu.raw_data(), var.raw_data());
  }
  if (pmean) {
    // Flax's statistics to average are mean(x) and mean(x^2); var + mean^2 is the latter.
    Tensor ms;
    std::tie(mu, ms) = pmean_pair(pmean, mu, var + square(mu), kept, m, dt.acc);
    var = maximum(ms - square(mu), scalar_like(0, ms)).contiguous();
    mu = mu.contiguous();
  }
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::channel_normalize(xc.raw_data(), in_dtype, y.raw_data(), dt.out,
                                           mu.raw_data(), var.raw_data(), ptr(s), ptr(b), ptr(rc),
                                           with_relu, m, c, eps, stream_of(x)));
  } else {
    cpu::channel_normalize(xc.raw_data(), in_dtype, y.raw_data(), dt.out, mu.raw_data(),
                           var.raw_data(), ptr(s), ptr(b), ptr(rc), with_relu, m, c, eps);
  }
  const Tensor& residual = epi.residual;
  result.y = y, result.mean = mu, result.var = var;
  if (!autograd::needs_grad({&x, &scale, &bias, &residual})) {
    result.y = autograd::checked("batch_norm", std::move(result.y), {&x, &scale, &bias, &residual});
    return result;
  }
  Tensor rstd = rsqrt(var + eps);
  DType x_dtype = x.dtype();
  ParamInfo scale_info(scale), residual_info(residual), bias_info(bias);
  // The ReLU's mask. On the GPU without a residual, the backward passes recompute it from x: the
  // forward's normalisation in the same rounded operations (kernels/cuda/batch_norm.cu
  // bn_output), so no value near zero gets a mask the forward did not apply, and each pass reads
  // x and g where it read x, g and y. Otherwise it comes from the saved output (y > 0 exactly
  // when bn + residual > 0): recomputing with a residual would read the residual instead of y,
  // the same bytes, and the CPU's forward rounds as its compiler chose. Saving y costs no
  // memory: the next conv keeps it alive.
  const bool mask_from_x = with_relu && !residual.defined() && x.is_cuda() &&
                           fusion_enabled(Fusion::batch_norm_relu_mask_from_x);
  Tensor relu_out = with_relu && !mask_from_x ? autograd::saved(y) : Tensor();
  bool want_residual = autograd::needs_grad({&residual});
  result.y = autograd::record("batch_norm", y, {x, scale, bias, residual}, [=](const Tensor& g_in) {
    Tensor g = g_in.to(dt.out).contiguous();
    Tensor sum_g = Tensor::empty({c}, dt.acc, xc.device()), sum_gx = Tensor::empty({c}, dt.acc, xc.device());
    Tensor dx = Tensor::empty(xc.shape(), in_dtype, xc.device());
    // The residual's gradient is the masked g; the sums pass writes it, and the dx pass then
    // reads it in place of g and y (one read fewer).
    Tensor g_masked = want_residual && with_relu ? Tensor::empty(g.shape(), dt.out, g.device()) : Tensor();
    const Tensor& g_dx = g_masked.defined() ? g_masked : g;
    const void* mask_dx = g_masked.defined() ? nullptr : ptr(relu_out);
#if LOOM_CUDA
    const cuda::ReluFromInput relu_from_x{var.raw_data(), ptr(s), ptr(b), eps};
    const cuda::ReluFromInput* mask_x = mask_from_x ? &relu_from_x : nullptr;
#endif
    if (xc.is_cuda()) {
      LOOM_CUDA_ONLY({
        Tensor work = Tensor::empty({cuda::channel_workspace_size(m, c)}, dt.acc, xc.device());
        cuda::channel_backward_sums(xc.raw_data(), in_dtype, g.raw_data(), dt.out, mu.raw_data(),
                                    rstd.raw_data(), ptr(relu_out), m, c, sum_g.raw_data(),
                                    sum_gx.raw_data(), g_masked.defined() ? g_masked.raw_data() : nullptr,
                                    work.raw_data(), stream_of(xc), mask_x);
      });
    } else {
      cpu::channel_backward_sums(xc.raw_data(), in_dtype, g.raw_data(), dt.out, mu.raw_data(),
                                 rstd.raw_data(), ptr(relu_out), m, c, sum_g.raw_data(),
                                 sum_gx.raw_data(), g_masked.defined() ? g_masked.raw_data() : nullptr);
    }
    // The dx pass takes the sums over m rows; across replicas, m times the joint batch's means.
    Tensor dx_sum_g = sum_g, dx_sum_gx = sum_gx;
    if (pmean) {
      const double inv_m = m > 0 ? 1.0 / double(m) : 0.0;
      auto [mean_g, mean_gx] = pmean_pair(pmean, sum_g * inv_m, sum_gx * inv_m, kept, m, dt.acc);
      dx_sum_g = (mean_g * double(m)).contiguous();
      dx_sum_gx = (mean_gx * double(m)).contiguous();
    }
    if (xc.is_cuda()) {
      LOOM_CUDA_ONLY(cuda::channel_backward_dx(xc.raw_data(), in_dtype, g_dx.raw_data(), dt.out,
                                               mu.raw_data(), rstd.raw_data(), ptr(s), mask_dx,
                                               dx_sum_g.raw_data(), dx_sum_gx.raw_data(),
                                               dx.raw_data(), m, c, stream_of(xc), mask_x));
    } else {
      cpu::channel_backward_dx(xc.raw_data(), in_dtype, g_dx.raw_data(), dt.out, mu.raw_data(),
                               rstd.raw_data(), ptr(s), mask_dx, dx_sum_g.raw_data(),
                               dx_sum_gx.raw_data(), dx.raw_data(), m, c);
    }
    Tensor d_residual;
    if (want_residual) d_residual = (with_relu ? g_masked : g).to(residual_info.dtype);
    return Grads{dx.to(x_dtype), param_grad(sum_gx, scale_info), param_grad(sum_g, bias_info),
                 d_residual};
  });
  return result;
}

BatchNormResult batch_norm_composed(const Tensor& x, const Tensor& sv, const Tensor& bv,
                                    double eps, const Axes& axes, const PmeanFn& pmean, Dtypes dt) {
  Tensor xa = x.to(dt.acc);
  Tensor mu = mean(xa, axes, true), ms = mean(square(xa), axes, true);
  Shape kept = reduced_shape(x.shape(), axes, false);
  if (pmean)  // one collective for both statistics, as Flax: [mean(x), mean(x^2)]
    std::tie(mu, ms) = pmean_pair(pmean, mu, ms, kept,
                                  x.numel() / std::max<int64_t>(1, shape_numel(kept)), dt.acc);
  Tensor var = maximum(ms - square(mu), scalar_like(0, ms));
  Tensor mul = rsqrt(var + eps);
  if (sv.defined()) mul = mul * sv.to(dt.acc);
  Tensor y = (xa - mu) * mul;
  if (bv.defined()) y = y + bv.to(dt.acc);
  BatchNormResult r;
  r.y = y.to(dt.out), r.mean = mu.detach().reshape(kept), r.var = var.detach().reshape(kept);
  return r;
}
}  // namespace

BatchNormResult batch_norm_train(const Tensor& x, const Tensor& scale, const Tensor& bias,
                                 double epsilon, const Axes& reduce_axes, const PmeanFn& pmean,
                                 const BatchNormEpilogue& epilogue, const RunningStats& running) {
  const char* op = "batch_norm_train";
  check_input(x, op);
  const Tensor& res = epilogue.residual;
  check_residual(res, x, op);
  Axes axes;
  if (reduce_axes.empty()) {
    LOOM_CHECK(x.ndim() >= 2, ShapeError, op, ": expected [batch..., features], got ", describe(x));
    for (int64_t d = 0; d < x.ndim() - 1; ++d) axes.push_back(d);
  } else {
    axes = normalize_axes(reduce_axes, x.ndim(), op);
  }
  Axes features;
  for (int64_t d = 0; d < x.ndim(); ++d)
    if (std::find(axes.begin(), axes.end(), d) == axes.end()) features.push_back(d);
  Tensor sv = param_view(scale, "scale", x, features, op);
  Tensor bv = param_view(bias, "bias", x, features, op);
  Dtypes dt = dtypes_of(x, scale, bias);
  bool channels_last = features.size() == 1 && features[0] == x.ndim() - 1;
  Shape channel_view(size_t(x.ndim()), 1);
  channel_view.back() = x.shape().back();
  Dtypes cast = dt;
  if (epilogue.dtype) cast.out = *epilogue.dtype;
  const DType in_dtype = dt.acc == DType::F64 ? DType::F64 : x.dtype();
  LOOM_CHECK(running.mean.defined() == running.var.defined(), ValueError, op,
             ": the running statistics need both a mean and a var");
  const int64_t kept = shape_numel(reduced_shape(x.shape(), axes, false));
  for (const Tensor* t : {&running.mean, &running.var})
    LOOM_CHECK(!t->defined() || t->numel() == kept, ShapeError, op, ": running statistics of ",
               describe(*t), " for ", kept, " features of x ", describe(x));
  BatchNormResult r;
  if (channels_last && kernel_writes(in_dtype, cast.out) && params_fit({sv, bv}, channel_view)) {
    r = batch_norm_fused(x, scale, sv, bias, bv, epsilon, cast, epilogue, pmean, running);
  } else {
    r = batch_norm_composed(x, sv, bv, epsilon, axes, pmean, dt);
    r.y = compose_epilogue(r.y, epilogue);
  }
  if (running.mean.defined() && !r.running_mean.defined()) {
    std::vector<Tensor> updated =
        running_average({running.mean, running.var},
                        {r.mean.reshape(running.mean.shape()), r.var.reshape(running.var.shape())},
                        running.momentum);
    r.running_mean = updated[0];
    r.running_var = updated[1];
  }
  return r;
}

Tensor batch_norm_inference(const Tensor& x, const Tensor& mean_in, const Tensor& var_in,
                            const Tensor& scale, const Tensor& bias, double epsilon,
                            const BatchNormEpilogue& epilogue) {
  const char* op = "batch_norm_inference";
  check_input(x, op);
  const Tensor& res = epilogue.residual;
  check_residual(res, x, op);
  LOOM_CHECK(mean_in.defined() && var_in.defined(), ValueError, op,
             ": mean and var (the running statistics) are required");
  LOOM_CHECK(x.ndim() >= 1, ShapeError, op, ": expected [..., features], got ", describe(x));
  Axes last{x.ndim() - 1};
  Tensor mv = param_view(mean_in, "mean", x, last, op), vv = param_view(var_in, "var", x, last, op);
  Tensor sv = param_view(scale, "scale", x, last, op), bv = param_view(bias, "bias", x, last, op);
  // Flax promotes the result from x, scale and bias only; the statistics are f32 variables.
  Dtypes dt = dtypes_of(x, scale, bias);
  if (mean_in.dtype() == DType::F64 || var_in.dtype() == DType::F64) dt.acc = DType::F64;
  Shape channel_view(size_t(x.ndim()), 1);
  channel_view.back() = x.shape().back();
  DType in_dtype = dt.acc == DType::F64 ? DType::F64 : x.dtype();
  const DType out = epilogue.dtype.value_or(dt.out);
  // The kernel takes the epilogue's residual in x's dtype (converted with x to in_dtype).
  bool fused = kernel_writes(in_dtype, out) && (!res.defined() || in_dtype == x.dtype()) &&
               params_fit({mv, vv, sv, bv}, channel_view) &&
               !autograd::needs_grad({&x, &mean_in, &var_in, &scale, &bias, &res});
  if (fused) {
    const int64_t c = x.shape().back(), m = c == 0 ? 0 : x.numel() / c;
    Tensor xc = x.to(in_dtype).contiguous();
    Tensor rc = res.defined() ? res.contiguous() : Tensor();
    Tensor mu = flat_acc(mv, dt.acc), va = flat_acc(vv, dt.acc);
    Tensor s = flat_acc(sv, dt.acc), b = flat_acc(bv, dt.acc);
    Tensor y = Tensor::empty(x.shape(), out, x.device());
    if (x.is_cuda()) {
      LOOM_CUDA_ONLY(cuda::channel_normalize(xc.raw_data(), in_dtype, y.raw_data(), out,
                                             mu.raw_data(), va.raw_data(), ptr(s), ptr(b), ptr(rc),
                                             epilogue.relu, m, c, epsilon, stream_of(x)));
    } else {
      cpu::channel_normalize(xc.raw_data(), in_dtype, y.raw_data(), out, mu.raw_data(),
                             va.raw_data(), ptr(s), ptr(b), ptr(rc), epilogue.relu, m, c, epsilon);
    }
    return autograd::checked(op, std::move(y), {&x, &mean_in, &var_in, &scale, &bias, &res});
  }
  Tensor mul = rsqrt(vv.to(dt.acc) + epsilon);
  if (sv.defined()) mul = mul * sv.to(dt.acc);
  Tensor y = (x.to(dt.acc) - mv.to(dt.acc)) * mul;
  if (bv.defined()) y = y + bv.to(dt.acc);
  return compose_epilogue(y.to(dt.out), epilogue);
}

Tensor running_average(const Tensor& average, const Tensor& value, double momentum) {
  return running_average(std::vector<Tensor>{average}, std::vector<Tensor>{value}, momentum)[0];
}

std::vector<Tensor> running_average(const std::vector<Tensor>& averages,
                                    const std::vector<Tensor>& values, double momentum) {
  LOOM_CHECK(averages.size() == values.size(), ValueError, "running_average: ", averages.size(),
             " averages for ", values.size(), " values");
  std::vector<Tensor> out(averages.size());
  std::vector<Tensor> keep;  // the kernel's contiguous operands, alive until it is queued
#if LOOM_CUDA
  std::vector<cuda::RunningAverageJob> jobs;
  std::vector<size_t> by_kernel;  // the outputs the kernel writes
#endif
  for (size_t i = 0; i < averages.size(); ++i) {
    const Tensor &average = averages[i], &value = values[i];
    // The kernel takes float32 statistics on the GPU of the first such pair; anything else is
    // the separate ops.
    const bool one_kernel = average.is_cuda() && average.dtype() == DType::F32 &&
                            value.dtype() == DType::F32 && average.shape() == value.shape() &&
                            average.device() == value.device() &&
                            (keep.empty() || average.device() == keep.front().device()) &&
                            !autograd::needs_grad({&average, &value});
    if (!one_kernel) {
      out[i] = average * momentum + value * (1.0 - momentum);
      continue;
    }
#if LOOM_CUDA
    Tensor a = average.contiguous(), v = value.contiguous();
    out[i] = Tensor::empty(a.shape(), DType::F32, a.device());
    jobs.push_back({a.data<float>(), v.data<float>(), out[i].data<float>(), out[i].numel()});
    keep.insert(keep.end(), {a, v});
    by_kernel.push_back(i);
#endif
  }
#if LOOM_CUDA
  if (jobs.empty()) return out;
  // The scalars as the separate ops see them: the double rounded once to float32.
  cuda::running_average(jobs, float(momentum), float(1.0 - momentum), stream_of(keep.front()));
  for (size_t i : by_kernel)
    out[i] = autograd::checked("running_average", std::move(out[i]), {&averages[i], &values[i]});
#endif
  return out;
}
}  // namespace loom

#include "core/ops/norm.h"

#include <algorithm>
#include <tuple>

#include "core/autodiff.h"
#include "core/fusions.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/norm_common.h"
#include "core/ops/shape.h"
#include "kernels/cpu/norm.h"
#if LOOM_CUDA
#include "kernels/cuda/norm.h"
#endif

namespace loom {
namespace {

using namespace norm_detail;
using Grads = std::vector<Tensor>;

// --- layer norm / RMS norm ------------------------------------------------------------------

Tensor norm_fused(const Tensor& x, const Tensor& scale, const Tensor& sv, const Tensor& bias,
                  const Tensor& bv, double eps, int64_t rows, int64_t n, Dtypes dt, bool rms) {
  const char* op = rms ? "rms_norm" : "layer_norm";
  DType in_dtype = dt.acc == DType::F64 ? DType::F64 : x.dtype();
  Tensor xc = x.detach().to(in_dtype).contiguous();
  // The CUDA kernels read a half x's half parameters as they are and write their gradients so:
  // no float32 copies each way (a bf16 GPT-2's 25 LayerNorms: 100 cast kernels a step).
  auto half_like_x = [&](const Tensor& p) { return !p.defined() || p.dtype() == x.dtype(); };
  const bool half_params = x.is_cuda() && in_dtype == x.dtype() && dt.acc != x.dtype() &&
                           half_like_x(sv) && half_like_x(bv);
  const DType param_dtype = half_params ? x.dtype() : dt.acc;
  Tensor s = flat_acc(sv, param_dtype), b = flat_acc(bv, param_dtype);
  Tensor y = Tensor::empty(x.shape(), dt.out, x.device());
  Tensor mu = rms ? Tensor() : Tensor::empty({rows}, dt.acc, x.device());
  Tensor rstd = Tensor::empty({rows}, dt.acc, x.device());
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::norm_rows(xc.raw_data(), in_dtype, y.raw_data(), dt.out, ptr(s), ptr(b),
                                   half_params, mu.defined() ? mu.raw_data() : nullptr, rstd.raw_data(), rows, n,
                                   eps, rms, stream_of(x),
                                   fusion_enabled(Fusion::norm_rows_in_registers)));
  } else {
    cpu::norm_rows(xc.raw_data(), in_dtype, y.raw_data(), dt.out, ptr(s), ptr(b),
                   mu.defined() ? mu.raw_data() : nullptr, rstd.raw_data(), rows, n, eps, rms);
  }
  if (!autograd::needs_grad({&x, &scale, &bias}))
    return autograd::checked(op, std::move(y), {&x, &scale, &bias});
  bool want_scale = autograd::needs_grad({&scale}), want_bias = autograd::needs_grad({&bias});
  DType x_dtype = x.dtype();
  ParamInfo scale_info(scale), bias_info(bias);
  return autograd::record(op, y, {x, scale, bias}, [=](const Tensor& g_in) {
    Tensor g = g_in.to(dt.out).contiguous();
    // An earlier contribution to x's gradient (the residual stream's, in a pre-norm block) gets
    // dx added in place instead of a separate add pass.
    const Tensor into = autograd::accumulation_target(0);
    const bool accumulate = into.defined() && into.dtype() == in_dtype && x_dtype == in_dtype &&
                            into.device() == xc.device() && into.shape() == xc.shape() &&
                            into.is_contiguous();
    Tensor dx = accumulate ? into : Tensor::empty(xc.shape(), in_dtype, xc.device());
    if (xc.is_cuda()) {
      LOOM_CUDA_ONLY(cuda::norm_rows_backward(xc.raw_data(), in_dtype, g.raw_data(), dt.out,
                                              ptr(mu), rstd.raw_data(), ptr(s), half_params,
                                              dx.raw_data(), rows, n, rms, accumulate,
                                              stream_of(xc),
                                              fusion_enabled(Fusion::norm_rows_in_registers)));
    } else {
      cpu::norm_rows_backward(xc.raw_data(), in_dtype, g.raw_data(), dt.out, ptr(mu),
                              rstd.raw_data(), ptr(s), dx.raw_data(), rows, n, rms, accumulate);
    }
    Grads grads{dx.to(x_dtype), Tensor(), Tensor()};
    if (!want_scale && !want_bias) return grads;
    Tensor dscale = want_scale ? Tensor::empty({n}, param_dtype, xc.device()) : Tensor();
    Tensor dbias = want_bias ? Tensor::empty({n}, param_dtype, xc.device()) : Tensor();
    if (xc.is_cuda()) {
      LOOM_CUDA_ONLY({
        Tensor work = Tensor::empty({cuda::norm_param_workspace_size(rows, n)}, dt.acc, xc.device());
        cuda::norm_param_grads(xc.raw_data(), in_dtype, g.raw_data(), dt.out, ptr(mu),
                               rstd.raw_data(), out_ptr(dscale), out_ptr(dbias), half_params,
                               work.raw_data(), rows, n, stream_of(xc));
      });
    } else {
      cpu::norm_param_grads(xc.raw_data(), in_dtype, g.raw_data(), dt.out, ptr(mu), rstd.raw_data(),
                            out_ptr(dscale), out_ptr(dbias), rows, n);
    }
    if (want_scale) grads[1] = param_grad(dscale, scale_info);
    if (want_bias) grads[2] = param_grad(dbias, bias_info);
    return grads;
  });
}

/// The same computation composed from loom ops (any axes); autodiff comes from the ops.
Tensor norm_composed(const Tensor& x, const Tensor& sv, const Tensor& bv, double eps,
                     const Axes& axes, Dtypes dt, bool rms) {
  Tensor xa = x.to(dt.acc);
  Tensor ms = mean(square(xa), axes, true);
  Tensor mu, var;
  if (rms) {
    var = ms;
  } else {
    mu = mean(xa, axes, true);
    var = maximum(ms - square(mu), scalar_like(0, ms));
  }
  Tensor mul = rsqrt(var + eps);
  if (sv.defined()) mul = mul * sv.to(dt.acc);
  Tensor y = (rms ? xa : xa - mu) * mul;
  if (bv.defined()) y = y + bv.to(dt.acc);
  return y.to(dt.out);
}

Tensor norm_impl(const Tensor& x, const Tensor& scale, const Tensor& bias, double eps,
                 const Axes& axes_in, bool rms, std::optional<DType> out_dtype) {
  const char* op = rms ? "rms_norm" : "layer_norm";
  check_input(x, op);
  LOOM_CHECK(x.ndim() >= 1, ShapeError, op, ": expected at least one axis, got ", describe(x));
  Axes axes = normalize_axes(axes_in, x.ndim(), op);
  Tensor sv = param_view(scale, "scale", x, axes, op);
  Tensor bv = param_view(bias, "bias", x, axes, op);
  Dtypes dt = dtypes_of(x, scale, bias);
  // Fused when the axes are the trailing ones and the parameters are per-feature vectors.
  bool trailing = true;
  for (size_t i = 0; i < axes.size(); ++i)
    trailing = trailing && axes[i] == x.ndim() - int64_t(axes.size()) + int64_t(i);
  Shape trailing_view(size_t(x.ndim()), 1);
  int64_t n = 1;
  for (int64_t a : axes) {
    trailing_view[size_t(a)] = x.shape()[size_t(a)];
    n *= x.shape()[size_t(a)];
  }
  if (out_dtype) dt.out = *out_dtype;  // the composed ops cast to it at the end
  const DType in_dtype = dt.acc == DType::F64 ? DType::F64 : x.dtype();
  if (trailing && n > 0 && kernel_writes(in_dtype, dt.out) && params_fit({sv, bv}, trailing_view))
    return norm_fused(x, scale, sv, bias, bv, eps, x.numel() / n, n, dt, rms);
  return norm_composed(x, sv, bv, eps, axes, dt, rms);
}
}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& scale, const Tensor& bias, double epsilon,
                  const Axes& axes, std::optional<DType> dtype) {
  return norm_impl(x, scale, bias, epsilon, axes, false, dtype);
}

Tensor rms_norm(const Tensor& x, const Tensor& scale, double epsilon, const Axes& axes,
                std::optional<DType> dtype) {
  return norm_impl(x, scale, Tensor(), epsilon, axes, true, dtype);
}

Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& scale, const Tensor& bias,
                  double epsilon) {
  const char* op = "group_norm";
  check_input(x, op);
  LOOM_CHECK(x.ndim() >= 2, ShapeError, op, ": expected [batch, ..., channels], got ", describe(x));
  const int64_t nd = x.ndim(), c = x.shape().back();
  LOOM_CHECK(num_groups > 0 && c % num_groups == 0, ValueError, op, ": number of groups (",
             num_groups, ") does not divide the number of channels (", c, ") of input ", describe(x));
  for (const Tensor* p : {&scale, &bias})
    if (p->defined())
      LOOM_CHECK(p->numel() == c && p->ndim() >= 1 && p->shape().back() == c, ShapeError, op, ": ",
                 p == &scale ? "scale " : "bias ", describe(*p), " must have shape [", c,
                 "] for input ", describe(x));
  Tensor sv = param_view(scale, "scale", x, {nd - 1}, op);
  Tensor bv = param_view(bias, "bias", x, {nd - 1}, op);
  Dtypes dt = dtypes_of(x, scale, bias);
  // Statistics over x reshaped to [..., G, C/G]: every non-batch axis but the group axis.
  Shape grouped(x.shape().begin(), x.shape().end() - 1);
  grouped.push_back(num_groups);
  grouped.push_back(c / num_groups);
  Axes axes;
  for (int64_t d = 1; d < nd - 1; ++d) axes.push_back(d);
  axes.push_back(nd);
  Shape param_grouped(size_t(nd + 1), 1);
  param_grouped[size_t(nd - 1)] = num_groups;
  param_grouped[size_t(nd)] = c / num_groups;
  Tensor xg = x.to(dt.acc).reshape(grouped);
  Tensor mu = mean(xg, axes, true), ms = mean(square(xg), axes, true);
  Tensor var = maximum(ms - square(mu), scalar_like(0, ms));
  Tensor mul = rsqrt(var + epsilon);
  if (sv.defined()) mul = mul * sv.to(dt.acc).reshape(param_grouped);
  Tensor y = (xg - mu) * mul;
  if (bv.defined()) y = y + bv.to(dt.acc).reshape(param_grouped);
  return y.reshape(x.shape()).to(dt.out);
}
}  // namespace loom

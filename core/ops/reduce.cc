#include "core/ops/reduce.h"

#include <algorithm>
#include <cmath>

#include "core/autodiff.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape.h"
#include "kernels/cpu/reduce.h"
#if LOOM_CUDA
#include "kernels/cuda/reduce.h"
#endif

namespace loom {

Axes normalize_axes(const Axes& axes, int64_t ndim, const char* op) {
  Axes out;
  if (axes.empty()) {
    for (int64_t d = 0; d < ndim; ++d) out.push_back(d);
    return out;
  }
  for (int64_t a : axes) out.push_back(normalize_axis(a, ndim, op));
  std::sort(out.begin(), out.end());
  LOOM_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), IndexError, op,
             ": repeated axis in the axes list");
  return out;
}

Shape reduced_shape(const Shape& shape, const Axes& axes, bool keepdims) {
  Shape out;
  for (size_t d = 0; d < shape.size(); ++d) {
    bool reduced = std::find(axes.begin(), axes.end(), int64_t(d)) != axes.end();
    if (!reduced) out.push_back(shape[d]);
    else if (keepdims) out.push_back(1);
  }
  return out;
}

namespace {

Tensor reduce_forward(ReduceOp op, const Tensor& x, const Axes& axes, bool keepdims, const char* name) {
  Shape kept_shape, kept_strides, red_shape, red_strides;
  for (size_t d = 0; d < x.shape().size(); ++d) {
    bool reduced = std::find(axes.begin(), axes.end(), int64_t(d)) != axes.end();
    (reduced ? red_shape : kept_shape).push_back(x.shape()[d]);
    (reduced ? red_strides : kept_strides).push_back(x.strides()[d]);
  }
  if (op != ReduceOp::Sum)
    LOOM_CHECK(shape_numel(red_shape) > 0 || shape_numel(kept_shape) == 0, ShapeError, name,
               ": cannot reduce over an empty dimension (shape ", shape_str(x.shape()), ")");
  DType out_dtype = x.dtype() == DType::Bool && op == ReduceOp::Sum ? DType::I32 : x.dtype();
  Tensor in = out_dtype == x.dtype() ? x : x.to(out_dtype).detach();
  if (in.dtype() != x.dtype()) {  // strides of the converted (contiguous) copy
    kept_strides.clear();
    red_strides.clear();
    Shape cs = contiguous_strides(in.shape());
    for (size_t d = 0; d < in.shape().size(); ++d) {
      bool reduced = std::find(axes.begin(), axes.end(), int64_t(d)) != axes.end();
      (reduced ? red_strides : kept_strides).push_back(cs[d]);
    }
  }
  Tensor out = Tensor::empty(reduced_shape(x.shape(), axes, keepdims), out_dtype, x.device());
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::reduce(op, in.raw_data(), out_dtype, kept_shape, kept_strides, red_shape,
                                red_strides, out.raw_data(), stream_of(x)));
  } else {
    cpu::reduce(op, in.raw_data(), out_dtype, kept_shape, kept_strides, red_shape, red_strides,
                out.raw_data());
  }
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const Axes& axes_in, bool keepdims) {
  Axes axes = normalize_axes(axes_in, x.ndim(), "sum");
  Tensor out = reduce_forward(ReduceOp::Sum, x, axes, keepdims, "sum");
  if (!is_floating(x.dtype()) || !autograd::needs_grad({&x}))
    return autograd::checked("sum", std::move(out), {&x});
  Shape in_shape = x.shape(), kept = reduced_shape(x.shape(), axes, true);
  return autograd::record("sum", out, {x}, [=](const Tensor& g) {
    return std::vector<Tensor>{broadcast_to(g.reshape(kept), in_shape)};
  });
}

Tensor mean(const Tensor& x, const Axes& axes_in, bool keepdims) {
  Axes axes = normalize_axes(axes_in, x.ndim(), "mean");
  int64_t count = 1;
  for (int64_t a : axes) count *= x.shape()[size_t(a)];
  Tensor xf = is_floating(x.dtype()) ? x : x.to(DType::F32);
  return sum(xf, axes, keepdims) / double(count);
}

namespace {
Tensor extremum(ReduceOp op, const Tensor& x, const Axes& axes_in, bool keepdims, const char* name) {
  Axes axes = normalize_axes(axes_in, x.ndim(), name);
  Tensor out = reduce_forward(op, x, axes, keepdims, name);
  if (!is_floating(x.dtype()) || !autograd::needs_grad({&x}))
    return autograd::checked(name, std::move(out), {&x});
  Tensor sx = autograd::saved(x), so = autograd::saved(out);
  Shape in_shape = x.shape(), kept = reduced_shape(x.shape(), axes, true);
  return autograd::record(name, out, {x}, [=](const Tensor& g) {
    Tensor hit = equal(sx, so.reshape(kept)).to(sx.dtype());
    Tensor count = sum(hit, axes, true);
    return std::vector<Tensor>{hit * g.reshape(kept) / count};
  });
}
}  // namespace

Tensor max(const Tensor& x, const Axes& axes, bool keepdims) {
  return extremum(ReduceOp::Max, x, axes, keepdims, "max");
}
Tensor min(const Tensor& x, const Axes& axes, bool keepdims) {
  return extremum(ReduceOp::Min, x, axes, keepdims, "min");
}

Tensor var(const Tensor& x, const Axes& axes_in, bool keepdims) {
  Axes axes = normalize_axes(axes_in, x.ndim(), "var");
  Tensor xf = is_floating(x.dtype()) ? x : x.to(DType::F32);
  return mean(square(xf - mean(xf, axes, true)), axes, keepdims);
}

Tensor logsumexp(const Tensor& x, const Axes& axes_in, bool keepdims) {
  Axes axes = normalize_axes(axes_in, x.ndim(), "logsumexp");
  Tensor xf = is_floating(x.dtype()) ? x : x.to(DType::F32);
  Shape kept = reduced_shape(x.shape(), axes, true);
  int64_t count = 1;
  for (int64_t a : axes) count *= x.shape()[size_t(a)];
  Tensor lse;  // with kept dims
  {
    autograd::NoGradGuard no_grad;
    Tensor xd = xf.detach();
    // Shift by the maximum where it is finite; an infinite or NaN maximum (or an empty
    // reduction) is left unshifted so that -inf rows give log(0) = -inf and +inf gives +inf.
    Tensor shift = zeros(kept, xf.dtype(), xf.device());
    if (count > 0 && xf.numel() > 0) {
      Tensor m = max(xd, axes, true);
      shift = where(less(abs(m), scalar_like(INFINITY, m)), m, shift);
    }
    lse = log(sum(exp(xd - shift), axes, true)) + shift;
  }
  Tensor out = keepdims ? lse : lse.reshape(reduced_shape(x.shape(), axes, false));
  if (!autograd::needs_grad({&xf})) return autograd::checked("logsumexp", std::move(out), {&xf});
  Tensor sx = autograd::saved(xf), sl = autograd::saved(lse);
  return autograd::record("logsumexp", out, {xf}, [=](const Tensor& g) {
    return std::vector<Tensor>{exp(sx - sl) * g.reshape(kept)};
  });
}

namespace {
Tensor arg_extremum(bool is_max, const Tensor& x, int64_t axis, bool keepdims, const char* name) {
  LOOM_CHECK(x.defined(), ValueError, name, ": undefined tensor");
  int64_t a = normalize_axis(axis, x.ndim(), name);
  int64_t n = x.shape()[size_t(a)];
  LOOM_CHECK(n > 0, ShapeError, name, ": cannot take the ", is_max ? "argmax" : "argmin",
             " of an empty axis ", axis, " (shape ", shape_str(x.shape()), ")");
  Shape kept_shape, kept_strides, out_shape;
  for (int64_t d = 0; d < x.ndim(); ++d) {
    if (d == a) {
      if (keepdims) out_shape.push_back(1);
      continue;
    }
    kept_shape.push_back(x.shape()[size_t(d)]);
    kept_strides.push_back(x.strides()[size_t(d)]);
    out_shape.push_back(x.shape()[size_t(d)]);
  }
  Tensor out = Tensor::empty(out_shape, DType::I32, x.device());
  int64_t stride = x.strides()[size_t(a)];
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::arg_reduce(is_max, x.raw_data(), x.dtype(), kept_shape, kept_strides, n,
                                    stride, out.data<int32_t>(), stream_of(x)));
  } else {
    cpu::arg_reduce(is_max, x.raw_data(), x.dtype(), kept_shape, kept_strides, n, stride,
                    out.data<int32_t>());
  }
  return out;
}
}  // namespace

Tensor argmax(const Tensor& x, int64_t axis, bool keepdims) {
  return arg_extremum(true, x, axis, keepdims, "argmax");
}
Tensor argmin(const Tensor& x, int64_t axis, bool keepdims) {
  return arg_extremum(false, x, axis, keepdims, "argmin");
}

Tensor l2_norm(const Tensor& x) {
  Tensor xf = is_floating(x.dtype()) ? x : x.to(DType::F32);
  return sqrt(sum(square(xf)));
}

Tensor global_norm(const Tree& t) {
  std::vector<std::pair<std::string, Tensor>> leaves = t.flatten();
  if (leaves.empty()) return scalar(0, DType::F32);
  DType acc = DType::F32;
  for (const auto& [path, leaf] : leaves)
    if (leaf.dtype() == DType::F64) acc = DType::F64;
  Device device = leaves[0].second.device();
  Tensor total;
  for (const auto& [path, leaf] : leaves) {
    LOOM_CHECK(leaf.device() == device, DeviceError, "global_norm: leaf '", path, "' (shape ",
               shape_str(leaf.shape()), ") is on ", leaf.device().str(), " but leaf '",
               leaves[0].first, "' is on ", device.str());
    Tensor s = sum(square(leaf.to(acc)));
    total = total.defined() ? total + s : s;
  }
  return sqrt(total);
}

}  // namespace loom

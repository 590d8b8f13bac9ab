#include "core/ops/reduce.h"

#include <algorithm>

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
  if (!is_floating(x.dtype()) || !autograd::needs_grad({&x})) return out;
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
  if (!is_floating(x.dtype()) || !autograd::needs_grad({&x})) return out;
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

}  // namespace loom

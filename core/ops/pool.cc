#include "core/ops/pool.h"

#include <cstdint>

#include "core/autodiff.h"
#include "core/ops/dispatch.h"
#include "kernels/cpu/pool.h"
#if LOOM_CUDA
#include "kernels/cuda/pool.h"
#endif

namespace loom {
namespace {

const char* pool_name(PoolOp op) {
  switch (op) {
    case PoolOp::Max: return "max_pool";
    case PoolOp::Min: return "min_pool";
    case PoolOp::Avg: return "avg_pool";
  }
  return "pool";
}

struct PoolPlan {
  PoolGeometry geo;
  Shape out_shape;
};

PoolPlan plan(PoolOp op, const Tensor& x, const Shape& window, const Shape& strides_in,
              const Padding& padding, bool count_include_pad) {
  const char* name = pool_name(op);
  LOOM_CHECK(x.defined(), ValueError, name, ": undefined input");
  size_t nd = window.size();
  Shape strides = strides_in.empty() ? Shape(nd, 1) : strides_in;
  LOOM_CHECK(nd >= 1, ShapeError, name, ": window ", shape_str(window),
             " needs at least one spatial dim (input shape ", shape_str(x.shape()), ")");
  LOOM_CHECK(strides.size() == nd, ShapeError, name, ": window ", shape_str(window),
             " and strides ", shape_str(strides), " differ in length (input shape ",
             shape_str(x.shape()), ")");
  LOOM_CHECK(x.ndim() >= int64_t(nd) + 1, ShapeError, name, ": input shape ",
             shape_str(x.shape()), " has fewer than the ", nd + 1,
             " dims (spatial..., features) that window ", shape_str(window), " needs");
  LOOM_CHECK(is_floating(x.dtype()), DTypeError, name, ": expected a floating dtype, got ",
             dtype_name(x.dtype()), " (shape ", shape_str(x.shape()), ")");
  LOOM_CHECK(padding.kind == Padding::Same || padding.kind == Padding::Valid ||
                 padding.kind == Padding::Explicit,
             ValueError, name, ": padding ", padding.str(),
             " is not supported (pools take SAME, VALID or explicit pairs)");
  size_t nb = size_t(x.ndim()) - nd - 1;
  PoolPlan p;
  PoolGeometry& g = p.geo;
  g.in.assign(x.shape().begin() + int64_t(nb), x.shape().end() - 1);
  PadPairs pads = resolve_padding(padding, g.in, window, strides, {}, name);
  g.batch = 1;
  for (size_t d = 0; d < nb; ++d) g.batch *= x.shape()[d];
  g.channels = x.shape().back();
  g.window = window;
  g.strides = strides;
  g.count_include_pad = count_include_pad;
  p.out_shape.assign(x.shape().begin(), x.shape().begin() + int64_t(nb));
  for (size_t d = 0; d < nd; ++d) {
    LOOM_CHECK(pads[d].first >= 0 && pads[d].second >= 0, ValueError, name, ": padding ",
               padding.str(), " is negative (input shape ", shape_str(x.shape()), ")");
    g.pad_lo.push_back(pads[d].first);
    g.out.push_back(window_output_size(g.in[d], window[d], strides[d], pads[d].first,
                                       pads[d].second));
    p.out_shape.push_back(g.out.back());
  }
  p.out_shape.push_back(g.channels);
  LOOM_CHECK(shape_numel(g.in) < INT32_MAX, ShapeError, name, ": ", shape_numel(g.in),
             " spatial positions per sample exceed the int32 index range (input shape ",
             shape_str(x.shape()), ")");
  return p;
}

Tensor pool_backward(PoolOp op, const PoolGeometry& g, const Shape& in_shape, const Tensor& grad,
                     const Tensor& selection, DType dtype) {
  Tensor gc = grad.to(dtype).contiguous();
  Tensor gin = Tensor::empty(in_shape, dtype, grad.device());
  const void* am = selection.defined() ? selection.raw_data() : nullptr;
  if (gin.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::pool_backward(op, g, dtype, gc.raw_data(), am, gin.raw_data(),
                                       stream_of(gin)));
  } else {
    cpu::pool_backward(op, g, dtype, gc.raw_data(), am, gin.raw_data());
  }
  return gin;
}

Tensor pool(PoolOp op, const Tensor& x, const Shape& window, const Shape& strides,
            const Padding& padding, bool count_include_pad) {
  PoolPlan p = plan(op, x, window, strides, padding, count_include_pad);
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty(p.out_shape, x.dtype(), x.device());
  bool grad = autograd::needs_grad({&x});
  // Max/min keep each output's position in its window for the gradient (kernels/cpu/pool.h).
  Tensor selection;
  if (grad && op != PoolOp::Avg)
    selection = Tensor::empty(p.out_shape, pool_selection_dtype(p.geo.window), x.device());
  void* am = selection.defined() ? selection.raw_data() : nullptr;
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::pool_forward(op, p.geo, x.dtype(), xc.raw_data(), out.raw_data(), am,
                                      stream_of(x)));
  } else {
    cpu::pool_forward(op, p.geo, x.dtype(), xc.raw_data(), out.raw_data(), am);
  }
  if (!grad) return autograd::checked(pool_name(op), std::move(out), {&x});
  PoolGeometry geo = p.geo;
  Shape in_shape = x.shape();
  DType dtype = x.dtype();
  return autograd::record(pool_name(op), out, {x}, [=](const Tensor& g) {
    return std::vector<Tensor>{pool_backward(op, geo, in_shape, g, selection, dtype)};
  });
}

}  // namespace

Tensor max_pool(const Tensor& x, const Shape& window, const Shape& strides,
                const Padding& padding) {
  return pool(PoolOp::Max, x, window, strides, padding, true);
}
Tensor min_pool(const Tensor& x, const Shape& window, const Shape& strides,
                const Padding& padding) {
  return pool(PoolOp::Min, x, window, strides, padding, true);
}
Tensor avg_pool(const Tensor& x, const Shape& window, const Shape& strides,
                const Padding& padding, bool count_include_pad) {
  return pool(PoolOp::Avg, x, window, strides, padding, count_include_pad);
}

}  // namespace loom

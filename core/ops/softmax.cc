#include "core/ops/softmax.h"

#include "core/autodiff.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "kernels/cpu/softmax.h"
#if LOOM_CUDA
#include "kernels/cuda/softmax.h"
#endif

namespace loom {
namespace {

struct AxisLayout {
  int64_t outer = 1, n = 1, inner = 1;
};

AxisLayout layout_of(const Shape& shape, int64_t axis) {
  AxisLayout l;
  for (int64_t d = 0; d < int64_t(shape.size()); ++d) {
    if (d < axis) l.outer *= shape[size_t(d)];
    else if (d == axis) l.n = shape[size_t(d)];
    else l.inner *= shape[size_t(d)];
  }
  return l;
}

Tensor softmax_backward(const Tensor& y, const Tensor& g_in, AxisLayout l, bool log) {
  Tensor g = g_in.to(y.dtype()).contiguous();
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  if (y.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::softmax_backward(y.raw_data(), g.raw_data(), dx.raw_data(), l.outer, l.n,
                                          l.inner, y.dtype(), log, stream_of(y)));
  } else {
    cpu::softmax_backward(y.raw_data(), g.raw_data(), dx.raw_data(), l.outer, l.n, l.inner,
                          y.dtype(), log);
  }
  return dx;
}

Tensor softmax_impl(const Tensor& x_in, int64_t axis_in, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  LOOM_CHECK(x_in.defined(), ValueError, op, ": undefined input");
  LOOM_CHECK(is_floating(x_in.dtype()), DTypeError, op, ": expected a floating dtype, got ",
             dtype_name(x_in.dtype()), " (shape ", shape_str(x_in.shape()), ")");
  int64_t axis = normalize_axis(axis_in, x_in.ndim(), op);
  Tensor x = x_in.detach().contiguous();
  AxisLayout l = layout_of(x.shape(), axis);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::softmax(x.raw_data(), out.raw_data(), l.outer, l.n, l.inner, x.dtype(),
                                 log, stream_of(x)));
  } else {
    cpu::softmax(x.raw_data(), out.raw_data(), l.outer, l.n, l.inner, x.dtype(), log);
  }
  if (!autograd::needs_grad({&x_in})) return autograd::checked(op, std::move(out), {&x_in});
  Tensor sy = autograd::saved(out);
  return autograd::record(op, out, {x_in}, [sy, l, log](const Tensor& g) {
    return std::vector<Tensor>{softmax_backward(sy, g, l, log)};
  });
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t axis) { return softmax_impl(x, axis, false); }
Tensor log_softmax(const Tensor& x, int64_t axis) { return softmax_impl(x, axis, true); }

Tensor masked_softmax(const Tensor& x_in, const Tensor& mask_in, double fill) {
  const char* op = "masked_softmax";
  LOOM_CHECK(x_in.defined() && mask_in.defined(), ValueError, op, ": undefined input");
  LOOM_CHECK(is_floating(x_in.dtype()), DTypeError, op, ": expected a floating dtype, got ",
             dtype_name(x_in.dtype()), " (shape ", shape_str(x_in.shape()), ")");
  LOOM_CHECK(mask_in.dtype() == DType::Bool, DTypeError, op, ": mask must be bool, got ",
             dtype_name(mask_in.dtype()), " (shape ", shape_str(mask_in.shape()), ")");
  LOOM_CHECK(mask_in.device() == x_in.device(), DeviceError, op, ": mask is on ",
             mask_in.device().str(), ", x on ", x_in.device().str());
  LOOM_CHECK(x_in.ndim() >= 1 && broadcast_shapes(x_in.shape(), mask_in.shape(), op) == x_in.shape(),
             ShapeError, op, ": mask ", shape_str(mask_in.shape()), " does not broadcast to x ",
             shape_str(x_in.shape()));
  // where() would round the fill to x's dtype: so do the kernels.
  const double rounded_fill = rounded_to(fill, x_in.dtype(), op);
  Tensor x = x_in.detach().contiguous();
  Tensor mask = mask_in.detach();
  const int64_t n = x.dim(-1), rows = n == 0 ? 0 : x.numel() / n;
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::masked_softmax(x.raw_data(), row_mask(mask, x.shape()), rounded_fill,
                                        out.raw_data(), rows, n, x.dtype(), stream_of(x)));
  } else {
    cpu::masked_softmax(x.raw_data(), row_mask(mask, x.shape()), rounded_fill, out.raw_data(),
                        rows, n, x.dtype());
  }
  if (!autograd::needs_grad({&x_in})) return autograd::checked(op, std::move(out), {&x_in});
  Tensor sy = autograd::saved(out);
  return autograd::record(op, out, {x_in}, [sy, mask, rows, n](const Tensor& g_in) {
    Tensor g = g_in.to(sy.dtype()).contiguous();
    Tensor dx = Tensor::empty(sy.shape(), sy.dtype(), sy.device());
    if (sy.is_cuda()) {
      LOOM_CUDA_ONLY(cuda::masked_softmax_backward(sy.raw_data(), g.raw_data(),
                                                   row_mask(mask, sy.shape()), dx.raw_data(),
                                                   rows, n, sy.dtype(), stream_of(sy)));
    } else {
      cpu::masked_softmax_backward(sy.raw_data(), g.raw_data(), row_mask(mask, sy.shape()),
                                   dx.raw_data(), rows, n, sy.dtype());
    }
    return std::vector<Tensor>{dx};
  });
}

}  // namespace loom

#include "core/ops/dropout.h"

#include <type_traits>

#include "core/autodiff.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "kernels/cpu/dropout.h"
#if LOOM_CUDA
#include "kernels/cuda/dropout.h"
#endif

namespace loom {
namespace {

// The number of mask elements when `mask` broadcasts over leading dims of `shape` only (its
// trailing dims equal shape's, its leading ones are 1): element i then uses mask element
// i % period. 0 when the mask broadcasts anywhere else.
int64_t trailing_period(const Shape& shape, const Shape& mask) {
  int64_t period = 1;
  bool leading = false;
  for (size_t d = shape.size(); d-- > 0;) {
    if (!leading && mask[d] == shape[d]) {
      period *= shape[d];
      continue;
    }
    leading = true;
    if (mask[d] != 1) return 0;
  }
  return period;
}

void scale_pass(const Tensor& in, Tensor& out, const Tensor& words, int64_t period, double scale,
                bool multiply) {
  const uint32_t* w = words.data<uint32_t>();
  if (in.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::dropout_scale(in.raw_data(), out.raw_data(), in.dtype(), w, in.numel(),
                                       period, scale, multiply, stream_of(in)));
  } else {
    cpu::dropout_scale(in.raw_data(), out.raw_data(), in.dtype(), w, in.numel(), period, scale,
                       multiply);
  }
}

// x scaled by a bernoulli(key, keep) mask of `mask_shape` in one pass each way (the mask kept as
// bits for the backward), where the mask broadcasts over leading dims only; undefined otherwise.
// `scale` and `multiply` as kernels/cpu/dropout.h.
Tensor fused(const char* op, const Tensor& x, random::Key key, double keep, const Shape& mask_shape,
             double scale, bool multiply) {
  const int64_t period = trailing_period(x.shape(), mask_shape);
  if (period == 0 && x.numel() > 0) return Tensor();
  Tensor words = random::bernoulli_bits(key, keep, period, x.device());
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  scale_pass(xc, y, words, period, scale, multiply);
  if (!autograd::needs_grad({&x})) return autograd::checked(op, std::move(y), {&x});
  const DType dtype = x.dtype();
  return autograd::record(op, y, {x}, [=](const Tensor& g_in) {
    Tensor g = g_in.to(dtype).contiguous();
    Tensor dx = Tensor::empty(g.shape(), dtype, g.device());
    scale_pass(g, dx, words, period, scale, multiply);
    return std::vector<Tensor>{dx};
  });
}

// 1 / keep as Flax's attention computes it, mask.astype(dtype) / keep: keep rounded to dtype,
// the division in loom's compute type for dtype (float, or double for f64), rounded again.
double multiplier_in(DType dtype, double keep) {
  return visit_floating(dtype, "attention dropout", [&](auto z) {
    using T = decltype(z);
    using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
    return convert<double>(convert<T>(C(1) / convert<C>(convert<T>(keep))));
  });
}

void check_floating(const Tensor& x, const char* op) {
  LOOM_CHECK(x.defined(), ValueError, op, ": undefined input");
  LOOM_CHECK(is_floating(x.dtype()), DTypeError, op, ": expected a floating input, got ",
             shape_str(x.shape()), " (", dtype_name(x.dtype()), ")");
}

}  // namespace

Tensor dropout(const Tensor& x, double rate, random::Key key, const Axes& broadcast_dims) {
  check_floating(x, "dropout");
  LOOM_CHECK(rate >= 0.0 && rate <= 1.0, ValueError, "dropout: rate must be in [0, 1], got ", rate,
             " (input ", shape_str(x.shape()), ")");
  Shape mask_shape = x.shape();
  for (int64_t d : broadcast_dims) mask_shape[size_t(normalize_axis(d, x.ndim(), "dropout"))] = 1;
  if (rate == 0.0) return x;
  if (rate == 1.0) return zeros_like(x);  // no dependence on x: its gradient is zero
  const double keep = 1.0 - rate;
  // Flax: select(mask, x / keep, 0), the division rounded in x's dtype.
  Tensor y = fused("dropout", x, key, keep, mask_shape, rounded_to(keep, x.dtype(), "dropout"), false);
  if (y.defined()) return y;
  // where's backward sends g where the mask is set and 0 elsewhere; the division by keep
  // contributes the 1/keep factor, so dx = mask * g / keep.
  Tensor mask = random::bernoulli(key, keep, mask_shape, x.device());
  return where(mask, x / keep, 0.0);
}

Tensor attention_dropout(const Tensor& weights, double rate, random::Key key,
                         const Shape& mask_shape) {
  check_floating(weights, "attention dropout");
  const double keep = 1.0 - rate;
  const DType dtype = weights.dtype();
  // Flax: weights * (mask.astype(dtype) / keep), the multiplier rounded in dtype.
  Tensor y = fused("attention dropout", weights, key, keep, mask_shape, multiplier_in(dtype, keep), true);
  if (y.defined()) return y;
  Tensor kept = random::bernoulli(key, keep, mask_shape, weights.device());
  return weights * (kept.to(dtype) / keep);
}

}  // namespace loom

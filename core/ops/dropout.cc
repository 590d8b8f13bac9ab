#include "core/ops/dropout.h"

#include "core/ops/elementwise.h"

namespace loom {

Tensor dropout(const Tensor& x, double rate, random::Key key, const Axes& broadcast_dims) {
  LOOM_CHECK(x.defined(), ValueError, "dropout: undefined input");
  LOOM_CHECK(is_floating(x.dtype()), DTypeError, "dropout: expected a floating input, got ",
             shape_str(x.shape()), " (", dtype_name(x.dtype()), ")");
  LOOM_CHECK(rate >= 0.0 && rate <= 1.0, ValueError, "dropout: rate must be in [0, 1], got ", rate,
             " (input ", shape_str(x.shape()), ")");
  Shape mask_shape = x.shape();
  for (int64_t d : broadcast_dims) mask_shape[size_t(normalize_axis(d, x.ndim(), "dropout"))] = 1;
  if (rate == 0.0) return x;
  if (rate == 1.0) return zeros_like(x);  // no dependence on x: its gradient is zero
  double keep = 1.0 - rate;
  Tensor mask = random::bernoulli(key, keep, mask_shape, x.device());
  // where's backward sends g where the mask is set and 0 elsewhere; the division by keep
  // contributes the 1/keep factor, so dx = mask * g / keep.
  return where(mask, x / keep, 0.0);
}

}  // namespace loom

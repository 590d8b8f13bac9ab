#include "core/ops/shape.h"

#include "core/autodiff.h"
#include "core/ops/elementwise.h"

namespace loom {

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  Shape target = broadcast_shapes(x.shape(), shape, "broadcast_to");
  LOOM_CHECK(target == shape, ShapeError, "broadcast_to: cannot broadcast shape ",
             shape_str(x.shape()), " to ", shape_str(shape));
  Shape strides(shape.size(), 0);
  size_t lead = shape.size() - x.shape().size();
  for (size_t d = 0; d < x.shape().size(); ++d)
    strides[lead + d] = x.shape()[d] == shape[lead + d] ? x.strides()[d] : 0;
  Tensor out(x.storage(), shape, strides, x.offset(), x.dtype());
  Shape in_shape = x.shape();
  return autograd::record("broadcast_to", out, {x}, [in_shape](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, in_shape)};
  });
}

}  // namespace loom

// Shape ops: views and rearrangements, forward and backward.
#pragma once
#include "core/tensor.h"

namespace loom {

/// numpy broadcasting to `shape` (a view with zero strides; no copy).
Tensor broadcast_to(const Tensor& x, const Shape& shape);

}  // namespace loom

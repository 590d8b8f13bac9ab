// Pooling over channels-last inputs, as Flax's nn.max_pool / nn.min_pool / nn.avg_pool
// (lax.reduce_window). x is [batch..., spatial..., features] with one spatial dim per window
// entry; the batch dims may be absent (Flax adds and removes a leading 1), and several are
// allowed. strides default to 1. Padding: SAME (Flax's rule), VALID or explicit (lo, hi) pairs;
// padded positions read as -inf (max), +inf (min) or 0 (avg).
//
// Gradients follow JAX: max/min send each output's gradient to the first selected element of
// its window (see kernels/cpu/pool.h); avg spreads it evenly. Second derivatives through pools
// are not supported (the backward is a kernel, not a composition of differentiable ops).
//
// Example:
//   Tensor y = max_pool(x, {2, 2}, {2, 2});                       // [N, H/2, W/2, C]
//   Tensor z = avg_pool(x, {3, 3}, {1, 1}, Padding::same(), false);  // divide by real elements
#pragma once
#include "core/ops/padding.h"
#include "core/tensor.h"

namespace loom {

Tensor max_pool(const Tensor& x, const Shape& window, const Shape& strides = {},
                const Padding& padding = Padding::valid());
Tensor min_pool(const Tensor& x, const Shape& window, const Shape& strides = {},
                const Padding& padding = Padding::valid());
/// count_include_pad: divide by prod(window) (true, Flax's default) or by the number of input
/// elements the window covers (false; a window of only padding gives NaN, as in Flax).
Tensor avg_pool(const Tensor& x, const Shape& window, const Shape& strides = {},
                const Padding& padding = Padding::valid(), bool count_include_pad = true);

}  // namespace loom

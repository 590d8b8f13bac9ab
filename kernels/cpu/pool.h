// Window pooling over channels-last arrays [batch, spatial..., channels] (any number of spatial
// dims), as lax.reduce_window does it for Flax's max_pool / min_pool / avg_pool. PoolGeometry
// is shared with kernels/cuda/pool.h.
//
// Max/Min select like XLA's select_and_scatter (what JAX differentiates reduce_window max/min
// with): the window is scanned in row-major order, padding reads as -inf (Max) / +inf (Min),
// and the selection moves to a later element only when !(selected >= v) (Max) or
// !(selected <= v) (Min). So ties go to the first element and a window of padding and -inf
// selects the padding (its gradient is dropped), exactly as jax.grad of nn.max_pool.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"

namespace loom {

enum class PoolOp { Max, Min, Avg };

struct PoolGeometry {
  int64_t batch = 1, channels = 1;
  Shape in, out, window, strides, pad_lo;  // one entry per spatial dim
  bool count_include_pad = true;           // Avg: divide by prod(window), else by in-bounds count
};

/// What a max/min pool keeps of each output for its gradient: the selected element's position
/// within its window (row-major over the window's dims, 0 .. prod(window) - 1), or all bits set
/// (255, -1) where padding was selected. One byte an output where the window has fewer than 255
/// elements (ResNet's 3x3 pool: a quarter of int32's bytes, written by the forward, kept to the
/// backward and read there), int32 otherwise.
inline DType pool_selection_dtype(const Shape& window) {
  return shape_numel(window) < 255 ? DType::U8 : DType::I32;
}
/// run(S{}) with the selection's element type, uint8_t or int32_t.
template <typename Run>
void with_selection_type(const PoolGeometry& g, Run&& run) {
  if (pool_selection_dtype(g.window) == DType::U8) run(uint8_t{});
  else run(int32_t{});
}

}  // namespace loom

namespace loom::cpu {

/// out[n, o, c] = reduction of x over window o. For Max/Min, `selection` (may be null; of
/// pool_selection_dtype(g.window)) receives each output's selection. The value propagates NaN
/// (as lax.max) even where the selection skips it.
void pool_forward(PoolOp op, const PoolGeometry& g, DType dtype, const void* x, void* out,
                  void* selection);

/// Gradient with respect to x (contiguous, of g.in's shape) from grad_out. Max/Min route each
/// output gradient to its selected element; Avg spreads it over the window (divided as in the
/// forward). Written as a gather over the windows covering each input element: deterministic,
/// no atomics.
void pool_backward(PoolOp op, const PoolGeometry& g, DType dtype, const void* grad_out,
                   const void* selection, void* grad_in);

}  // namespace loom::cpu

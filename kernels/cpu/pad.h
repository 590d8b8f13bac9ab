// CPU padding kernels (jnp.pad's constant, wrap and reflect modes). Strides are in elements.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/elementwise_math.h"  // LOOM_HD

namespace loom {

/// Constant: fill with a value. Wrap: periodic (jnp 'wrap', Flax's CIRCULAR padding). Reflect:
/// mirror without repeating the edge (jnp 'reflect'), repeating as often as the padding needs.
enum class PadMode : uint8_t { Constant, Wrap, Reflect };

/// The source position along one axis of length n > 0 for padded position j (relative to the
/// start of the data; negative in the low padding), or -1 for a Constant pad element.
LOOM_HD int64_t pad_source_index(int64_t j, int64_t n, PadMode mode) {
  if (j >= 0 && j < n) return j;
  if (mode == PadMode::Wrap) {
    j %= n;
    return j < 0 ? j + n : j;
  }
  if (mode == PadMode::Reflect) {
    if (n == 1) return 0;
    const int64_t period = 2 * (n - 1);
    j %= period;
    if (j < 0) j += period;
    return j < n ? j : period - j;
  }
  return -1;
}

}  // namespace loom

namespace loom::cpu {

/// out (contiguous, `out_shape`) = x (`x_shape`, `x_strides`) padded by `lo` before each axis
/// (the high padding is implied by out_shape).
void pad(const void* x, const Shape& x_shape, const Shape& x_strides, void* out,
         const Shape& out_shape, const Shape& lo, PadMode mode, double value, DType dtype);

/// dx (contiguous, `x_shape`, zero-initialised) += the gradient `g` (contiguous, `out_shape`)
/// of pad, summing every padded copy of an element. Serial (deterministic); F32 or F64.
void pad_backward(const void* g, const Shape& out_shape, void* dx, const Shape& x_shape,
                  const Shape& lo, PadMode mode, DType dtype);

}  // namespace loom::cpu

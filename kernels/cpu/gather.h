// CPU kernels for indexing ops: strided assignment (concatenate, slice backward), gather and
// scatter-add along one axis (take, take_along_axis and their backward), one_hot and the
// triangular masks. Strides are in elements.
//
// Gather/scatter layout: the loop runs over `shape` (the gather's output shape). For output
// position i, `x_strides`/`dst_strides` give the offset of the gathered row (0 on the dimensions
// that come from the indices) and `idx_strides` the offset of its index (0 on the dimensions that
// come from x); the element read is x[x_off(i) + index * axis_stride].
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"

namespace loom {
/// What a gather does with an index outside [0, axis_len):
///   Fill: an index in [-axis_len, 0) counts from the end; others read the fill value (NaN for
///         floats, the lowest value for signed integers, the highest for unsigned, true for bool;
///         jnp.take's default) and scatter nothing.
///   Clip: clamped into [0, axis_len - 1] (negative indices are clamped, not wrapped; jnp 'clip').
enum class GatherMode : uint8_t { Fill, Clip };
}  // namespace loom

namespace loom::cpu {

/// dst (strided) = src (strided) over `shape`; both of `dtype`.
void strided_assign(const void* src, const Shape& src_strides, void* dst, const Shape& dst_strides,
                    const Shape& shape, DType dtype);

/// out (contiguous over `shape`) = gathered x.
void gather(const void* x, const Shape& x_strides, int64_t axis_stride, int64_t axis_len,
            const int64_t* idx, const Shape& idx_strides, void* out, const Shape& shape,
            DType dtype, GatherMode mode);

/// dst[dst_off(i) + index * axis_stride] += src[i] for src contiguous over `shape`, serially in
/// order (deterministic). dtype: F32 or F64.
void scatter_add(const void* src, const int64_t* idx, const Shape& idx_strides, void* dst,
                 const Shape& dst_strides, int64_t axis_stride, int64_t axis_len,
                 const Shape& shape, DType dtype, GatherMode mode);

/// out[i, c] = (idx[i] == c) for n indices and `classes` columns, out contiguous of `dtype`.
void one_hot(const int64_t* idx, int64_t n, int64_t classes, void* out, DType dtype);

/// out = x inside the band of the last two dims ([batch, rows, cols], both contiguous), else 0:
/// lower keeps col - row <= k (tril), upper keeps col - row >= k (triu).
void triangle(const void* x, void* out, int64_t batch, int64_t rows, int64_t cols, int64_t k,
              bool lower, DType dtype);

}  // namespace loom::cpu

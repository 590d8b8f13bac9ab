// CPU copy, cast and fill kernels.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"

namespace loom::cpu {

/// Copies the strided view (`shape`, `src_strides` in elements) at `src` into contiguous `dst`,
/// converting from `src_dtype` to `dst_dtype`.
void strided_copy(const void* src, DType src_dtype, const Shape& shape, const Shape& src_strides,
                  void* dst, DType dst_dtype);
void fill(void* dst, DType dtype, int64_t n, double value);
/// dst[i] = start + i * step, computed in double and rounded once to `dtype` (arange).
void fill_range(void* dst, DType dtype, int64_t n, double start, double step);

}  // namespace loom::cpu

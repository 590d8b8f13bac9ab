// CUDA copy, cast and fill kernels (launched on `stream`).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void strided_copy(const void* src, DType src_dtype, const Shape& shape, const Shape& src_strides,
                  void* dst, DType dst_dtype, Stream stream);
void fill(void* dst, DType dtype, int64_t n, double value, Stream stream);
/// dst[i] = start + i * step, computed in double and rounded once to `dtype` (arange).
void fill_range(void* dst, DType dtype, int64_t n, double start, double step, Stream stream);

}  // namespace loom::cuda

// CUDA softmax-family kernels; same contract as kernels/cpu/softmax.h (statistics in float, or
// double for f64), launched on `stream`.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/row_mask.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void softmax(const void* x, void* out, int64_t outer, int64_t n, int64_t inner, DType dtype,
             bool log, Stream stream);
void softmax_backward(const void* y, const void* grad, void* dx, int64_t outer, int64_t n,
                      int64_t inner, DType dtype, bool log, Stream stream);
/// softmax(where(mask, x, fill)) over the last axis (n) of `rows` contiguous rows, `fill`
/// already rounded to x's dtype; and its backward (zero where the mask is false, as where's
/// gradient).
void masked_softmax(const void* x, const RowMask& mask, double fill, void* out, int64_t rows,
                    int64_t n, DType dtype, Stream stream);
void masked_softmax_backward(const void* y, const void* grad, const RowMask& mask, void* dx,
                             int64_t rows, int64_t n, DType dtype, Stream stream);

}  // namespace loom::cuda

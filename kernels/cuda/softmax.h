// CUDA softmax-family kernels; same contract as kernels/cpu/softmax.h (statistics in float, or
// double for f64), launched on `stream`.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void softmax(const void* x, void* out, int64_t outer, int64_t n, int64_t inner, DType dtype,
             bool log, Stream stream);
void softmax_backward(const void* y, const void* grad, void* dx, int64_t outer, int64_t n,
                      int64_t inner, DType dtype, bool log, Stream stream);
/// The mask of masked_softmax: element (row r, column j) is kept where
/// data[rows.offset(r) + j * col_stride] is true (a broadcast view: strides may be 0), else it
/// reads as `fill` (already rounded to the dtype of x).
struct SoftmaxMask {
  const bool* data = nullptr;
  Shape row_shape, row_strides;  // the dims before the last one
  int64_t col_stride = 0;
  double fill = 0;
};
/// softmax(where(mask, x, fill)) over the last axis (n) of `rows` contiguous rows, and its
/// backward (zero where the mask is false, as where's gradient).
void masked_softmax(const void* x, const SoftmaxMask& mask, void* out, int64_t rows, int64_t n,
                    DType dtype, Stream stream);
void masked_softmax_backward(const void* y, const void* grad, const SoftmaxMask& mask, void* dx,
                             int64_t rows, int64_t n, DType dtype, Stream stream);
void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, void* lse, int64_t rows, int64_t n, Stream stream);
void cross_entropy_int_backward(const void* logits, DType dtype, const void* labels,
                                DType label_dtype, const void* lse, const void* grad, void* dx,
                                int64_t rows, int64_t n, Stream stream);

}  // namespace loom::cuda

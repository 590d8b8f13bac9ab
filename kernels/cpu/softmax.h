// CPU softmax kernels: softmax / log_softmax over one axis and their backward. Tensors are
// contiguous; the softmax axis is described as [outer, n, inner] (inner == 1 when it is the last
// axis). Floating dtypes only; exponentials in float (double for double), sums in double,
// each output rounded once to its dtype.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/row_mask.h"

namespace loom::cpu {

/// out = softmax(x) (or log_softmax when `log`) over the middle dimension of [outer, n, inner].
void softmax(const void* x, void* out, int64_t outer, int64_t n, int64_t inner, DType dtype,
             bool log);
/// Backward from the saved output y: softmax: dx = y * (g - sum(g * y));
/// log_softmax: dx = g - exp(y) * sum(g). All of `dtype`.
void softmax_backward(const void* y, const void* grad, void* dx, int64_t outer, int64_t n,
                      int64_t inner, DType dtype, bool log);

/// softmax over rows of n contiguous elements with each masked-out element taken as `fill` (a
/// value of `dtype`): softmax(where(mask, x, fill)), the same bits, in one pass.
void masked_softmax(const void* x, const RowMask& mask, double fill, void* out, int64_t rows,
                    int64_t n, DType dtype);
/// Its backward from the saved output y: softmax's, then 0 where masked (where's backward).
void masked_softmax_backward(const void* y, const void* grad, const RowMask& mask, void* dx,
                             int64_t rows, int64_t n, DType dtype);

}  // namespace loom::cpu

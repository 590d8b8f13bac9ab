// CUDA softmax cross-entropy with integer labels; same contract as kernels/cpu/cross_entropy.h
// (statistics in float, or double for f64), launched on `stream`.
#pragma once
#include <cstdint>
#include <optional>

#include "core/dtype.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

/// With dx (rows at the logits' pitch, sharing their 16-byte alignment:
/// cross_entropy_can_write_gradient), the forward also writes the logits' gradient for an
/// upstream gradient of `assumed_grad` on every row, from the rows it has just read: the value
/// the backward would write for it, bit for bit. Pass that value to the backward as
/// `written_for`, and it rewrites only the rows whose upstream gradient differs.
/// `max_row_blocks` (0: one block or warp group a row, all at once) caps the blocks, which then
/// loop over the rows: fewer rows in flight, so that a row is still in L2 when it is read again
/// for its gradient (loom_kernel_bench compares caps).
void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, DType loss_dtype, void* lse, int64_t rows, int64_t n,
                       int64_t ld, Stream stream, void* dx = nullptr, double assumed_grad = 0.0,
                       unsigned max_row_blocks = 0);
bool cross_entropy_can_write_gradient(const void* logits, const void* dx);
void cross_entropy_int_backward(const void* logits, DType dtype, const void* labels,
                                DType label_dtype, const void* lse, const void* grad,
                                DType grad_dtype, void* dx, int64_t rows, int64_t n,
                                int64_t ld, Stream stream,
                                std::optional<double> written_for = std::nullopt);

}  // namespace loom::cuda

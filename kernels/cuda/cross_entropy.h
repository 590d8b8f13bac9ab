// CUDA softmax cross-entropy with integer labels; same contract as kernels/cpu/cross_entropy.h
// (statistics in float, or double for f64), launched on `stream`.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, DType loss_dtype, void* lse, int64_t rows, int64_t n,
                       int64_t ld, Stream stream);
void cross_entropy_int_backward(const void* logits, DType dtype, const void* labels,
                                DType label_dtype, const void* lse, const void* grad,
                                DType grad_dtype, void* dx, int64_t rows, int64_t n,
                                int64_t ld, Stream stream);

}  // namespace loom::cuda

// CPU softmax cross-entropy with integer labels (rows x n logits, rows `ld` >= n elements apart;
// dx is written at the same pitch, with zeros in each row's padding [n, ld)). Statistics in
// double; the loss and its gradient have `loss_dtype`: the logits' dtype, or F32 for half
// logits, which gives bit for bit what the float32 kernel gives on logits cast to F32.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace loom::cpu {

/// loss[r] = logsumexp(logits[r, :]) - logits[r, label[r]] for integer labels (I32, I64, U8,
/// U32; negative labels count from the end as jnp.take_along_axis; out of range gives NaN, as
/// JAX's fill mode). Also writes lse[r] (F64 for f64 logits, else F32) for the backward pass.
void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, DType loss_dtype, void* lse, int64_t rows, int64_t n,
                       int64_t ld);
/// dx[r, j] = grad[r] * (exp(logits[r, j] - lse[r]) - (j == label[r])); grad of `grad_dtype`
/// (the loss dtype), dx of `dtype`, rounded through grad_dtype first (as a cast's gradient).
void cross_entropy_int_backward(const void* logits, DType dtype, const void* labels,
                                DType label_dtype, const void* lse, const void* grad,
                                DType grad_dtype, void* dx, int64_t rows, int64_t n,
                                int64_t ld);

}  // namespace loom::cpu

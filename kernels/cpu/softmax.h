// CPU softmax-family kernels: softmax / log_softmax over one axis and the fused softmax
// cross-entropy with integer labels. Tensors are contiguous; the softmax axis is described as
// [outer, n, inner] (inner == 1 when it is the last axis). Floating dtypes only; statistics are
// computed in double, then rounded once to the output dtype.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace loom::cpu {

/// out = softmax(x) (or log_softmax when `log`) over the middle dimension of [outer, n, inner].
void softmax(const void* x, void* out, int64_t outer, int64_t n, int64_t inner, DType dtype,
             bool log);
/// Backward from the saved output y: softmax: dx = y * (g - sum(g * y));
/// log_softmax: dx = g - exp(y) * sum(g). All of `dtype`.
void softmax_backward(const void* y, const void* grad, void* dx, int64_t outer, int64_t n,
                      int64_t inner, DType dtype, bool log);

/// loss[r] = logsumexp(logits[r, :]) - logits[r, label[r]] for rows x n logits (of `dtype`) and
/// integer labels (I32 or I64; negative labels count from the end as jnp.take_along_axis; out of
/// range gives NaN, as JAX's fill mode). Also writes lse[r] (F64 for f64 logits, else F32) for
/// the backward pass.
void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, void* lse, int64_t rows, int64_t n);
/// dx[r, j] = grad[r] * (exp(logits[r, j] - lse[r]) - (j == label[r])); grad and dx of `dtype`.
void cross_entropy_int_backward(const void* logits, DType dtype, const void* labels,
                                DType label_dtype, const void* lse, const void* grad, void* dx,
                                int64_t rows, int64_t n);

}  // namespace loom::cpu

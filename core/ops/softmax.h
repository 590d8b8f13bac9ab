// softmax and log_softmax over one axis, as jax.nn.softmax / jax.nn.log_softmax (numerically
// stable: the row maximum is subtracted first). Fused single kernels forward and backward on the
// CPU and CUDA for any axis; half-precision inputs are computed in float and rounded once.
//
// Example:
//   Tensor p = softmax(logits);            // over the last axis
//   Tensor lp = log_softmax(logits, 1);    // over axis 1
#pragma once
#include "core/tensor.h"

namespace loom {

Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

/// softmax(where(mask, x, fill), -1), as attention masks logits (Flax: jnp.where(mask, logits,
/// big_neg) then softmax): `mask` is bool and broadcasts to x; the gradient is zero where it is
/// false. One kernel each way on CUDA (the mask is read through its broadcast strides, never
/// materialised); the CPU composes where and softmax.
Tensor masked_softmax(const Tensor& x, const Tensor& mask, double fill);

}  // namespace loom

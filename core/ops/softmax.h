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

}  // namespace loom

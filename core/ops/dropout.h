// Dropout as flax.linen.Dropout (deterministic=False): keep = 1 - rate,
// mask = jax.random.bernoulli(key, keep, shape with broadcast_dims set to 1),
// y = mask ? x / keep : 0. The mask comes from loom::random's counter-based threefry on x's
// device, so it is bit-identical on the CPU, on CUDA and in JAX for the same key. Where the mask
// broadcasts over leading dims only (or not at all) the op is one pass each way, the mask kept as
// bits (random::bernoulli_bits) for the backward pass; other broadcasts compose where and a
// division over a Bool mask.
//
// Example:
//   random::Key k = random::fold_in(dropout_key, step);
//   Tensor h = dropout(x, 0.1, k);                     // [B, T, D]
//   Tensor h2 = dropout(x, 0.1, k, {1});               // one mask shared along axis 1
#pragma once
#include "core/ops/reduce.h"  // Axes
#include "core/random.h"
#include "core/tensor.h"

namespace loom {

/// rate 0 returns x, rate 1 returns zeros (as Flax); otherwise 0 < rate < 1. The gradient is the
/// same mask / keep applied to the output gradient.
Tensor dropout(const Tensor& x, double rate, random::Key key, const Axes& broadcast_dims = {});

/// flax.linen.dot_product_attention_weights' dropout: weights * (bernoulli(key, keep,
/// mask_shape).astype(dtype) / keep) with keep = 1 - rate, the multiplier rounded in the weights'
/// dtype; mask_shape broadcasts against the weights (Flax's broadcast_dropout: 1s before the last
/// two dims). 0 <= rate < 1.
Tensor attention_dropout(const Tensor& weights, double rate, random::Key key,
                         const Shape& mask_shape);

}  // namespace loom

// Losses as Optax defines them (optax.losses): per-example values, no reduction (take mean()
// yourself). All are differentiable with respect to their floating inputs.
//
// Example:
//   Tensor loss = mean(softmax_cross_entropy_with_integer_labels(logits, labels));  // [B, C], [B]
#pragma once
#include <optional>

#include "core/tensor.h"

namespace loom {

/// -sum(labels * log_softmax(logits), -1): labels are probabilities broadcastable to logits'
/// shape. Differentiable with respect to both.
Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels);
/// logsumexp(logits, -1) - logits[..., label]: logits [..., C], integer labels [...] (negative
/// labels count from the end; out-of-range labels give NaN, as JAX). One fused kernel forward
/// and one backward, on the CPU and CUDA.
/// `dtype` (default: the logits') is the dtype the loss is computed and returned in, as if the
/// logits were cast to it first; the gradient comes back in the logits' dtype. With bf16/f16
/// logits and F32 this gives bit for bit `f(logits.to(F32), labels)` without the float32 copy of
/// the logits (nor of their gradient): the mixed-precision loss of a large vocabulary.
Tensor softmax_cross_entropy_with_integer_labels(const Tensor& logits, const Tensor& labels,
                                                 std::optional<DType> dtype = std::nullopt);
/// -labels * log_sigmoid(logits) - (1 - labels) * log_sigmoid(-logits) (labels broadcast and are
/// cast to logits' dtype).
Tensor sigmoid_binary_cross_entropy(const Tensor& logits, const Tensor& labels);
/// 0.5 * (predictions - targets)^2; targets undefined means zeros. Shapes must be equal.
Tensor l2_loss(const Tensor& predictions, const Tensor& targets = Tensor());
/// (predictions - targets)^2; targets undefined means zeros. Shapes must be equal.
Tensor squared_error(const Tensor& predictions, const Tensor& targets = Tensor());
/// 0.5 * e^2 where |e| <= delta, else 0.5 * delta^2 + delta * (|e| - delta), e = predictions -
/// targets (broadcasting; undefined targets mean zeros).
Tensor huber_loss(const Tensor& predictions, const Tensor& targets = Tensor(), double delta = 1.0);

}  // namespace loom

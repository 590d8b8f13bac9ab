// Optax's losses (optax.losses) in loom::optim: per-example values without reduction, as Optax
// returns them. They are core ops (core/ops/loss.h, differentiable, CPU and CUDA); this header
// only makes them available under the optim namespace next to the optimizers.
//
// Example:
//   Tensor loss = mean(optim::softmax_cross_entropy_with_integer_labels(logits, labels));
#pragma once
#include "core/ops/loss.h"

namespace loom::optim {

using loom::huber_loss;
using loom::l2_loss;
using loom::sigmoid_binary_cross_entropy;
using loom::softmax_cross_entropy;
using loom::softmax_cross_entropy_with_integer_labels;
using loom::squared_error;

}  // namespace loom::optim

// Casts of whole trees: a model's params to the compute dtype every step, the gradients back.
// On a GPU every leaf of a dtype pair is cast by one kernel instead of one kernel per leaf (GPT-2
// small has 148 params: 296 launches a step for the two casts of a mixed-precision step).
// Differentiable as Tensor::to, leaf by leaf.
//
//   Tree p16 = cast_floating(state.params, DType::BF16);
//   auto [loss, g16] = value_and_grad(loss_fn)(p16);   // loss_fn applies the model to p16
//   Tree grads = cast_like(g16, state.params);         // the float32 gradients, bit for bit
//                                                      // those of casting inside loss_fn
#pragma once
#include "core/tree.h"

namespace loom {

/// Every floating leaf of `tree` cast to the floating dtype `dtype`; other leaves as they are.
Tree cast_floating(const Tree& tree, DType dtype);
/// Every leaf of `tree` cast to the dtype of the leaf at the same path in `like` (ValueError
/// when the structures differ).
Tree cast_like(const Tree& tree, const Tree& like);

}  // namespace loom

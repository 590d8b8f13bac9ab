// TrainState as Flax's flax.training.train_state.TrainState: the step, the params, the optimizer
// and its state, plus extra collections (e.g. {"batch_stats": ...}) that the training step
// replaces. Values: apply_gradients returns the next state and leaves this one untouched.
//
// Example:
//   TrainState state = TrainState::create(variables["params"], optim::sgd(0.1, 0.9),
//                                         {{"batch_stats", variables["batch_stats"]}});
//   auto [loss, grads] = value_and_grad(loss_fn)(state.params);
//   state = state.apply_gradients(grads, new_batch_stats_collections);
#pragma once
#include <optional>

#include "optim/transform.h"

namespace loom::train {

struct TrainState {
  Tensor step;  // int32 0-d on the params' device; +1 per apply_gradients
  Tree params;
  optim::GradientTransformation tx;
  Tree opt_state;
  Tree extra;  // other variable collections by name, e.g. {"batch_stats": {...}}

  /// step 0, opt_state = tx.init(params).
  static TrainState create(Tree params, optim::GradientTransformation tx, Tree extra = {});
  /// One optimizer step: (updates, opt_state) = tx.update(grads, opt_state, params), params =
  /// apply_updates(params, updates) (fused into one kernel for the fused optimizers), step + 1;
  /// `new_extra` replaces extra when given. Grads must have the params' structure (ShapeError
  /// naming the first differing path).
  TrainState apply_gradients(const Tree& grads, std::optional<Tree> new_extra = std::nullopt) const;

  /// Flax's state dict of the TrainState: {"step", "params", "opt_state", <extra collections>}
  /// (what a checkpoint stores).
  Tree state_dict() const;
  /// A copy with step, params, opt_state and extra taken from `state_dict`, which must have
  /// this state's structure, shapes and dtypes (errors name the first differing path); leaves
  /// move to this state's devices.
  TrainState load_state_dict(const Tree& state_dict) const;
  /// The step as a host integer (synchronises with the GPU).
  int64_t step_value() const;
};

}  // namespace loom::train

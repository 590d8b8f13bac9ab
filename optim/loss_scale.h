// Dynamic loss scaling for float16 training, as jmp.DynamicLossScale (and PyTorch's GradScaler,
// whose defaults it takes). float16 gradients underflow to zero below ~6e-8; multiplying the loss
// by a large scale before differentiating lifts them into range, and the gradients are divided
// by it again before the optimizer sees them. When the scaled gradients overflow (Inf/NaN) the
// update is skipped and the scale halved; after `period` finite steps in a row it is doubled, so
// the scale settles just below the overflow point.
//
// Everything is tensor ops on 0-d device tensors, so a step never waits for the GPU.
//
// Example (the optimizer side holds the scale, so checkpoints store it with the optimizer):
//   GradientTransformation tx = dynamic_loss_scale(adam(1e-3));
//   Tree state = tx.init(params);
//   auto [scaled_loss, grads] = value_and_grad(
//       [&](const Tree& p) { return loss_fn(p) * current_loss_scale(state); })(params);
//   auto [updates, next] = tx.update(grads, state, params);   // unscales, skips on overflow
//
// Or the value type alone, as with jmp:
//   DynamicLossScale ls = DynamicLossScale::create({}, device);
//   grads = ls.unscale(grads_of(ls.scale(loss)));
//   Tensor finite = all_finite(grads);
//   ls = ls.adjust(finite);
//   params = select_tree(finite, new_params, params);
#pragma once
#include <cstdint>

#include "optim/transform.h"

namespace loom::optim {

struct DynamicLossScaleOptions {
  double initial_scale = 65536;  // 2^16, GradScaler's init_scale
  int64_t period = 2000;         // finite steps in a row before the scale grows
  double factor = 2;             // growth on `period` finite steps, backoff on a non-finite one
  double min_scale = 1;          // the scale never falls below this
};

/// jmp.DynamicLossScale: the current scale (float32 0-d) and the number of finite steps since it
/// last changed (int32 0-d), both on one device.
struct DynamicLossScale {
  Tensor loss_scale;
  Tensor counter;
  int64_t period = 2000;
  double factor = 2;
  double min_scale = 1;

  /// Scale options.initial_scale, counter 0, on `device`. ValueError for a non-positive scale,
  /// period or min_scale, or a factor <= 1.
  static DynamicLossScale create(const DynamicLossScaleOptions& options = {},
                                 Device device = Device::cpu());
  /// loss * loss_scale, in the loss's dtype (differentiable in `loss`).
  Tensor scale(const Tensor& loss) const;
  /// Every leaf times 1 / loss_scale, each kept in its own dtype.
  Tree unscale(const Tree& grads) const;
  /// The next scale after a step whose gradients were finite or not (a bool 0-d tensor):
  /// finite: counter + 1, and when that reaches `period` the scale is multiplied by `factor` and
  /// the counter restarts at 0; non-finite: scale / factor (at least min_scale), counter 0.
  DynamicLossScale adjust(const Tensor& grads_finite) const;
};

/// A bool 0-d tensor on the tree's device: true when every element of every floating leaf is
/// finite (jmp.all_finite; true for a tree without leaves).
Tensor all_finite(const Tree& tree);
/// Leafwise where(pred, a, b) over two trees of the same structure, in b's dtypes and devices
/// (jmp.select_tree). ShapeError naming `op` when the structures differ.
Tree select_tree(const Tensor& pred, const Tree& a, const Tree& b, const char* op = "select_tree");

/// The optimizer side of loss scaling around `inner`: incoming gradients are unscaled by the
/// current scale, then the inner update runs when they are finite; otherwise the update is zeros,
/// the inner state is kept (the step is skipped) and the scale backs off. Unlike apply_if_finite
/// there is no give-up: an overflow is the scale's fault, not the data's. State {"loss_scale",
/// "counter", "last_finite", "total_notfinite" (skipped steps so far), "inner_state"}.
GradientTransformation dynamic_loss_scale(GradientTransformation inner,
                                          DynamicLossScaleOptions options = {});
/// The scale the next loss must be multiplied by, from a dynamic_loss_scale state (float32 0-d).
/// ValueError naming the keys present when `opt_state` was not made by dynamic_loss_scale.
const Tensor& current_loss_scale(const Tree& opt_state);

}  // namespace loom::optim

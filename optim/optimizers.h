// Optax's optimizer aliases with Optax's defaults (optax.sgd, adam, adamw, ...). Each is the
// chain Optax builds, so its state has Optax's layout ({"0": ..., "1": ...}); sgd, adam, adamw,
// nadam and nadamw run as fused multi-tensor kernels (optim/fused.h) with the same numbers.
// The learning rate is a constant, a Schedule (optim/schedules.h) or a 0-d tensor.
//
// Example:
//   GradientTransformation tx = adamw(warmup_cosine_decay_schedule(0, 3e-4, 500, 50000),
//                                     {.weight_decay = 0.05, .mask = decay_mask});
//   GradientTransformation momentum_sgd = sgd(0.1, 0.9);
#pragma once
#include <optional>

#include "optim/transforms.h"

namespace loom::optim {

/// Plain, momentum or Nesterov SGD: chain(trace(momentum, nesterov) or identity(), -lr).
GradientTransformation sgd(ScalarOrSchedule learning_rate,
                           std::optional<double> momentum = std::nullopt, bool nesterov = false,
                           std::optional<DType> accumulator_dtype = std::nullopt);

/// chain(scale_by_adam(options), -lr).
GradientTransformation adam(ScalarOrSchedule learning_rate, const AdamOptions& options = {});
/// adam with nesterov = true.
GradientTransformation nadam(ScalarOrSchedule learning_rate, AdamOptions options = {});

struct AdamWOptions {
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-8;
  double eps_root = 0.0;
  std::optional<DType> mu_dtype = std::nullopt;
  ScalarOrSchedule weight_decay = 1e-4;  // Optax's default (PyTorch's AdamW uses 1e-2)
  std::optional<Mask> mask = std::nullopt;  // leaves to decay (default: all)
  bool nesterov = false;
};
/// chain(scale_by_adam, add_decayed_weights(weight_decay, mask), -lr): decoupled weight decay
/// multiplied by the learning rate.
GradientTransformation adamw(ScalarOrSchedule learning_rate, const AdamWOptions& options = {});
/// adamw with nesterov = true.
GradientTransformation nadamw(ScalarOrSchedule learning_rate, AdamWOptions options = {});

struct LambOptions {
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-6;
  double eps_root = 0.0;
  ScalarOrSchedule weight_decay = 0.0;
  std::optional<Mask> mask = std::nullopt;
};
/// chain(scale_by_adam, add_decayed_weights, scale_by_trust_ratio(), -lr).
GradientTransformation lamb(ScalarOrSchedule learning_rate, const LambOptions& options = {});

struct LarsOptions {
  ScalarOrSchedule weight_decay = 0.0;
  Mask weight_decay_mask = true;
  double trust_coefficient = 0.001;
  double eps = 0.0;
  Mask trust_ratio_mask = true;
  double momentum = 0.9;
  bool nesterov = false;
};
/// chain(add_decayed_weights(wd, mask), masked(scale_by_trust_ratio(trust_coefficient, eps)),
/// -lr, trace(momentum, nesterov)): the momentum comes after the learning rate.
GradientTransformation lars(ScalarOrSchedule learning_rate, const LarsOptions& options = {});

struct RmspropOptions {
  double decay = 0.9;
  double eps = 1e-8;
  double initial_scale = 0.0;
  bool eps_in_sqrt = true;  // eps inside the square root (Optax's default, unlike PyTorch)
  bool centered = false;
  std::optional<double> momentum = std::nullopt;
  bool nesterov = false;
  bool bias_correction = false;
};
/// chain(scale_by_rms or scale_by_stddev (centered), -lr, trace(momentum) or identity()).
GradientTransformation rmsprop(ScalarOrSchedule learning_rate, const RmspropOptions& options = {});

/// chain(scale_by_rss(initial_accumulator_value, eps), -lr).
GradientTransformation adagrad(ScalarOrSchedule learning_rate,
                               double initial_accumulator_value = 0.1, double eps = 1e-7);

struct LionOptions {
  double b1 = 0.9;
  double b2 = 0.99;
  std::optional<DType> mu_dtype = std::nullopt;
  ScalarOrSchedule weight_decay = 1e-3;
  std::optional<Mask> mask = std::nullopt;
};
/// chain(scale_by_lion(b1, b2), add_decayed_weights(weight_decay, mask), -lr).
GradientTransformation lion(ScalarOrSchedule learning_rate, const LionOptions& options = {});

struct AdafactorOptions {
  int64_t min_dim_size_to_factor = 128;
  double decay_rate = 0.8;
  int64_t decay_offset = 0;
  bool multiply_by_parameter_scale = true;
  std::optional<double> clipping_threshold = 1.0;
  std::optional<double> momentum = std::nullopt;
  DType dtype_momentum = DType::F32;
  std::optional<ScalarOrSchedule> weight_decay_rate = std::nullopt;
  double eps = 1e-30;
  bool factored = true;
  std::optional<Mask> weight_decay_mask = std::nullopt;
};
/// chain(scale_by_factored_rms, [clip_by_block_rms], [lr * u (no sign flip)],
/// [scale_by_param_block_rms], [ema(momentum, debias=false)], [add_decayed_weights], scale(-1)).
GradientTransformation adafactor(std::optional<ScalarOrSchedule> learning_rate = std::nullopt,
                                 const AdafactorOptions& options = {});

}  // namespace loom::optim

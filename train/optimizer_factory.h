// The optimizer and learning-rate schedule a TrainConfig asks for.
#pragma once
#include "optim/transform.h"
#include "train/trainer.h"

namespace loom::train {

struct OptimizerChoice {
  optim::GradientTransformation tx;
  optim::Schedule learning_rate;  // evaluated on the host for logging: learning_rate(step)
  double learning_rate_at(int64_t step) const;
};

/// sgd, momentum (sgd with cfg.momentum), adam, adamw (cfg.weight_decay); schedule "constant" or
/// "cosine" (linear warmup over cfg.warmup_steps, then cosine decay to 0 at total_steps).
/// Wrapped in optim::dynamic_loss_scale for cfg.precision "f16", else in optim::apply_if_finite
/// for cfg.skip_nonfinite; either way the state holds "total_notfinite" and "last_finite".
OptimizerChoice make_optimizer(const TrainConfig& cfg, int64_t total_steps);

}  // namespace loom::train

#include "train/optimizer_factory.h"

#include <algorithm>

#include "optim/loss_scale.h"
#include "optim/optimizers.h"
#include "optim/schedules.h"
#include "optim/wrappers.h"

namespace loom::train {

double OptimizerChoice::learning_rate_at(int64_t step) const { return learning_rate(step); }

OptimizerChoice make_optimizer(const TrainConfig& cfg, int64_t total_steps) {
  optim::Schedule lr;
  if (cfg.schedule == "constant") {
    lr = optim::constant_schedule(cfg.learning_rate);
  } else if (cfg.schedule == "cosine") {
    int64_t warmup = std::min(cfg.warmup_steps, std::max<int64_t>(total_steps - 1, 0));
    lr = optim::warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup,
                                             std::max<int64_t>(total_steps, warmup + 1));
  } else {
    LOOM_THROW(ValueError, "unknown schedule '", cfg.schedule, "' (constant, cosine)");
  }
  optim::GradientTransformation tx;
  if (cfg.optimizer == "sgd") tx = optim::sgd(lr);
  else if (cfg.optimizer == "momentum") tx = optim::sgd(lr, cfg.momentum);
  else if (cfg.optimizer == "adam") tx = optim::adam(lr);
  else if (cfg.optimizer == "adamw") {
    optim::AdamWOptions options;
    options.weight_decay = cfg.weight_decay;
    tx = optim::adamw(lr, options);
  }
  else LOOM_THROW(ValueError, "unknown optimizer '", cfg.optimizer, "' (sgd, momentum, adam, adamw)");
  // float16 gradients need loss scaling, which skips overflowing steps by itself.
  if (cfg.precision == "f16") tx = optim::dynamic_loss_scale(tx, {.period = cfg.loss_scale_period});
  else if (cfg.skip_nonfinite) tx = optim::apply_if_finite(tx, cfg.max_consecutive_nonfinite);
  return {tx, lr};
}

}  // namespace loom::train

// Fused multi-tensor forms of sgd and adam / adamw (and their nesterov variants): the update of
// every leaf runs as one kernel (one CPU loop over all elements, one CUDA launch) that reads the
// gradient, the moments and the param once and writes the results once, with the step count and
// the learning rate read from device memory. The state layout and the numbers equal the composed
// chains (chain(trace, scale_by_learning_rate), chain(scale_by_adam, [add_decayed_weights,]
// scale_by_learning_rate)), so checkpoints are interchangeable. optim::sgd / adam / adamw return
// these; trees the kernels do not cover (non-float32 leaves, leaves on several devices, a
// weight-decay schedule, mu_dtype / accumulator_dtype other than float32) take the composed path.
#pragma once
#include <optional>

#include "optim/transforms.h"

namespace loom::optim {

/// chain(momentum ? trace(momentum, nesterov) : identity(), scale_by_learning_rate(lr)), fused.
GradientTransformation fused_sgd(ScalarOrSchedule learning_rate, std::optional<double> momentum,
                                 bool nesterov);
/// chain(scale_by_adam(options), [add_decayed_weights(*weight_decay, mask),]
/// scale_by_learning_rate(lr)), fused; weight_decay set = adamw.
GradientTransformation fused_adam(ScalarOrSchedule learning_rate, const AdamOptions& options,
                                  std::optional<ScalarOrSchedule> weight_decay = std::nullopt,
                                  std::optional<Mask> mask = std::nullopt);

/// Turns the fused kernels off (every update takes the composed path) or back on; on by default
/// (the environment variable LOOM_FUSED_OPTIM=0 starts with them off). Process-wide.
void set_fused_updates_enabled(bool enabled);
bool fused_updates_enabled();

}  // namespace loom::optim

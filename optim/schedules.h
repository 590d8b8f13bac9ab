// Optax's schedules (optax.schedules): each returns a Schedule evaluated with float32 tensor ops on
// the step count's device, reproducing Optax's float32 arithmetic step for step (Python-float
// constants are rounded to float32 where JAX rounds them). `schedule(step)` evaluates on the CPU.
//
// Example:
//   Schedule lr = warmup_cosine_decay_schedule(0.0, 1e-3, 1000, 100000);  // decay includes warmup
//   GradientTransformation tx = adamw(lr);
//   double now = lr(int64_t(5000));
#pragma once
#include <map>
#include <optional>
#include <vector>

#include "optim/transform.h"

namespace loom::optim {

/// `value` at every step.
Schedule constant_schedule(double value);
/// (init - end) * (1 - c / transition_steps)^power + end with c = clip(count - begin, 0, steps);
/// transition_steps <= 0 gives a constant init, a negative transition_begin counts as 0.
Schedule polynomial_schedule(double init_value, double end_value, double power,
                             int64_t transition_steps, int64_t transition_begin = 0);
/// polynomial_schedule with power 1.
Schedule linear_schedule(double init_value, double end_value, int64_t transition_steps,
                         int64_t transition_begin = 0);
/// init times every `scale` whose boundary the count has reached (boundaries sorted; scales >= 0).
Schedule piecewise_constant_schedule(double init_value,
                                     const std::map<int64_t, double>& boundaries_and_scales = {});
/// init * decay_rate^((count - begin) / transition_steps) (the exponent floored with
/// staircase), init until `transition_begin`; clipped at `end_value` from below when
/// decay_rate < 1, from above otherwise. transition_steps <= 0 or decay_rate == 0: constant.
Schedule exponential_decay(double init_value, int64_t transition_steps, double decay_rate,
                           int64_t transition_begin = 0, bool staircase = false,
                           std::optional<double> end_value = std::nullopt);
/// init * ((1 - alpha) * (0.5 * (1 + cos(pi * min(count, decay_steps) / decay_steps)))^exponent
/// + alpha); decay_steps must be positive (ValueError).
Schedule cosine_decay_schedule(double init_value, int64_t decay_steps, double alpha = 0.0,
                               double exponent = 1.0);
/// Linear warmup init -> peak over warmup_steps, then cosine decay to end_value; decay_steps
/// counts the warmup too (as Optax).
Schedule warmup_cosine_decay_schedule(double init_value, double peak_value, int64_t warmup_steps,
                                      int64_t decay_steps, double end_value = 0.0,
                                      double exponent = 1.0);
/// Linear warmup init -> peak over warmup_steps, then exponential_decay from peak.
Schedule warmup_exponential_decay_schedule(double init_value, double peak_value,
                                           int64_t warmup_steps, int64_t transition_steps,
                                           double decay_rate, int64_t transition_begin = 0,
                                           bool staircase = false,
                                           std::optional<double> end_value = std::nullopt);
/// schedules[0] until boundaries[0], then schedules[1](count - boundaries[0]), and so on
/// (boundaries.size() == schedules.size() - 1, else ValueError).
Schedule join_schedules(const std::vector<Schedule>& schedules,
                        const std::vector<int64_t>& boundaries);
/// Cosine interpolation between the values init * prod(scales up to the boundary) at the
/// boundaries (optax.piecewise_interpolate_schedule('cosine', ...)).
Schedule piecewise_cosine_interpolate_schedule(
    double init_value, const std::map<int64_t, double>& boundaries_and_scales);
/// One-cycle: cosine warmup from peak/div_factor to peak over pct_start * steps, then cosine
/// annealing to peak / (div_factor * final_div_factor) at transition_steps (> 0, else ValueError).
Schedule cosine_onecycle_schedule(int64_t transition_steps, double peak_value,
                                  double pct_start = 0.3, double div_factor = 25.0,
                                  double final_div_factor = 1e4);

}  // namespace loom::optim

// Optax's gradient transformations (optax.scale_by_adam, optax.trace, optax.clip_by_global_norm,
// ...). Each reproduces Optax's float32 arithmetic and its state layout (Flax state-dict names in
// the comments). Counts are int32 0-d tensors on the params' device; nothing synchronises with
// the host. Constants given as double are rounded to the updates' dtype where JAX rounds a Python
// float (weak typing), e.g. `(1 - b1) * g` rounds 1 - b1 once.
//
// Example:
//   GradientTransformation tx = chain(clip_by_global_norm(1.0), scale_by_adam(),
//                                     add_decayed_weights(1e-4), scale_by_learning_rate(1e-3));
#pragma once
#include <optional>

#include "optim/transform.h"

namespace loom::optim {

// --- scaling ---
/// u * step_size; state {}.
GradientTransformation scale(double step_size);
/// u * step_size for a 0-d tensor step size (promotes like JAX: a float32 step makes bf16
/// updates float32); state {}.
GradientTransformation scale(const Tensor& step_size);
/// u * step_size_fn(count) (cast to u's dtype); state {"count"}; the first update uses count 0.
GradientTransformation scale_by_schedule(Schedule step_size_fn);
/// -lr * u (lr * u without flip_sign): a constant or tensor lr is scale() (state {}), a schedule
/// is scale_by_schedule (state {"count"}).
GradientTransformation scale_by_learning_rate(ScalarOrSchedule learning_rate, bool flip_sign = true);
/// sign(u); state {}.
GradientTransformation scale_by_sign();

struct AdamOptions {
  double b1 = 0.9;
  double b2 = 0.999;
  double eps = 1e-8;
  double eps_root = 0.0;
  std::optional<DType> mu_dtype = std::nullopt;  // dtype of mu (default: the params')
  bool nesterov = false;
};
/// Adam's preconditioning: mu = b1 mu + (1-b1) g, nu = b2 nu + (1-b2) g^2,
/// u = mu_hat / (sqrt(nu_hat + eps_root) + eps) with bias corrections 1 - b^t computed in float32
/// (t = count + 1; nesterov: mu_hat = b1 mu / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t)).
/// State {"count", "mu", "nu"} (ScaleByAdamState).
GradientTransformation scale_by_adam(const AdamOptions& options = {});

struct RmsOptions {
  double decay = 0.9;
  double eps = 1e-8;
  double initial_scale = 0.0;  // nu starts here
  bool eps_in_sqrt = true;     // rsqrt(nu + eps), else 1 / (sqrt(nu) + eps)
  bool bias_correction = false;
};
/// nu = decay nu + (1-decay) g^2; u = g * rsqrt(nu_hat + eps). State {"nu"}, or {"count", "nu"}
/// with bias_correction.
GradientTransformation scale_by_rms(const RmsOptions& options = {});
/// Centered RMS: also mu = decay mu + (1-decay) g, u = g * rsqrt(nu_hat - mu_hat^2 + eps).
/// State {"mu", "nu"} or {"count", "mu", "nu"}.
GradientTransformation scale_by_stddev(const RmsOptions& options = {});
/// Adagrad: s += g^2 (s starts at initial_accumulator_value); u = g * rsqrt(s + eps) where s > 0,
/// else 0. State {"sum_of_squares"}.
GradientTransformation scale_by_rss(double initial_accumulator_value = 0.1, double eps = 1e-7);
/// Lion: u = sign((1-b1) g + b1 mu), then mu = b2 mu + (1-b2) g. State {"count", "mu"}.
GradientTransformation scale_by_lion(double b1 = 0.9, double b2 = 0.99,
                                     std::optional<DType> mu_dtype = std::nullopt);
/// Per leaf u * trust_coefficient * |p| / (|u| + eps) (1 where either norm is 0; norms below
/// min_norm count as min_norm). Needs params. State {}.
GradientTransformation scale_by_trust_ratio(double min_norm = 0.0, double trust_coefficient = 1.0,
                                            double eps = 0.0);
/// Per leaf u * max(rms(p), min_scale) (Adafactor's parameter scaling). Needs params. State {}.
GradientTransformation scale_by_param_block_rms(double min_scale = 1e-3);
/// Per leaf u * max(|p|, min_scale). Needs params. State {}.
GradientTransformation scale_by_param_block_norm(double min_scale = 1e-3);

struct FactoredRmsOptions {
  bool factored = true;
  double decay_rate = 0.8;  // beta2_t = 1 - (t + 1)^-decay_rate, t = count - step_offset
  int64_t step_offset = 0;
  int64_t min_dim_size_to_factor = 128;
  double epsilon = 1e-30;
};
/// Adafactor's second-moment estimate, factored into row and column means over the two largest
/// dimensions when the second largest is >= min_dim_size_to_factor (else a full moment).
/// State {"count", "v_row", "v_col", "v"} (FactoredState; unused entries are zeros of shape [1]).
GradientTransformation scale_by_factored_rms(const FactoredRmsOptions& options = {});

// --- accumulation ---
/// Momentum: t = g + decay t; u = t, or g + decay t with nesterov. State {"trace"}.
GradientTransformation trace(double decay, bool nesterov = false,
                             std::optional<DType> accumulator_dtype = std::nullopt);
/// e = decay e + (1-decay) g; u = e / (1 - decay^t) with debias, else e. State {"count", "ema"}.
GradientTransformation ema(double decay, bool debias = true,
                           std::optional<DType> accumulator_dtype = std::nullopt);

// --- adding ---
/// u + weight_decay * p (a constant 0 passes updates through). A schedule gives state {"count"},
/// else {}; with a mask the transformation is masked(..., mask) (state {"inner_state": ...}).
GradientTransformation add_decayed_weights(ScalarOrSchedule weight_decay = 0.0,
                                           std::optional<Mask> mask = std::nullopt);

// --- clipping ---
/// Each element clipped to [-max_delta, max_delta]. State {}.
GradientTransformation clip(double max_delta);
/// All updates scaled by max_norm / n when their global norm n is not < max_norm (the strict <
/// of Optax: u passes unchanged when n < max_norm). State {}.
GradientTransformation clip_by_global_norm(double max_norm);
/// Per leaf u / max(1, rms(u) / threshold). State {}.
GradientTransformation clip_by_block_rms(double threshold);

}  // namespace loom::optim

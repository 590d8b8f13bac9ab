#include "optim/optimizers.h"

#include "optim/fused.h"
#include "optim/wrappers.h"

namespace loom::optim {

GradientTransformation sgd(ScalarOrSchedule learning_rate, std::optional<double> momentum,
                           bool nesterov, std::optional<DType> accumulator_dtype) {
  if (!accumulator_dtype || *accumulator_dtype == DType::F32)
    return fused_sgd(learning_rate, momentum, nesterov);
  return chain(momentum ? trace(*momentum, nesterov, accumulator_dtype) : identity(),
               scale_by_learning_rate(learning_rate));
}

GradientTransformation adam(ScalarOrSchedule learning_rate, const AdamOptions& options) {
  return fused_adam(learning_rate, options);
}

GradientTransformation nadam(ScalarOrSchedule learning_rate, AdamOptions options) {
  options.nesterov = true;
  return adam(learning_rate, options);
}

GradientTransformation adamw(ScalarOrSchedule learning_rate, const AdamWOptions& o) {
  AdamOptions a{o.b1, o.b2, o.eps, o.eps_root, o.mu_dtype, o.nesterov};
  return fused_adam(learning_rate, a, o.weight_decay, o.mask);
}

GradientTransformation nadamw(ScalarOrSchedule learning_rate, AdamWOptions options) {
  options.nesterov = true;
  return adamw(learning_rate, options);
}

GradientTransformation lamb(ScalarOrSchedule learning_rate, const LambOptions& o) {
  AdamOptions a;
  a.b1 = o.b1;
  a.b2 = o.b2;
  a.eps = o.eps;
  a.eps_root = o.eps_root;
  return chain(scale_by_adam(a),
               add_decayed_weights(o.weight_decay, o.mask), scale_by_trust_ratio(),
               scale_by_learning_rate(learning_rate));
}

GradientTransformation lars(ScalarOrSchedule learning_rate, const LarsOptions& o) {
  return chain(add_decayed_weights(o.weight_decay, o.weight_decay_mask),
               masked(scale_by_trust_ratio(0.0, o.trust_coefficient, o.eps), o.trust_ratio_mask),
               scale_by_learning_rate(learning_rate), trace(o.momentum, o.nesterov));
}

GradientTransformation rmsprop(ScalarOrSchedule learning_rate, const RmspropOptions& o) {
  RmsOptions r{o.decay, o.eps, o.initial_scale, o.eps_in_sqrt, o.bias_correction};
  return chain(o.centered ? scale_by_stddev(r) : scale_by_rms(r), scale_by_learning_rate(learning_rate),
               o.momentum ? trace(*o.momentum, o.nesterov) : identity());
}

GradientTransformation adagrad(ScalarOrSchedule learning_rate, double initial_accumulator_value,
                               double eps) {
  return chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate));
}

GradientTransformation lion(ScalarOrSchedule learning_rate, const LionOptions& o) {
  return chain(scale_by_lion(o.b1, o.b2, o.mu_dtype), add_decayed_weights(o.weight_decay, o.mask),
               scale_by_learning_rate(learning_rate));
}

GradientTransformation adafactor(std::optional<ScalarOrSchedule> learning_rate,
                                 const AdafactorOptions& o) {
  FactoredRmsOptions f;
  f.factored = o.factored;
  f.decay_rate = o.decay_rate;
  f.step_offset = o.decay_offset;
  f.min_dim_size_to_factor = o.min_dim_size_to_factor;
  f.epsilon = o.eps;
  std::vector<GradientTransformation> parts{scale_by_factored_rms(f)};
  if (o.clipping_threshold) parts.push_back(clip_by_block_rms(*o.clipping_threshold));
  if (learning_rate) parts.push_back(scale_by_learning_rate(*learning_rate, /*flip_sign=*/false));
  if (o.multiply_by_parameter_scale) parts.push_back(scale_by_param_block_rms());
  if (o.momentum) parts.push_back(ema(*o.momentum, /*debias=*/false, o.dtype_momentum));
  if (o.weight_decay_rate) parts.push_back(add_decayed_weights(*o.weight_decay_rate, o.weight_decay_mask));
  parts.push_back(scale(-1.0));
  return chain(std::move(parts));
}

}  // namespace loom::optim

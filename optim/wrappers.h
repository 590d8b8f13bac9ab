// Optax's wrappers: masked, multi_transform (partition), MultiSteps, apply_if_finite and
// inject_hyperparams. They branch with tensor selects (jnp.where), never on host values, so an
// update stays free of host synchronisation (MultiSteps computes the inner update every call and
// keeps it only on the emitting step, as Optax does).
//
// Example:
//   GradientTransformation tx = multi_transform(
//       {{"train", adamw(1e-3)}, {"frozen", set_to_zero()}},
//       [](const std::string& path, const Tensor&) {
//         return path.starts_with("encoder/") ? "frozen" : "train";
//       });
//   GradientTransformation big_batch = multi_steps(adam(1e-3), 4);   // 4 micro-batches per step
//   GradientTransformation logged = inject_hyperparams(
//       [](const Hyperparams& h) { return adam(h.at("learning_rate")); },
//       {{"learning_rate", warmup_cosine_decay_schedule(0, 1e-3, 100, 10000)}});
//   // state["hyperparams"]["learning_rate"] holds the learning rate of the last update.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "optim/transform.h"

namespace loom::optim {

/// `inner` applied to the leaves the mask selects; unselected leaves pass through unchanged (not
/// zeroed), as optax.masked. The inner state sees unselected subtrees as empty dicts (Optax's
/// MaskedNode). State {"inner_state": ...}.
GradientTransformation masked(GradientTransformation inner, Mask mask);

/// A label per params leaf: a function of (path, leaf), or a map from paths to labels where a
/// path may name a leaf or a whole subtree (the longest matching path wins).
class ParamLabels {
 public:
  using Fn = std::function<std::string(const std::string& path, const Tensor& leaf)>;
  ParamLabels(std::map<std::string, std::string> by_path);  // NOLINT
  template <typename F>
    requires(std::is_invocable_r_v<std::string, F, const std::string&, const Tensor&> &&
             !std::is_same_v<std::decay_t<F>, ParamLabels>)
  ParamLabels(F fn) : fn_(std::move(fn)) {}  // NOLINT

  /// The label of every leaf of `tree`, in flatten() order; ValueError names a leaf without one.
  std::vector<std::string> resolve(const Tree& tree) const;

 private:
  Fn fn_;
  std::map<std::string, std::string> by_path_;
};

/// Each label's transformation applied to the leaves with that label (masked by label, in the
/// order given). Every label must have a transformation (ValueError naming the labels and the
/// transformation keys). State {"inner_states": {label: {"inner_state": ...}, ...}}.
GradientTransformation multi_transform(
    std::vector<std::pair<std::string, GradientTransformation>> transforms, ParamLabels labels);
/// Optax's newer name for multi_transform.
inline GradientTransformation partition(
    std::vector<std::pair<std::string, GradientTransformation>> transforms, ParamLabels labels) {
  return multi_transform(std::move(transforms), std::move(labels));
}

/// Gradient accumulation (optax.MultiSteps): gradients are averaged (or summed) over `every_k`
/// calls; the inner optimizer's update is emitted on every k-th call and zeros otherwise.
/// State {"mini_step", "gradient_step", "inner_opt_state", "acc_grads", "skip_state": {}}.
GradientTransformation multi_steps(GradientTransformation inner, int64_t every_k,
                                   bool use_grad_mean = true,
                                   DType accumulator_dtype = DType::F32);
/// Whether the last update of a multi_steps state emitted an inner update (bool 0-d tensor).
Tensor multi_steps_has_updated(const Tree& state);

/// Skips updates whose gradients contain inf or NaN: zeros are returned and the inner state is
/// kept, unless more than max_consecutive_errors non-finite updates came in a row (then the
/// update goes through). State {"notfinite_count", "last_finite", "total_notfinite",
/// "inner_state"}.
GradientTransformation apply_if_finite(GradientTransformation inner, int64_t max_consecutive_errors);

/// Hyperparameters handed to an inject_hyperparams factory: 0-d tensors on the params' device.
using Hyperparams = std::map<std::string, Tensor>;
using HyperparamFactory = std::function<GradientTransformation(const Hyperparams&)>;
/// Rebuilds factory(hyperparams) on every update with the named hyperparameters as device
/// scalars: a constant is stored once, a schedule is evaluated at its own step count. The values
/// used by the last update sit in state["hyperparams"][name] (the learning rate for logging).
/// Hyperparameters are cast to `dtype` (default: the params' highest floating dtype). State
/// {"count", "hyperparams", "hyperparams_states": {schedule name: {"count"}}, "inner_state"}.
GradientTransformation inject_hyperparams(
    HyperparamFactory factory, std::vector<std::pair<std::string, ScalarOrSchedule>> hyperparams,
    std::optional<DType> dtype = std::nullopt);
/// The first state["hyperparams"][name] found in `opt_state` (searching nested states
/// depth-first), e.g. the injected learning rate inside a chain; nullopt when absent.
std::optional<Tensor> find_hyperparam(const Tree& opt_state, const std::string& name);

}  // namespace loom::optim

// Optax's core in C++: a GradientTransformation is a pair of pure functions, init(params) ->
// state and update(updates, state, params) -> (updates, state). Optimizer state is a Tree named
// like Flax's state dict of the Optax state (chain -> {"0": ..., "1": ...}, ScaleByAdamState ->
// {"count", "mu", "nu"}, EmptyState -> {}), so checkpoints store it by path and match Flax's.
//
// Step counts are int32 0-d tensors on the params' device, and learning rates from schedules are
// computed from them with tensor ops: an update never synchronises with the GPU.
//
// Example:
//   GradientTransformation tx = chain(clip_by_global_norm(1.0), adamw(1e-3));
//   Tree state = tx.init(params);
//   auto [updates, next_state] = tx.update(grads, state, params);
//   params = apply_updates(params, updates);
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "core/tree.h"

namespace loom::optim {

/// A schedule: the value of a hyperparameter at optimizer step `count` (an int32 0-d tensor),
/// written with tensor ops so it runs on the count's device without a host synchronisation.
/// Factories in optim/schedules.h; any callable Tensor(const Tensor&) converts.
class Schedule {
 public:
  using Fn = std::function<Tensor(const Tensor& count)>;
  Schedule() = default;
  template <typename F>
    requires(std::is_invocable_r_v<Tensor, F, const Tensor&> &&
             !std::is_same_v<std::decay_t<F>, Schedule>)
  Schedule(F fn) : fn_(std::move(fn)) {}  // NOLINT: lambdas convert, as Python callables do

  explicit operator bool() const { return bool(fn_); }
  /// The value at `count` as a floating 0-d tensor on count's device (integer results are cast
  /// to float32).
  Tensor operator()(const Tensor& count) const;
  /// The value at `step`, evaluated on the CPU (for logging and tests; no GPU involved).
  double operator()(int64_t step) const;

 private:
  Fn fn_;
};

/// A hyperparameter that is a constant, a schedule of the step count, or a 0-d tensor (an
/// injected hyperparameter, see inject_hyperparams). Optax's ScalarOrSchedule.
class ScalarOrSchedule {
 public:
  template <typename T>
    requires std::is_arithmetic_v<T>
  ScalarOrSchedule(T value) : v_(double(value)) {}  // NOLINT
  ScalarOrSchedule(Schedule s);                      // NOLINT
  template <typename F>
    requires(std::is_invocable_r_v<Tensor, F, const Tensor&> &&
             !std::is_same_v<std::decay_t<F>, Schedule> &&
             !std::is_same_v<std::decay_t<F>, ScalarOrSchedule>)
  ScalarOrSchedule(F fn) : ScalarOrSchedule(Schedule(std::move(fn))) {}  // NOLINT
  ScalarOrSchedule(Tensor value);  // NOLINT: a 0-d floating tensor

  bool is_constant() const { return v_.index() == 0; }
  bool is_schedule() const { return v_.index() == 1; }
  bool is_tensor() const { return v_.index() == 2; }
  double constant() const;           // throws ValueError unless is_constant()
  const Schedule& schedule() const;  // throws ValueError unless is_schedule()
  const Tensor& tensor() const;      // throws ValueError unless is_tensor()
  /// The value at `count` as a 0-d tensor on count's device (float32 for a constant).
  Tensor at(const Tensor& count) const;

 private:
  std::variant<double, Schedule, Tensor> v_;
};
using LearningRate = ScalarOrSchedule;

/// Which leaves a wrapper applies to: a bool (the whole tree), a Tree of bool 0-d tensors with
/// the structure of the params or a prefix of it (a leaf decides for its whole subtree), or a
/// function building such a tree from the params (called with the params in init and with the
/// updates in update, as Optax does).
class Mask {
 public:
  using Fn = std::function<Tree(const Tree&)>;
  Mask(bool all);  // NOLINT
  Mask(Tree tree);  // NOLINT
  template <typename F>
    requires(std::is_invocable_r_v<Tree, F, const Tree&> && !std::is_same_v<std::decay_t<F>, Mask> &&
             !std::is_same_v<std::decay_t<F>, Tree>)
  Mask(F fn) : fn_(std::move(fn)) {}  // NOLINT

  bool is_function() const { return bool(fn_); }
  /// The mask tree for `tree` (calls the function form with it).
  Tree resolve(const Tree& tree) const;

 private:
  Tree tree_;
  Fn fn_;
};

/// A Tree of bool 0-d CPU tensors with `tree`'s structure: pred(path, leaf) per leaf. Handy for
/// masks ("decay kernels only": [](auto& path, auto&) { return path.ends_with("kernel"); }).
Tree mask_where(const Tree& tree, const std::function<bool(const std::string& path, const Tensor& leaf)>& pred);
/// Per leaf of `tree` (in flatten() order): whether `mask` selects it. A mask leaf covers the
/// whole subtree at its path; throws ShapeError naming `op` and the first path where the mask
/// does not fit the tree, ValueError for a leaf that is not a bool 0-d tensor.
std::vector<bool> mask_leaves(const Tree& mask, const Tree& tree, const char* op);
/// `tree` with every unselected subtree replaced by an empty dict (Optax's MaskedNode(), which
/// Flax's state dict also writes as {}).
Tree apply_mask(const Tree& mask, const Tree& tree, const char* op);

struct GradientTransformation {
  std::function<Tree(const Tree& params)> init;
  std::function<std::pair<Tree, Tree>(const Tree& updates, const Tree& state, const Tree& params)>
      update;
  /// Optional: update followed by apply_updates in one pass, returning (new params, new state)
  /// with the same numbers. Set by the fused optimizers (sgd, adam, adamw and their nesterov
  /// forms); update_and_apply() uses it when present.
  std::function<std::pair<Tree, Tree>(const Tree& grads, const Tree& state, const Tree& params)>
      apply;
};

/// Passes updates through; state {} (optax.identity).
GradientTransformation identity();
/// Replaces updates by zeros; state {} (optax.set_to_zero, to freeze parameters).
GradientTransformation set_to_zero();
/// The transformations applied in order; state {"0": s0, "1": s1, ...} (optax.chain).
GradientTransformation chain(std::vector<GradientTransformation> transforms);
template <typename... Ts>
  requires(sizeof...(Ts) > 0 && (std::is_convertible_v<Ts, GradientTransformation> && ...))
GradientTransformation chain(Ts&&... transforms) {
  return chain(std::vector<GradientTransformation>{GradientTransformation(std::forward<Ts>(transforms))...});
}

/// params + updates leafwise, each cast back to the param's dtype (optax.apply_updates). A
/// structure mismatch throws ShapeError naming the first differing path.
Tree apply_updates(const Tree& params, const Tree& updates);
/// tx.update then apply_updates (or tx.apply, the fused form, when the transformation has one):
/// returns (new params, new state).
std::pair<Tree, Tree> update_and_apply(const GradientTransformation& tx, const Tree& grads,
                                       const Tree& state, const Tree& params);

// --- helpers for writing transformations ---
/// Device of the first leaf of `tree` (the CPU for a tree without leaves): where counts live.
Device tree_device(const Tree& tree);
/// An int32 0-d zero on `params`' device: a fresh step count.
Tensor zero_count(const Tree& params);
/// count + 1, saturating at INT32_MAX (optax.safe_increment), with tensor ops (no host sync).
Tensor safe_increment(const Tensor& count);
/// Throws ShapeError "`op`: `a_name` and `b_name` differ in structure; first difference at
/// 'path'" unless the two trees have the same structure; with `shapes`, also naming the first
/// leaf whose shapes differ.
void check_same_structure(const Tree& a, const Tree& b, const char* op, const char* a_name,
                          const char* b_name, bool shapes = true);
/// Throws ValueError naming `op` when `params` is empty but `updates` is not (transformations
/// that read the params, such as add_decayed_weights, need them passed to update).
void require_params(const Tree& updates, const Tree& params, const char* op);
/// Child `key` of a state dict; throws ValueError naming `op` and the keys present when absent
/// (a state that was not made by this transformation's init).
const Tree& state_field(const Tree& state, const std::string& key, const char* op);

}  // namespace loom::optim

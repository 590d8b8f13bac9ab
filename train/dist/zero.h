// ZeRO stage 1: the optimizer state sharded over the ranks. Instead of every rank averaging all
// gradients (all-reduce) and running the optimizer on all parameters with a full copy of its
// state, the gradients are reduce-scattered (each rank receives the average of its 1/N part), each
// rank updates its 1/N of the parameters with its 1/N of the optimizer state, and the updated
// parts are all-gathered. Optimizer memory drops to 1/N per rank for the same traffic as an
// all-reduce (which is a reduce-scatter followed by an all-gather).
//
// Parameters are flattened per (dtype, device) into one vector, padded with zeros to a multiple
// of the world size; the optimizer sees a Tree with one such shard per group, named like
// "float32@cpu". The numbers equal the unsharded step (pmean, then tx) for element-wise
// optimizers (sgd, momentum, adam, adamw, ...): each element sees the same gradient and state.
// Transforms that look across elements or leaves (clip_by_global_norm, lamb, lars, adafactor,
// masks by path) would see the flat shards instead and give different numbers. Wrappers that skip
// non-finite steps (apply_if_finite, dynamic_loss_scale) are exact with `skips_nonfinite`: a
// non-finite gradient element on any shard makes every rank's shard non-finite, so all ranks skip
// the step together, as the unsharded step skips on the averaged gradients.
//
// Checkpoints need not know about the sharding: full_state() gathers the state into the layout
// tx.init(params) gives an unsharded run, and load_full_state() takes this rank's slice of one.
//
// Example:
//   dist::ShardedOptimizer opt(optim::adamw(1e-3), params);
//   auto [loss, grads] = value_and_grad(loss_fn)(params);   // local gradients, not averaged
//   params = opt.step(params, grads);
#pragma once
#include <string>
#include <vector>

#include "optim/transform.h"
#include "train/dist/dist.h"

namespace loom::dist {

class ShardedOptimizer {
 public:
  /// Plans the flat layout of `params` and initialises this rank's shard of tx's state.
  /// `skips_nonfinite`: tx skips steps with non-finite gradients (see above).
  ShardedOptimizer(optim::GradientTransformation tx, const Tree& params,
                   bool skips_nonfinite = false);

  /// One optimizer step from this rank's local gradients (not yet averaged): returns the updated
  /// params, the same on every rank. `params` must be the same on every rank and have the
  /// structure, shapes and dtypes given to the constructor, as must `local_grads`.
  Tree step(const Tree& params, const Tree& local_grads);

  /// This rank's optimizer state: tx's state of the shard tree {group: [shard_size(group)]}.
  const Tree& state() const { return state_; }
  /// The whole optimizer state as an unsharded run holds it (tx.init(params)'s layout): every
  /// shard all-gathered. A collective: every rank must call it.
  Tree full_state() const;
  /// Replaces this rank's state by its slice of `full`, a state in tx.init(params)'s layout (from
  /// full_state() or an unsharded run's checkpoint), and returns the new state(). ShapeError
  /// naming the first path where `full` does not fit.
  const Tree& load_full_state(const Tree& full);
  /// Group names, in order ("float32@cpu", ...).
  std::vector<std::string> groups() const;
  /// Elements of `group` each rank holds (its padded size / world size).
  int64_t shard_size(const std::string& group) const;

 private:
  struct Group {
    std::string name;
    std::vector<size_t> leaves;  // flatten indices
    int64_t size = 0;            // elements before padding
    int64_t shard = 0;           // elements per rank
  };
  /// This rank's shard of `leaves` for every group (the padded flat vector's slice).
  Tree shard_of(const std::vector<Tensor>& leaves) const;
  /// [world * shard] flat vector of group g's leaves, zero-padded.
  Tensor flat(const Group& g, const std::vector<Tensor>& leaves) const;
  void check(const char* what, const Tree& tree) const;
  /// Whether `node` of the state is a shard tree {group: shard}.
  bool is_shard_tree(const Tree& node) const;
  /// A shard tree all-gathered into the params' structure (a collective).
  Tree gather(const Tree& shards) const;
  /// `node` of the state with every shard tree in it gathered.
  Tree gather_all(const Tree& node) const;
  /// `node` of the state taken from `full` (at `path`), each params-shaped tree as its shard.
  Tree slice(const Tree& node, const Tree& full, const std::string& path) const;

  optim::GradientTransformation tx_;
  Tree structure_;            // the params as given (structure, shapes, dtypes)
  std::vector<Group> groups_;
  bool skips_nonfinite_;
  Tree state_;
};

}  // namespace loom::dist

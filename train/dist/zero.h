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
// masks by path) would see the flat shards instead and give different numbers.
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
  ShardedOptimizer(optim::GradientTransformation tx, const Tree& params);

  /// One optimizer step from this rank's local gradients (not yet averaged): returns the updated
  /// params, the same on every rank. `params` must be the same on every rank and have the
  /// structure, shapes and dtypes given to the constructor, as must `local_grads`.
  Tree step(const Tree& params, const Tree& local_grads);

  /// This rank's optimizer state: tx's state of the shard tree {group: [shard_size(group)]}.
  const Tree& state() const { return state_; }
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

  optim::GradientTransformation tx_;
  Tree structure_;            // the params as given (structure, shapes, dtypes)
  std::vector<Group> groups_;
  Tree state_;
};

}  // namespace loom::dist

// Gradient all-reduce overlapped with the backward pass (PyTorch DDP's reducer, for loom's
// value_and_grad). The backward walk reports each parameter's gradient as soon as it is final
// (autograd::LeafReadyFn); the reducer packs them into buckets of about dist::bucket_bytes()
// (25 MiB) and starts each bucket's all-reduce (Communicator::all_reduce_async: a non-blocking
// MPI collective, or NCCL on a side stream) as soon as the bucket is complete, while the rest of
// the backward pass runs. finish() waits for the buckets and returns the averaged gradients.
//
// Buckets are fixed from the parameter tree alone (leaves in reverse flatten order, which is
// about the order backward finishes them, cut into runs of one dtype and device) and launched
// strictly in bucket order, so every rank issues the same collectives in the same order however
// its backward walk interleaves. Each element is reduced exactly as dist::pmean(grads) reduces
// it (the same ranks' values, the same dtype, the same division by the world size), so with two
// ranks the results are bitwise equal; with more ranks MPI may pick a different summation order
// for a different message size, giving float rounding differences only.
//
// Example (what loom train does):
//   auto [loss, aux, grads] = dist::value_and_grad_aux_pmean(loss_fn)(state.params);
//   state = state.apply_gradients(grads);   // grads already averaged over the world
#pragma once
#include <memory>
#include <utility>
#include <vector>

#include "core/grad.h"
#include "train/dist/dist.h"

namespace loom::dist {

class GradientReducer {
 public:
  /// Plans the buckets for gradients shaped like `params`.
  explicit GradientReducer(const Tree& params, ReduceOp op = ReduceOp::Mean);
  /// Waits for collectives still in flight (they write into buffers this object owns).
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  /// The callback for autograd::backward: ready(leaf, grad).
  autograd::LeafReadyFn hook();
  /// Leaf `leaf`'s gradient is final: launches every complete bucket that is next in order.
  void ready(int64_t leaf, const Tensor& grad);
  /// Waits for every bucket and returns the reduced gradients in flatten order (once: a reducer
  /// serves one backward pass). Every leaf must have been reported (ValueError naming the first
  /// missing one otherwise).
  std::vector<Tensor> finish();

  size_t bucket_count() const { return buckets_.size(); }
  /// Per bucket, in launch order: how many leaves had been reported when it was launched
  /// (fewer than all: it overlapped the backward pass).
  const std::vector<int64_t>& launched_after() const { return launched_after_; }

 private:
  struct Bucket {
    std::vector<size_t> leaves;  // flatten indices, in reverse flatten order
    size_t waiting = 0;          // leaves not yet reported
    Tensor flat;                 // the packed gradients while in flight
    std::unique_ptr<PendingCollective> pending;
  };
  void launch(Bucket& b);

  std::vector<Tensor> params_;  // for shape and dtype checks
  std::vector<std::string> paths_;
  ReduceOp op_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // leaf -> bucket
  std::vector<Tensor> grads_;      // reported gradients, then the reduced ones
  size_t next_ = 0;                // the next bucket to launch
  int64_t reported_ = 0;
  std::vector<int64_t> launched_after_;
};

/// value_and_grad whose gradients come back pmean'd over the world, the all-reduce overlapping
/// the backward pass (GradientReducer); in a world of one it is value_and_grad.
template <typename F>
auto value_and_grad_pmean(F f) {
  return [f](const Tree& params) -> std::pair<Tensor, Tree> {
    if (trivial_world()) return value_and_grad(f)(params);
    GradientReducer reducer(params);
    Tensor value = value_and_grad(f, reducer.hook())(params).first;
    return {value, params.unflatten(reducer.finish())};
  };
}

/// value_and_grad_aux with the gradients pmean'd over the world while backward runs.
template <typename F>
auto value_and_grad_aux_pmean(F f) {
  return [f](const Tree& params) {
    if (trivial_world()) return value_and_grad_aux(f)(params);
    GradientReducer reducer(params);
    auto [value, aux, local_grads] = value_and_grad_aux(f, reducer.hook())(params);
    return std::tuple{value, std::move(aux), params.unflatten(reducer.finish())};
  };
}

}  // namespace loom::dist

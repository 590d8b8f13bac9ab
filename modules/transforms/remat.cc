#include "modules/transforms/remat.h"

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace loom::nn::detail {
namespace {

/// Everything the block's run needs, captured by value (the backward pass runs after the apply
/// that created this has returned).
struct BlockRun {
  std::shared_ptr<const void> block;
  std::string type;
  std::vector<std::string> path;
  Tree params;                 // structure of the block's params (values come as inputs)
  Tree others;                 // the block's other collections, as they were
  Rngs rngs;
  Mutable mutable_cols;
  Device device;
  Run::CounterMap counters;
  CaptureFilter capture;
  std::function<Tensor(const Tensor&)> body;

  /// inputs = params leaves..., x. Returns the output and (optionally) the updated collections.
  Tensor operator()(const std::vector<Tensor>& inputs, Tree* mutated,
                    Run::CounterMap* counters_after) const {
    Tree vars = others;
    std::vector<Tensor> p(inputs.begin(), inputs.end() - 1);
    if (!p.empty()) vars.insert("params", params.unflatten(p));
    Run run(vars, rngs, mutable_cols, false, type, path);
    run.set_device(device);
    run.set_capture(capture);
    run.seed_counters(counters);
    Tensor y;
    {
      RunGuard guard(run);
      FrameGuard frame(run.root(), block.get());
      y = body(inputs.back());
    }
    if (mutated) *mutated = run.mutable_collections();
    if (counters_after) *counters_after = run.root().counters_below();
    return y;
  }
};

}  // namespace

Tensor remat_call(Scope& scope, std::shared_ptr<const void> block, const std::string& block_type,
                  std::function<Tensor(const Tensor&)> body, const Tensor& x) {
  Run& outer = scope.run();
  if (!autograd::is_recording() || outer.initializing()) {
    Tensor y;
    {
      FrameGuard frame(scope, block.get());
      y = body(x);
    }
    // Flax's lifted checkpoint returns its variables through JAX, with sorted keys.
    if (outer.initializing()) scope.sort_subtrees();
    return y;
  }
  auto run = std::make_shared<BlockRun>();
  run->block = std::move(block);
  run->type = block_type;
  run->path = scope.path();
  if (const Tree* p = scope.subtree("params")) run->params = *p;
  if (outer.variables().is_dict())
    for (const auto& col : outer.variables().keys())
      if (const Tree* sub = scope.subtree(col); sub && col != "params" && !sub->empty())
        run->others.insert(col, *sub);
  run->rngs = outer.rngs();
  run->mutable_cols = outer.mutable_cols();
  run->capture = outer.capture();
  run->device = outer.device();
  run->counters = scope.counters_below();
  run->body = std::move(body);

  std::vector<Tensor> inputs = run->params.leaves();
  inputs.push_back(x);
  std::vector<Tensor> detached;
  for (const Tensor& t : inputs) detached.push_back(t.detach());
  Tree mutated;
  Tensor out;
  Run::CounterMap counters_after;
  {
    autograd::NoGradGuard no_grad;  // nothing inside the block is saved for backward
    out = (*run)(detached, &mutated, &counters_after);
  }
  scope.set_counters_below(counters_after);
  for (const auto& [col, tree] : mutated.items())
    if (col != "params") scope.put_subtree(col, tree);

  return autograd::record("remat", out, inputs, [run, detached](const Tensor& grad) {
    std::vector<Tensor> leaves;
    for (size_t i = 0; i < detached.size(); ++i)
      leaves.push_back(autograd::make_leaf(detached[i], int64_t(i)));
    Tensor objective;
    {
      autograd::RecordingGuard recording(true);
      Tensor y = (*run)(leaves, nullptr, nullptr);
      objective = sum(y * grad.detach().to(y.dtype()));
    }
    return autograd::backward(objective, leaves);
  });
}

}  // namespace loom::nn::detail

#include "modules/transforms/scan.h"

#include <algorithm>

#include "core/ops/shape.h"

namespace loom::nn::detail {
namespace {

bool listed(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

/// Leaf i of the stacked leaves (a differentiable slice, so grads reach the stacked params).
Tree slice_step(const Tree& t, int64_t i) {
  return tree_map(
      [i](const Tensor& x) {
        Shape rest(x.shape().begin() + 1, x.shape().end());
        return slice_axis(x, 0, i, i + 1).reshape(rest);
      },
      t);
}

Tree stack_steps(const std::vector<Tree>& steps) {
  std::vector<std::vector<Tensor>> leaves;
  for (const Tree& t : steps) leaves.push_back(t.leaves());
  std::vector<Tensor> out;
  for (size_t k = 0; k < leaves[0].size(); ++k) {
    std::vector<Tensor> per_step;
    for (const auto& l : leaves) per_step.push_back(l[k]);
    out.push_back(stack(per_step, 0));
  }
  return steps[0].unflatten(out);
}

}  // namespace

Tensor scan_layers(Scope& scope, const ScanSpec& spec,
                   const std::function<Tensor(const Tensor&)>& step, Tensor carry) {
  LOOM_CHECK(spec.length > 0, ValueError, "nn::Scan at ", scope.path_text(),
             ": length must be positive, got ", spec.length);
  Run& outer = scope.run();
  // Per-kind keys for each step: split kinds get random.split(base, length)[i].
  std::vector<Rngs> step_rngs(size_t(spec.length));
  for (const auto& [kind, key] : outer.rngs().items()) {
    std::vector<random::Key> keys;
    if (listed(spec.split_rngs, kind)) keys = random::split(key, spec.length);
    for (int64_t i = 0; i < spec.length; ++i)
      step_rngs[size_t(i)].set(kind, keys.empty() ? key : keys[size_t(i)]);
  }
  // Flax traces the scan body twice (once to find the carry's shape, once for lax.scan) and
  // the rng counters of the body's scopes carry over from the first trace to the second, whose
  // keys are the ones used by every step. So: run step 0 once; if it drew keys, run every step
  // from the counters it ended with; if not, its result is already step 0's.
  Run::CounterMap start = scope.counters_below();
  struct Step {
    Tensor carry;
    Tree out;
    Run::CounterMap counters;
  };
  auto run_step = [&](int64_t i, const Tensor& in, const Run::CounterMap& counters) {
    Tree vars;
    if (outer.variables().is_dict())
      for (const auto& col : outer.variables().keys()) {
        const Tree* sub = scope.subtree(col);
        if (!sub || sub->empty()) continue;
        vars.insert(col, listed(spec.variable_axes, col) ? slice_step(*sub, i) : *sub);
      }
    Run run(vars, step_rngs[size_t(i)], outer.mutable_cols(), outer.initializing(),
            spec.block_type, scope.path());
    run.set_device(outer.device());
    run.set_capture(outer.capture());
    run.seed_counters(counters);
    Step r;
    {
      RunGuard guard(run);
      FrameGuard frame(run.root(), spec.block);
      r.carry = step(in);
    }
    r.out = run.mutable_collections();
    r.counters = run.root().counters_below();
    return r;
  };
  Step first = run_step(0, carry, start);
  bool drew_keys = first.counters != start;
  Run::CounterMap begin = drew_keys ? first.counters : start;
  std::map<std::string, std::vector<Tree>> produced;  // collection -> per-step trees
  Run::CounterMap end = first.counters;
  for (int64_t i = 0; i < spec.length; ++i) {
    Step r = i == 0 && !drew_keys ? std::move(first) : run_step(i, carry, begin);
    carry = r.carry;
    end = r.counters;
    for (const auto& [col, tree] : r.out.items()) {
      if (listed(spec.variable_axes, col)) {
        produced[col].push_back(tree);
      } else {
        const Tree* before = scope.subtree(col);
        LOOM_CHECK(before && before->same_structure(tree), NotImplementedError, "nn::Scan at ",
                   scope.path_text(), ": the block created variables in collection \"", col,
                   "\", which is not in variable_axes; add it to variable_axes to stack them "
                   "(broadcast variables are not supported)");
      }
    }
  }
  scope.set_counters_below(end);
  // Sorted keys, as Flax's lifted scan returns them.
  for (const auto& [col, steps] : produced)
    if (!steps.empty() && !steps[0].empty())
      scope.put_subtree(col, sorted_tree(stack_steps(steps)));
  return carry;
}

}  // namespace loom::nn::detail

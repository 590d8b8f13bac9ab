#include "core/autodiff.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <utility>

#include "core/ops/elementwise.h"

namespace loom::autograd {
namespace {
thread_local bool g_recording = false;
// The accumulation targets of the backward rule running on this thread (accumulation_target).
thread_local std::vector<Tensor>* g_targets = nullptr;

bool same_buffer(const Tensor& a, const Tensor& b) {
  return a.raw_data() == b.raw_data() && a.shape() == b.shape() && a.dtype() == b.dtype() &&
         a.strides() == b.strides();
}

// Moves out of `grads` the gradients gathered so far for `node`'s inputs that nothing else
// references, for its rule to add into in place (accumulation_target).
std::vector<Tensor> take_targets(const Node& node, std::unordered_map<Node*, Tensor>& grads) {
  std::vector<Tensor> targets(node.inputs.size());
  for (size_t i = 0; i < node.inputs.size(); ++i) {
    auto slot = node.inputs[i] ? grads.find(node.inputs[i].get()) : grads.end();
    if (slot == grads.end() || slot->second.storage().use_count() != 1) continue;
    targets[i] = std::move(slot->second);
    grads.erase(slot);
  }
  return targets;
}
}  // namespace

uint64_t next_serial() {
  static std::atomic<uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed);
}

Tensor accumulation_target(size_t input) {
  return g_targets && input < g_targets->size() ? (*g_targets)[input] : Tensor();
}

bool is_recording() { return g_recording; }

bool needs_grad(std::initializer_list<const Tensor*> inputs) {
  if (!g_recording) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->grad_node()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_recording) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.grad_node()) return true;
  return false;
}

namespace detail {
void check_slow(const char* op, const Tensor& out, std::initializer_list<const Tensor*> inputs) {
  std::vector<Tensor> ins;
  ins.reserve(inputs.size());
  for (const Tensor* t : inputs) ins.push_back(t ? *t : Tensor());
  check_op_output(op, out, ins);
}

void name_output(const char* op, const Tensor& out, std::initializer_list<const Tensor*> inputs) {
  if (!out.defined() || !out.storage()) return;
  for (const Tensor* t : inputs)
    if (t && t->defined() && t->storage() == out.storage()) return;
  name_allocation(out.storage()->data(), op);
}

void name_output(const char* op, const Tensor& out, const std::vector<Tensor>& inputs) {
  if (!out.defined() || !out.storage()) return;
  for (const Tensor& t : inputs)
    if (t.defined() && t.storage() == out.storage()) return;
  name_allocation(out.storage()->data(), op);
}
}  // namespace detail

Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward) {
  if (debug_nans_enabled()) [[unlikely]]
    check_op_output(op, out, inputs);
  if (allocation_trace_active()) [[unlikely]]
    detail::name_output(op, out, inputs);
  if (!needs_grad(inputs)) return out;
  auto node = std::make_shared<Node>();
  node->op = op;
  node->inputs.reserve(inputs.size());
  for (const Tensor& t : inputs) node->inputs.push_back(t.defined() ? t.grad_node() : nullptr);
  node->backward = std::move(backward);
  node->shape = out.shape();
  node->dtype = out.dtype();
  node->device = out.device();
  out.set_grad_node(std::move(node));
  return out;
}

RecordingGuard::RecordingGuard(bool on) : previous_(g_recording) { g_recording = on; }
RecordingGuard::~RecordingGuard() { g_recording = previous_; }

Tensor make_leaf(const Tensor& value, int64_t index) {
  auto node = std::make_shared<Node>();
  node->op = "leaf";
  node->shape = value.shape();
  node->dtype = value.dtype();
  node->device = value.device();
  node->leaf_index = index;
  Tensor leaf = value.detach();
  leaf.set_grad_node(std::move(node));
  return leaf;
}

std::vector<Tensor> backward(const Tensor& output, const std::vector<Tensor>& leaves,
                             const LeafReadyFn& on_ready) {
  LOOM_CHECK(output.numel() == 1, ShapeError,
             "value_and_grad: the function must return a scalar loss, got shape ",
             shape_str(output.shape()));
  NoGradGuard no_grad;
  std::vector<Tensor> leaf_grads(leaves.size());
  std::vector<bool> finished(leaves.size(), false);
  // The gradient backward() returns for leaf i: zeros when nothing flowed in, the leaf's dtype.
  auto finish = [&](size_t i) {
    Tensor& g = leaf_grads[i];
    if (!g.defined()) g = zeros_like(leaves[i]);
    else if (g.dtype() != leaves[i].dtype()) g = g.to(leaves[i].dtype());
    finished[i] = true;
    if (on_ready) on_ready(int64_t(i), g);
  };
  Node* root = output.grad_node().get();
  // Every node of the graph being differentiated was recorded after its leaves. An older node
  // belongs to an enclosing computation's graph (a backward pass inside a backward rule, as
  // remat's, reaching a tensor its block captured), whose leaf numbers and rules are not this
  // pass's to use.
  uint64_t first_serial = UINT64_MAX;
  for (const Tensor& leaf : leaves)
    if (leaf.defined() && leaf.grad_node()) first_serial = std::min(first_serial, leaf.grad_node()->serial);
  if (root) {
    // Topological order by iterative DFS (post-order), then walk it in reverse.
    std::vector<Node*> order;
    std::unordered_map<Node*, int> state;  // 1 = on stack, 2 = done
    std::vector<std::pair<Node*, size_t>> stack{{root, 0}};
    state[root] = 1;
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next < node->inputs.size()) {
        Node* child = node->inputs[next++].get();
        LOOM_CHECK(!child || first_serial == UINT64_MAX || child->serial >= first_serial,
                   ValueError, "backward: the function's result depends on '", child->op,
                   "', recorded before the arguments being differentiated: a tensor with a "
                   "history from an enclosing computation (a remat block's extra argument, "
                   "say); pass it as an argument instead");
        if (child && !state.count(child)) {
          state[child] = 1;
          stack.push_back({child, 0});
        }
      } else {
        state[node] = 2;
        order.push_back(node);
        stack.pop_back();
      }
    }
    // A leaf's gradient is final once the walk has passed every node of that leaf (one, unless
    // a caller made several leaves with the same index): the reverse topological order has run
    // all of their consumers by then.
    std::vector<int> nodes_left(leaves.size(), 0);
    for (Node* node : order)
      if (node->leaf_index >= 0 && size_t(node->leaf_index) < leaves.size())
        ++nodes_left[size_t(node->leaf_index)];
    std::unordered_map<Node*, Tensor> grads;
    grads[root] = ones(output.shape(), output.dtype(), output.device());
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      Node* node = *it;
      auto found = grads.find(node);
      if (found == grads.end()) {  // nothing flows into this node, nor will: free what it saved
        node->backward = nullptr;
        node->epilogue_gelu_input = Tensor();
        if (node->leaf_index >= 0 && size_t(node->leaf_index) < leaves.size() &&
            --nodes_left[size_t(node->leaf_index)] == 0)
          finish(size_t(node->leaf_index));
        continue;
      }
      Tensor g = std::move(found->second);
      grads.erase(found);
      // Debug-NaNs: ops run by this rule (and the accumulation below) report "backward of op".
      std::optional<BackwardOpScope> in_backward;
      if (debug_nans_enabled()) [[unlikely]]
        in_backward.emplace(node->op);
      if (node->leaf_index >= 0) {
        const size_t i = size_t(node->leaf_index);
        if (i >= leaves.size()) continue;  // a leaf the caller did not ask about
        Tensor& slot = leaf_grads[i];
        slot = slot.defined() ? add(slot, g) : g;
        if (--nodes_left[i] == 0) finish(i);
        continue;
      }
      // A rule runs once and is released after it (or when no gradient reached its node): a
      // node without one was walked by an earlier backward pass.
      LOOM_CHECK(node->backward, ValueError, "backward: the node of '", node->op,
                 "' was already differentiated by an earlier backward pass over this graph (a "
                 "gradient taken twice, or a remat body using a tensor from outside the block "
                 "that carries a history; pass such tensors as the block's inputs)");
      std::vector<Tensor> targets;
      if (!in_backward) targets = take_targets(*node, grads);
      std::vector<Tensor> input_grads;
      {
        std::vector<Tensor>* outer = std::exchange(g_targets, &targets);
        struct Restore {
          std::vector<Tensor>* outer;
          ~Restore() { g_targets = outer; }
        } restore{outer};
        GradientRuleScope rule_scope(node->op);
        input_grads = node->backward(g);
      }
      node->backward = nullptr;  // free saved activations now
      node->epilogue_gelu_input = Tensor();
      LOOM_INTERNAL_ASSERT(input_grads.size() == node->inputs.size());
      if (in_backward)
        for (size_t i = 0; i < input_grads.size(); ++i)
          if (node->inputs[i]) check_op_gradient(node->op, input_grads[i], i, g);
      // Targets the rule did not add into: the usual add (earlier contributions first). A
      // gradient of the wrong shape is left as it is for the shape check below to report (add
      // would broadcast one that is smaller than the input).
      for (size_t i = 0; i < targets.size(); ++i) {
        if (!targets[i].defined()) continue;
        Tensor& gi = input_grads[i];
        if (!gi.defined()) gi = std::move(targets[i]);
        else if (gi.shape() == targets[i].shape() && !same_buffer(gi, targets[i]))
          gi = add(targets[i], gi);
      }
      for (size_t i = 0; i < input_grads.size(); ++i) {
        Node* in = node->inputs[i].get();
        if (!in || !input_grads[i].defined()) continue;
        LOOM_CHECK(input_grads[i].shape() == in->shape, ShapeError, "backward of '", node->op,
                   "' produced a gradient of shape ", shape_str(input_grads[i].shape()),
                   " for an input of shape ", shape_str(in->shape));
        auto [slot, inserted] = grads.try_emplace(in, input_grads[i]);
        if (!inserted) slot->second = add(slot->second, input_grads[i]);
      }
    }
  }
  for (size_t i = 0; i < leaves.size(); ++i)
    if (!finished[i]) finish(i);
  return leaf_grads;
}

}  // namespace loom::autograd

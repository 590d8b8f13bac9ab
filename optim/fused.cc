#include "optim/fused.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/jit.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "kernels/cpu/optim_update.h"
#include "optim/wrappers.h"
#if LOOM_CUDA
#include "kernels/cuda/optim_update.h"
#endif

namespace loom::optim {
namespace {

std::atomic<bool>& fused_flag() {
  static std::atomic<bool> flag{[] {
    const char* v = std::getenv("LOOM_FUSED_OPTIM");
    return !(v && std::strcmp(v, "0") == 0);
  }()};
  return flag;
}

// The leaves of one fused update and the tensors that own their memory.
struct Batch {
  Device device;
  std::vector<OptimLeaf> leaves;
  std::vector<Tensor> inputs;  // contiguous inputs, alive until the kernel has been enqueued
  std::vector<Tensor> out, new_mu, new_nu;
};

bool fits(const Tensor& t, const Device& d, const Shape& shape) {
  return t.defined() && t.dtype() == DType::F32 && t.device() == d && t.shape() == shape;
}

const float* input(Batch& b, const Tensor& t) {
  b.inputs.push_back(t.contiguous());
  return b.inputs.back().data<float>();
}

// Where the kernel writes the replacement of `old`: over it when the update is applied and a
// loom::jit capture with donated inputs owns it (core/jit.h), else a new tensor. Only applied
// updates (tx.apply: the new params and state replace the old ones wholesale) write in place:
// a plain update() may run under apply_if_finite, dynamic_loss_scale or multi_steps, which
// then select where(ok, new_state, old_state) and so read the old moments after the kernel.
Tensor output_for(const Tensor& old, const Device& device, bool in_place) {
  if (in_place && donated(old) && old.is_contiguous()) return old;
  return Tensor::empty(old.shape(), DType::F32, device);
}

// Collects grads (and, where given, params / mu / nu by path) into a Batch; nullopt when some
// leaf is not a float32 tensor of the grad's shape on the first grad's device. With `apply` the
// outputs are the new params, else the updates.
std::optional<Batch> gather(const Tree& grads, const Tree* params, const Tree* mu, const Tree* nu,
                            bool apply) {
  auto flat = grads.flatten();
  if (flat.empty()) return std::nullopt;
  Batch b;
  b.device = flat.front().second.device();
  auto at = [](const Tree* t, const std::string& path) -> Tensor {
    return t->has_path(path) && t->at(path).is_leaf() ? t->at(path).tensor() : Tensor();
  };
  for (const auto& [path, g] : flat) {
    if (!fits(g, b.device, g.shape())) return std::nullopt;
    OptimLeaf leaf;
    leaf.n = g.numel();
    leaf.grad = input(b, g);
    Tensor p;
    if (params) {
      p = at(params, path);
      if (!fits(p, b.device, g.shape())) return std::nullopt;
      leaf.param = input(b, p);
    }
    if (mu) {
      Tensor m = at(mu, path);
      if (!fits(m, b.device, g.shape())) return std::nullopt;
      leaf.mu = input(b, m);
      b.new_mu.push_back(output_for(m, b.device, apply));
      leaf.new_mu = b.new_mu.back().data<float>();
    }
    if (nu) {
      Tensor v = at(nu, path);
      if (!fits(v, b.device, g.shape())) return std::nullopt;
      leaf.nu = input(b, v);
      b.new_nu.push_back(output_for(v, b.device, apply));
      leaf.new_nu = b.new_nu.back().data<float>();
    }
    b.out.push_back(apply ? output_for(p, b.device, true) : Tensor::empty(g.shape(), DType::F32, b.device));
    leaf.out = b.out.back().data<float>();
    b.leaves.push_back(leaf);
  }
  return b;
}

// The learning rate for the kernel: a constant, or a float32 device scalar (from a tensor or
// from the schedule at the lr state's count). Returns the next lr state.
Tree set_learning_rate(const ScalarOrSchedule& lr, const Tree& lr_state, Batch& b, OptimScalars& s) {
  if (lr.is_constant()) {
    s.lr_value = float(lr.constant());
    return lr_state;
  }
  Tensor value;
  Tree next = lr_state;
  if (lr.is_tensor()) {
    value = lr.tensor().to(b.device).to(DType::F32).reshape({});
  } else {
    const Tensor& count = state_field(lr_state, "count", "scale_by_schedule").tensor();
    value = lr.schedule()(count).to(b.device).to(DType::F32).reshape({});
    next = Tree();
    next.insert("count", safe_increment(count));
  }
  s.lr = input(b, value);
  return next;
}

// The kernel outputs (in grads' leaf order) as a tree: the new params follow the params' key
// order, as apply_updates' tree_map(params, updates) does; updates follow the grads'.
Tree outputs(const Tree& grads, const Tree& params, const std::vector<Tensor>& out, bool apply) {
  Tree by_grads = grads.unflatten(out);
  if (!apply) return by_grads;
  std::vector<Tensor> ordered;
  for (const auto& [path, p] : params.flatten()) ordered.push_back(by_grads.at(path).tensor());
  return params.unflatten(ordered);
}

bool is_count(const Tree& t, const Device& d) {
  return t.is_leaf() && t.tensor().dtype() == DType::I32 && t.tensor().device() == d &&
         t.tensor().numel() == 1;
}

struct AdamSpec {
  ScalarOrSchedule lr;
  AdamOptions options;
  std::optional<ScalarOrSchedule> weight_decay;
  std::optional<Mask> mask;
};

std::optional<std::pair<Tree, Tree>> try_fused_adam(const AdamSpec& spec, const Tree& grads,
                                                    const Tree& state, const Tree& params,
                                                    bool apply) {
  bool adamw = spec.weight_decay.has_value();
  size_t n_parts = adamw ? 3 : 2;
  if (!fused_updates_enabled() || !state.is_dict() || state.size() != n_parts) return std::nullopt;
  for (size_t i = 0; i < n_parts; ++i)
    if (!state.contains(std::to_string(i))) return std::nullopt;
  const Tree& adam_state = state["0"];
  if (!adam_state.is_dict() || !adam_state.contains("count") || !adam_state.contains("mu") ||
      !adam_state.contains("nu") || !grads.same_structure(adam_state["mu"]) ||
      !grads.same_structure(adam_state["nu"]))
    return std::nullopt;
  double wd = adamw ? spec.weight_decay->constant() : 0.0;
  bool need_params = apply || wd != 0.0;
  if (need_params && !grads.same_structure(params)) return std::nullopt;
  std::optional<Batch> batch =
      gather(grads, need_params ? &params : nullptr, &adam_state["mu"], &adam_state["nu"], apply);
  if (!batch || !is_count(adam_state["count"], batch->device)) return std::nullopt;
  Batch& b = *batch;

  if (wd != 0.0) {
    std::vector<bool> selected(b.leaves.size(), true);
    if (spec.mask) selected = mask_leaves(spec.mask->resolve(grads), grads, "adamw");
    for (size_t i = 0; i < b.leaves.size(); ++i) b.leaves[i].weight_decay = selected[i] ? float(wd) : 0.0f;
  }
  const AdamOptions& o = spec.options;
  AdamConfig c;
  c.b1 = float(o.b1);
  c.b2 = float(o.b2);
  c.one_minus_b1 = float(1.0 - o.b1);
  c.one_minus_b2 = float(1.0 - o.b2);
  c.eps = float(o.eps);
  c.eps_root = float(o.eps_root);
  c.nesterov = o.nesterov;
  c.weight_decay = wd != 0.0;
  c.apply = apply;
  OptimScalars s;
  const std::string lr_key = std::to_string(n_parts - 1);
  Tree next_lr = set_learning_rate(spec.lr, state[lr_key], b, s);
  Tensor count = adam_state["count"].tensor().contiguous();
  Tensor new_count = Tensor::empty({}, DType::I32, b.device);
  s.count = count.data<int32_t>();
  s.new_count = new_count.data<int32_t>();
  if (b.device.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::fused_adam(b.leaves, c, s, cuda::current_stream(b.device.index)));
  } else {
    cpu::fused_adam(b.leaves, c, s);
  }
  Tree adam_next;
  adam_next.insert("count", new_count);
  adam_next.insert("mu", grads.unflatten(b.new_mu));
  adam_next.insert("nu", grads.unflatten(b.new_nu));
  Tree next;
  next.insert("0", adam_next);
  if (adamw) next.insert("1", state["1"]);  // a constant weight decay keeps its (empty) state
  next.insert(lr_key, next_lr);
  return std::pair{outputs(grads, params, b.out, apply), next};
}

std::optional<std::pair<Tree, Tree>> try_fused_sgd(const ScalarOrSchedule& lr,
                                                   std::optional<double> momentum, bool nesterov,
                                                   const Tree& grads, const Tree& state,
                                                   const Tree& params, bool apply) {
  if (!fused_updates_enabled() || !state.is_dict() || state.size() != 2 || !state.contains("0") ||
      !state.contains("1"))
    return std::nullopt;
  const Tree* trace_tree = nullptr;
  if (momentum) {
    const Tree& s0 = state["0"];
    if (!s0.is_dict() || !s0.contains("trace") || !grads.same_structure(s0["trace"])) return std::nullopt;
    trace_tree = &s0["trace"];
  }
  if (apply && !grads.same_structure(params)) return std::nullopt;
  std::optional<Batch> batch = gather(grads, apply ? &params : nullptr, trace_tree, nullptr, apply);
  if (!batch) return std::nullopt;
  Batch& b = *batch;
  SgdConfig c;
  c.momentum = float(momentum.value_or(0.0));
  c.has_momentum = momentum.has_value();
  c.nesterov = nesterov;
  c.apply = apply;
  OptimScalars s;
  Tree next_lr = set_learning_rate(lr, state["1"], b, s);
  if (b.device.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::fused_sgd(b.leaves, c, s, cuda::current_stream(b.device.index)));
  } else {
    cpu::fused_sgd(b.leaves, c, s);
  }
  Tree first;
  if (momentum) first.insert("trace", grads.unflatten(b.new_mu));
  Tree next;
  next.insert("0", first);
  next.insert("1", next_lr);
  return std::pair{outputs(grads, params, b.out, apply), next};
}

// A fused transformation around `composed`: `run(grads, state, params, apply)` does the work or
// returns nullopt, and the composed chain takes over.
template <typename Run>
GradientTransformation with_fallback(GradientTransformation composed, Run run) {
  GradientTransformation tx;
  tx.init = composed.init;
  tx.update = [composed, run](const Tree& grads, const Tree& state, const Tree& params) {
    if (auto r = run(grads, state, params, false)) return std::move(*r);
    return composed.update(grads, state, params);
  };
  tx.apply = [composed, run](const Tree& grads, const Tree& state, const Tree& params) {
    if (auto r = run(grads, state, params, true)) return std::move(*r);
    auto [updates, next] = composed.update(grads, state, params);
    return std::pair{apply_updates(params, updates), std::move(next)};
  };
  return tx;
}

}  // namespace

void set_fused_updates_enabled(bool enabled) { fused_flag().store(enabled); }
bool fused_updates_enabled() { return fused_flag().load(); }

GradientTransformation fused_sgd(ScalarOrSchedule learning_rate, std::optional<double> momentum,
                                 bool nesterov) {
  GradientTransformation composed =
      chain(momentum ? trace(*momentum, nesterov) : identity(), scale_by_learning_rate(learning_rate));
  return with_fallback(composed, [=](const Tree& g, const Tree& s, const Tree& p, bool apply) {
    return try_fused_sgd(learning_rate, momentum, nesterov, g, s, p, apply);
  });
}

GradientTransformation fused_adam(ScalarOrSchedule learning_rate, const AdamOptions& options,
                                  std::optional<ScalarOrSchedule> weight_decay,
                                  std::optional<Mask> mask) {
  std::vector<GradientTransformation> parts{scale_by_adam(options)};
  if (weight_decay) parts.push_back(add_decayed_weights(*weight_decay, mask));
  parts.push_back(scale_by_learning_rate(learning_rate));
  GradientTransformation composed = chain(parts);
  bool fusable = (!options.mu_dtype || *options.mu_dtype == DType::F32) &&
                 (!weight_decay || weight_decay->is_constant());
  if (!fusable) return composed;
  AdamSpec spec{learning_rate, options, weight_decay, mask};
  return with_fallback(composed, [spec](const Tree& g, const Tree& s, const Tree& p, bool apply) {
    return try_fused_adam(spec, g, s, p, apply);
  });
}

}  // namespace loom::optim

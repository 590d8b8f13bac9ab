#include "optim/wrappers.h"

#include <set>

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "optim/loss_scale.h"

namespace loom::optim {

// --- masked ---

GradientTransformation masked(GradientTransformation inner, Mask mask) {
  LOOM_CHECK(inner.init && inner.update, ValueError, "masked: the inner transformation is empty");
  GradientTransformation tx;
  tx.init = [inner, mask](const Tree& params) {
    Tree state;
    state.insert("inner_state", inner.init(apply_mask(mask.resolve(params), params, "masked")));
    return state;
  };
  tx.update = [inner, mask](const Tree& updates, const Tree& state, const Tree& params) {
    Tree m = mask.resolve(updates);
    Tree masked_params = params.empty() ? Tree() : apply_mask(m, params, "masked");
    auto [inner_updates, inner_state] = inner.update(
        apply_mask(m, updates, "masked"), state_field(state, "inner_state", "masked"), masked_params);
    std::vector<bool> selected = mask_leaves(m, updates, "masked");
    std::vector<Tensor> out;
    size_t i = 0;
    for (const auto& [path, u] : updates.flatten())
      out.push_back(selected[i++] ? inner_updates.at(path).tensor() : u);
    Tree next;
    next.insert("inner_state", std::move(inner_state));
    return std::pair{updates.unflatten(out), next};
  };
  return tx;
}

// --- multi_transform ---

ParamLabels::ParamLabels(std::map<std::string, std::string> by_path) : by_path_(std::move(by_path)) {}

std::vector<std::string> ParamLabels::resolve(const Tree& tree) const {
  std::vector<std::string> labels;
  for (const auto& [path, leaf] : tree.flatten()) {
    if (fn_) {
      labels.push_back(fn_(path, leaf));
      continue;
    }
    // The longest key that is the leaf's path or one of its ancestors.
    std::string best;
    bool found = false;
    for (const auto& [key, label] : by_path_) {
      bool covers = key.empty() || key == path ||
                    (path.size() > key.size() && path.compare(0, key.size(), key) == 0 &&
                     path[key.size()] == '/');
      if (covers && (!found || key.size() >= best.size())) {
        best = key;
        found = true;
      }
    }
    LOOM_CHECK(found, ValueError, "multi_transform: no label for the parameter '", path, "'");
    labels.push_back(by_path_.at(best));
  }
  return labels;
}

GradientTransformation multi_transform(
    std::vector<std::pair<std::string, GradientTransformation>> transforms, ParamLabels labels) {
  auto make_masks = [transforms, labels](const Tree& tree) {
    std::vector<std::string> leaf_labels = labels.resolve(tree);
    std::set<std::string> known;
    std::string keys;
    for (const auto& [name, tx] : transforms) {
      known.insert(name);
      keys += (keys.empty() ? "" : ", ") + name;
    }
    for (const std::string& l : leaf_labels) {
      if (known.count(l)) continue;
      std::set<std::string> all(leaf_labels.begin(), leaf_labels.end());
      std::string shown;
      for (const auto& s : all) shown += (shown.empty() ? "" : ", ") + s;
      LOOM_THROW(ValueError, "multi_transform: some parameters have no corresponding transformation; "
                             "parameter labels: [", shown, "], transformation keys: [", keys, "]");
    }
    std::vector<Tree> masks;
    for (const auto& [name, tx] : transforms) {
      std::vector<Tensor> bits;
      for (const std::string& l : leaf_labels) bits.push_back(scalar(l == name ? 1 : 0, DType::Bool));
      masks.push_back(tree.unflatten(bits));
    }
    return masks;
  };
  GradientTransformation out;
  out.init = [transforms, make_masks](const Tree& params) {
    std::vector<Tree> masks = make_masks(params);
    Tree inner;
    for (size_t i = 0; i < transforms.size(); ++i)
      inner.insert(transforms[i].first, masked(transforms[i].second, masks[i]).init(params));
    Tree state;
    state.insert("inner_states", inner);
    return state;
  };
  out.update = [transforms, make_masks](const Tree& updates, const Tree& state, const Tree& params) {
    std::vector<Tree> masks = make_masks(updates);
    const Tree& inner = state_field(state, "inner_states", "multi_transform");
    Tree u = updates, next_inner;
    for (size_t i = 0; i < transforms.size(); ++i) {
      const std::string& name = transforms[i].first;
      auto [nu, s] = masked(transforms[i].second, masks[i])
                         .update(u, state_field(inner, name, "multi_transform"), params);
      u = std::move(nu);
      next_inner.insert(name, std::move(s));
    }
    Tree next;
    next.insert("inner_states", next_inner);
    return std::pair{u, next};
  };
  return out;
}

// --- MultiSteps ---

GradientTransformation multi_steps(GradientTransformation inner, int64_t every_k, bool use_grad_mean,
                                   DType accumulator_dtype) {
  LOOM_CHECK(every_k >= 1, ValueError, "multi_steps: every_k must be >= 1, got ", every_k);
  GradientTransformation tx;
  tx.init = [inner, accumulator_dtype](const Tree& params) {
    Tree state;
    state.insert("mini_step", zero_count(params));
    state.insert("gradient_step", zero_count(params));
    state.insert("inner_opt_state", inner.init(params));
    state.insert("acc_grads", tree_map([&](const Tensor& p) {
                   return zeros(p.shape(), accumulator_dtype, p.device());
                 }, params));
    state.insert("skip_state", Tree());
    return state;
  };
  tx.update = [=](const Tree& updates, const Tree& state, const Tree& params) {
    const char* op = "multi_steps";
    const Tensor& mini = state_field(state, "mini_step", op).tensor();
    const Tensor& gstep = state_field(state, "gradient_step", op).tensor();
    const Tree& acc0 = state_field(state, "acc_grads", op);
    const Tree& inner0 = state_field(state, "inner_opt_state", op);
    check_same_structure(updates, acc0, op, "updates", "the state's acc_grads");
    Tensor n_plus_1 = (mini + 1.0).to(DType::F32);
    Tree acc = tree_map(
        [&](const Tensor& g, const Tensor& a) {
          return use_grad_mean ? a + (g - a) / n_plus_1.to(promote_types(g.dtype(), a.dtype())) : g + a;
        },
        updates, acc0);
    Tree acc_cast = tree_map([](const Tensor& a, const Tensor& u) { return a.to(u.dtype()); }, acc, updates);
    auto [final_updates, new_inner] = inner.update(acc_cast, inner0, params);
    Tensor emit = equal(mini, scalar_like(double(every_k - 1), mini));
    Tensor inc = safe_increment(mini);
    Tensor k = scalar_like(double(every_k), mini);
    Tree next;
    next.insert("mini_step", where(greater_equal(inc, k), inc - k, inc));  // (mini + 1) % k
    next.insert("gradient_step", where(emit, safe_increment(gstep), gstep));
    next.insert("inner_opt_state", select_tree(emit, new_inner, inner0, op));
    Tensor keep = 1.0 - emit.to(DType::F32);
    next.insert("acc_grads", tree_map([&](const Tensor& a) { return (keep * a).to(accumulator_dtype); }, acc));
    next.insert("skip_state", Tree());
    Tree out = tree_map([&](const Tensor& u) { return emit.to(u.dtype()) * u; }, final_updates);
    return std::pair{out, next};
  };
  return tx;
}

Tensor multi_steps_has_updated(const Tree& state) {
  const Tensor& mini = state_field(state, "mini_step", "multi_steps_has_updated").tensor();
  const Tensor& gstep = state_field(state, "gradient_step", "multi_steps_has_updated").tensor();
  return logical_and(equal(mini, scalar_like(0, mini)), greater(gstep, scalar_like(0, gstep)));
}

// --- apply_if_finite ---

GradientTransformation apply_if_finite(GradientTransformation inner, int64_t max_consecutive_errors) {
  GradientTransformation tx;
  tx.init = [inner](const Tree& params) {
    Device device = tree_device(params);
    Tree state;
    state.insert("notfinite_count", zero_count(params));
    state.insert("last_finite", scalar(1, DType::Bool, device));
    state.insert("total_notfinite", zero_count(params));
    state.insert("inner_state", inner.init(params));
    return state;
  };
  tx.update = [inner, max_consecutive_errors](const Tree& updates, const Tree& state,
                                              const Tree& params) {
    const char* op = "apply_if_finite";
    const Tensor& count = state_field(state, "notfinite_count", op).tensor();
    const Tensor& total = state_field(state, "total_notfinite", op).tensor();
    const Tree& inner0 = state_field(state, "inner_state", op);
    Tensor finite = all_finite(updates).to(count.device());
    Tensor notfinite = where(finite, zeros_like(count), safe_increment(count));
    Tensor ok = logical_or(finite, greater(notfinite, scalar_like(double(max_consecutive_errors), notfinite)));
    // The inner update always runs; a select keeps its results only where `ok` (lax.cond).
    auto [inner_updates, new_inner] = inner.update(updates, inner0, params);
    Tree out = tree_map([&](const Tensor& u) { return where(ok.to(u.device()), u, zeros_like(u)); },
                        inner_updates);
    Tree next;
    next.insert("notfinite_count", notfinite);
    next.insert("last_finite", finite);
    next.insert("total_notfinite", where(finite, total, safe_increment(total)));
    next.insert("inner_state", select_tree(ok, new_inner, inner0, op));
    return std::pair{out, next};
  };
  return tx;
}

// --- inject_hyperparams ---

GradientTransformation inject_hyperparams(
    HyperparamFactory factory, std::vector<std::pair<std::string, ScalarOrSchedule>> hyperparams,
    std::optional<DType> dtype) {
  LOOM_CHECK(bool(factory), ValueError, "inject_hyperparams: empty factory");
  auto param_dtype = [dtype](const Tree& params) {
    if (dtype) return *dtype;
    std::optional<DType> highest;
    for (const Tensor& p : params.leaves())
      if (is_floating(p.dtype())) highest = highest ? promote_types(*highest, p.dtype()) : p.dtype();
    return highest.value_or(DType::F32);
  };
  GradientTransformation tx;
  tx.init = [=](const Tree& params) {
    DType dt = param_dtype(params);
    Tensor zero = zero_count(params);
    Hyperparams hp;
    Tree values, schedule_states;
    for (const auto& [name, v] : hyperparams) {
      hp[name] = v.at(zero).to(dt);
      values.insert(name, hp[name]);
      if (v.is_schedule()) {
        Tree s;
        s.insert("count", zero);
        schedule_states.insert(name, s);
      }
    }
    Tree state;
    state.insert("count", zero);
    state.insert("hyperparams", values);
    state.insert("hyperparams_states", schedule_states);
    state.insert("inner_state", factory(hp).init(params));
    return state;
  };
  // The hyperparameters for this update and the state around them: (hp, next state without
  // "inner_state").
  auto prepare = [=](const Tree& updates, const Tree& state, const Tree& params) {
    const char* op = "inject_hyperparams";
    DType dt = param_dtype(params.empty() ? updates : params);
    const Tree& stored = state_field(state, "hyperparams", op);
    const Tree& schedule_states = state_field(state, "hyperparams_states", op);
    Hyperparams hp;
    Tree values, next_schedule_states;
    for (const auto& [name, v] : hyperparams) {
      if (v.is_schedule()) {
        const Tensor& c = state_field(state_field(schedule_states, name, op), "count", op).tensor();
        hp[name] = v.schedule()(c).to(dt);
        Tree s;
        s.insert("count", safe_increment(c));
        next_schedule_states.insert(name, s);
      } else {
        hp[name] = state_field(stored, name, op).tensor().to(dt);  // stored values may be edited
      }
      values.insert(name, hp[name]);
    }
    Tree next;
    next.insert("count", safe_increment(state_field(state, "count", op).tensor()));
    next.insert("hyperparams", values);
    next.insert("hyperparams_states", next_schedule_states);
    return std::pair{hp, next};
  };
  tx.update = [=](const Tree& updates, const Tree& state, const Tree& params) {
    auto [hp, next] = prepare(updates, state, params);
    auto [out, inner] =
        factory(hp).update(updates, state_field(state, "inner_state", "inject_hyperparams"), params);
    next.insert("inner_state", std::move(inner));
    return std::pair{out, next};
  };
  // Keeps a fused inner optimizer fused.
  tx.apply = [=](const Tree& grads, const Tree& state, const Tree& params) {
    auto [hp, next] = prepare(grads, state, params);
    auto [new_params, inner] = update_and_apply(
        factory(hp), grads, state_field(state, "inner_state", "inject_hyperparams"), params);
    next.insert("inner_state", std::move(inner));
    return std::pair{new_params, next};
  };
  return tx;
}

std::optional<Tensor> find_hyperparam(const Tree& opt_state, const std::string& name) {
  if (!opt_state.is_dict()) return std::nullopt;
  if (opt_state.contains("hyperparams")) {
    const Tree& h = opt_state["hyperparams"];
    if (h.is_dict() && h.contains(name) && h[name].is_leaf()) return h[name].tensor();
  }
  for (const auto& [key, child] : opt_state.items())
    if (auto found = find_hyperparam(child, name)) return found;
  return std::nullopt;
}

}  // namespace loom::optim

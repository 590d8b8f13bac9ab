#include "optim/transform.h"

#include <climits>

#include "core/ops/elementwise.h"

namespace loom::optim {
namespace {

std::string join_path(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "/" + key;
}

std::string shown(const std::string& path) { return path.empty() ? "(root)" : "'" + path + "'"; }

bool mask_value(const Tensor& m, const std::string& path, const char* op) {
  LOOM_CHECK(m.dtype() == DType::Bool && m.numel() == 1, ValueError, op,
             ": mask leaves must be bool 0-d tensors, got ", dtype_name(m.dtype()), " of shape ",
             shape_str(m.shape()), " at ", shown(path));
  return m.item<bool>();
}

// Walks `mask` and `tree` together; `leaf(selected, subtree, path)` is called at every mask leaf.
template <typename Fn>
void walk_mask(const Tree& mask, const Tree& tree, const std::string& path, const char* op,
               Fn&& leaf) {
  if (mask.is_leaf()) {
    leaf(mask_value(mask.tensor(), path, op), tree, path);
    return;
  }
  LOOM_CHECK(tree.is_dict(), ShapeError, op, ": the mask has a dict at ", shown(path),
             " where the tree has a leaf of shape ", shape_str(tree.tensor().shape()));
  for (const auto& [k, child] : tree.items()) {
    LOOM_CHECK(mask.contains(k), ShapeError, op, ": the mask has no entry for ",
               shown(join_path(path, k)), ", which the tree has");
    walk_mask(mask[k], child, join_path(path, k), op, leaf);
  }
  for (const auto& [k, child] : mask.items())
    LOOM_CHECK(tree.contains(k), ShapeError, op, ": the mask has an entry ",
               shown(join_path(path, k)), " that the tree does not have");
}

}  // namespace

// --- Schedule / ScalarOrSchedule / Mask ---

Tensor Schedule::operator()(const Tensor& count) const {
  LOOM_CHECK(bool(fn_), ValueError, "Schedule: called on an empty schedule");
  Tensor v = fn_(count);
  LOOM_CHECK(v.defined() && v.numel() == 1, ValueError,
             "Schedule: a schedule must return one value, got shape ",
             v.defined() ? shape_str(v.shape()) : std::string("(undefined)"));
  return is_floating(v.dtype()) ? v : v.to(DType::F32);
}

double Schedule::operator()(int64_t step) const {
  LOOM_CHECK(step >= 0 && step <= INT32_MAX, ValueError, "Schedule: step ", step,
             " is outside the int32 step count's range");
  return (*this)(scalar(double(step), DType::I32)).item<double>();
}

ScalarOrSchedule::ScalarOrSchedule(Schedule s) : v_(std::move(s)) {
  LOOM_CHECK(bool(std::get<Schedule>(v_)), ValueError, "ScalarOrSchedule: empty schedule");
}

ScalarOrSchedule::ScalarOrSchedule(Tensor value) : v_(std::move(value)) {
  const Tensor& t = std::get<Tensor>(v_);
  LOOM_CHECK(t.defined() && t.numel() == 1 && is_floating(t.dtype()), ValueError,
             "ScalarOrSchedule: a tensor hyperparameter must be a floating 0-d tensor, got ",
             t.defined() ? std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape())
                         : std::string("an undefined tensor"));
}

double ScalarOrSchedule::constant() const {
  LOOM_CHECK(is_constant(), ValueError, "ScalarOrSchedule: not a constant");
  return std::get<double>(v_);
}
const Schedule& ScalarOrSchedule::schedule() const {
  LOOM_CHECK(is_schedule(), ValueError, "ScalarOrSchedule: not a schedule");
  return std::get<Schedule>(v_);
}
const Tensor& ScalarOrSchedule::tensor() const {
  LOOM_CHECK(is_tensor(), ValueError, "ScalarOrSchedule: not a tensor");
  return std::get<Tensor>(v_);
}

Tensor ScalarOrSchedule::at(const Tensor& count) const {
  if (is_constant()) return scalar(constant(), DType::F32, count.device());
  if (is_schedule()) return schedule()(count);
  return tensor().to(count.device()).reshape({});
}

Mask::Mask(bool all) : tree_(scalar(all ? 1 : 0, DType::Bool)) {}
Mask::Mask(Tree tree) : tree_(std::move(tree)) {}

Tree Mask::resolve(const Tree& tree) const { return fn_ ? fn_(tree) : tree_; }

Tree mask_where(const Tree& tree,
                const std::function<bool(const std::string& path, const Tensor& leaf)>& pred) {
  std::vector<Tensor> leaves;
  for (const auto& [path, leaf] : tree.flatten())
    leaves.push_back(scalar(pred(path, leaf) ? 1 : 0, DType::Bool));
  return tree.unflatten(leaves);
}

std::vector<bool> mask_leaves(const Tree& mask, const Tree& tree, const char* op) {
  std::vector<bool> out;
  walk_mask(mask, tree, "", op, [&](bool selected, const Tree& sub, const std::string&) {
    out.insert(out.end(), sub.leaf_count(), selected);
  });
  return out;
}

Tree apply_mask(const Tree& mask, const Tree& tree, const char* op) {
  Tree out;
  walk_mask(mask, tree, "", op, [&](bool selected, const Tree& sub, const std::string& path) {
    Tree value = selected ? sub : Tree();
    if (path.empty()) out = value;
    else out.set(path, value);
  });
  return out;
}

// --- core transformations ---

GradientTransformation identity() {
  return {[](const Tree&) { return Tree(); },
          [](const Tree& updates, const Tree& state, const Tree&) {
            return std::pair{updates, state};
          },
          {}};
}

GradientTransformation set_to_zero() {
  return {[](const Tree&) { return Tree(); },
          [](const Tree& updates, const Tree& state, const Tree&) {
            return std::pair{tree_map([](const Tensor& u) { return zeros_like(u); }, updates), state};
          },
          {}};
}

GradientTransformation chain(std::vector<GradientTransformation> transforms) {
  for (size_t i = 0; i < transforms.size(); ++i)
    LOOM_CHECK(transforms[i].init && transforms[i].update, ValueError, "chain: transformation ", i,
               " has no init or update function");
  auto txs = std::make_shared<const std::vector<GradientTransformation>>(std::move(transforms));
  GradientTransformation out;
  out.init = [txs](const Tree& params) {
    Tree state;
    for (size_t i = 0; i < txs->size(); ++i) state.insert(std::to_string(i), (*txs)[i].init(params));
    return state;
  };
  auto check_state = [txs](const Tree& state) {
    LOOM_CHECK(state.is_dict() && state.size() == txs->size(), ValueError, "chain: the state has ",
               state.is_dict() ? state.size() : 1, " entries but the chain has ", txs->size(),
               " transformations; make the state with this chain's init");
  };
  out.update = [txs, check_state](const Tree& updates, const Tree& state, const Tree& params) {
    check_state(state);
    Tree u = updates, new_state;
    for (size_t i = 0; i < txs->size(); ++i) {
      std::string key = std::to_string(i);
      auto [next, s] = (*txs)[i].update(u, state_field(state, key, "chain"), params);
      u = std::move(next);
      new_state.insert(key, std::move(s));
    }
    return std::pair{u, new_state};
  };
  // A chain ending in a fused optimizer (e.g. clip_by_global_norm then adamw) stays fused.
  if (!txs->empty() && txs->back().apply) {
    out.apply = [txs, check_state](const Tree& grads, const Tree& state, const Tree& params) {
      check_state(state);
      Tree u = grads, new_state;
      size_t last = txs->size() - 1;
      for (size_t i = 0; i < last; ++i) {
        auto [next, s] = (*txs)[i].update(u, state_field(state, std::to_string(i), "chain"), params);
        u = std::move(next);
        new_state.insert(std::to_string(i), std::move(s));
      }
      auto [new_params, s] =
          (*txs)[last].apply(u, state_field(state, std::to_string(last), "chain"), params);
      new_state.insert(std::to_string(last), std::move(s));
      return std::pair{new_params, new_state};
    };
  }
  return out;
}

Tree apply_updates(const Tree& params, const Tree& updates) {
  check_same_structure(params, updates, "apply_updates", "params", "updates");
  return tree_map([](const Tensor& p, const Tensor& u) { return (p + u).to(p.dtype()); }, params,
                  updates);
}

std::pair<Tree, Tree> update_and_apply(const GradientTransformation& tx, const Tree& grads,
                                       const Tree& state, const Tree& params) {
  if (tx.apply) return tx.apply(grads, state, params);
  auto [updates, new_state] = tx.update(grads, state, params);
  return {apply_updates(params, updates), std::move(new_state)};
}

// --- helpers ---

Device tree_device(const Tree& tree) {
  auto leaves = tree.leaves();
  return leaves.empty() ? Device::cpu() : leaves.front().device();
}

Tensor zero_count(const Tree& params) { return zeros({}, DType::I32, tree_device(params)); }

Tensor safe_increment(const Tensor& count) {
  // count + (count < max): never computes max + 1, so no signed overflow in the kernel.
  return count + less(count, scalar_like(double(INT32_MAX), count)).to(count.dtype());
}

void check_same_structure(const Tree& a, const Tree& b, const char* op, const char* a_name,
                          const char* b_name, bool shapes) {
  std::string diff = a.first_difference(b);
  if (diff.empty()) {
    if (!shapes) return;
    for (const auto& [path, x] : a.flatten()) {
      const Tensor& y = b.at(path).tensor();
      LOOM_CHECK(x.shape() == y.shape(), ShapeError, op, ": leaf ", path.empty() ? "(root)" : "'" + path + "'",
                 " has shape ", shape_str(x.shape()), " in ", a_name, " but ", shape_str(y.shape()), " in ",
                 b_name);
    }
    return;
  }
  std::string where = diff == "(root)" ? "the root (a leaf in one, a dict in the other)" : "'" + diff + "'";
  std::string why;
  if (diff != "(root)") {
    bool in_a = a.has_path(diff), in_b = b.has_path(diff);
    if (in_a && !in_b) why = std::string(" (present in ") + a_name + ", missing in " + b_name + ")";
    else if (!in_a && in_b) why = std::string(" (missing in ") + a_name + ", present in " + b_name + ")";
    else why = " (a leaf in one, a dict in the other)";
  }
  LOOM_THROW(ShapeError, op, ": ", a_name, " and ", b_name,
             " differ in structure; first difference at ", where, why);
}

void require_params(const Tree& updates, const Tree& params, const char* op) {
  LOOM_CHECK(!(params.empty() && !updates.empty()), ValueError, op,
             ": this transformation needs the params; pass them to update(updates, state, params)");
}

const Tree& state_field(const Tree& state, const std::string& key, const char* op) {
  if (state.is_dict() && state.contains(key)) return state[key];
  std::string keys;
  if (state.is_dict())
    for (const auto& k : state.keys()) keys += (keys.empty() ? "" : ", ") + k;
  LOOM_THROW(ValueError, op, ": the optimizer state has no '", key, "' entry (it has: ",
             keys.empty() ? std::string("nothing") : keys,
             "); make the state with this transformation's init");
}

}  // namespace loom::optim

#include "train/train_state.h"

#include "core/ops/elementwise.h"

namespace loom::train {
namespace {

const char* const kFields[] = {"step", "params", "opt_state"};

void check_leaf(const Tensor& t, const Tensor& l, const std::string& what) {
  LOOM_CHECK(t.shape() == l.shape() && t.dtype() == l.dtype(), ShapeError,
             "TrainState::load_state_dict: a leaf of '", what, "' is ", dtype_name(l.dtype()),
             shape_str(l.shape()), " where the state has ", dtype_name(t.dtype()),
             shape_str(t.shape()));
}

// Whether `loaded` (of target's structure) can stand as it is: every leaf in target's order,
// shape, dtype and device. A training step's state comes back like that every call.
bool usable_as_is(const Tree& target, const Tree& loaded, const std::string& what) {
  if (target.is_leaf()) {
    check_leaf(target.tensor(), loaded.tensor(), what);
    return target.tensor().device() == loaded.tensor().device();
  }
  const auto &te = target.items(), &le = loaded.items();
  for (size_t i = 0; i < te.size(); ++i)
    if (le[i].first != te[i].first || !usable_as_is(te[i].second, le[i].second, what)) return false;
  return true;
}

// `loaded` checked against `target` (structure, shapes, dtypes) and moved to target's devices,
// in target's order.
Tree conform(const Tree& target, const Tree& loaded, const std::string& what) {
  std::string diff = target.first_difference(loaded);
  LOOM_CHECK(diff.empty(), ShapeError, "TrainState::load_state_dict: '", what,
             "' differs in structure from the state's; first difference at ",
             diff == "(root)" ? diff : "'" + diff + "'");
  if (usable_as_is(target, loaded, what)) return loaded;
  return tree_map(
      [&](const Tensor& t, const Tensor& l) {
        check_leaf(t, l, what);
        return l.to(t.device());
      },
      target, loaded);
}

}  // namespace

TrainState TrainState::create(Tree params, optim::GradientTransformation tx, Tree extra) {
  LOOM_CHECK(tx.init && tx.update, ValueError, "TrainState::create: empty GradientTransformation");
  LOOM_CHECK(extra.is_dict(), ValueError,
             "TrainState::create: extra must be a dict of collections (e.g. {\"batch_stats\": ...})");
  for (const char* f : kFields)
    LOOM_CHECK(!extra.contains(f), ValueError, "TrainState::create: extra collection '", f,
               "' clashes with the TrainState field of that name");
  TrainState s;
  s.step = optim::zero_count(params);
  s.opt_state = tx.init(params);
  s.params = std::move(params);
  s.tx = std::move(tx);
  s.extra = std::move(extra);
  return s;
}

TrainState TrainState::apply_gradients(const Tree& grads, std::optional<Tree> new_extra) const {
  optim::check_same_structure(params, grads, "TrainState::apply_gradients", "params", "grads");
  auto [new_params, new_opt_state] = optim::update_and_apply(tx, grads, opt_state, params);
  TrainState next = *this;
  next.step = step + 1.0;
  next.params = std::move(new_params);
  next.opt_state = std::move(new_opt_state);
  if (new_extra) next.extra = std::move(*new_extra);
  return next;
}

Tree TrainState::state_dict() const {
  Tree d;
  d.insert("step", step);
  d.insert("params", params);
  d.insert("opt_state", opt_state);
  for (const auto& [name, collection] : extra.items()) d.insert(name, collection);
  return d;
}

TrainState TrainState::load_state_dict(const Tree& d) const {
  Tree mine = state_dict();
  TrainState out = *this;
  Tree loaded = conform(mine, d, "state_dict");
  out.step = loaded["step"].tensor();
  out.params = loaded["params"];
  out.opt_state = loaded["opt_state"];
  Tree extra_loaded;
  for (const auto& [name, collection] : extra.items()) extra_loaded.insert(name, loaded[name]);
  out.extra = extra_loaded;
  return out;
}

int64_t TrainState::step_value() const { return step.item<int64_t>(); }

}  // namespace loom::train

// Shared by the optim tests: the Optax goldens (tests/golden/optax*.json from
// scripts/golden/gen_optax.py) and a runner that replays their 100 gradient steps.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/tree.h"
#include "optim/transform.h"
#include "tests/support/testing.h"

namespace loom::testing {

inline const nlohmann::json& optax_golden() {
  static const nlohmann::json j = load_golden("optax.json");
  return j;
}
inline const nlohmann::json& optax_schedules_golden() {
  static const nlohmann::json j = load_golden("optax_schedules.json");
  return j;
}

/// {"w": [3, 4], "b": [4], "s": []} from a golden dict of arrays, in that key order.
inline Tree golden_wbs(const nlohmann::json& j) {
  Tree t;
  for (const char* k : {"w", "b", "s"}) t.insert(k, golden_tensor(j.at(k)));
  return t;
}

/// The golden gradients of step `t` (1-based); `bad` puts inf / NaN where the generator does
/// (w[1,2] = inf at step 10, b[3] = nan at 21, s = nan at 22) for steps below `bad_until`.
inline Tree golden_grads(int t, bool bad = false, int bad_until = 1 << 30) {
  static const std::vector<Tree> grads = [] {
    const auto& g = optax_golden().at("grads");
    Tensor w = golden_tensor(g.at("w")), b = golden_tensor(g.at("b")), s = golden_tensor(g.at("s"));
    std::vector<Tree> out;
    for (int64_t i = 0; i < w.dim(0); ++i) {
      Tree step;
      step.insert("w", Tensor(w.storage(), {3, 4}, {4, 1}, w.offset() + i * 12, DType::F32).contiguous());
      step.insert("b", Tensor(b.storage(), {4}, {1}, b.offset() + i * 4, DType::F32).contiguous());
      step.insert("s", Tensor(s.storage(), {}, {}, s.offset() + i, DType::F32).contiguous());
      out.push_back(step);
    }
    return out;
  }();
  Tree g = grads.at(size_t(t - 1));
  if (!bad || t >= bad_until) return g;
  auto patch = [&](const char* key, int64_t index, float value) {
    std::vector<float> v = g[key].tensor().to_vector<float>();
    v[size_t(index)] = value;
    g.insert(key, from_vector(v, g[key].tensor().shape()));
  };
  if (t == 10) patch("w", 1 * 4 + 2, std::numeric_limits<float>::infinity());
  if (t == 21) patch("b", 3, std::numeric_limits<float>::quiet_NaN());
  if (t == 22) patch("s", 0, std::numeric_limits<float>::quiet_NaN());
  return g;
}

/// Paths of the empty dicts of a tree (Optax's EmptyState / MaskedNode in a state dict).
inline void empty_paths(const Tree& t, const std::string& prefix, std::vector<std::string>& out) {
  if (t.is_leaf()) return;
  if (t.empty()) out.push_back(prefix);
  for (const auto& [k, child] : t.items()) empty_paths(child, prefix.empty() ? k : prefix + "/" + k, out);
}

struct GoldenRunOptions {
  bool bad_grads = false;
  int bad_until = 1 << 30;
  bool fused_apply = true;  // update_and_apply (tx.apply when present) instead of update + apply_updates
  Device device = Device::cpu();
  std::vector<Tensor>* learning_rates = nullptr;  // state["hyperparams"]["learning_rate"] per step
};

/// Runs `tx` over the golden's steps and compares the params at the selected steps and the final
/// state (leaf paths, empty-dict paths and values) with the golden case `name`.
inline ::testing::AssertionResult matches_optax(const std::string& name,
                                                const optim::GradientTransformation& tx,
                                                const GoldenRunOptions& o = {},
                                                double rtol = 1e-6, double atol = 1e-7) {
  const auto& golden = optax_golden();
  const auto& c = golden.at("cases").at(name);
  auto to_dev = [&](const Tree& t) { return tree_map([&](const Tensor& x) { return x.to(o.device); }, t); };
  Tree params = to_dev(golden_wbs(golden.at("init_params")));
  Tree state = tx.init(params);
  int steps = c.value("steps", golden.at("steps").get<int>());
  for (int t = 1; t <= steps; ++t) {
    Tree g = to_dev(golden_grads(t, o.bad_grads, o.bad_until));
    if (o.fused_apply) {
      std::tie(params, state) = optim::update_and_apply(tx, g, state, params);
    } else {
      auto [updates, next] = tx.update(g, state, params);
      params = optim::apply_updates(params, updates);
      state = next;
    }
    if (o.learning_rates) o.learning_rates->push_back(state["hyperparams"]["learning_rate"].tensor());
    std::string key = std::to_string(t);
    if (!c.at("params").contains(key)) continue;
    Tree expected = golden_wbs(c.at("params").at(key));
    for (const char* k : {"w", "b", "s"}) {
      auto r = allclose(params[k].tensor().to(Device::cpu()), expected[k].tensor(), rtol, atol);
      if (!r) return ::testing::AssertionFailure() << name << ": params '" << k << "' after step " << t << ": " << r.message();
    }
  }
  std::set<std::string> got_paths, want_paths;
  for (const auto& [path, leaf] : state.flatten()) got_paths.insert(path);
  for (const auto& [path, arr] : c.at("state").items()) want_paths.insert(path);
  if (got_paths != want_paths) {
    auto fail = ::testing::AssertionFailure() << name << ": state leaf paths differ; loom:";
    for (const auto& p : got_paths) fail << " " << p;
    fail << "; optax:";
    for (const auto& p : want_paths) fail << " " << p;
    return fail;
  }
  std::vector<std::string> got_empty;
  empty_paths(state, "", got_empty);
  std::set<std::string> got_empty_set(got_empty.begin(), got_empty.end()), want_empty;
  for (const auto& p : c.at("empty_state_paths")) want_empty.insert(p.get<std::string>());
  if (got_empty_set != want_empty) {
    auto fail = ::testing::AssertionFailure() << name << ": empty state dicts differ; loom:";
    for (const auto& p : got_empty_set) fail << " '" << p << "'";
    fail << "; optax:";
    for (const auto& p : want_empty) fail << " '" << p << "'";
    return fail;
  }
  for (const auto& [path, arr] : c.at("state").items()) {
    Tensor got = state.at(path).tensor().to(Device::cpu());
    Tensor want = golden_tensor(arr);
    if (got.dtype() != want.dtype())
      return ::testing::AssertionFailure() << name << ": state '" << path << "' is " << dtype_name(got.dtype())
                                           << ", optax has " << dtype_name(want.dtype());
    auto r = allclose(got, want, rtol, atol);
    if (!r) return ::testing::AssertionFailure() << name << ": state '" << path << "': " << r.message();
  }
  return ::testing::AssertionSuccess();
}

/// {"w": true, "b": false, "s": true} as a mask tree (the generator's `mask`).
inline Tree golden_mask() {
  Tree m;
  m.insert("w", scalar(1, DType::Bool));
  m.insert("b", scalar(0, DType::Bool));
  m.insert("s", scalar(1, DType::Bool));
  return m;
}

}  // namespace loom::testing

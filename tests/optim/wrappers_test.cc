// Wrappers and single transforms against real Optax (tests/golden/optax.json), plus their
// semantics: masked leaves pass through unchanged, masks as trees / prefixes / functions,
// multi_transform labels, MultiSteps accumulation, apply_if_finite counters, inject_hyperparams
// logging, clip_by_global_norm's strict test, and errors naming the offending path.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/ops/elementwise.h"
#include "optim/optim.h"
#include "tests/optim/optax_golden.h"

namespace loom::optim {
namespace {

using testing::golden_mask;
using testing::matches_optax;

Tree wbs(std::vector<float> w, std::vector<float> b, float s) {
  Tree t;
  t.insert("w", from_vector(w, {int64_t(w.size())}));
  t.insert("b", from_vector(b, {int64_t(b.size())}));
  t.insert("s", scalar(s));
  return t;
}

TEST(OptaxParity, WrappersAndTransformsMatchOptax) {
  EXPECT_TRUE(matches_optax("clip_global_norm_adam", chain(clip_by_global_norm(1.5), adam(1e-2))));
  EXPECT_TRUE(matches_optax("clip_sgd", chain(clip(0.3), sgd(0.1))));
  EXPECT_TRUE(matches_optax("clip_block_rms_sgd", chain(clip_by_block_rms(0.5), sgd(0.1))));
  EXPECT_TRUE(matches_optax("masked_momentum", masked(sgd(0.1, 0.9), golden_mask())));
  EXPECT_TRUE(matches_optax(
      "multi_transform",
      multi_transform({{"adam", adam(1e-2)}, {"sgd", sgd(0.1, 0.9)}, {"frozen", set_to_zero()}},
                      std::map<std::string, std::string>{{"w", "adam"}, {"b", "sgd"}, {"s", "frozen"}})));
  EXPECT_TRUE(matches_optax("multi_steps", multi_steps(adam(1e-2), 3)));
  EXPECT_TRUE(matches_optax("multi_steps_sum", multi_steps(sgd(0.05, 0.9), 4, /*use_grad_mean=*/false)));
  EXPECT_TRUE(matches_optax("ema_trace", chain(ema(0.9), trace(0.5, true), scale(-0.1))));
  EXPECT_TRUE(matches_optax("ema_no_debias", chain(ema(0.8, false), scale(-0.1))));
  EXPECT_TRUE(matches_optax("decay_schedule_trust",
                            chain(add_decayed_weights(linear_schedule(0.1, 0.0, 50)),
                                  scale_by_trust_ratio(), scale_by_learning_rate(0.02))));
  EXPECT_TRUE(matches_optax("apply_if_finite", apply_if_finite(adam(1e-2), 2), {.bad_grads = true}));
  EXPECT_TRUE(matches_optax("apply_if_finite_zero_tolerance", apply_if_finite(sgd(0.05, 0.5), 0),
                            {.bad_grads = true, .bad_until = 16}));
}

TEST(OptaxParity, InjectHyperparamsLogsTheLearningRate) {
  auto factory = [](const Hyperparams& h) {
    return adamw(h.at("learning_rate"), {.weight_decay = h.at("weight_decay")});
  };
  GradientTransformation tx = inject_hyperparams(
      factory, {{"learning_rate", warmup_cosine_decay_schedule(0.0, 0.05, 10, 100)}, {"weight_decay", 0.01}});
  std::vector<Tensor> lrs;
  EXPECT_TRUE(matches_optax("inject_hyperparams", tx, {.learning_rates = &lrs}));
  Tensor expected = testing::golden_tensor(testing::optax_golden().at("cases").at("inject_hyperparams").at("learning_rate"));
  std::vector<float> got;
  for (const Tensor& t : lrs) got.push_back(t.item<float>());
  EXPECT_ALLCLOSE(from_vector(got, {int64_t(got.size())}), expected, 1e-6, 1e-9);
  // The same through the composed path (update + apply_updates).
  EXPECT_TRUE(matches_optax("inject_hyperparams", tx, {.fused_apply = false}));
}

TEST(Masked, UnselectedLeavesPassThroughUnchanged) {
  Tree params = wbs({1, 2}, {3}, 4), grads = wbs({0.5, -0.5}, {2}, 8);
  GradientTransformation tx = masked(scale(-10.0), golden_mask());  // {w: true, b: false, s: true}
  auto [u, s] = tx.update(grads, tx.init(params), params);
  EXPECT_ALLCLOSE(u["w"].tensor(), from_vector<float>({-5, 5}, {2}), 0, 0);
  EXPECT_ALLCLOSE(u["b"].tensor(), from_vector<float>({2}, {1}), 0, 0);  // not zeroed
  EXPECT_ALLCLOSE(u["s"].tensor(), scalar(-80), 0, 0);
  EXPECT_EQ(s.keys(), std::vector<std::string>{"inner_state"});
}

TEST(Masked, FunctionAndPrefixMasks) {
  Tree params;
  Tree enc, dec;
  enc.insert("kernel", ones({2}));
  enc.insert("bias", ones({2}));
  dec.insert("kernel", ones({2}));
  params.insert("enc", enc);
  params.insert("dec", dec);
  // A prefix mask: one bool for the whole "enc" subtree.
  Tree prefix;
  prefix.insert("enc", scalar(0, DType::Bool));
  prefix.insert("dec", scalar(1, DType::Bool));
  GradientTransformation by_prefix = masked(trace(0.5), prefix);
  Tree state = by_prefix.init(params);
  EXPECT_TRUE(state["inner_state"]["trace"]["enc"].empty());  // MaskedNode -> {}
  EXPECT_TRUE(state["inner_state"]["trace"]["dec"].contains("kernel"));
  auto [u, s] = by_prefix.update(params, state, params);
  EXPECT_ALLCLOSE(u.at("enc/kernel").tensor(), ones({2}), 0, 0);
  // A function mask: decay kernels only.
  auto kernels = [](const Tree& t) {
    return mask_where(t, [](const std::string& path, const Tensor&) { return path.ends_with("kernel"); });
  };
  GradientTransformation wd = add_decayed_weights(0.5, kernels);
  auto [u2, s2] = wd.update(tree_map([](const Tensor& p) { return zeros_like(p); }, params), wd.init(params), params);
  EXPECT_ALLCLOSE(u2.at("enc/kernel").tensor(), full({2}, 0.5), 0, 0);
  EXPECT_ALLCLOSE(u2.at("enc/bias").tensor(), zeros({2}), 0, 0);
  EXPECT_ALLCLOSE(u2.at("dec/kernel").tensor(), full({2}, 0.5), 0, 0);
  // A single bool masks everything or nothing.
  auto [u3, s3] = masked(scale(2.0), false).update(params, masked(scale(2.0), false).init(params), params);
  EXPECT_ALLCLOSE(u3.at("dec/kernel").tensor(), ones({2}), 0, 0);
}

TEST(Masked, MaskErrorsNameThePath) {
  Tree params = wbs({1}, {2}, 3);
  Tree bad;
  bad.insert("w", scalar(1, DType::Bool));
  bad.insert("s", scalar(1, DType::Bool));
  try {
    masked(scale(1.0), bad).init(params);
    ADD_FAILURE() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("'b'"), std::string::npos) << e.what();
  }
  Tree not_bool = golden_mask();
  not_bool.insert("b", scalar(1.0));
  EXPECT_THROW(masked(scale(1.0), not_bool).init(params), ValueError);
}

TEST(MultiTransform, LabelsByFunctionAndErrors) {
  Tree params = wbs({1, 1}, {1}, 1);
  GradientTransformation tx = multi_transform(
      {{"fast", scale(-1.0)}, {"slow", scale(-0.1)}},
      [](const std::string& path, const Tensor&) { return path == "w" ? "fast" : "slow"; });
  Tree state = tx.init(params);
  EXPECT_EQ(state["inner_states"].keys(), (std::vector<std::string>{"fast", "slow"}));
  auto [u, s] = tx.update(params, state, params);
  EXPECT_ALLCLOSE(u["w"].tensor(), full({2}, -1.0), 0, 0);
  EXPECT_ALLCLOSE(u["b"].tensor(), full({1}, -0.1), 0, 0);
  GradientTransformation missing = multi_transform(
      {{"fast", scale(-1.0)}}, [](const std::string& path, const Tensor&) { return path == "w" ? "fast" : "oops"; });
  try {
    missing.init(params);
    ADD_FAILURE() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("oops"), std::string::npos) << e.what();
  }
  EXPECT_THROW(multi_transform({{"a", identity()}}, std::map<std::string, std::string>{{"w", "a"}}).init(params),
               ValueError);  // "b" and "s" have no label
}

TEST(MultiSteps, AccumulatesAndEmitsEveryK) {
  Tree params = wbs({0}, {0}, 0);
  GradientTransformation tx = multi_steps(sgd(1.0), 3);
  Tree state = tx.init(params);
  std::vector<float> emitted;
  for (int i = 1; i <= 6; ++i) {
    auto [u, s] = tx.update(wbs({float(i)}, {0}, 0), state, params);
    state = s;
    emitted.push_back(u["w"].tensor().item<float>());
    EXPECT_EQ(multi_steps_has_updated(state).item<bool>(), i % 3 == 0);
  }
  // mean of (1, 2, 3) and of (4, 5, 6), negated by sgd(1.0)
  EXPECT_EQ(emitted, (std::vector<float>{0, 0, -2, 0, 0, -5}));
  EXPECT_EQ(state["gradient_step"].tensor().item<int>(), 2);
  EXPECT_TRUE(state["skip_state"].empty());
}

TEST(ApplyIfFinite, SkipsAndCountsNonFiniteUpdates) {
  Tree params = wbs({1}, {1}, 1);
  GradientTransformation tx = apply_if_finite(sgd(1.0, 0.5), 1);
  Tree state = tx.init(params);
  float inf = std::numeric_limits<float>::infinity();
  auto step = [&](float g) {
    auto [u, s] = tx.update(wbs({g}, {1}, 1), state, params);
    state = s;
    return u["w"].tensor().item<float>();
  };
  EXPECT_EQ(step(1), -1);
  EXPECT_EQ(step(inf), 0);  // skipped: zeros, inner state kept
  EXPECT_EQ(state["notfinite_count"].tensor().item<int>(), 1);
  EXPECT_FALSE(state["last_finite"].tensor().item<bool>());
  EXPECT_EQ(step(2), -2.5f);  // trace 2 + 0.5 * 1: the skipped step left no trace
  EXPECT_EQ(state["notfinite_count"].tensor().item<int>(), 0);
  step(NAN);
  EXPECT_TRUE(std::isnan(step(NAN)));  // more than 1 in a row: applied
  EXPECT_EQ(state["total_notfinite"].tensor().item<int>(), 3);
}

TEST(InjectHyperparams, StoredValuesAndFindHyperparam) {
  Tree params = wbs({1}, {1}, 1);
  GradientTransformation tx = chain(
      clip(1.0), inject_hyperparams([](const Hyperparams& h) { return sgd(h.at("learning_rate")); },
                                    {{"learning_rate", 0.25}}));
  Tree state = tx.init(params);
  ASSERT_TRUE(find_hyperparam(state, "learning_rate").has_value());
  EXPECT_EQ(find_hyperparam(state, "learning_rate")->item<float>(), 0.25f);
  EXPECT_FALSE(find_hyperparam(state, "momentum").has_value());
  EXPECT_TRUE(state["1"]["hyperparams_states"].empty());  // no schedules
  // Editing the stored value changes the next update, as in Optax.
  state["1"]["hyperparams"].insert("learning_rate", scalar(0.5));
  auto [u, s] = tx.update(wbs({1}, {1}, 1), state, params);
  EXPECT_EQ(u["w"].tensor().item<float>(), -0.5f);
}

TEST(Clipping, GlobalNormUsesAStrictLessThan) {
  Tree small = wbs({0.3f, 0.4f}, {0}, 0);  // norm 0.5
  auto [u1, s1] = clip_by_global_norm(0.6).update(small, Tree(), Tree());
  EXPECT_ALLCLOSE(u1["w"].tensor(), small["w"].tensor(), 0, 0);
  auto [u2, s2] = clip_by_global_norm(0.25).update(small, Tree(), Tree());
  EXPECT_ALLCLOSE(u2["w"].tensor(), from_vector<float>({0.15f, 0.2f}, {2}), 1e-6, 0);
  Tree big = wbs({3, 4}, {0}, 0);  // norm exactly 5: clipped branch (n < 5 is false), same value
  auto [u3, s3] = clip_by_global_norm(5.0).update(big, Tree(), Tree());
  EXPECT_ALLCLOSE(u3["w"].tensor(), big["w"].tensor() / 5.0 * 5.0, 0, 0);
  auto [u4, s4] = clip(0.35).update(small, Tree(), Tree());
  EXPECT_ALLCLOSE(u4["w"].tensor(), from_vector<float>({0.3f, 0.35f}, {2}), 0, 0);
}

TEST(Transforms, TraceAndEmaByHand) {
  Tree p = wbs({0}, {0}, 0);
  GradientTransformation t = trace(0.5, /*nesterov=*/true);
  Tree st = t.init(p);
  auto [u1, s1] = t.update(wbs({2}, {0}, 0), st, p);  // trace 2, nesterov 2 + 0.5 * 2
  EXPECT_EQ(u1["w"].tensor().item<float>(), 3.0f);
  auto [u2, s2] = t.update(wbs({2}, {0}, 0), s1, p);  // trace 3, 2 + 1.5
  EXPECT_EQ(u2["w"].tensor().item<float>(), 3.5f);
  GradientTransformation e = ema(0.5);
  auto [v1, es1] = e.update(wbs({4}, {0}, 0), e.init(p), p);  // ema 2, debiased 2 / 0.5
  EXPECT_EQ(v1["w"].tensor().item<float>(), 4.0f);
  EXPECT_EQ(es1["count"].tensor().item<int>(), 1);
}

TEST(Transforms, StructureMismatchNamesThePath) {
  Tree params = wbs({1}, {1}, 1);
  Tree grads;
  grads.insert("w", ones({1}));
  grads.insert("b", ones({1}));
  grads.insert("t", scalar(1));
  GradientTransformation tx = scale_by_adam();
  try {
    tx.update(grads, tx.init(params), params);
    ADD_FAILURE() << "no error";
  } catch (const ShapeError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("scale_by_adam"), std::string::npos) << m;
    EXPECT_NE(m.find("'t'"), std::string::npos) << m;
  }
  EXPECT_THROW(chain(scale(1.0), scale(2.0)).update(grads, Tree(), params), ValueError);
}

}  // namespace
}  // namespace loom::optim

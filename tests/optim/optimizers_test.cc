// Optimizer aliases against real Optax (tests/golden/optax.json): 100 steps on a fixed gradient
// sequence, params after selected steps and the final state by Flax state-dict path; the fused
// kernels against the composed transforms, bit for bit; defaults and errors.
#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "optim/optim.h"
#include "tests/optim/optax_golden.h"

namespace loom::optim {
namespace {

using testing::golden_mask;
using testing::matches_optax;

Schedule golden_warmup_cosine() { return warmup_cosine_decay_schedule(0.0, 0.05, 10, 100, 0.001); }

struct Case {
  const char* name;
  std::function<GradientTransformation()> make;
};

std::vector<Case> optimizer_cases() {
  return {
      {"sgd", [] { return sgd(0.1); }},
      {"sgd_momentum", [] { return sgd(0.05, 0.9); }},
      {"sgd_nesterov", [] { return sgd(0.05, 0.9, true); }},
      {"sgd_schedule", [] { return sgd(exponential_decay(0.1, 10, 0.5), 0.5); }},
      {"adam", [] { return adam(1e-2); }},
      {"adam_schedule", [] { return adam(golden_warmup_cosine()); }},
      {"adam_eps_root", [] { return adam(1e-2, {.b1 = 0.8, .b2 = 0.99, .eps = 1e-6, .eps_root = 1e-8}); }},
      {"nadam", [] { return nadam(1e-2); }},
      {"adamw", [] { return adamw(1e-2); }},
      {"adamw_mask", [] { return adamw(1e-2, {.weight_decay = 0.1, .mask = golden_mask()}); }},
      {"adamw_schedule", [] { return adamw(golden_warmup_cosine(), {.weight_decay = 0.05}); }},
      {"nadamw", [] { return nadamw(1e-2, {.weight_decay = 0.01}); }},
      {"lamb", [] { return lamb(1e-2); }},
      {"lamb_wd", [] { return lamb(1e-2, {.weight_decay = 0.01}); }},
      {"lars", [] { return lars(0.5); }},
      {"lars_wd_nesterov", [] { return lars(0.5, {.weight_decay = 1e-2, .nesterov = true}); }},
      {"rmsprop", [] { return rmsprop(1e-2); }},
      {"rmsprop_centered_momentum", [] { return rmsprop(1e-2, {.centered = true, .momentum = 0.9}); }},
      {"rmsprop_eps_outside_bias",
       [] { return rmsprop(1e-2, {.initial_scale = 0.1, .eps_in_sqrt = false, .bias_correction = true}); }},
      {"adagrad", [] { return adagrad(0.1); }},
      {"lion", [] { return lion(1e-3); }},
      {"lion_mask", [] { return lion(1e-3, {.b1 = 0.95, .weight_decay = 0.1, .mask = golden_mask()}); }},
      {"adafactor", [] { return adafactor(1e-2); }},
      {"adafactor_factored",
       [] { return adafactor(1e-2, {.min_dim_size_to_factor = 2, .momentum = 0.9, .weight_decay_rate = 1e-3}); }},
      {"adafactor_no_lr", [] { return adafactor(); }},
  };
}

TEST(OptaxParity, OptimizersMatchOptax) {
  for (const Case& c : optimizer_cases()) EXPECT_TRUE(matches_optax(c.name, c.make()));
}

TEST(OptaxParity, ComposedPathsMatchOptaxToo) {
  // The same goldens with the fused kernels off and the plain update + apply_updates loop.
  set_fused_updates_enabled(false);
  for (const Case& c : optimizer_cases())
    EXPECT_TRUE(matches_optax(c.name, c.make(), {.fused_apply = false}));
  set_fused_updates_enabled(true);
}

TEST(OptaxParity, GoldenRecordsVersions) {
  const auto& v = testing::optax_golden().at("versions");
  EXPECT_EQ(v.at("optax").get<std::string>(), "0.2.8");
  EXPECT_EQ(v.at("jax").get<std::string>(), "0.10.2");
}

// --- fused kernels == composed transforms ---

Tree random_tree(uint64_t seed, double scale = 1.0) {
  Tree t;
  t.insert("big", (testing::test_values({33000}, seed) * scale).to(DType::F32));  // several chunks
  Tree inner;
  inner.insert("kernel", (testing::test_values({13, 7}, seed + 1) * scale).to(DType::F32));
  inner.insert("bias", (testing::test_values({7}, seed + 2) * scale).to(DType::F32));
  inner.insert("empty", zeros({0, 3}));
  t.insert("layer", inner);
  t.insert("scalar", (testing::test_values({}, seed + 3) * scale).to(DType::F32));
  return t;
}

::testing::AssertionResult trees_equal(const Tree& a, const Tree& b) {
  if (!a.same_structure(b)) return ::testing::AssertionFailure() << "structures differ at " << a.first_difference(b);
  for (const auto& [path, x] : a.flatten()) {
    auto r = testing::allclose(x, b.at(path).tensor(), 0, 0);
    if (!r) return ::testing::AssertionFailure() << path << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

TEST(FusedUpdates, EqualComposedTransformsBitForBit) {
  Tree mask = mask_where(random_tree(1), [](const std::string& path, const Tensor&) {
    return path != "layer/bias";
  });
  Tensor lr_tensor = scalar(0.02);
  struct FusedCase {
    const char* name;
    GradientTransformation fused, composed;
  };
  std::vector<FusedCase> cases = {
      {"sgd", sgd(0.1), chain(identity(), scale_by_learning_rate(0.1))},
      {"sgd momentum", sgd(0.1, 0.9), chain(trace(0.9), scale_by_learning_rate(0.1))},
      {"sgd nesterov schedule", sgd(cosine_decay_schedule(0.1, 4), 0.8, true),
       chain(trace(0.8, true), scale_by_learning_rate(cosine_decay_schedule(0.1, 4)))},
      {"adam", adam(1e-2), chain(scale_by_adam(), scale_by_learning_rate(1e-2))},
      {"adam tensor lr", adam(lr_tensor, {.b1 = 0.8, .eps_root = 1e-9}),
       chain(scale_by_adam({.b1 = 0.8, .eps_root = 1e-9}), scale_by_learning_rate(lr_tensor))},
      {"nadam schedule", nadam(linear_schedule(0.1, 0.01, 3)),
       chain(scale_by_adam({.nesterov = true}), scale_by_learning_rate(linear_schedule(0.1, 0.01, 3)))},
      {"adamw", adamw(1e-2), chain(scale_by_adam(), add_decayed_weights(1e-4), scale_by_learning_rate(1e-2))},
      {"adamw mask", adamw(3e-3, {.weight_decay = 0.1, .mask = mask}),
       chain(scale_by_adam(), add_decayed_weights(0.1, mask), scale_by_learning_rate(3e-3))},
      {"nadamw fn mask", nadamw(1e-2, {.weight_decay = 0.05, .mask = [](const Tree& p) {
                                  return mask_where(p, [](const std::string& path, const Tensor&) {
                                    return path == "big";
                                  });
                                }}),
       chain(scale_by_adam({.nesterov = true}),
             add_decayed_weights(0.05, Mask([](const Tree& p) {
                                   return mask_where(p, [](const std::string& path, const Tensor&) {
                                     return path == "big";
                                   });
                                 })),
             scale_by_learning_rate(1e-2))},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    Tree params = random_tree(10);
    Tree fused_state = c.fused.init(params), composed_state = c.composed.init(params);
    ASSERT_TRUE(trees_equal(fused_state, composed_state));
    Tree p_fused = params, p_composed = params;
    for (int step = 0; step < 3; ++step) {
      Tree grads = random_tree(100 + uint64_t(step), 0.5);
      // update(): the updates themselves
      auto [u_fused, s1] = c.fused.update(grads, fused_state, p_fused);
      auto [u_composed, s2] = c.composed.update(grads, composed_state, p_composed);
      ASSERT_TRUE(trees_equal(u_fused, u_composed));
      ASSERT_TRUE(trees_equal(s1, s2));
      // apply(): params in one pass
      ASSERT_TRUE(bool(c.fused.apply));
      auto [np_fused, s3] = c.fused.apply(grads, fused_state, p_fused);
      ASSERT_TRUE(trees_equal(np_fused, apply_updates(p_composed, u_composed)));
      ASSERT_TRUE(trees_equal(s3, s2));
      p_fused = np_fused;
      p_composed = apply_updates(p_composed, u_composed);
      fused_state = s3;
      composed_state = s2;
    }
  }
}

TEST(FusedUpdates, ChainEndingInAFusedOptimizerStaysFused) {
  GradientTransformation tx = chain(clip_by_global_norm(1.0), adamw(1e-3));
  EXPECT_TRUE(bool(tx.apply));
  Tree params = random_tree(3), grads = random_tree(4);
  Tree state = tx.init(params);
  auto [p1, s1] = update_and_apply(tx, grads, state, params);
  auto [u, s2] = tx.update(grads, state, params);
  EXPECT_TRUE(trees_equal(p1, apply_updates(params, u)));
  EXPECT_TRUE(trees_equal(s1, s2));
}

TEST(FusedUpdates, LeavesPairByPathWhateverTheKeyOrder) {
  Tree params, grads;
  params.insert("a", from_vector<float>({1, 2}, {2}));
  params.insert("b", from_vector<float>({3}, {1}));
  grads.insert("b", from_vector<float>({0.5}, {1}));
  grads.insert("a", from_vector<float>({-1, 1}, {2}));
  for (GradientTransformation tx : {adam(0.1), sgd(0.1, 0.9)}) {
    auto [p, s] = update_and_apply(tx, grads, tx.init(params), params);
    EXPECT_EQ(p.keys(), (std::vector<std::string>{"a", "b"}));  // the params' order
    set_fused_updates_enabled(false);
    auto [p_ref, s_ref] = update_and_apply(tx, grads, tx.init(params), params);
    set_fused_updates_enabled(true);
    EXPECT_TRUE(trees_equal(p, p_ref));
    EXPECT_TRUE(trees_equal(s, s_ref));
  }
}

TEST(FusedUpdates, NonFloat32TreesTakeTheComposedPath) {
  Tree params;
  params.insert("w", testing::test_values({5}, 1));  // float64
  Tree grads;
  grads.insert("w", testing::test_values({5}, 2));
  GradientTransformation tx = adam(0.1);
  auto [p, s] = update_and_apply(tx, grads, tx.init(params), params);
  GradientTransformation ref = chain(scale_by_adam(), scale_by_learning_rate(0.1));
  auto [u, s_ref] = ref.update(grads, ref.init(params), params);
  EXPECT_TRUE(trees_equal(p, apply_updates(params, u)));
  EXPECT_EQ(p["w"].tensor().dtype(), DType::F64);
}

// --- defaults and state layout ---

TEST(Optimizers, AdamwDefaultWeightDecayIsOptaxs) {
  EXPECT_EQ(AdamWOptions{}.weight_decay.constant(), 1e-4);
  // With zero gradients Adam's part is 0, so the update is -lr * 1e-4 * p.
  Tree params;
  params.insert("w", from_vector<float>({1.0f, -2.0f, 4.0f}, {3}));
  Tree grads = tree_map([](const Tensor& p) { return zeros_like(p); }, params);
  GradientTransformation tx = adamw(0.5);
  auto [u, s] = tx.update(grads, tx.init(params), params);
  EXPECT_ALLCLOSE(u["w"].tensor(), from_vector<float>({-0.5e-4f, 1e-4f, -2e-4f}, {3}), 1e-6, 0);
  EXPECT_EQ(LionOptions{}.weight_decay.constant(), 1e-3);
  EXPECT_EQ(LambOptions{}.weight_decay.constant(), 0.0);
}

TEST(Optimizers, StateLayoutFollowsOptax) {
  Tree params;
  params.insert("w", zeros({2}));
  Tree s = adamw(0.1).init(params);
  EXPECT_EQ(s.keys(), (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_EQ(s["0"].keys(), (std::vector<std::string>{"count", "mu", "nu"}));
  EXPECT_EQ(s["0"]["count"].tensor().dtype(), DType::I32);
  EXPECT_TRUE(s["1"].empty());
  EXPECT_TRUE(s["2"].empty());
  Tree sched = sgd(linear_schedule(1, 0, 10), 0.9).init(params);
  EXPECT_TRUE(sched["0"].contains("trace"));
  EXPECT_EQ(sched["1"].keys(), (std::vector<std::string>{"count"}));
}

TEST(Optimizers, StepCountSaturatesAtInt32Max) {
  Tensor c = scalar(2147483646, DType::I32);
  c = safe_increment(c);
  EXPECT_EQ(c.item<int64_t>(), 2147483647);
  EXPECT_EQ(safe_increment(c).item<int64_t>(), 2147483647);
}

TEST(Losses, OptaxLossesAreReexported) {
  Tensor logits = from_vector<float>({1, 2, 0.5f, -1, 0, 3}, {2, 3});
  Tensor labels = from_vector<int32_t>({2, 0}, {2});
  EXPECT_ALLCLOSE(optim::softmax_cross_entropy_with_integer_labels(logits, labels),
                  loom::softmax_cross_entropy_with_integer_labels(logits, labels), 0, 0);
  EXPECT_ALLCLOSE(optim::l2_loss(logits), logits * logits * 0.5, 1e-7, 0);
  EXPECT_ALLCLOSE(optim::squared_error(logits), logits * logits, 1e-7, 0);
}

// --- errors ---

TEST(OptimizerErrors, GradsParamsMismatchNamesThePath) {
  Tree params;
  params.insert("w", zeros({2}));
  Tree inner;
  inner.insert("kernel", zeros({2, 2}));
  params.insert("dense", inner);
  Tree grads;
  grads.insert("w", zeros({2}));
  Tree other;
  other.insert("bias", zeros({2}));
  grads.insert("dense", other);
  for (GradientTransformation tx : {sgd(0.1, 0.9), adam(1e-3), adamw(1e-3), lamb(1e-3)}) {
    Tree state = tx.init(params);
    try {
      update_and_apply(tx, grads, state, params);
      ADD_FAILURE() << "no error";
    } catch (const ShapeError& e) {
      EXPECT_NE(std::string(e.what()).find("dense/"), std::string::npos) << e.what();
    }
  }
  try {
    apply_updates(params, grads);
    ADD_FAILURE() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("first difference at 'dense/kernel'"), std::string::npos) << e.what();
  }
}

TEST(OptimizerErrors, LeafShapeMismatchNamesPathAndShapes) {
  Tree params;
  params.insert("w", zeros({4}));
  Tree grads;
  grads.insert("w", zeros({1}));  // would broadcast silently
  for (GradientTransformation tx : {sgd(0.1, 0.9), adam(1e-3), rmsprop(1e-3), lion(1e-3)}) {
    try {
      update_and_apply(tx, grads, tx.init(params), params);
      ADD_FAILURE() << "no error";
    } catch (const ShapeError& e) {
      std::string m = e.what();
      EXPECT_NE(m.find("'w'"), std::string::npos) << m;
      EXPECT_NE(m.find("[1]"), std::string::npos) << m;
      EXPECT_NE(m.find("[4]"), std::string::npos) << m;
    }
  }
}

TEST(OptimizerErrors, WrongStateAndMissingParams) {
  Tree params;
  params.insert("w", zeros({2}));
  GradientTransformation tx = adamw(1e-3);
  EXPECT_THROW(tx.update(params, Tree(), params), ValueError);  // not this chain's state
  GradientTransformation wd = add_decayed_weights(0.1);
  try {
    wd.update(params, wd.init(params), Tree());
    ADD_FAILURE() << "no error";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("add_decayed_weights"), std::string::npos);
  }
  EXPECT_THROW(scale_by_trust_ratio().update(params, Tree(), Tree()), ValueError);
}

}  // namespace
}  // namespace loom::optim

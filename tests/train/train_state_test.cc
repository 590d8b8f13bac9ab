// TrainState as Flax's: create (step 0, opt_state = tx.init), apply_gradients (step + 1, params
// updated, extra collections replaced), Optax parity over the golden gradients, the state dict a
// checkpoint stores, and errors naming the first differing path.
#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "optim/optim.h"
#include "tests/optim/optax_golden.h"
#include "train/train_state.h"

namespace loom::train {
namespace {

Tree small_params() {
  Tree p;
  p.insert("kernel", from_vector<float>({1, 2, 3, 4}, {2, 2}));
  p.insert("bias", from_vector<float>({0.5f, -0.5f}, {2}));
  return p;
}

TEST(TrainState, CreateAndApplyGradients) {
  Tree extra;
  Tree stats;
  stats.insert("mean", zeros({2}));
  extra.insert("batch_stats", stats);
  TrainState s0 = TrainState::create(small_params(), optim::sgd(0.1), extra);
  EXPECT_EQ(s0.step_value(), 0);
  EXPECT_EQ(s0.step.dtype(), DType::I32);
  EXPECT_EQ(s0.opt_state.keys(), (std::vector<std::string>{"0", "1"}));

  Tree grads = tree_map([](const Tensor& p) { return ones_like(p); }, s0.params);
  TrainState s1 = s0.apply_gradients(grads);
  EXPECT_EQ(s1.step_value(), 1);
  EXPECT_EQ(s0.step_value(), 0);  // values: the old state is untouched
  EXPECT_ALLCLOSE(s1.params["kernel"].tensor(), from_vector<float>({0.9f, 1.9f, 2.9f, 3.9f}, {2, 2}), 1e-7, 0);
  EXPECT_TRUE(s1.extra.contains("batch_stats"));

  Tree new_extra;
  Tree new_stats;
  new_stats.insert("mean", ones({2}));
  new_extra.insert("batch_stats", new_stats);
  TrainState s2 = s1.apply_gradients(grads, new_extra);
  EXPECT_EQ(s2.step_value(), 2);
  EXPECT_ALLCLOSE(s2.extra.at("batch_stats/mean").tensor(), ones({2}), 0, 0);
  EXPECT_ALLCLOSE(s1.extra.at("batch_stats/mean").tensor(), zeros({2}), 0, 0);
}

TEST(TrainState, MatchesOptaxOverTheGoldenSteps) {
  // TrainState.apply_gradients with optax.adamw / sgd momentum, as a Flax training loop would.
  const auto& golden = testing::optax_golden();
  for (const char* name : {"sgd_momentum", "adamw"}) {
    SCOPED_TRACE(name);
    optim::GradientTransformation tx = std::string(name) == "adamw" ? optim::adamw(1e-2) : optim::sgd(0.05, 0.9);
    TrainState state = TrainState::create(testing::golden_wbs(golden.at("init_params")), tx);
    for (int t = 1; t <= 100; ++t) state = state.apply_gradients(testing::golden_grads(t));
    EXPECT_EQ(state.step_value(), 100);
    Tree expected = testing::golden_wbs(golden.at("cases").at(name).at("params").at("100"));
    EXPECT_TRUE(tree_allclose(state.params, expected, 1e-6, 1e-7));
  }
}

TEST(TrainState, FusedAndComposedStepsAgree) {
  Tree grads = tree_map([](const Tensor& p) { return p * 0.3 - 0.1; }, small_params());
  TrainState fused = TrainState::create(small_params(), optim::adamw(1e-2, {.weight_decay = 0.1}));
  optim::GradientTransformation composed = optim::chain(
      optim::scale_by_adam(), optim::add_decayed_weights(0.1), optim::scale_by_learning_rate(1e-2));
  TrainState plain = TrainState::create(small_params(), composed);
  for (int i = 0; i < 3; ++i) {
    fused = fused.apply_gradients(grads);
    plain = plain.apply_gradients(grads);
  }
  EXPECT_TRUE(tree_allclose(fused.params, plain.params, 0, 0));
  EXPECT_TRUE(tree_allclose(fused.opt_state, plain.opt_state, 0, 0));
}

TEST(TrainState, StateDictRoundTrip) {
  Tree extra;
  Tree stats;
  stats.insert("var", ones({2}));
  extra.insert("batch_stats", stats);
  TrainState s = TrainState::create(small_params(), optim::adam(1e-3), extra);
  s = s.apply_gradients(tree_map([](const Tensor& p) { return ones_like(p); }, s.params));
  Tree d = s.state_dict();
  EXPECT_EQ(d.keys(), (std::vector<std::string>{"step", "params", "opt_state", "batch_stats"}));
  EXPECT_TRUE(d.has_path("opt_state/0/mu/kernel"));

  TrainState fresh = TrainState::create(small_params(), optim::adam(1e-3), extra);
  TrainState restored = fresh.load_state_dict(d);
  EXPECT_EQ(restored.step_value(), 1);
  EXPECT_TRUE(tree_allclose(restored.params, s.params, 0, 0));
  EXPECT_TRUE(tree_allclose(restored.opt_state, s.opt_state, 0, 0));

  Tree broken = d;
  broken.erase_path("opt_state/0/nu/bias");
  try {
    fresh.load_state_dict(broken);
    ADD_FAILURE() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("opt_state/0/nu/bias"), std::string::npos) << e.what();
  }
}

TEST(TrainState, Errors) {
  TrainState s = TrainState::create(small_params(), optim::sgd(0.1, 0.9));
  Tree grads;
  grads.insert("kernel", ones({2, 2}));
  grads.insert("bias_typo", ones({2}));
  try {
    s.apply_gradients(grads);
    ADD_FAILURE() << "no error";
  } catch (const ShapeError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("apply_gradients"), std::string::npos) << m;
    EXPECT_NE(m.find("first difference at 'bias'"), std::string::npos) << m;
  }
  Tree clash;
  clash.insert("params", Tree());
  EXPECT_THROW(TrainState::create(small_params(), optim::sgd(0.1), clash), ValueError);
  EXPECT_THROW(TrainState::create(small_params(), optim::GradientTransformation{}), ValueError);
}

}  // namespace
}  // namespace loom::train

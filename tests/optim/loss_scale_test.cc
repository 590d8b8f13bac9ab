// Dynamic loss scaling (optim/loss_scale.h) against hand-computed values: jmp's adjust rule
// (growth after `period` finite steps, backoff on overflow, the min_scale floor), the optimizer
// wrapper skipping an overflowing step without touching the inner state, and real float16
// gradients: the scale backs off to the largest value whose gradients fit, and scaling keeps a
// gradient that float16 would flush to zero.
#include "optim/loss_scale.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "optim/optimizers.h"
#include "optim/wrappers.h"
#include "tests/support/testing.h"

namespace loom::optim {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

Tree one_leaf(float v) {
  Tree t;
  t.insert("w", from_vector<float>({v}, {1}));
  return t;
}

TEST(DynamicLossScale, ScaleAndUnscale) {
  DynamicLossScale ls = DynamicLossScale::create({.initial_scale = 4});
  EXPECT_EQ(ls.loss_scale.dtype(), DType::F32);
  EXPECT_EQ(ls.counter.dtype(), DType::I32);
  EXPECT_EQ(ls.scale(scalar(3.0)).item<float>(), 12.0f);
  Tree g;
  g.insert("a", from_vector<float>({8, 2}, {2}));
  g.insert("h", from_vector<float>({6}, {1}).to(DType::F16));
  Tree u = ls.unscale(g);
  EXPECT_EQ(u["a"].tensor().to_vector<float>(), (std::vector<float>{2, 0.5f}));
  EXPECT_EQ(u["h"].tensor().dtype(), DType::F16);  // each leaf keeps its dtype
  EXPECT_EQ(u["h"].tensor().to(DType::F32).item<float>(), 1.5f);
}

TEST(DynamicLossScale, AdjustGrowsAfterPeriodAndBacksOffToTheFloor) {
  DynamicLossScale ls = DynamicLossScale::create({.initial_scale = 4, .period = 2, .factor = 2, .min_scale = 1});
  auto step = [&](bool finite) {
    ls = ls.adjust(scalar(finite ? 1 : 0, DType::Bool));
    return std::pair{ls.loss_scale.item<float>(), ls.counter.item<int>()};
  };
  using P = std::pair<float, int>;
  EXPECT_EQ(step(true), (P{4, 1}));
  EXPECT_EQ(step(true), (P{8, 0}));   // the second finite step in a row doubles
  EXPECT_EQ(step(true), (P{8, 1}));
  EXPECT_EQ(step(false), (P{4, 0}));  // overflow: halve and restart the count
  EXPECT_EQ(step(true), (P{4, 1}));
  EXPECT_EQ(step(false), (P{2, 0}));  // a finite step that did not reach the period is forgotten
  EXPECT_EQ(step(false), (P{1, 0}));
  EXPECT_EQ(step(false), (P{1, 0}));  // never below min_scale
  EXPECT_EQ(step(true), (P{1, 1}));
  EXPECT_EQ(step(true), (P{2, 0}));
}

TEST(DynamicLossScale, DefaultsAreGradScalers) {
  DynamicLossScale ls = DynamicLossScale::create();
  EXPECT_EQ(ls.loss_scale.item<float>(), 65536.0f);
  EXPECT_EQ(ls.period, 2000);
  EXPECT_EQ(ls.factor, 2.0);
  EXPECT_EQ(ls.min_scale, 1.0);
  for (int i = 0; i < 1999; ++i) ls = ls.adjust(scalar(1, DType::Bool));
  EXPECT_EQ(ls.loss_scale.item<float>(), 65536.0f);
  EXPECT_EQ(ls.counter.item<int>(), 1999);
  ls = ls.adjust(scalar(1, DType::Bool));
  EXPECT_EQ(ls.loss_scale.item<float>(), 131072.0f);
  EXPECT_EQ(ls.counter.item<int>(), 0);
}

TEST(DynamicLossScale, BadOptionsAreNamed) {
  EXPECT_THROW_WITH(DynamicLossScale::create({.initial_scale = 0}), ValueError,
                    "dynamic_loss_scale:", "initial_scale 0");
  EXPECT_THROW_WITH(DynamicLossScale::create({.factor = 1}), ValueError, "factor > 1", "factor 1");
  EXPECT_THROW_WITH(dynamic_loss_scale(sgd(0.1), {.period = 0}), ValueError, "period >= 1", "period 0");
}

TEST(DynamicLossScale, AllFiniteAndSelectTree) {
  Tree t;
  t.insert("a", from_vector<float>({1, 2}, {2}));
  t.insert("i", from_vector<int32_t>({7}, {1}));
  EXPECT_TRUE(all_finite(t).item<bool>());
  EXPECT_TRUE(all_finite(Tree()).item<bool>());
  t.insert("b", from_vector<double>({1, std::nan("")}, {2}));
  EXPECT_FALSE(all_finite(t).item<bool>());
  EXPECT_FALSE(all_finite(one_leaf(-kInf)).item<bool>());
  // float16 overflow: 65504 * 2 is Inf in float16.
  Tree h;
  h.insert("h", (from_vector<float>({65504}, {1}).to(DType::F16) * 2.0));
  EXPECT_FALSE(all_finite(h).item<bool>());

  Tree a = one_leaf(1), b = one_leaf(2);
  EXPECT_EQ(select_tree(scalar(1, DType::Bool), a, b)["w"].tensor().item<float>(), 1.0f);
  EXPECT_EQ(select_tree(scalar(0, DType::Bool), a, b)["w"].tensor().item<float>(), 2.0f);
  Tree other;
  other.insert("v", from_vector<float>({1}, {1}));
  EXPECT_THROW_WITH(select_tree(scalar(1, DType::Bool), other, b, "my_op"), ShapeError, "my_op");
}

TEST(DynamicLossScaleTransform, UnscalesSkipsOverflowAndKeepsTheInnerState) {
  Tree params = one_leaf(1);
  // sgd with momentum 0.5 (trace): a skipped step must leave no trace in the momentum.
  GradientTransformation tx = dynamic_loss_scale(sgd(1.0, 0.5), {.initial_scale = 4, .period = 2});
  Tree state = tx.init(params);
  EXPECT_EQ(current_loss_scale(state).item<float>(), 4.0f);
  auto step = [&](float scaled_grad) {
    auto [u, s] = tx.update(one_leaf(scaled_grad), state, params);
    state = s;
    return u["w"].tensor().item<float>();
  };
  EXPECT_EQ(step(8), -2.0f);  // 8 / 4 = 2; trace 2
  EXPECT_EQ(current_loss_scale(state).item<float>(), 4.0f);
  EXPECT_EQ(state["counter"].tensor().item<int>(), 1);
  EXPECT_EQ(step(kInf), 0.0f);  // overflow: skipped
  EXPECT_EQ(current_loss_scale(state).item<float>(), 2.0f);
  EXPECT_EQ(state["counter"].tensor().item<int>(), 0);
  EXPECT_FALSE(state["last_finite"].tensor().item<bool>());
  EXPECT_EQ(state["total_notfinite"].tensor().item<int>(), 1);
  EXPECT_EQ(step(6), -4.0f);  // 6 / 2 = 3; trace 3 + 0.5 * 2 (the skipped step left none)
  EXPECT_TRUE(state["last_finite"].tensor().item<bool>());
  EXPECT_EQ(step(NAN), 0.0f);
  EXPECT_EQ(step(NAN), 0.0f);  // no give-up, unlike apply_if_finite
  EXPECT_EQ(current_loss_scale(state).item<float>(), 1.0f);  // 2 -> 1 -> floor 1
  EXPECT_EQ(state["total_notfinite"].tensor().item<int>(), 3);
  step(1);
  step(1);
  EXPECT_EQ(current_loss_scale(state).item<float>(), 2.0f);  // grown after 2 finite steps
  EXPECT_THROW_WITH(current_loss_scale(apply_if_finite(sgd(0.1), 3).init(params)), ValueError,
                    "current_loss_scale", "loss_scale", "notfinite_count");
}

// The loss 4 * sum(w) computed in float16: dloss/dw = 4, and the scaled cotangent flows through
// float16. Scales 65536 and 32768 overflow already in the cast (max float16 65504) or after the
// multiply by 4, 16384 * 4 = 65536 too; 8192 is the first that fits.
TEST(DynamicLossScaleTransform, BacksOffUntilFloat16GradientsFit) {
  Tree params = one_leaf(1);
  GradientTransformation tx = dynamic_loss_scale(sgd(1.0));
  Tree state = tx.init(params);
  std::vector<float> scales, updates;
  for (int i = 0; i < 5; ++i) {
    Tensor s = current_loss_scale(state);
    scales.push_back(s.item<float>());
    auto [loss, grads] = value_and_grad([&](const Tree& p) {
      Tensor half = p["w"].tensor().to(DType::F16) * 4.0;
      return sum(half).to(DType::F32) * s;
    })(params);
    auto [u, next] = tx.update(grads, state, params);
    state = next;
    updates.push_back(u["w"].tensor().item<float>());
  }
  EXPECT_EQ(scales, (std::vector<float>{65536, 32768, 16384, 8192, 8192}));
  EXPECT_EQ(updates, (std::vector<float>{0, 0, 0, -4, -4}));
  EXPECT_EQ(state["total_notfinite"].tensor().item<int>(), 3);
}

// What scaling is for: a float16 gradient of 1e-8 is below float16's smallest subnormal (6e-8)
// and flushes to zero unscaled; scaled by 65536 it survives, and unscaling recovers it.
TEST(DynamicLossScaleTransform, KeepsFloat16GradientsThatWouldUnderflow) {
  Tree params = one_leaf(1);
  auto grad_at = [&](double scale) {
    return grad([&](const Tree& p) {
      return sum(p["w"].tensor().to(DType::F16)).to(DType::F32) * (1e-8 * scale);
    })(params);
  };
  EXPECT_EQ(grad_at(1)["w"].tensor().item<float>(), 0.0f);
  DynamicLossScale ls = DynamicLossScale::create();
  float g = ls.unscale(grad_at(65536))["w"].tensor().item<float>();
  EXPECT_NEAR(g, 1e-8, 1e-11);
}

}  // namespace
}  // namespace loom::optim

// Numerical-fault tooling wired into every op: debug-NaNs (forward through autograd::record /
// autograd::checked, backward through autograd::backward) and deterministic mode (a 100-step
// training run twice gives a bitwise-identical loss curve; the CPU backwards of the ops that
// throw on CUDA in this mode still run).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "core/debug_nans.h"
#include "core/determinism.h"
#include "core/grad.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "tests/support/loss_curve.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

// A two-layer model whose second layer takes log of a pre-activation that is negative for the
// second example: log(-1) is the first NaN.
Tensor tiny_model(const Tensor& w) {
  Tensor x = from_vector<float>({1, 2, -1, -2}, {2, 2});
  Tensor h = matmul(x, w);         // [[3, 3], [-3, -3]] for w = ones * 1
  Tensor z = h / 3.0;              // [[1, 1], [-1, -1]]
  return sum(log(z) * 2.0);
}

TEST(Numerics, ForwardNanNamesLogWithoutGradient) {
  DebugNansScope on;
  Tensor w = ones({2, 2}, DType::F32);
  EXPECT_THROW_WITH(tiny_model(w), FloatingPointError, "debug_nans: log (forward)",
                    "2 NaN and 0 Inf", "input 0: [2, 2] float32 cpu min -1 max 1 mean 0");
}

TEST(Numerics, ForwardNanNamesLogWhileRecording) {
  DebugNansScope on;
  Tensor w = ones({2, 2}, DType::F32);
  EXPECT_THROW_WITH(value_and_grad_tensor(tiny_model)(w), FloatingPointError,
                    "debug_nans: log (forward)", "input 0: [2, 2] float32 cpu min -1 max 1");
}

TEST(Numerics, BackwardInfFromSqrtAtZeroNamesTheOp) {
  auto f = [](const Tensor& x) { return sum(sqrt(x)); };
  Tensor x = from_vector<float>({0.0f, 4.0f}, {2});
  {
    DebugNansScope on;
    EXPECT_THROW_WITH(value_and_grad_tensor(f)(x), FloatingPointError,
                      "debug_nans: sqrt (backward)", "0 NaN and 1 Inf",
                      "the gradient for its input 0", "incoming gradient: [2] float32 cpu min 1 max 1");
  }
  // Off: no check, the Inf flows out.
  auto [v, g] = value_and_grad_tensor(f)(x);
  EXPECT_EQ(v.item<float>(), 2.0f);
  EXPECT_TRUE(std::isinf(g.to_vector<float>()[0]));
}

TEST(Numerics, OpsInsideABackwardRuleReportTheRule) {
  // pow's backward computes pow(a, b - 1) = 0^-0.5 = Inf: reported by the inner op while
  // running the backward of 'pow'.
  auto f = [](const Tensor& x) { return sum(pow(x, 0.5)); };
  DebugNansScope on;
  EXPECT_THROW_WITH(value_and_grad_tensor(f)(from_vector<float>({0.0f, 1.0f}, {2})),
                    FloatingPointError, "(backward of 'pow')", "1 Inf");
}

TEST(Numerics, DisabledDoesNotCheckOrThrow) {
  ASSERT_FALSE(debug_nans_enabled());
  Tensor w = ones({2, 2}, DType::F32);
  EXPECT_TRUE(std::isnan(tiny_model(w).item<float>()));
  auto [v, g] = value_and_grad_tensor(tiny_model)(w);
  EXPECT_TRUE(std::isnan(v.item<float>()));
}

// Each op family's non-recording exit is checked: a NaN input makes the op itself the first
// offender (as jax_debug_nans reports the first primitive whose output holds one).
TEST(Numerics, EveryOpFamilyIsChecked) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor bad = from_vector<float>({1, nan, 3, 4}, {2, 2});
  Tensor img = from_vector<float>({1, nan, 3, 4}, {1, 2, 2, 1});
  Tensor k = ones({1, 1, 1, 1}, DType::F32);
  Tensor labels = from_vector<int32_t>({0, 1}, {2});
  Tensor idx = from_vector<int32_t>({1, 0}, {2});
  Tensor scale = ones({2}, DType::F32);
  std::vector<std::pair<std::string, std::function<Tensor()>>> cases = {
      {"add", [&] { return bad + 1.0; }},
      {"exp", [&] { return exp(bad); }},
      {"where", [&] { return where(less(bad, scalar_like(2, bad)), 0.0, bad); }},
      {"sum", [&] { return sum(bad); }},
      {"max", [&] { return max(bad); }},
      {"dot_general", [&] { return matmul(bad, ones({2, 2}, DType::F32)); }},
      {"conv", [&] { return conv(img, k); }},
      {"softmax", [&] { return softmax(bad, -1); }},
      {"softmax_cross_entropy_with_integer_labels",
       [&] { return softmax_cross_entropy_with_integer_labels(bad, labels); }},
      {"layer_norm", [&] { return layer_norm(bad, scale, scale, 1e-5, {-1}); }},
      {"take", [&] { return take(bad, idx, 0); }},
      {"concatenate", [&] { return concatenate({bad, bad}, 0); }},
      {"pad", [&] { return pad(bad, {{1, 1}, {0, 0}}, 0.0); }},
  };
  DebugNansScope on;
  for (auto& [name, fn] : cases) {
    SCOPED_TRACE(name);
    EXPECT_THROW_WITH(fn(), FloatingPointError, "debug_nans: " + name + " (forward)");
  }
}

// jax.nn.relu is lax.max(x, 0), which propagates NaN; a relu that maps NaN to 0 would hide a
// poisoned parameter from the loss (and from --skip-nonfinite) several layers later.
TEST(Numerics, ReluPropagatesNanAsJax) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y = relu(from_vector<float>({nan, -1.0f, -0.0f, 2.0f}, {4})).to_vector<float>();
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_FALSE(std::signbit(y[2]));  // relu(-0) = +0
  EXPECT_EQ(y[3], 2.0f);
  // The gradient at NaN is 0, as JAX's select(x > 0, g, 0).
  auto [v, g] = value_and_grad_tensor([](const Tensor& x) { return sum(relu(x)); })(
      from_vector<float>({nan, 3.0f}, {2}));
  EXPECT_EQ(g.to_vector<float>(), (std::vector<float>{0.0f, 1.0f}));
}

TEST(Numerics, DeterministicFlagSetAndRestore) {
  EXPECT_FALSE(deterministic());
  EXPECT_FALSE(set_deterministic(true));
  EXPECT_TRUE(deterministic());
  {
    DeterministicScope off(false);
    EXPECT_FALSE(deterministic());
    {
      DeterministicScope on;
      EXPECT_TRUE(deterministic());
    }
    EXPECT_FALSE(deterministic());
  }
  EXPECT_TRUE(deterministic());
  EXPECT_TRUE(set_deterministic(false));
  EXPECT_FALSE(deterministic());
}

// The CPU paths of the ops whose CUDA backward only has an atomicAdd implementation (and so throws
// in deterministic mode: tests/reliability/determinism_gpu_test.cc) are deterministic and run.
TEST(Numerics, CpuBackwardsOfAtomicCudaOpsRunInDeterministicMode) {
  DeterministicScope det;
  Tensor x = arange(12, DType::F32).reshape({4, 3});
  auto take_grad = [&] {
    Tensor idx = from_vector<int32_t>({0, 2, 0, 0, 1, 2}, {6});
    Tensor w = arange(18, DType::F32).reshape({6, 3});
    return value_and_grad_tensor([&](const Tensor& t) { return sum(take(t, idx, 0) * w); })(x).second;
  };
  // Rows 0, 2, 0, 0, 1, 2 of w summed into the rows they were taken from.
  Tensor expected = from_vector<float>({15, 18, 21, 12, 13, 14, 18, 20, 22, 0, 0, 0}, {4, 3});
  EXPECT_ALLCLOSE(take_grad(), expected, 0, 0);
  EXPECT_EQ(take_grad().to_vector<float>(), take_grad().to_vector<float>());
  // Reflect padding by 2 rows each side: rows 2 1 | 0 1 2 3 | 2 1. Each input row collects the
  // weights of its copies (weight of padded row r = r).
  auto pad_grad = [&] {
    Tensor w = arange(8, DType::F32).reshape({8, 1});
    return value_and_grad_tensor([&](const Tensor& t) {
      return sum(pad(t, {{2, 2}, {0, 0}}, PadMode::Reflect) * w);
    })(x).second;
  };
  std::vector<float> rows = {2, 1 + 3 + 7, 0 + 4 + 6, 5};
  std::vector<float> want;
  for (float r : rows) want.insert(want.end(), {r, r, r});
  EXPECT_EQ(pad_grad().to_vector<float>(), want);
}

TEST(Numerics, DeterministicTrainingGivesABitwiseIdenticalLossCurve) {
  DeterministicScope det;
  std::vector<double> a = testing::hundred_step_loss_curve("cpu", "a"),
                      b = testing::hundred_step_loss_curve("cpu", "b");
  ASSERT_EQ(a.size(), 100u);
  ASSERT_EQ(b.size(), 100u);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a[i])) << "step " << i + 1;
    EXPECT_EQ(a[i], b[i]) << "step " << i + 1;  // exact, not approximate
  }
}

}  // namespace
}  // namespace loom

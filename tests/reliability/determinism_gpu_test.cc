// Deterministic mode on one GPU (core/determinism.h): the same 100-step training run twice gives
// a bitwise-identical loss curve, and the CUDA ops whose only implementation accumulates with
// atomicAdd (take's backward, pad's wrap/reflect backward) throw instead of varying. With the
// mode off they run and agree with the CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "core/determinism.h"
#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "tests/support/loss_curve.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

TEST(DeterminismGpu, HundredStepLossCurveIsBitwiseIdentical) {
  LOOM_REQUIRE_GPU();
  DeterministicScope det;
  std::vector<double> a = testing::hundred_step_loss_curve("cuda", "a"),
                      b = testing::hundred_step_loss_curve("cuda", "b");
  ASSERT_EQ(a.size(), 100u);
  ASSERT_EQ(b.size(), 100u);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a[i])) << "step " << i + 1;
    EXPECT_EQ(a[i], b[i]) << "step " << i + 1;  // exact, not approximate
  }
  EXPECT_LT(a.back(), a.front());  // it trained
}

// The gradient of sum(take(x, idx) * w) with repeated indices: the scatter-add sums several
// contributions into one row.
Tensor take_gradient(const Tensor& x) {
  Tensor idx = from_vector<int32_t>({0, 2, 0, 0, 1, 2}, {6}).to(x.device());
  Tensor w = arange(18, DType::F32).reshape({6, 3}).to(x.device()) * 0.1;
  return value_and_grad_tensor([&](const Tensor& t) { return sum(take(t, idx, 0) * w); })(x).second;
}

Tensor reflect_pad_gradient(const Tensor& x) {
  Tensor w = arange(8 * 3, DType::F32).reshape({8, 3}).to(x.device()) * 0.1;
  return value_and_grad_tensor([&](const Tensor& t) {
    return sum(pad(t, {{2, 2}, {0, 0}}, PadMode::Reflect) * w);
  })(x).second;
}

TEST(DeterminismGpu, AtomicOnlyOpsThrowInDeterministicMode) {
  LOOM_REQUIRE_GPU();
  Tensor x = arange(12, DType::F32).reshape({4, 3});
  Tensor xg = x.to(Device::cuda());
  {
    DeterministicScope det;
    EXPECT_THROW_WITH(take_gradient(xg), NotImplementedError, "scatter_add", "take",
                      "atomicAdd", "deterministic mode is on", "set_deterministic(false)");
    EXPECT_THROW_WITH(reflect_pad_gradient(xg), NotImplementedError, "pad backward", "reflect",
                      "atomicAdd", "deterministic mode is on", "set_deterministic(false)");
    // Their forwards and the CPU paths have no atomics and still run.
    EXPECT_EQ(take(xg, from_vector<int32_t>({1}, {1}).to(Device::cuda()), 0).to_vector<float>(),
              (std::vector<float>{3, 4, 5}));
    EXPECT_EQ(pad(xg, {{2, 2}, {0, 0}}, PadMode::Reflect).shape(), (Shape{8, 3}));
    EXPECT_EQ(take_gradient(x).to_vector<float>(), take_gradient(x).to_vector<float>());
  }
  // Deterministic mode off: the same gradients on the GPU, equal to the CPU's up to rounding.
  EXPECT_ALLCLOSE(take_gradient(xg).to(Device::cpu()), take_gradient(x), 1e-6, 1e-6);
  EXPECT_ALLCLOSE(reflect_pad_gradient(xg).to(Device::cpu()), reflect_pad_gradient(x), 1e-6, 1e-6);
}

}  // namespace
}  // namespace loom

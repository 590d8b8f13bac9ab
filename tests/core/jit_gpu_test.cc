// loom::jit on a GPU: a training step captured as a CUDA graph gives the eager step's numbers,
// replays without allocating, and a step that waits for the GPU fails the capture cleanly.
#include <gtest/gtest.h>

#include "core/grad.h"
#include "core/jit.h"
#include "core/memory.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

// One SGD step of a two-layer MLP on a fixed batch: {"w1", "w2"} -> {"w1", "w2", "loss"}.
Tree sgd_step(const Tree& in, const Tensor& x, const Tensor& y) {
  auto loss_fn = [&](const Tree& p) {
    Tensor h = relu(matmul(x, p["w1"].tensor()));
    return mean(square(matmul(h, p["w2"].tensor()) - y));
  };
  auto [loss, grads] = value_and_grad(loss_fn)(in);
  Tree out = tree_map([](const Tensor& p, const Tensor& g) { return p - g * 0.05; }, in, grads);
  out.insert("loss", loss);
  return out;
}

struct Problem {
  Device gpu = Device::cuda();
  Tensor x = testing::test_values({64, 32}, 1, -1, 1, DType::F32).to(gpu);
  Tensor y = testing::test_values({64, 8}, 2, -1, 1, DType::F32).to(gpu);
  Tree params() const {
    Tree p;
    p.insert("w1", testing::test_values({32, 48}, 3, -0.3, 0.3, DType::F32).to(gpu));
    p.insert("w2", testing::test_values({48, 8}, 4, -0.3, 0.3, DType::F32).to(gpu));
    return p;
  }
};

TEST(JitGpu, CapturedStepEqualsEagerStep) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  std::vector<float> eager, replayed;
  Tree p = pb.params();
  for (int i = 0; i < 8; ++i) {
    Tree out = sgd_step(p, pb.x, pb.y);
    eager.push_back(out["loss"].tensor().item<float>());
    out.erase("loss");
    p = out;
  }
  Jit step = jit([&](const Tree& in) { return sgd_step(in, pb.x, pb.y); }, {.warmup = 2});
  Tree q = pb.params();
  int64_t mallocs_after_capture = 0;
  for (int i = 0; i < 8; ++i) {
    Tree out = step(q);
    replayed.push_back(out["loss"].tensor().item<float>());
    if (i == 2) {
      EXPECT_TRUE(step.captured());
      mallocs_after_capture = memory_stats(pb.gpu).num_device_mallocs;
    }
    out.erase("loss");
    q = out;  // the graph's output buffers: copied into its inputs by the next call
  }
  for (size_t i = 0; i < eager.size(); ++i)
    EXPECT_NEAR(replayed[i], eager[i], 1e-6 * std::abs(eager[i])) << "step " << i;
  EXPECT_LT(replayed.back(), replayed.front());
  EXPECT_EQ(memory_stats(pb.gpu).num_device_mallocs, mallocs_after_capture);  // replays allocate nothing
  EXPECT_ALLCLOSE(q["w1"].tensor().to(Device::cpu()), p["w1"].tensor().to(Device::cpu()), 1e-5, 1e-6);
}

TEST(JitGpu, ChangedInputShapeIsAnError) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  Jit step = jit([&](const Tree& in) { return sgd_step(in, pb.x, pb.y); }, {.warmup = 0});
  Tree p = pb.params();
  step(p);
  ASSERT_TRUE(step.captured());
  Tree wrong = p;
  wrong.insert("w2", zeros({48, 9}, DType::F32, pb.gpu));
  EXPECT_THROW_WITH(step(wrong), ValueError, "loom::jit", "w2", "[48, 9]", "[48, 8]");
}

TEST(JitGpu, WaitingForTheGpuInsideTheStepFailsTheCaptureCleanly) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  Jit step = jit([&](const Tree& in) {
    Tree out = sgd_step(in, pb.x, pb.y);
    (void)out["loss"].tensor().item<float>();  // a host sync: not capturable
    return out;
  }, {.warmup = 0});
  EXPECT_THROW_WITH(step(pb.params()), CudaError, "loom::jit", "must not wait for the GPU");
  // The stream and the allocator still work.
  Tree out = sgd_step(pb.params(), pb.x, pb.y);
  EXPECT_TRUE(std::isfinite(out["loss"].tensor().item<float>()));
}

}  // namespace
}  // namespace loom

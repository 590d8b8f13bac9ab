// CUDA against the CPU for the losses: the fused integer-label cross-entropy (warp and block
// rows, int32/int64, negative and out-of-range labels) and the composed losses.
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "tests/support/gpu_compare.h"
#include "tests/support/testing.h"

#if LOOM_CUDA
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/runtime.h"
#endif

namespace loom {
namespace {

using testing::expect_gpu_matches;
using testing::test_values;

TEST(LossGpu, IntegerLabelCrossEntropyMatchesCpu) {
  LOOM_REQUIRE_GPU();
  for (int64_t classes : {10, 1000, 3000}) {
    Tensor logits = test_values({7, classes}, 1, -5, 5, DType::F32);
    std::vector<int64_t> l;
    for (int64_t i = 0; i < 7; ++i) l.push_back((i * 37) % classes);
    l[3] = -1;  // the last class
    for (DType ldt : {DType::I32, DType::I64}) {
      Tensor labels = from_vector(l, {7}).to(ldt);
      expect_gpu_matches("cross entropy C=" + std::to_string(classes), [labels](const std::vector<Tensor>& in) {
        return softmax_cross_entropy_with_integer_labels(in[0], labels.to(in[0].device()));
      }, {logits}, 1e-5);
    }
  }
  // out of range: NaN loss and no gradient from the label, as on the CPU
  Tensor logits = test_values({2, 3, 4}, 2, -2, 2, DType::F32);
  Tensor bad = from_vector<int32_t>({0, 4, -5, 3, 1, 2}, {2, 3});
  auto cpu = softmax_cross_entropy_with_integer_labels(logits, bad);
  auto gpu = softmax_cross_entropy_with_integer_labels(logits.to(Device::cuda()), bad.to(Device::cuda()));
  EXPECT_ALLCLOSE(gpu, cpu, 1e-5, 1e-6);
  // float64 logits
  Tensor l64 = test_values({3, 9}, 3);
  Tensor lab = from_vector<int32_t>({1, 8, 0}, {3});
  EXPECT_ALLCLOSE(softmax_cross_entropy_with_integer_labels(l64.to(Device::cuda()), lab.to(Device::cuda())),
                  softmax_cross_entropy_with_integer_labels(l64, lab), 1e-12, 1e-13);
}

TEST(LossGpu, IntegerLabelCrossEntropyInFloat32FromHalfLogits) {
  LOOM_REQUIRE_GPU();
  // The single-pass (online) forward and the row backward for half logits with a float32 loss:
  // against the CPU on the same rounded logits, and against the CUDA kernel on the cast logits.
  for (int64_t classes : {10, 1000, 50257}) {
    Tensor labels = from_vector<int32_t>({0, int32_t(classes - 1), 3, -1, 7}, {5});
    for (DType half : {DType::BF16, DType::F16}) {
      Tensor logits = test_values({5, classes}, 3, -6, 6).to(half);
      auto f = [&](const Tensor& x) {
        return softmax_cross_entropy_with_integer_labels(x, labels.to(x.device()), DType::F32);
      };
      Tensor ct = test_values({5}, 4, -1, 1, DType::F32);
      auto [cpu, cpu_g] = testing::run_on(Device::cpu(), [&](const std::vector<Tensor>& in) { return f(in[0]); }, {logits}, ct);
      auto [gpu, gpu_g] = testing::run_on(Device::cuda(), [&](const std::vector<Tensor>& in) { return f(in[0]); }, {logits}, ct);
      const std::string what = std::string(dtype_name(half)) + " C=" + std::to_string(classes);
      EXPECT_EQ(gpu.dtype(), DType::F32) << what;
      EXPECT_EQ(gpu_g[0].dtype(), half) << what;
      EXPECT_ALLCLOSE(gpu, cpu, 1e-5, 1e-4) << what;  // float sums of up to 50257 terms
      EXPECT_TRUE(testing::close_in_low_precision(gpu_g[0], cpu_g[0].to(DType::F32), half)) << what;
      auto [cast, cast_g] = testing::run_on(Device::cuda(), [&](const std::vector<Tensor>& in) {
        return softmax_cross_entropy_with_integer_labels(in[0].to(DType::F32), labels.to(in[0].device()));
      }, {logits}, ct);
      EXPECT_ALLCLOSE(gpu, cast, 1e-6, 1e-6) << what;
      EXPECT_ALLCLOSE(gpu_g[0].to(DType::F32), cast_g[0].to(DType::F32), 1e-2, 1e-6) << what;
    }
  }
  // Non-finite logits as optax's loss (Loss.InfiniteLogits): NaN in a row gives NaN, +inf an
  // infinite loss, -inf adds nothing, a row of -inf gives NaN.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  Tensor odd = from_vector<float>({-inf, 1, 2, 3, 1, nan, 2, 0, 1, inf, 2, 0, -inf, -inf, -inf, -inf},
                                  {4, 4}).to(DType::BF16);
  Tensor lab = from_vector<int32_t>({2, 0, 0, 1}, {4});
  Tensor cpu = softmax_cross_entropy_with_integer_labels(odd, lab, DType::F32);
  Tensor gpu = softmax_cross_entropy_with_integer_labels(odd.to(Device::cuda()), lab.to(Device::cuda()), DType::F32);
  EXPECT_TRUE(std::isfinite(cpu.to_vector<float>()[0]));
  EXPECT_EQ(cpu.to_vector<float>()[2], inf);
  EXPECT_ALLCLOSE(gpu.to(Device::cpu()), cpu, 1e-6, 1e-6);  // NaN and inf positions must agree
  // Their gradients in float32: the row of -inf is NaN on both, the +inf row NaN only at the
  // +inf (Loss.InfiniteLogits).
  {
    auto f = [&](const std::vector<Tensor>& in) {
      return softmax_cross_entropy_with_integer_labels(in[0], lab.to(in[0].device()));
    };
    Tensor ct = test_values({4}, 5, -1, 1, DType::F32);
    auto [c_loss, c_grad] = testing::run_on(Device::cpu(), f, {odd.to(DType::F32)}, ct);
    auto [g_loss, g_grad] = testing::run_on(Device::cuda(), f, {odd.to(DType::F32)}, ct);
    EXPECT_TRUE(std::isnan(c_grad[0].to_vector<float>()[12]));
    EXPECT_TRUE(std::isnan(c_grad[0].to_vector<float>()[9]) &&
                std::isfinite(c_grad[0].to_vector<float>()[8]));
    EXPECT_ALLCLOSE(g_grad[0], c_grad[0], 1e-6, 1e-6);
  }
  // The same inside 16-byte packs (64-wide rows, a pack of logits added at a time): a NaN, a
  // +inf, a whole pack of -inf first, a row of -inf, scattered -inf.
  std::vector<float> wide = test_values({6, 64}, 8, -3, 3, DType::F32).to_vector<float>();
  wide[64 + 10] = nan;
  wide[2 * 64 + 33] = inf;
  for (int j = 0; j < 8; ++j) wide[3 * 64 + j] = -inf;
  for (int j = 0; j < 64; ++j) wide[4 * 64 + j] = -inf;
  wide[5 * 64 + 5] = wide[5 * 64 + 40] = -inf;
  Tensor wide_labels = from_vector<int32_t>({1, 2, 3, 9, 4, 6}, {6});
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor w = from_vector<float>(wide, {6, 64}).to(dt);
    Tensor wc = softmax_cross_entropy_with_integer_labels(w, wide_labels, DType::F32);
    Tensor wg = softmax_cross_entropy_with_integer_labels(w.to(Device::cuda()), wide_labels.to(Device::cuda()), DType::F32);
    const std::vector<float> c = wc.to_vector<float>();
    EXPECT_TRUE(std::isfinite(c[0]) && std::isnan(c[1]) && c[2] == inf && std::isfinite(c[3]) &&
                std::isnan(c[4]) && std::isfinite(c[5])) << dtype_name(dt);
    EXPECT_ALLCLOSE(wg.to(Device::cpu()), wc, 1e-5, 1e-5) << dtype_name(dt) << " packed rows";
  }
}

#if LOOM_CUDA
// The forward writes the gradient for the upstream gradient mean(loss) gives (1 / rows on every
// row): bit for bit what the backward writes for it, the loss and log-sum-exp unchanged; the
// backward then rewrites exactly the rows whose upstream gradient differs, as a backward from
// scratch would. Block rows (50257), warp rows, rows not 16-byte aligned (1001 classes).
TEST(LossGpu, GradientWrittenByTheForwardEqualsTheBackwards) {
  LOOM_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  const cuda::Stream stream = cuda::current_stream(gpu.index);
  for (int64_t classes : {int64_t(50257), int64_t(1001), int64_t(64)})
    for (DType dt : {DType::BF16, DType::F32}) {
      const int64_t rows = 37;
      const std::string what = std::string(dtype_name(dt)) + " C=" + std::to_string(classes);
      Tensor logits = test_values({rows, classes}, 11, -6, 6).to(dt).to(gpu);
      std::vector<int32_t> l;
      for (int64_t i = 0; i < rows; ++i) l.push_back(int32_t((i * 7919) % classes));
      l[4] = -1;
      l[9] = int32_t(classes);  // out of range: a NaN loss
      Tensor labels = from_vector(l, {rows}).to(gpu);
      const float assumed = 1.0f / float(rows);
      auto forward = [&](Tensor* dx) {
        Tensor loss = Tensor::empty({rows}, DType::F32, gpu), lse = Tensor::empty({rows}, DType::F32, gpu);
        cuda::cross_entropy_int(logits.raw_data(), dt, labels.raw_data(), DType::I32, loss.raw_data(),
                                DType::F32, lse.raw_data(), rows, classes, classes, stream,
                                dx ? dx->raw_data() : nullptr, assumed);
        return std::pair{loss, lse};
      };
      auto backward = [&](const Tensor& lse, const Tensor& g, Tensor dx, std::optional<double> written) {
        cuda::cross_entropy_int_backward(logits.raw_data(), dt, labels.raw_data(), DType::I32,
                                         lse.raw_data(), g.raw_data(), DType::F32, dx.raw_data(), rows,
                                         classes, classes, stream, written);
        return dx.to(DType::F32).to(Device::cpu()).to_vector<float>();
      };
      auto bits_of = [](const Tensor& t) { return t.to(Device::cpu()).to_vector<float>(); };
      auto [loss0, lse0] = forward(nullptr);
      Tensor uniform = full({rows}, double(assumed), DType::F32).to(gpu);
      std::vector<float> reference = backward(lse0, uniform, Tensor::empty({rows, classes}, dt, gpu), std::nullopt);
      Tensor written = Tensor::empty({rows, classes}, dt, gpu);
      auto [loss1, lse1] = forward(&written);
      std::vector<float> l0 = bits_of(loss0), l1 = bits_of(loss1);
      EXPECT_EQ(std::memcmp(l0.data(), l1.data(), l0.size() * sizeof(float)), 0) << what << " loss";
      EXPECT_EQ(bits_of(lse0), bits_of(lse1)) << what << " lse";
      EXPECT_EQ(written.to(DType::F32).to(Device::cpu()).to_vector<float>(), reference) << what << " gradient";
      // Rows 0, 5 and 36 get another upstream gradient (one a NaN); the rest keep what the
      // forward wrote.
      std::vector<float> gv(size_t(rows), assumed);
      gv[0] = 0.5f, gv[5] = -2 * assumed, gv[36] = std::numeric_limits<float>::quiet_NaN();
      Tensor mixed = from_vector(gv, {rows}).to(gpu);
      std::vector<float> from_scratch = backward(lse0, mixed, Tensor::empty({rows, classes}, dt, gpu), std::nullopt);
      std::vector<float> rewritten = backward(lse1, mixed, written, double(assumed));
      ASSERT_EQ(from_scratch.size(), rewritten.size());
      EXPECT_EQ(std::memcmp(from_scratch.data(), rewritten.data(), rewritten.size() * sizeof(float)), 0)
          << what << " rows rewritten";
    }
}
#endif

TEST(LossGpu, ComposedLossesMatchCpu) {
  LOOM_REQUIRE_GPU();
  Tensor logits = test_values({6, 11}, 4, -3, 3, DType::F32);
  Tensor probs = test_values({6, 11}, 5, 0, 1, DType::F32);
  expect_gpu_matches("softmax_cross_entropy", [](const std::vector<Tensor>& in) { return softmax_cross_entropy(in[0], in[1]); },
                     {logits, probs}, 1e-5);
  expect_gpu_matches("sigmoid_binary_cross_entropy",
                     [](const std::vector<Tensor>& in) { return sigmoid_binary_cross_entropy(in[0], in[1]); }, {logits, probs}, 1e-5);
  Tensor p = test_values({4, 9}, 6, -3, 3, DType::F32), t = test_values({4, 9}, 7, -3, 3, DType::F32);
  expect_gpu_matches("l2_loss", [](const std::vector<Tensor>& in) { return l2_loss(in[0], in[1]); }, {p, t}, 1e-5);
  expect_gpu_matches("squared_error", [](const std::vector<Tensor>& in) { return squared_error(in[0], in[1]); }, {p, t}, 1e-5);
  expect_gpu_matches("huber_loss", [](const std::vector<Tensor>& in) { return huber_loss(in[0], in[1], 0.8); }, {p, t}, 1e-5);
}

}  // namespace
}  // namespace loom

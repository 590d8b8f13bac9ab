// CUDA against the CPU for the losses: the fused integer-label cross-entropy (warp and block
// rows, int32/int64, negative and out-of-range labels) and the composed losses.
#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "tests/support/gpu_compare.h"
#include "tests/support/testing.h"

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

// CUDA against the CPU for the losses: the fused integer-label cross-entropy (warp and block
// rows, int32/int64, negative and out-of-range labels) and the composed losses.
#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::test_values;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

/// f's output and the vjp of `ct` on `device`, both brought back to the CPU.
std::pair<Tensor, std::vector<Tensor>> run_on(Device device, const Fn& f, const std::vector<Tensor>& inputs,
                                              const Tensor& ct) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) leaves.push_back(autograd::make_leaf(inputs[i].to(device), int64_t(i)));
  autograd::RecordingGuard rec(true);
  Tensor y = f(leaves);
  std::vector<Tensor> grads = autograd::backward(sum(y * ct.to(device).to(y.dtype())), leaves);
  for (Tensor& g : grads) g = g.to(Device::cpu());
  return {y.detach().to(Device::cpu()), grads};
}

/// CUDA vs CPU for float32 inputs (rtol 1e-5) and the same inputs in `low` precision on the GPU
/// against the float32 CPU result (rtol 1e-2).
void expect_gpu_matches(const std::string& what, const Fn& f, const std::vector<Tensor>& inputs, double atol = 1e-6) {
  Tensor probe = f(inputs);
  Tensor ct = test_values(probe.shape(), 99, -1, 1, DType::F32);
  auto cpu = run_on(Device::cpu(), f, inputs, ct);
  auto gpu = run_on(Device::cuda(), f, inputs, ct);
  EXPECT_ALLCLOSE(gpu.first, cpu.first, 1e-5, atol) << what;
  for (size_t i = 0; i < inputs.size(); ++i) EXPECT_ALLCLOSE(gpu.second[i], cpu.second[i], 1e-5, atol) << what << " grad " << i;
  for (DType low : {DType::BF16, DType::F16}) {
    std::vector<Tensor> lowered;
    for (const Tensor& t : inputs) lowered.push_back(t.to(low));
    auto g16 = run_on(Device::cuda(), f, lowered, ct);
    EXPECT_EQ(g16.first.dtype(), low) << what;
    EXPECT_ALLCLOSE(g16.first.to(DType::F32), cpu.first, 1e-2, 1e-2) << what << " " << dtype_name(low);
    for (size_t i = 0; i < inputs.size(); ++i)
      EXPECT_ALLCLOSE(g16.second[i].to(DType::F32), cpu.second[i], 2e-2, 2e-2) << what << " " << dtype_name(low) << " grad " << i;
  }
}

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

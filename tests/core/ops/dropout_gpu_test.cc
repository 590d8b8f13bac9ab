// CUDA against the CPU for dropout: bit-identical masks (threefry on the device) and gradients.
#include "core/autodiff.h"
#include "core/ops/dropout.h"
#include "core/ops/elementwise.h"
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

TEST(DropoutGpu, SameMaskAsCpu) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({8, 33, 5}, 1, -1, 1, DType::F32);
  for (Axes bdims : {Axes{}, Axes{0}, Axes{1, 2}}) {
    for (double rate : {0.1, 0.5, 0.9}) {
      random::Key key = random::key(int64_t(rate * 100) + int64_t(bdims.size()));
      Tensor cpu = dropout(x, rate, key, bdims);
      Tensor gpu = dropout(x.to(Device::cuda()), rate, key, bdims);
      EXPECT_ALLCLOSE(gpu, cpu, 0, 0) << "rate " << rate;
      Tensor c16 = dropout(x.to(DType::BF16), rate, key, bdims);
      EXPECT_ALLCLOSE(dropout(x.to(DType::BF16).to(Device::cuda()), rate, key, bdims), c16, 0, 0);
    }
  }
  expect_gpu_matches("dropout grad", [](const std::vector<Tensor>& in) { return dropout(in[0], 0.4, random::key(9), {1}); }, {x});
}

}  // namespace
}  // namespace loom

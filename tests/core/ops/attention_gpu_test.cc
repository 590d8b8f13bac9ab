// CUDA against the CPU for dot_product_attention (causal mask, bias, dropout with the same
// threefry mask on both devices), forward and backward.
#include "core/autodiff.h"
#include "core/ops/attention.h"
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

TEST(AttentionGpu, MatchesCpu) {
  LOOM_REQUIRE_GPU();
  Tensor q = test_values({2, 7, 3, 8}, 1, -1, 1, DType::F32), k = test_values({2, 9, 3, 8}, 2, -1, 1, DType::F32);
  Tensor v = test_values({2, 9, 3, 5}, 3, -1, 1, DType::F32);
  Tensor bias = test_values({3, 7, 9}, 4, -1, 1, DType::F32);
  for (int variant = 0; variant < 3; ++variant) {
    AttentionOptions opt;
    opt.causal = true;
    if (variant >= 1) opt.bias = bias;
    if (variant == 2) {
      opt.dropout_rate = 0.3;
      opt.dropout_key = random::key(11);
    }
    expect_gpu_matches("attention variant " + std::to_string(variant), [opt](const std::vector<Tensor>& in) {
      AttentionOptions o = opt;
      if (o.bias.defined()) o.bias = o.bias.to(in[0].device()).to(in[0].dtype());
      return dot_product_attention(in[0], in[1], in[2], o);
    }, {q, k, v}, 1e-5);
  }
}

}  // namespace
}  // namespace loom

#include "tests/support/gpu_compare.h"

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/support/testing.h"

namespace loom::testing {

std::pair<Tensor, std::vector<Tensor>> run_on(Device device,
                                              const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                              const std::vector<Tensor>& inputs, const Tensor& ct) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) leaves.push_back(autograd::make_leaf(inputs[i].to(device), int64_t(i)));
  autograd::RecordingGuard rec(true);
  Tensor y = f(leaves);
  std::vector<Tensor> grads = autograd::backward(sum(y * ct.to(device).to(y.dtype())), leaves);
  for (Tensor& g : grads) g = g.to(Device::cpu());
  return {y.detach().to(Device::cpu()), grads};
}

void expect_gpu_matches(const std::string& what, const std::function<Tensor(const std::vector<Tensor>&)>& f,
                        const std::vector<Tensor>& inputs, double atol) {
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

}  // namespace loom::testing

#include "tests/support/gpu_compare.h"

#include <algorithm>
#include <cmath>

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

namespace {

// ||a - ref|| / ||ref|| (the plain norm of a - ref where ref is all zeros), and ref's RMS.
std::pair<double, double> relative_error_and_rms(const Tensor& a, const Tensor& ref) {
  std::vector<double> x = a.to(DType::F64).to_vector<double>(), r = ref.to(DType::F64).to_vector<double>();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    diff += (x[i] - r[i]) * (x[i] - r[i]);
    norm += r[i] * r[i];
  }
  double rms = r.empty() ? 0.0 : std::sqrt(norm / double(r.size()));
  return {norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff), rms};
}

}  // namespace

::testing::AssertionResult close_in_low_precision(const Tensor& gpu, const Tensor& ref, DType low) {
  auto [rel, rms] = relative_error_and_rms(gpu.to(DType::F32), ref.to(DType::F32));
  const double tol = low == DType::BF16 ? 1e-2 : 2e-3;  // a few roundings of 8 / 11 bit mantissas
  if (!(rel <= tol))
    return ::testing::AssertionFailure() << "relative L2 error " << rel << " > " << tol;
  // Elementwise too, so that one wrong element among many cannot hide in the norm; the atol
  // scales with the values, as sums that cancel leave small elements with large roundings.
  return allclose(gpu.to(DType::F32), ref.to(DType::F32), 5 * tol, 5 * tol * std::max(rms, 1e-3));
}

void expect_gpu_matches(const std::string& what, const std::function<Tensor(const std::vector<Tensor>&)>& f,
                        const std::vector<Tensor>& inputs, double atol) {
  Tensor probe = f(inputs);
  Tensor ct = test_values(probe.shape(), 99, -1, 1, DType::F32);
  auto cpu = run_on(Device::cpu(), f, inputs, ct);
  auto gpu = run_on(Device::cuda(), f, inputs, ct);
  EXPECT_ALLCLOSE(gpu.first, cpu.first, 1e-5, atol) << what;
  // A gradient that sums over many rows (a norm's scale and bias) rounds by its terms' size.
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_ALLCLOSE(gpu.second[i], cpu.second[i], 1e-5, atol * largest_magnitude(cpu.second[i]))
        << what << " grad " << i;
  // Half types: the GPU in `low` against the CPU in float32 on the same rounded inputs and
  // cotangent, so that only the GPU's own roundings (intermediates, outputs) differ.
  for (DType low : {DType::BF16, DType::F16}) {
    auto round = [low](const Tensor& t) { return t.to(low).to(t.dtype()); };
    std::vector<Tensor> lowered, rounded;
    for (const Tensor& t : inputs) {
      lowered.push_back(t.to(low));
      rounded.push_back(round(t));
    }
    auto ref = run_on(Device::cpu(), f, rounded, round(ct));
    auto g16 = run_on(Device::cuda(), f, lowered, ct);
    EXPECT_EQ(g16.first.dtype(), low) << what;
    const std::string name = what + " " + std::string(dtype_name(low));
    EXPECT_TRUE(close_in_low_precision(g16.first.to(DType::F32), ref.first.to(DType::F32), low)) << name;
    for (size_t i = 0; i < inputs.size(); ++i)
      EXPECT_TRUE(close_in_low_precision(g16.second[i].to(DType::F32), ref.second[i].to(DType::F32), low))
          << name << " grad " << i;
  }
}

}  // namespace loom::testing

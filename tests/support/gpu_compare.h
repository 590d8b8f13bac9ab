// CUDA-versus-CPU comparison of a differentiable function: forward value and vjp, in float32 and
// in the half types, for the *_gpu_test.cc files.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace loom::testing {

/// f's output and the vjp of `ct` on `device`, both brought back to the CPU.
std::pair<Tensor, std::vector<Tensor>> run_on(Device device,
                                              const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                              const std::vector<Tensor>& inputs, const Tensor& ct);

/// CUDA vs CPU for float32 inputs (rtol 1e-5) and the same inputs in `low` precision on the GPU
/// against the float32 CPU result (rtol 1e-2).
void expect_gpu_matches(const std::string& what, const std::function<Tensor(const std::vector<Tensor>&)>& f,
                        const std::vector<Tensor>& inputs, double atol = 1e-6);

}  // namespace loom::testing

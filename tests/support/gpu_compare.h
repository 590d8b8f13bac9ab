// CUDA-versus-CPU comparison of a differentiable function: forward value and vjp, in float32 and
// in the half types, for the *_gpu_test.cc files.
#pragma once
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "core/tensor.h"

namespace loom::testing {

/// f's output and the vjp of `ct` on `device`, both brought back to the CPU.
std::pair<Tensor, std::vector<Tensor>> run_on(Device device,
                                              const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                              const std::vector<Tensor>& inputs, const Tensor& ct);

/// A GPU result in `low` (bfloat16 or float16) against a float32 reference computed from the same
/// rounded inputs: relative L2 error within 1e-2 (bf16) / 2e-3 (f16), and every element within
/// five times that, relative to the value or to the reference's RMS.
::testing::AssertionResult close_in_low_precision(const Tensor& gpu, const Tensor& ref, DType low);

/// CUDA vs CPU for float32 inputs (rtol 1e-5), and the inputs in bfloat16 / float16 on the GPU
/// against the CPU in float32 on the same rounded inputs (relative L2 error 1e-2 / 2e-3).
void expect_gpu_matches(const std::string& what, const std::function<Tensor(const std::vector<Tensor>&)>& f,
                        const std::vector<Tensor>& inputs, double atol = 1e-6);

}  // namespace loom::testing

// Fused multi-tensor optimizer updates on CUDA: one kernel launch updates every leaf (up to
// kMaxFusedLeaves leaves per launch; more leaves take one launch per group). The leaf table
// ({param, grad, mu, nu, outputs, n} per leaf) travels by value in the kernel parameters, so a
// launch needs no host-to-device copy and can be captured in a CUDA graph. The step count and the
// learning rate are read from device memory inside the kernel: no host synchronisation. Same
// contract and arithmetic as kernels/cpu/optim_update.h (explicitly rounded float32 operations,
// no FMA contraction, so the results equal the composed transforms on the GPU up to powf's last
// bit in the bias corrections).
#pragma once
#include <vector>

#include "core/dtype.h"
#include "kernels/cpu/optim_update.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

inline constexpr int kMaxFusedLeaves = 192;

void fused_adam(const std::vector<OptimLeaf>& leaves, const AdamConfig& config,
                const OptimScalars& scalars, Stream stream);
void fused_sgd(const std::vector<OptimLeaf>& leaves, const SgdConfig& config,
               const OptimScalars& scalars, Stream stream);

}  // namespace loom::cuda

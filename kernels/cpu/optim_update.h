// Fused multi-tensor optimizer updates on the CPU: one pass over every element of every leaf
// (OpenMP over all leaves' elements together) reads the gradient, the moments and the param once
// and writes the results once. The arithmetic is the float32 operation sequence of the composed
// Optax transforms (chain(scale_by_adam, [add_decayed_weights,] scale_by_learning_rate) and
// chain(trace, scale_by_learning_rate)), operation for operation, so the fused and composed paths
// give the same bits. The same structs describe the CUDA launches (kernels/cuda/optim_update.h).
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"

namespace loom {

/// One leaf of a fused update: float32, contiguous, `n` elements.
struct OptimLeaf {
  const float* param = nullptr;
  const float* grad = nullptr;
  const float* mu = nullptr;  // adam's first moment / sgd's trace (unused by plain sgd)
  const float* nu = nullptr;  // adam's second moment
  float* out = nullptr;       // the new param (apply) or the update (Δ)
  float* new_mu = nullptr;
  float* new_nu = nullptr;
  int64_t n = 0;
  float weight_decay = 0.0f;  // adamw per leaf (0: no decay term, as a masked-out leaf)
};

/// The step count and learning rate, both read where the leaves live (device memory for CUDA):
/// the kernel computes the bias corrections from *count and writes *new_count = count + 1
/// (saturating); the learning rate is *lr when lr is set, else lr_value.
struct OptimScalars {
  const int32_t* count = nullptr;  // adam only
  int32_t* new_count = nullptr;    // adam only
  const float* lr = nullptr;
  float lr_value = 0.0f;
};

struct AdamConfig {
  float b1 = 0.9f, b2 = 0.999f;
  float one_minus_b1 = 0.1f, one_minus_b2 = 0.001f;  // (1 - b) rounded once from double, as JAX
  float eps = 1e-8f, eps_root = 0.0f;
  bool nesterov = false;
  bool weight_decay = false;  // adamw: add leaf.weight_decay * param where it is nonzero
  bool apply = false;         // write param + update (else the update)
};

struct SgdConfig {
  float momentum = 0.0f;
  bool has_momentum = false;
  bool nesterov = false;
  bool apply = false;
};

namespace cpu {

void fused_adam(const std::vector<OptimLeaf>& leaves, const AdamConfig& config,
                const OptimScalars& scalars);
void fused_sgd(const std::vector<OptimLeaf>& leaves, const SgdConfig& config,
               const OptimScalars& scalars);

}  // namespace cpu
}  // namespace loom

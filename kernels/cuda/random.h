// CUDA launchers for JAX-exact random numbers (launched on `stream`). Same semantics and bits as
// the CPU versions in kernels/cpu/random.h, whose per-element functions the kernels share.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void random_bits(uint32_t k0, uint32_t k1, uint32_t* out, int64_t n, Stream stream);
void random_uniform(uint32_t k0, uint32_t k1, void* out, DType dtype, double minval,
                    double maxval, int64_t n, Stream stream);
void random_normal(uint32_t k0, uint32_t k1, void* out, DType dtype, int64_t n, Stream stream);
void random_truncated_normal(uint32_t k0, uint32_t k1, void* out, DType dtype, double a,
                             double b, double clip_lo, double clip_hi, int64_t n,
                             Stream stream);
void random_bernoulli(uint32_t k0, uint32_t k1, bool* out, float p, int64_t n, Stream stream);

}  // namespace loom::cuda

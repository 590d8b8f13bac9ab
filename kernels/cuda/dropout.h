// CUDA dropout scaling pass, launched on `stream`; the contract (mask words, scaling, rounding)
// is kernels/cpu/dropout.h's.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void dropout_scale(const void* in, void* out, DType dtype, const uint32_t* words, int64_t n,
                   int64_t period, double scale, bool multiply, Stream stream);

}  // namespace loom::cuda

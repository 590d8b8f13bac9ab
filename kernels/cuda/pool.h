// CUDA window pooling; same contract as kernels/cpu/pool.h (at most 6 spatial dims).
#pragma once
#include <cstdint>

#include "kernels/cpu/pool.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

void pool_forward(PoolOp op, const PoolGeometry& g, DType dtype, const void* x, void* out,
                  void* selection, Stream stream);
void pool_backward(PoolOp op, const PoolGeometry& g, DType dtype, const void* grad_out,
                   const void* selection, void* grad_in, Stream stream);

}  // namespace loom::cuda

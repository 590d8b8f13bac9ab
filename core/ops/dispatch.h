// What every op's dispatch code needs: the CUDA stream of a tensor's device (CUDA builds only).
#pragma once
#include "core/tensor.h"
#if LOOM_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace loom {
#if LOOM_CUDA
inline cuda::Stream stream_of(const Tensor& t) { return cuda::current_stream(t.device().index); }
#endif
}  // namespace loom

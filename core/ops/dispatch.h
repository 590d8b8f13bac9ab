// What every op's dispatch code needs: the CUDA stream of a tensor's device (CUDA builds), and
// a bool mask as the kernels read it.
#pragma once
#include "core/tensor.h"
#include "kernels/cpu/strided_loop.h"
#include "kernels/row_mask.h"
#if LOOM_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace loom {
#if LOOM_CUDA
inline cuda::Stream stream_of(const Tensor& t) { return cuda::current_stream(t.device().index); }
#endif

/// `mask` (bool, broadcastable to `shape`) over the rows of `shape`'s last dim, through its
/// broadcast strides: the caller keeps `mask` alive while kernels read it.
inline RowMask row_mask(const Tensor& mask, const Shape& shape) {
  const Shape st = cpu::broadcast_strides(mask.shape(), mask.strides(), shape);
  return {mask.data<bool>(), Shape(shape.begin(), shape.end() - 1), Shape(st.begin(), st.end() - 1),
          st.back()};
}
}  // namespace loom

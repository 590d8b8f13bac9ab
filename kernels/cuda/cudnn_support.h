// What the cuDNN wrappers (convolution, attention) share: the error check, a handle per
// (thread, device) bound to a stream, and scratch memory from the caching allocator.
#pragma once
#include <cudnn.h>

#include <cstddef>

#include "kernels/cuda/runtime.h"

#define LOOM_CUDNN_CHECK(call) LOOM_CUDA_LIB_CHECK(call, "cuDNN", cudnnGetErrorString)

namespace loom::cuda {

/// Makes `device` current: cuDNN acts on the current device.
void ensure_cudnn_device(int device);
/// The calling thread's handle for `device`, bound to `stream`. A cuDNN handle must not be used
/// by two threads at once; handles are never destroyed (tearing cuDNN down during static
/// destruction races with the CUDA runtime's own shutdown).
cudnnHandle_t cudnn_handle(int device, Stream stream);

/// Scratch memory for one call's kernels, returned to the caching allocator (in stream order)
/// when it goes out of scope.
struct CudnnWorkspace {
  CudnnWorkspace(size_t n, int device);
  ~CudnnWorkspace();
  CudnnWorkspace(const CudnnWorkspace&) = delete;
  CudnnWorkspace& operator=(const CudnnWorkspace&) = delete;
  void* ptr = nullptr;
  size_t bytes;
  int device;
};

}  // namespace loom::cuda

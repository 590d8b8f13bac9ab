#include "kernels/cuda/cudnn_support.h"

#include <cuda_runtime_api.h>

#include <vector>

#include "core/error.h"
#include "kernels/cuda/caching_allocator.h"

namespace loom::cuda {

void ensure_cudnn_device(int device) {
  int current = -1;
  LOOM_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) LOOM_CUDA_CHECK(cudaSetDevice(device));
}

cudnnHandle_t cudnn_handle(int device, Stream stream) {
  thread_local std::vector<cudnnHandle_t> handles;
  if (handles.size() <= size_t(device)) handles.resize(size_t(device) + 1, nullptr);
  cudnnHandle_t& h = handles[size_t(device)];
  if (!h) LOOM_CUDNN_CHECK(cudnnCreate(&h));
  LOOM_CUDNN_CHECK(cudnnSetStream(h, stream));
  return h;
}

CudnnWorkspace::CudnnWorkspace(size_t n, int dev) : bytes(n), device(dev) {
  if (n) ptr = CachingAllocator::get(device).allocate(n);
}

CudnnWorkspace::~CudnnWorkspace() {
  if (ptr) CachingAllocator::get(device).free(ptr);
}

}  // namespace loom::cuda

#include "kernels/cuda/caching_allocator.h"

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "core/error.h"

namespace loom::cuda {

// Never destroyed: tensors held by other static objects may be freed during exit.
CachingAllocator& CachingAllocator::get(int device) {
  static std::mutex mu;
  static auto* allocators = new std::vector<std::unique_ptr<CachingAllocator>>();
  std::lock_guard<std::mutex> lock(mu);
  if (allocators->empty()) allocators->resize(size_t(device_count()));
  LOOM_CHECK(device >= 0 && size_t(device) < allocators->size(), DeviceError, "cuda:", device,
             " does not exist");
  auto& a = (*allocators)[size_t(device)];
  if (!a) a.reset(new CachingAllocator(device));
  return *a;
}

void* CachingAllocator::DeviceSegments::map(size_t bytes) {
  set_device(device_);
  note_host_wait("cudaMalloc (no cached block fits)");
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return nullptr;
  }
  LOOM_CUDA_CHECK(err);
  return p;
}

void CachingAllocator::DeviceSegments::unmap(void* base, size_t) {
  set_device(device_);
  LOOM_CUDA_CHECK(cudaFree(base));
}

void* CachingAllocator::allocate(size_t nbytes) {
  Stream stream = current_stream(device_);
  std::lock_guard<std::mutex> lock(mu_);
  const Pool pool = private_pool_ ? private_pool_ : Pool(stream);
  void* p = blocks_.allocate(nbytes, pool);
  // Releasing the cache synchronises the device, which would invalidate a capture in progress.
  if (!p && !private_pool_) {
    release_cached_locked();
    p = blocks_.allocate(nbytes, pool);
  }
  if (!p) {
    DeviceMemoryInfo m = device_memory();
    const BlockPool::Stats s = blocks_.stats();
    LOOM_THROW(OutOfMemoryError, "CUDA out of memory on cuda:", device_, ": tried to allocate ",
               nbytes, " bytes (a ", BlockPool::segment_size(nbytes), "-byte segment)",
               private_pool_ ? " while capturing a CUDA graph (loom::jit)" : "", "; device free ",
               m.free, " of total ", m.total, " bytes; loom holds ", s.reserved,
               " bytes reserved, ", s.allocated,
               " allocated. Reduce the batch size or call empty_cache().");
  }
  return p;
}

void CachingAllocator::free(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  // Stream-ordered: work queued on this stream that uses the block finishes before any later
  // work on the same stream that receives it, so no synchronisation is needed here.
  blocks_.free(ptr);
}

void CachingAllocator::begin_private_pool(const void* pool) {
  std::lock_guard<std::mutex> lock(mu_);
  LOOM_CHECK(private_pool_ == nullptr, ValueError, "cuda:", device_,
             ": a CUDA graph is already being captured (captures do not nest)");
  private_pool_ = pool;
  graph_pools_.insert(pool);
}

void CachingAllocator::end_private_pool() {
  std::lock_guard<std::mutex> lock(mu_);
  private_pool_ = nullptr;
}

void CachingAllocator::release_private_pool(const void* pool) {
  std::lock_guard<std::mutex> lock(mu_);
  graph_pools_.erase(pool);
  blocks_.move_pool(pool, current_stream(device_));
}

void CachingAllocator::release_cached_locked() {
  const BlockPool::Stats s = blocks_.stats();
  if (s.reserved == s.allocated) return;  // nothing cached: spare the synchronisation
  set_device(device_);
  cudaDeviceSynchronize();  // cached blocks may still be in use by queued work
  // A graph's replays still use the free blocks of its pool.
  blocks_.release_free_segments([&](Pool pool) { return graph_pools_.count(pool) > 0; });
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  if (private_pool_) return;  // inside a capture: releasing would synchronise and break it
  release_cached_locked();
}

DeviceMemoryInfo CachingAllocator::device_memory() const {
  set_device(device_);
  DeviceMemoryInfo m;
  LOOM_CUDA_CHECK(cudaMemGetInfo(&m.free, &m.total));
  return m;
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  const BlockPool::Stats s = blocks_.stats();
  return AllocatorStats{s.allocated, s.reserved, s.peak_allocated, s.segments_mapped,
                        s.segments_unmapped};
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  blocks_.reset_peak();
}

}  // namespace loom::cuda

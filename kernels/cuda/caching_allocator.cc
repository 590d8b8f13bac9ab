#include "kernels/cuda/caching_allocator.h"

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "core/error.h"

namespace loom::cuda {
namespace {
constexpr size_t kLargeBlock = size_t(1) << 20;    // from here on sizes round to 2 MiB
constexpr size_t kLargeGranule = size_t(2) << 20;
}  // namespace

CachingAllocator& CachingAllocator::get(int device) {
  static std::mutex mu;
  static std::vector<std::unique_ptr<CachingAllocator>> allocators;
  std::lock_guard<std::mutex> lock(mu);
  if (allocators.empty()) allocators.resize(size_t(device_count()));
  LOOM_CHECK(device >= 0 && size_t(device) < allocators.size(), DeviceError, "cuda:", device,
             " does not exist");
  auto& a = allocators[size_t(device)];
  if (!a) a.reset(new CachingAllocator(device));
  return *a;
}

size_t CachingAllocator::round_size(size_t nbytes) {
  constexpr size_t kSmall = 512;
  if (nbytes < kLargeBlock) return std::max<size_t>(kSmall, (nbytes + kSmall - 1) / kSmall * kSmall);
  return (nbytes + kLargeGranule - 1) / kLargeGranule * kLargeGranule;
}

void* CachingAllocator::allocate(size_t nbytes) {
  size_t size = round_size(nbytes);
  Stream stream = current_stream(device_);
  std::lock_guard<std::mutex> lock(mu_);
  const Pool pool = private_pool_ ? private_pool_ : Pool(stream);
  // Best fit in the same pool. A block counts as allocated at its full size, so the waste
  // accepted is bounded: 2x for small blocks, 1/8 (at least one 2 MiB granule) for large ones.
  const size_t limit = size < kLargeBlock ? size * 2 : size + std::max(size / 8, kLargeGranule);
  auto it = free_blocks_.lower_bound({pool, size});
  if (it != free_blocks_.end() && it->first.first == pool && it->first.second <= limit) {
    void* p = it->second;
    free_blocks_.erase(it);
    stats_.allocated += blocks_[p].size;
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    return p;
  }
  set_device(device_);
  note_host_wait("cudaMalloc (no cached block fits)");
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, size);
  // Releasing the cache synchronises the device, which would invalidate a capture in progress.
  if (err == cudaErrorMemoryAllocation && !private_pool_) {
    cudaGetLastError();
    release_cached_locked();
    err = cudaMalloc(&p, size);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    DeviceMemoryInfo m = device_memory();
    LOOM_THROW(OutOfMemoryError, "CUDA out of memory on cuda:", device_, ": tried to allocate ",
               nbytes, " bytes (", size, " rounded)",
               private_pool_ ? " while capturing a CUDA graph (loom::jit)" : "", "; device free ",
               m.free, " of total ", m.total, " bytes; loom holds ", stats_.reserved,
               " bytes reserved, ", stats_.allocated,
               " allocated. Reduce the batch size or call empty_cache().");
  }
  LOOM_CUDA_CHECK(err);
  blocks_[p] = Block{size, pool};
  stats_.reserved += size;
  stats_.allocated += size;
  stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
  ++stats_.num_device_mallocs;
  return p;
}

void CachingAllocator::free(void* ptr) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = blocks_.find(ptr);
  if (it == blocks_.end()) return;
  stats_.allocated -= it->second.size;
  // Stream-ordered: work queued on this stream that uses the block finishes before any later
  // work on the same stream that receives it, so no synchronisation is needed here.
  free_blocks_.insert({{it->second.pool, it->second.size}, ptr});
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
  const Pool ordinary = current_stream(device_);
  for (auto& [p, b] : blocks_)
    if (b.pool == pool) b.pool = ordinary;
  auto first = free_blocks_.lower_bound({pool, 0});
  auto last = first;
  while (last != free_blocks_.end() && last->first.first == pool) ++last;
  std::vector<std::pair<size_t, void*>> moved;
  for (auto it = first; it != last; ++it) moved.emplace_back(it->first.second, it->second);
  free_blocks_.erase(first, last);
  for (auto& [size, p] : moved) free_blocks_.insert({{ordinary, size}, p});
}

void CachingAllocator::release_cached_locked() {
  if (free_blocks_.empty()) return;
  set_device(device_);
  cudaDeviceSynchronize();  // cached blocks may still be in use by queued work
  for (auto it = free_blocks_.begin(); it != free_blocks_.end();) {
    const auto& [key, p] = *it;
    if (graph_pools_.count(key.first)) {  // a graph's replays still use it
      ++it;
      continue;
    }
    cudaFree(p);
    stats_.reserved -= key.second;
    ++stats_.num_device_frees;
    blocks_.erase(p);
    it = free_blocks_.erase(it);
  }
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
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated = stats_.allocated;
}

}  // namespace loom::cuda

// Stream-ordered caching allocator for one GPU. Freed blocks go back to a pool and are reused
// by later allocations on the same stream without a device synchronisation, so a training loop
// makes no cudaMalloc/cudaFree calls in steady state. Blocks are carved from cudaMalloc'd
// segments and merge again when freed (core/block_pool.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_set>

#include "core/block_pool.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

struct AllocatorStats {
  size_t allocated = 0;       // bytes of the blocks handed out and not yet freed
  size_t reserved = 0;        // bytes obtained from cudaMalloc and held (allocated, cached, and
                              // the free parts of segments that hold allocated blocks)
  size_t peak_allocated = 0;  // high-water mark of `allocated` since the last reset
  int64_t num_device_mallocs = 0;
  int64_t num_device_frees = 0;
};

struct DeviceMemoryInfo {
  size_t free = 0;   // bytes the driver can still hand out (loom's cached blocks count as used)
  size_t total = 0;  // the device's memory
};

class CachingAllocator {
 public:
  static CachingAllocator& get(int device);

  /// On the device's current stream. When cudaMalloc fails, the cached blocks go back to the
  /// driver and it is tried once more (not while a graph is captured: that would synchronise);
  /// a second failure throws OutOfMemoryError with the requested, free, total, reserved and
  /// allocated bytes.
  void* allocate(size_t nbytes);
  void free(void* ptr);
  /// Returns every cached (unused) block to the driver, except those of live graph pools: a
  /// captured graph still reads and writes them at every replay. Does nothing while a graph is
  /// being captured.
  void empty_cache();
  AllocatorStats stats() const;
  /// The driver's view (cudaMemGetInfo).
  DeviceMemoryInfo device_memory() const;
  void reset_peak();

  /// CUDA graph capture (core/jit.h): until end_private_pool(), allocations come from and frees
  /// return to the private pool `pool` (any unique address), so blocks a captured graph uses are
  /// never handed to work outside it; they stay reserved while the graph may be replayed.
  void begin_private_pool(const void* pool);
  void end_private_pool();
  /// The graph of `pool` is gone: its blocks join the ordinary pool (in-use ones when freed).
  void release_private_pool(const void* pool);

 private:
  class DeviceSegments : public BlockPool::SegmentSource {
   public:
    explicit DeviceSegments(int device) : device_(device) {}
    void* map(size_t bytes) override;
    void unmap(void* base, size_t bytes) override;

   private:
    int device_;
  };

  explicit CachingAllocator(int device) : device_(device), segments_(device), blocks_(segments_) {}
  void release_cached_locked();

  // A pool is the compute stream (ordinary, stream-ordered reuse) or a private graph pool.
  using Pool = BlockPool::Pool;
  int device_;
  mutable std::mutex mu_;
  Pool private_pool_ = nullptr;  // set while a graph is being captured
  std::unordered_set<Pool> graph_pools_;  // pools of graphs that may still be replayed
  DeviceSegments segments_;
  BlockPool blocks_;
};

}  // namespace loom::cuda

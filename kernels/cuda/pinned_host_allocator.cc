#include "kernels/cuda/pinned_host_allocator.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace loom::cuda {
namespace {

// Batches repeat the same few sizes: exact size classes (4 KiB granularity) reuse them all.
size_t size_class(size_t nbytes) { return (std::max<size_t>(nbytes, 1) + 4095) / 4096 * 4096; }

bool event_done(cudaEvent_t e) {
  cudaError_t s = cudaEventQuery(e);
  if (s == cudaErrorNotReady) return false;
  LOOM_CUDA_CHECK(s);
  return true;
}

class PinnedPool {
 public:
  void* allocate(size_t nbytes) {
    const size_t size = size_class(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    recycle_completed_locked();
    if (auto it = free_.find(size); it != free_.end()) {
      void* p = it->second;
      free_.erase(it);
      blocks_.at(p).in_use = true;
      stats_.cached -= size;
      stats_.in_use += size;
      ++stats_.reuses;
      return p;
    }
    void* p = nullptr;
    cudaError_t s = cudaHostAlloc(&p, size, cudaHostAllocPortable);
    if (s == cudaErrorMemoryAllocation) {  // give the idle cache back and try once more
      cudaGetLastError();
      release_free_locked();
      s = cudaHostAlloc(&p, size, cudaHostAllocPortable);
    }
    LOOM_CUDA_CHECK(s);
    blocks_[p] = Block{size, {}, true};
    stats_.in_use += size;
    ++stats_.host_allocs;
    return p;
  }

  void free(void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    Block& b = block_locked(p, "pinned_free");
    b.in_use = false;
    stats_.in_use -= b.size;
    stats_.cached += b.size;
    drop_completed_events(b);
    if (b.events.empty()) {
      free_.emplace(b.size, p);
    } else {
      waiting_.push_back(p);
      ++stats_.waited_blocks;
    }
  }

  void record_use(void* p, Stream stream) {
    cudaEvent_t e;
    LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    LOOM_CUDA_CHECK(cudaEventRecord(e, stream));
    std::lock_guard<std::mutex> lock(mu_);
    Block& b = block_locked(p, "pinned_record_use");
    drop_completed_events(b);  // a block copied every step keeps one or two live events
    b.events.push_back(e);
  }

  PinnedMemoryStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void empty_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    recycle_completed_locked();
    release_free_locked();
  }

 private:
  struct Block {
    size_t size;
    std::vector<cudaEvent_t> events;  // copies queued from this block, maybe not yet run
    bool in_use;
  };

  Block& block_locked(void* p, const char* op) {
    auto it = blocks_.find(p);
    LOOM_CHECK(it != blocks_.end(), ValueError, op, ": ", p,
               " is not the start of a pinned block from pinned_allocate");
    return it->second;
  }

  static void drop_completed_events(Block& b) {
    std::erase_if(b.events, [](cudaEvent_t e) {
      if (!event_done(e)) return false;
      LOOM_CUDA_CHECK(cudaEventDestroy(e));
      return true;
    });
  }

  void recycle_completed_locked() {
    std::erase_if(waiting_, [&](void* p) {
      Block& b = blocks_.at(p);
      drop_completed_events(b);
      if (!b.events.empty()) return false;
      free_.emplace(b.size, p);
      return true;
    });
  }

  void release_free_locked() {
    for (auto& [size, p] : free_) {
      LOOM_CUDA_CHECK(cudaFreeHost(p));
      blocks_.erase(p);
      stats_.cached -= size;
    }
    free_.clear();
  }

  mutable std::mutex mu_;
  std::unordered_map<void*, Block> blocks_;
  std::multimap<size_t, void*> free_;  // size class -> block ready for reuse
  std::vector<void*> waiting_;         // freed, but a queued copy may still read it
  PinnedMemoryStats stats_;
};

// Never destroyed: blocks may be freed by static tensors during exit.
PinnedPool& pool() {
  static PinnedPool* p = new PinnedPool();
  return *p;
}

}  // namespace

void* pinned_allocate(size_t nbytes) { return pool().allocate(nbytes); }
void pinned_free(void* ptr) { pool().free(ptr); }
void pinned_record_use(void* ptr, Stream stream) { pool().record_use(ptr, stream); }
PinnedMemoryStats pinned_stats() { return pool().stats(); }

void copy_host_to_device_staged(void* dst, const void* src, size_t n, int device) {
  if (n == 0) return;
  // A captured copy would be replayed from a staging block that is reused after this call.
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  LOOM_CUDA_CHECK(cudaStreamIsCapturing(current_stream(device), &capturing));
  LOOM_CHECK(capturing == cudaStreamCaptureStatusNone, CudaError, "Tensor::to(cuda:", device,
             "): a copy of ", n, " bytes from host memory inside a captured CUDA graph (loom::jit) "
             "would be replayed from a reused buffer; make the tensor on the device or pass it in "
             "as an input of the step");
  void* staging = pinned_allocate(n);
  std::memcpy(staging, src, n);
  copy_host_to_device_async(dst, staging, n, device);
  pinned_record_use(staging, current_stream(device));
  pinned_free(staging);
}
void pinned_empty_cache() { pool().empty_cache(); }

}  // namespace loom::cuda

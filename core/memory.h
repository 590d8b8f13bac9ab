// GPU memory statistics and cache control, usable without CUDA headers (torch.cuda.memory_stats,
// mem_get_info, empty_cache and reset_peak_memory_stats). CUDA tensors come from a per-device
// caching allocator that keeps freed blocks for reuse; these functions read and release what it
// holds.
//
// Example:
//   MemoryStats s = memory_stats(Device::cuda());
//   std::cout << s.allocated << " bytes in use, " << s.reserved << " held\n";
//   empty_cache(Device::cuda());   // give cached blocks back to the driver
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/device.h"

namespace loom {

struct MemoryStats {
  size_t allocated = 0;            // bytes held by live tensors (rounded block sizes)
  size_t reserved = 0;             // bytes obtained from the driver: allocated + cached
  size_t peak_allocated = 0;       // high-water mark of `allocated` since the last reset
  int64_t num_device_mallocs = 0;  // cudaMalloc calls so far (flat in a steady training loop)
  int64_t num_device_frees = 0;    // cudaFree calls so far (only empty_cache and OOM recovery)
};

struct DeviceMemory {
  size_t free = 0;   // bytes the driver can still hand out; loom's cached blocks count as used
  size_t total = 0;  // the device's memory
};

/// The allocator's statistics for `device`. The CPU has no caching allocator: all zeros.
/// A CUDA device throws DeviceError when loom was built without CUDA or the GPU is absent.
MemoryStats memory_stats(Device device);
/// Returns every cached, unused block of `device` to the driver (a no-op for the CPU), except
/// the blocks of `loom::jit` graphs that may still be replayed.
void empty_cache(Device device);
/// The driver's free and total bytes of `device` (torch.cuda.mem_get_info); zeros for the CPU.
DeviceMemory device_memory(Device device);
/// Restarts peak_allocated from the current allocated bytes (a no-op for the CPU).
void reset_peak_memory(Device device);

struct PinnedMemoryStats {
  size_t in_use = 0;          // bytes of pinned host memory handed out and not yet freed
  size_t cached = 0;          // bytes held for reuse (including blocks waiting for a copy)
  int64_t host_allocs = 0;    // cudaHostAlloc calls (flat in a steady training loop)
  int64_t reuses = 0;         // allocations served from the cache
  int64_t waited_blocks = 0;  // frees whose block had to wait for a queued copy before reuse
};

/// The pinned host memory pool behind Tensor::empty_pinned (all zeros without a GPU).
PinnedMemoryStats pinned_memory_stats();

/// One tensor storage allocated or released.
struct AllocationEvent {
  bool allocated;   // false: released
  size_t bytes;     // as requested, before any allocator rounding
  const void* ptr;  // pairs a release with its allocation (addresses are reused afterwards)
  Device device;
};

/// Records every tensor storage allocated while it lives, on any device, and the release of
/// those (storages allocated before it began, wrapped foreign memory and pinned staging buffers
/// are left out), as torch.cuda.memory._record_memory_history does: a program's allocations
/// studied offline (bench/allocator_replay.cc replays them through allocator policies).
/// One at a time; a second throws ValueError.
///
///   AllocationTrace trace;
///   run_steps();
///   for (const AllocationEvent& e : trace.events()) ...
class AllocationTrace {
 public:
  AllocationTrace();
  ~AllocationTrace();
  AllocationTrace(const AllocationTrace&) = delete;
  AllocationTrace& operator=(const AllocationTrace&) = delete;
  std::vector<AllocationEvent> events() const;

 private:
  friend void record_allocation_event(const AllocationEvent& e);
  std::vector<AllocationEvent> events_;  // guarded by the traces' mutex (memory.cc)
};

/// True while an AllocationTrace records (one relaxed load: Storage checks it on every
/// allocation). record_allocation_event appends to it.
bool allocation_trace_active();
void record_allocation_event(const AllocationEvent& e);

}  // namespace loom

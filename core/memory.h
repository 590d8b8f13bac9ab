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
#include <map>
#include <string>
#include <unordered_map>
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
  // Allocations only, to read a trace by the model's parts:
  std::string op = {};     // the outermost op that made the storage ("conv", ...); "": none
  std::string scope = {};  // the module being applied ("/ResNet/layer1_0/Conv_0"), "backward of
                           // <op>" while an op's gradient rule runs, "" elsewhere
};

/// The most tensor bytes live at once in a trace, and what they were at that moment.
struct LivePeak {
  size_t bytes = 0;
  size_t event = 0;                               // the allocation that reached it
  std::map<std::string, size_t> bytes_by_op;     // AllocationEvent::op ("": no op made it)
  std::map<std::string, size_t> bytes_by_scope;  // AllocationEvent::scope
};
/// Over `events` as given (filter a device's first); releases of storages the trace did not see
/// allocated are skipped.
LivePeak live_peak(const std::vector<AllocationEvent>& events);

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
  friend void record_allocation_event(AllocationEvent e);
  friend void name_allocation(const void* ptr, const char* op);
  // Guarded by the traces' mutex (memory.cc).
  std::vector<AllocationEvent> events_;
  std::unordered_map<const void*, size_t> latest_allocation_;  // ptr -> index in events_
};

/// True while an AllocationTrace records (one relaxed load: Storage checks it on every
/// allocation). record_allocation_event appends to it.
bool allocation_trace_active();
/// Appends `e`; an allocation gets the scope it is made in.
void record_allocation_event(AllocationEvent e);
/// Names the active trace's latest allocation at `ptr` after `op`: ops call
/// it as they return a storage they made (core/autodiff.h), so an op nested in another (a cast
/// inside a convolution) is renamed by the outer one.
void name_allocation(const void* ptr, const char* op);

/// The name of the place the calling thread is in (a module path), for the trace's scopes:
/// modules/scope.cc installs one, as core knows no modules. Null: none.
using AllocationScopeFn = std::string (*)();
void set_allocation_scope(AllocationScopeFn fn);

/// While it lives, the trace's allocations on this thread have the scope "backward of <op>":
/// autodiff runs each gradient rule inside one.
class GradientRuleScope {
 public:
  explicit GradientRuleScope(const char* op);
  ~GradientRuleScope();
  GradientRuleScope(const GradientRuleScope&) = delete;
  GradientRuleScope& operator=(const GradientRuleScope&) = delete;

 private:
  const char* previous_;
};

}  // namespace loom

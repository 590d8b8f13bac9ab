#include "core/memory.h"

#include <atomic>
#include <mutex>
#include <unordered_map>

#include "core/error.h"
#if LOOM_CUDA
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/pinned_host_allocator.h"
#endif

namespace loom {

MemoryStats memory_stats(Device device) {
  if (device.is_cpu()) return {};
  check_device_usable(device, "memory_stats");
#if LOOM_CUDA
  cuda::AllocatorStats s = cuda::CachingAllocator::get(device.index).stats();
  return MemoryStats{s.allocated, s.reserved, s.peak_allocated, s.num_device_mallocs,
                     s.num_device_frees};
#else
  detail::throw_not_compiled_with_cuda("memory_stats");
#endif
}

void empty_cache(Device device) {
  if (device.is_cpu()) return;
  check_device_usable(device, "empty_cache");
  LOOM_CUDA_ONLY(cuda::CachingAllocator::get(device.index).empty_cache());
}

DeviceMemory device_memory(Device device) {
  if (device.is_cpu()) return {};
  check_device_usable(device, "device_memory");
#if LOOM_CUDA
  cuda::DeviceMemoryInfo m = cuda::CachingAllocator::get(device.index).device_memory();
  return DeviceMemory{m.free, m.total};
#else
  detail::throw_not_compiled_with_cuda("device_memory");
#endif
}

void reset_peak_memory(Device device) {
  if (device.is_cpu()) return;
  check_device_usable(device, "reset_peak_memory");
  LOOM_CUDA_ONLY(cuda::CachingAllocator::get(device.index).reset_peak());
}

namespace {
// Data-loading threads allocate too: the active trace is read and ended under one mutex.
std::mutex trace_mu;
AllocationTrace* active_trace = nullptr;  // guarded by trace_mu
std::atomic<bool> trace_on{false};        // active_trace != nullptr, for the unlocked check
}  // namespace

AllocationTrace::AllocationTrace() {
  std::lock_guard<std::mutex> lock(trace_mu);
  LOOM_CHECK(active_trace == nullptr, ValueError,
             "AllocationTrace: another trace is already recording");
  active_trace = this;
  trace_on.store(true);
}

AllocationTrace::~AllocationTrace() {
  std::lock_guard<std::mutex> lock(trace_mu);
  active_trace = nullptr;
  trace_on.store(false);
}

std::vector<AllocationEvent> AllocationTrace::events() const {
  std::lock_guard<std::mutex> lock(trace_mu);
  return events_;
}

bool allocation_trace_active() { return trace_on.load(std::memory_order_relaxed); }

namespace {
std::atomic<AllocationScopeFn> scope_fn{nullptr};
thread_local const char* gradient_rule_op = nullptr;

std::string current_scope() {
  if (gradient_rule_op) return std::string("backward of ") + gradient_rule_op;
  AllocationScopeFn fn = scope_fn.load(std::memory_order_relaxed);
  return fn ? fn() : std::string();
}
}  // namespace

void record_allocation_event(AllocationEvent e) {
  if (e.allocated) e.scope = current_scope();  // before the lock: it may allocate strings
  std::lock_guard<std::mutex> lock(trace_mu);
  if (!active_trace) return;
  if (e.allocated) active_trace->latest_allocation_[e.ptr] = active_trace->events_.size();
  else active_trace->latest_allocation_.erase(e.ptr);
  active_trace->events_.push_back(std::move(e));
}

void name_allocation(const void* ptr, const char* op) {
  std::lock_guard<std::mutex> lock(trace_mu);
  if (!active_trace) return;
  auto it = active_trace->latest_allocation_.find(ptr);
  if (it == active_trace->latest_allocation_.end()) return;  // allocated before the trace
  active_trace->events_[it->second].op = op;
}

void set_allocation_scope(AllocationScopeFn fn) { scope_fn.store(fn); }

LivePeak live_peak(const std::vector<AllocationEvent>& events) {
  std::unordered_map<const void*, size_t> live;  // ptr -> index of its allocation
  size_t now = 0;
  LivePeak peak;
  for (size_t i = 0; i < events.size(); ++i) {
    const AllocationEvent& e = events[i];
    if (e.allocated) {
      live[e.ptr] = i;
      now += e.bytes;
      if (now > peak.bytes) peak.bytes = now, peak.event = i;
    } else if (auto it = live.find(e.ptr); it != live.end()) {
      now -= events[it->second].bytes;
      live.erase(it);
    }
  }
  // What was live right after the peak's allocation.
  live.clear();
  for (size_t i = 0; i <= peak.event && i < events.size(); ++i) {
    if (events[i].allocated) live[events[i].ptr] = i;
    else live.erase(events[i].ptr);
  }
  for (const auto& [ptr, i] : live) {
    peak.bytes_by_op[events[i].op] += events[i].bytes;
    peak.bytes_by_scope[events[i].scope] += events[i].bytes;
  }
  return peak;
}

GradientRuleScope::GradientRuleScope(const char* op) : previous_(gradient_rule_op) {
  gradient_rule_op = op;
}
GradientRuleScope::~GradientRuleScope() { gradient_rule_op = previous_; }

PinnedMemoryStats pinned_memory_stats() {
#if LOOM_CUDA
  if (cuda::device_count() > 0) return cuda::pinned_stats();
#endif
  return {};
}

}  // namespace loom

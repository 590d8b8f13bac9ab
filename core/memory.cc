#include "core/memory.h"

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

PinnedMemoryStats pinned_memory_stats() {
#if LOOM_CUDA
  if (cuda::device_count() > 0) return cuda::pinned_stats();
#endif
  return {};
}

}  // namespace loom

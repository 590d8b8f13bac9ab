// What the benchmark programs share: waiting for a device and the median of timings.
#pragma once
#include <algorithm>
#include <vector>

#include "core/device.h"
#if LOOM_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace loom::bench {

/// Waits for everything queued on `device` (nothing to wait for on the CPU).
inline void synchronize(Device device) {
#if LOOM_CUDA
  if (device.is_cuda()) cuda::synchronize(device.index);
#else
  (void)device;
#endif
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace loom::bench

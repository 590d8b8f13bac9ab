#include "core/device.h"

#include <iostream>
#include <mutex>

#include "core/error.h"
#if LOOM_CUDA
#include "kernels/cuda/runtime.h"
#endif

namespace loom {

namespace detail {
void throw_not_compiled_with_cuda(const char* what) {
  LOOM_THROW(DeviceError, what,
             ": this loom was built without CUDA (configure with -DLOOM_CUDA=ON on a machine with "
             "the CUDA toolkit)");
}
}  // namespace detail

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda" || s == "gpu") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      size_t used = 0;
      int idx = std::stoi(s.substr(5), &used);
      if (used == s.size() - 5 && idx >= 0) return cuda(idx);
    } catch (const std::exception&) {
    }
  }
  LOOM_THROW(DeviceError, "unknown device '", s, "' (expected cpu, cuda or cuda:N)");
}

std::string Device::str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

int cuda_device_count() {
#if LOOM_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

bool cuda_available() { return cuda_device_count() > 0; }

Device default_device() {
  if (cuda_available()) return Device::cuda(0);
  static std::once_flag once;
  std::call_once(once, [] {
    std::cerr << "loom: no GPU found" << (LOOM_CUDA ? "" : " (built without CUDA)")
              << ", using the CPU\n";
  });
  return Device::cpu();
}

void check_device_usable(const Device& d, const char* op) {
  if (d.is_cpu()) return;
#if !LOOM_CUDA
  detail::throw_not_compiled_with_cuda(op);
#else
  int n = cuda_device_count();
  LOOM_CHECK(d.index < n, DeviceError, op, ": ", d.str(), " requested but ",
             n == 0 ? std::string("no GPU is visible") : std::to_string(n) + " GPU(s) are visible");
#endif
}

}  // namespace loom

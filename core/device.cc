#include "core/device.h"

#include <iostream>
#include <mutex>

#include "core/error.h"
#include "kernels/cpu/denormals.h"
#include "kernels/cpu/openblas_kernels.h"
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
    std::string digits = s.substr(5);
    // Digits only: std::stoi alone would accept " 1" and "+1".
    bool ok = !digits.empty() && digits.size() <= 9 &&
              digits.find_first_not_of("0123456789") == std::string::npos;
    if (ok) return cuda(std::stoi(digits));
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

std::string cpu_blas_kernels() { return cpu::blas_kernels().describe(); }

bool cpu_flushes_denormals() { return cpu::flushes_denormals(); }

void set_cpu_flush_denormals(bool on) { cpu::set_flush_denormals(on); }

void check_device_usable(const Device& d, const char* op) {
  if (d.is_cpu()) return;
#if !LOOM_CUDA
  LOOM_THROW(DeviceError, op, ": ", d.str(),
             " requested, but this loom was built without CUDA (configure with -DLOOM_CUDA=ON on "
             "a machine with the CUDA toolkit)");
#else
  int n = cuda_device_count();
  LOOM_CHECK(d.index < n, DeviceError, op, ": ", d.str(), " requested but ",
             n == 0 ? std::string("no GPU is visible") : std::to_string(n) + " GPU(s) are visible");
#endif
}

}  // namespace loom

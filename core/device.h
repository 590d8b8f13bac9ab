// Devices: the CPU and CUDA GPUs.
#pragma once
#include <string>

namespace loom {

struct Device {
  enum class Kind : uint8_t { CPU, CUDA };
  Kind kind = Kind::CPU;
  int index = 0;

  static Device cpu() { return {Kind::CPU, 0}; }
  static Device cuda(int index = 0) { return {Kind::CUDA, index}; }
  /// Parses "cpu", "cuda", "cuda:1"; throws DeviceError otherwise.
  static Device parse(const std::string& s);

  bool is_cpu() const { return kind == Kind::CPU; }
  bool is_cuda() const { return kind == Kind::CUDA; }
  std::string str() const;
  bool operator==(const Device&) const = default;
};

/// True when loom was built with CUDA and a GPU is visible.
bool cuda_available();
int cuda_device_count();
/// The first GPU when there is one; otherwise the CPU (and says so once on stderr).
Device default_device();
/// The kernels the CPU's matrix products run on ("OpenBLAS SkylakeX kernels"; "" for a BLAS
/// that does not say): kernels/cpu/openblas_kernels.h.
std::string cpu_blas_kernels();
/// Whether the calling thread flushes denormal floats to zero on the CPU, as loom sets at load
/// for every thread, like JAX's CPU backend (kernels/cpu/denormals.h; LOOM_FLUSH_DENORMALS=0
/// keeps them).
bool cpu_flushes_denormals();
/// Sets that mode for the calling thread and OpenMP's threads.
void set_cpu_flush_denormals(bool on);
/// Throws a DeviceError naming `op` unless `d` can be used (a CUDA device needs a built-in CUDA
/// backend and a GPU with that index).
void check_device_usable(const Device& d, const char* op);

}  // namespace loom

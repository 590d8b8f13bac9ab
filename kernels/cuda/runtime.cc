#include "kernels/cuda/runtime.h"

#include <cuda_runtime_api.h>

#include <execinfo.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/error.h"

namespace loom::cuda {

void throw_cuda_error(int code, const char* library, const char* message, const char* call,
                      const char* file, int line) {
  std::string text = detail::cat(library, " error ", code, " (", message, ") in ", call, " at ",
                                 file, ":", line);
  const bool runtime = std::string(library) == "CUDA";
  // The runtime keeps a failed call's error as its last error, which a later check of
  // cudaGetLastError() after an unrelated launch would report as its own; this one is reported
  // here. (A sticky error, from a faulting kernel, stays whatever is done.)
  if (runtime) cudaGetLastError();
  if (runtime && code == cudaErrorMemoryAllocation) throw OutOfMemoryError(text);
  throw CudaError(text);
}

bool stream_may_be_capturing(Stream stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess) {
    cudaGetLastError();
    return true;
  }
  return capture != cudaStreamCaptureStatusNone;
}

const char* error_string(int code) {
  return cudaGetErrorString(static_cast<cudaError_t>(code));
}

int device_count() {
  static int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" status
      return 0;
    }
    return n;
  }();
  return count;
}

void set_device(int device) { LOOM_CUDA_CHECK(cudaSetDevice(device)); }

Stream current_stream(int device) {
  static std::mutex mu;
  static std::vector<cudaStream_t> streams;
  std::lock_guard<std::mutex> lock(mu);
  if (streams.empty()) streams.assign(size_t(device_count()), nullptr);
  LOOM_CHECK(device >= 0 && size_t(device) < streams.size(), DeviceError, "cuda:", device,
             " does not exist (", streams.size(), " GPUs visible)");
  if (!streams[size_t(device)]) {
    set_device(device);
    LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[size_t(device)], cudaStreamNonBlocking));
  }
  return streams[size_t(device)];
}

namespace {
std::atomic<unsigned long long> host_waits{0};
}  // namespace

void note_host_wait(const char* what) {
  host_waits.fetch_add(1, std::memory_order_relaxed);
  static const bool debug = [] {
    const char* v = std::getenv("LOOM_SYNC_DEBUG");
    return v && *v && std::strcmp(v, "0") != 0;
  }();
  if (!debug) return;
  void* frames[32];
  int n = backtrace(frames, 32);
  std::fprintf(stderr, "loom: host waits for the GPU: %s\n", what);
  backtrace_symbols_fd(frames + 1, n - 1, 2);  // PIE offsets: symbolise with addr2line -C -f -e
}

unsigned long long host_wait_count() { return host_waits.load(std::memory_order_relaxed); }

void synchronize(int device) {
  note_host_wait("synchronize");
  LOOM_CUDA_CHECK(cudaStreamSynchronize(current_stream(device)));
}

void copy_host_to_device(void* dst, const void* src, size_t n, int device) {
  if (n == 0) return;
  set_device(device);
  Stream s = current_stream(device);
  note_host_wait("copy from pageable host memory");
  LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
  // Pageable source memory: the copy has been staged when cudaMemcpyAsync returns, but wait
  // anyway so the caller may free `src` at once.
  LOOM_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_host_to_device_async(void* dst, const void* src, size_t n, int device) {
  if (n == 0) return;
  set_device(device);
  LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, current_stream(device)));
}

void copy_device_to_host(void* dst, const void* src, size_t n, int device) {
  if (n == 0) return;
  set_device(device);
  Stream s = current_stream(device);
  note_host_wait("copy to the host");
  LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s));
  LOOM_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_device_to_device(void* dst, const void* src, size_t n, int device) {
  if (n == 0) return;
  set_device(device);
  LOOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, current_stream(device)));
}

}  // namespace loom::cuda

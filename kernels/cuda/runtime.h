// The CUDA runtime as loom uses it: one check macro for every CUDA-family status code, the
// per-device compute stream, and host<->device copies. Includes no CUDA header, so plain C++
// files can use it; the implementation (runtime.cc) is a plain .cc linked against cudart.
#pragma once
#include <cstddef>

struct CUstream_st;

namespace loom::cuda {

using Stream = CUstream_st*;  // == cudaStream_t

/// Throws CudaError (OutOfMemoryError for allocation failures) naming `call`, file and line.
[[noreturn]] void throw_cuda_error(int code, const char* library, const char* message,
                                   const char* call, const char* file, int line);
/// Name and text of a cudaError_t (for the check macro).
const char* error_string(int code);

int device_count();  // 0 when no driver or GPU
/// Makes `device` current for this thread.
void set_device(int device);
/// loom's compute stream on `device` (created on first use, non-blocking).
Stream current_stream(int device);
/// Whether work queued on `stream` is being captured into a graph, where waiting for the device
/// (timing an algorithm, say) is not allowed; true also when the stream cannot say.
bool stream_may_be_capturing(Stream stream);
void synchronize(int device);

void copy_host_to_device(void* dst, const void* src, size_t n, int device);  // waits for it
/// Queues the copy on `device`'s compute stream and returns at once: `src` must stay valid until
/// the copy has run (pinned memory from pinned_host_allocator.h, freed through it, does).
void copy_host_to_device_async(void* dst, const void* src, size_t n, int device);
void copy_device_to_host(void* dst, const void* src, size_t n, int device);  // waits for it
void copy_device_to_device(void* dst, const void* src, size_t n, int device);

/// Every place where the host blocks on the device (a synchronize, a copy to the host, an
/// unstaged copy from pageable memory, a cudaMalloc) calls this with what it waits for. It
/// counts them; with LOOM_SYNC_DEBUG=1 in the environment it also prints a backtrace to stderr,
/// to find the wait that keeps a step from running ahead of the GPU.
void note_host_wait(const char* what);
/// How many host waits note_host_wait has seen in this process.
unsigned long long host_wait_count();

}  // namespace loom::cuda

/// One macro for every CUDA-family status: LOOM_CUDA_CHECK(cudaMemcpyAsync(...)).
#define LOOM_CUDA_CHECK(call)                                                         \
  do {                                                                                \
    int loom_status_ = static_cast<int>(call);                                        \
    if (loom_status_ != 0)                                                            \
      ::loom::cuda::throw_cuda_error(loom_status_, "CUDA",                            \
                                     ::loom::cuda::error_string(loom_status_), #call, \
                                     __FILE__, __LINE__);                             \
  } while (0)
/// For libraries with their own status strings (cuBLAS, cuDNN, NCCL): pass the to-string function.
#define LOOM_CUDA_LIB_CHECK(call, library, to_string)                                         \
  do {                                                                                       \
    auto loom_status_ = (call);                                                              \
    if (static_cast<int>(loom_status_) != 0)                                                 \
      ::loom::cuda::throw_cuda_error(static_cast<int>(loom_status_), library,                \
                                     to_string(loom_status_), #call, __FILE__, __LINE__);   \
  } while (0)

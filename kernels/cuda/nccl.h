// NCCL as loom uses it, for the data-parallel communicator (train/dist/nccl_communicator.cc).
// Includes no CUDA or NCCL header. Collectives are enqueued on a stream; wait() then polls the
// stream and ncclCommGetAsyncError against a deadline and aborts the communicator (ncclCommAbort,
// never ncclCommDestroy, which can block forever on a dead peer) on error or timeout, as
// nccl-tests and PyTorch's watchdog do.
#pragma once
#include <cstddef>
#include <string>

#include "core/dtype.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

constexpr size_t kNcclUniqueIdBytes = 128;  // sizeof(ncclUniqueId)

enum class NcclOp { Sum, Avg };

class NcclComm {
 public:
  /// A fresh unique id (rank 0 makes it and shares its bytes with every rank).
  static void make_unique_id(void* id);
  /// ncclCommInitRank on `device`; blocks until every rank has joined.
  NcclComm(const void* id, int rank, int world, int device);
  ~NcclComm();  // aborts (does not destroy) the communicator
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_; }
  int device() const { return device_; }
  bool aborted() const { return comm_ == nullptr; }
  /// NCCL's version, e.g. "2.21.5".
  static std::string version();

  void all_reduce(const void* send, void* recv, size_t count, DType dtype, NcclOp op, Stream s);
  void broadcast(const void* send, void* recv, size_t count, DType dtype, int root, Stream s);
  void all_gather(const void* send, void* recv, size_t count, DType dtype, Stream s);
  void reduce_scatter(const void* send, void* recv, size_t count, DType dtype, NcclOp op,
                      Stream s);
  /// all_reduce on this communicator's side stream (created on first use), ordered after the
  /// work queued so far on `after`, so `after` (the compute stream) keeps computing while the
  /// network works. Returns an event (a cudaEvent_t) that completes with the collective; pass it
  /// to wait_event, or destroy_event when abandoning it.
  void* all_reduce_on_side_stream(void* buf, size_t count, DType dtype, NcclOp op, Stream after);
  /// Whether `event` has completed (does not wait).
  bool event_done(void* event) const;
  /// Polls `event` with wait()'s watchdog, orders `s` after it, and destroys it.
  void wait_event(void* event, Stream s, double timeout_s, const char* what);
  static void destroy_event(void* event);
  /// A one-element all-reduce on an internal buffer, then wait().
  void barrier(Stream s, double timeout_s);
  /// Waits until `s` has drained. Throws CudaError naming `what`, the rank and the reason, after
  /// aborting the communicator, when NCCL reports an asynchronous error or `timeout_s` passes.
  void wait(Stream s, double timeout_s, const char* what);
  void abort();

 private:
  void check_live(const char* what) const;
  void* comm_ = nullptr;     // ncclComm_t
  void* scratch_ = nullptr;  // 4 device bytes for barrier()
  Stream side_ = nullptr;    // all_reduce_on_side_stream's stream
  int rank_ = 0, world_ = 1, device_ = 0;
};

}  // namespace loom::cuda

#include "kernels/cuda/nccl.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "core/error.h"

namespace loom::cuda {
namespace {

const char* nccl_text(ncclResult_t r) { return ncclGetErrorString(r); }
#define LOOM_NCCL_CHECK(call) LOOM_CUDA_LIB_CHECK(call, "NCCL", nccl_text)

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::BF16: return ncclBfloat16;
    case DType::F16: return ncclFloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    case DType::U32: return ncclUint32;
    case DType::U8: case DType::Bool: return ncclUint8;
  }
  return ncclUint8;
}

ncclRedOp_t nccl_op(NcclOp op) { return op == NcclOp::Sum ? ncclSum : ncclAvg; }
ncclComm_t as_comm(void* c) { return static_cast<ncclComm_t>(c); }

}  // namespace

void NcclComm::make_unique_id(void* id) {
  ncclUniqueId uid;
  LOOM_NCCL_CHECK(ncclGetUniqueId(&uid));
  static_assert(sizeof(ncclUniqueId) == kNcclUniqueIdBytes);
  std::memcpy(id, &uid, sizeof uid);
}

std::string NcclComm::version() {
  int v = 0;
  ncclGetVersion(&v);
  // NCCL >= 2.9: major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." +
         std::to_string(v % 100);
}

NcclComm::NcclComm(const void* id, int rank, int world, int device)
    : rank_(rank), world_(world), device_(device) {
  ncclUniqueId uid;
  std::memcpy(&uid, id, sizeof uid);
  LOOM_CUDA_CHECK(cudaSetDevice(device));
  ncclComm_t comm = nullptr;
  LOOM_NCCL_CHECK(ncclCommInitRank(&comm, world, uid, rank));
  comm_ = comm;
  LOOM_CUDA_CHECK(cudaMalloc(&scratch_, 4));
  LOOM_CUDA_CHECK(cudaMemset(scratch_, 0, 4));
}

NcclComm::~NcclComm() {
  abort();
  if (scratch_) cudaFree(scratch_);
  if (side_) cudaStreamDestroy(side_);
}

void NcclComm::abort() {
  if (comm_) ncclCommAbort(as_comm(comm_));
  comm_ = nullptr;
}

void NcclComm::check_live(const char* what) const {
  LOOM_CHECK(comm_ != nullptr, CudaError, "NCCL ", what, " on rank ", rank_,
             ": the communicator was aborted after an earlier failure");
}

void NcclComm::all_reduce(const void* send, void* recv, size_t count, DType dtype, NcclOp op,
                          Stream s) {
  check_live("all_reduce");
  LOOM_NCCL_CHECK(ncclAllReduce(send, recv, count, nccl_type(dtype), nccl_op(op), as_comm(comm_),
                                s));
}

void NcclComm::broadcast(const void* send, void* recv, size_t count, DType dtype, int root,
                         Stream s) {
  check_live("broadcast");
  LOOM_NCCL_CHECK(ncclBroadcast(send, recv, count, nccl_type(dtype), root, as_comm(comm_), s));
}

void NcclComm::all_gather(const void* send, void* recv, size_t count, DType dtype, Stream s) {
  check_live("all_gather");
  LOOM_NCCL_CHECK(ncclAllGather(send, recv, count, nccl_type(dtype), as_comm(comm_), s));
}

void NcclComm::reduce_scatter(const void* send, void* recv, size_t count, DType dtype, NcclOp op,
                              Stream s) {
  check_live("reduce_scatter");
  LOOM_NCCL_CHECK(ncclReduceScatter(send, recv, count, nccl_type(dtype), nccl_op(op),
                                    as_comm(comm_), s));
}

void* NcclComm::all_reduce_on_side_stream(void* buf, size_t count, DType dtype, NcclOp op,
                                          Stream after) {
  check_live("all_reduce");
  LOOM_CUDA_CHECK(cudaSetDevice(device_));
  if (!side_) LOOM_CUDA_CHECK(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking));
  // The side stream waits for the kernels that wrote `buf`; timing is not needed.
  cudaEvent_t ready = nullptr, done = nullptr;
  LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming));
  LOOM_CUDA_CHECK(cudaEventRecord(ready, after));
  LOOM_CUDA_CHECK(cudaStreamWaitEvent(side_, ready, 0));
  LOOM_CUDA_CHECK(cudaEventDestroy(ready));  // released once the recorded work has run
  all_reduce(buf, buf, count, dtype, op, side_);
  LOOM_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
  LOOM_CUDA_CHECK(cudaEventRecord(done, side_));
  return done;
}

bool NcclComm::event_done(void* event) const {
  return cudaEventQuery(static_cast<cudaEvent_t>(event)) != cudaErrorNotReady;
}

void NcclComm::wait_event(void* event, Stream s, double timeout_s, const char* what) {
  auto ev = static_cast<cudaEvent_t>(event);
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (int polls = 0;; ++polls) {
    cudaError_t q = cudaEventQuery(ev);
    if (q == cudaSuccess) break;
    ncclResult_t async = ncclSuccess;
    if (comm_) ncclCommGetAsyncError(as_comm(comm_), &async);
    const bool failed = q != cudaErrorNotReady || (async != ncclSuccess && async != ncclInProgress);
    const bool late = std::chrono::duration<double>(clock::now() - start).count() > timeout_s;
    if (failed || late) {
      cudaEventDestroy(ev);
      abort();
      LOOM_THROW(CudaError, "NCCL ", what, " on rank ", rank_, " of ", world_, ": ",
                 q != cudaErrorNotReady ? cudaGetErrorString(q)
                 : failed ? ncclGetErrorString(async)
                          : "did not complete within the timeout (LOOM_DIST_TIMEOUT)",
                 " (", timeout_s, " s); a peer rank died or hangs; communicator aborted");
    }
    if (polls > 100) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  LOOM_CUDA_CHECK(cudaStreamWaitEvent(s, ev, 0));
  LOOM_CUDA_CHECK(cudaEventDestroy(ev));
}

void NcclComm::destroy_event(void* event) {
  if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

void NcclComm::barrier(Stream s, double timeout_s) {
  all_reduce(scratch_, scratch_, 1, DType::F32, NcclOp::Sum, s);
  wait(s, timeout_s, "barrier");
}

void NcclComm::wait(Stream s, double timeout_s, const char* what) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  for (int polls = 0;; ++polls) {
    cudaError_t q = cudaStreamQuery(s);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) {
      abort();
      LOOM_THROW(CudaError, "NCCL ", what, " on rank ", rank_, " of ", world_, ": the stream "
                 "failed (", cudaGetErrorName(q), ": ", cudaGetErrorString(q),
                 "); communicator aborted");
    }
    ncclResult_t async = ncclSuccess;
    if (comm_) ncclCommGetAsyncError(as_comm(comm_), &async);
    if (async != ncclSuccess && async != ncclInProgress) {
      abort();
      LOOM_THROW(CudaError, "NCCL ", what, " on rank ", rank_, " of ", world_,
                 ": asynchronous error ", ncclGetErrorString(async),
                 " (a peer rank died or the network failed); communicator aborted");
    }
    double waited = std::chrono::duration<double>(clock::now() - start).count();
    if (waited > timeout_s) {
      abort();
      LOOM_THROW(CudaError, "NCCL ", what, " on rank ", rank_, " of ", world_,
                 " did not complete within ", timeout_s, " s (LOOM_DIST_TIMEOUT): a peer rank "
                 "died or hangs; communicator aborted");
    }
    if (polls > 100) std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

}  // namespace loom::cuda

#include "train/dist/mpi_communicator.h"

#if LOOM_MPI
#include <mpi.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <thread>
#endif

namespace loom::dist {

#if !LOOM_MPI

bool mpi_compiled() { return false; }
std::unique_ptr<Communicator> make_mpi_communicator() {
  LOOM_THROW(dist::DistError,
             "dist: this process was started by an MPI launcher but loom was built without MPI "
             "(install libopenmpi-dev and reconfigure with -DLOOM_MPI=ON)");
}
void mpi_finalize() {}

#else

namespace {

std::atomic<bool> g_initialised_by_loom{false};
std::atomic<bool> g_failed{false};
std::atomic<bool> g_finalised{false};

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, size_t(len));
}

MPI_Datatype mpi_type(DType dtype, bool for_reduction) {
  switch (dtype) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    case DType::U32: return MPI_UINT32_T;
    case DType::U8: case DType::Bool: return MPI_UINT8_T;
    case DType::BF16: case DType::F16:
      // Moved as 16-bit words; MPI cannot add them (dist.h reduces them in float32).
      LOOM_CHECK(!for_reduction, dist::DistError, "dist (mpi): cannot reduce ", dtype_name(dtype),
                 " directly; reduce it in float32");
      return MPI_UINT16_T;
  }
  return MPI_BYTE;
}

void at_exit() { mpi_finalize(); }

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int dup = MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    LOOM_CHECK(dup == MPI_SUCCESS, dist::DistError, "dist (mpi): MPI_Comm_dup failed: ",
               mpi_error_text(dup));
    // Errors come back as codes and become DistError instead of killing the job silently.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  // comm_ is left to MPI_Finalize: freeing it is collective and could wait on a dead peer.

  std::string backend() const override { return "mpi"; }
  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  bool reduces(DType dtype) const override {
    return dtype == DType::F32 || dtype == DType::F64 || dtype == DType::I32 ||
           dtype == DType::I64;
  }

  void all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) override {
    begin("all_reduce", count, dtype);
    MPI_Request req;
    check(MPI_Iallreduce(MPI_IN_PLACE, buf, int(count), mpi_type(dtype, true), MPI_SUM, comm_, &req),
          "all_reduce");
    wait(req, "all_reduce", count, dtype);
    if (op == ReduceOp::Mean) divide(buf, count, dtype);
  }

  std::unique_ptr<PendingCollective> all_reduce_async(void* buf, size_t count, DType dtype,
                                                      ReduceOp op) override {
    begin("all_reduce", count, dtype);
    auto pending = std::make_unique<Pending>(*this, buf, count, dtype, op);
    check(MPI_Iallreduce(MPI_IN_PLACE, buf, int(count), mpi_type(dtype, true), MPI_SUM, comm_,
                         &pending->req),
          "all_reduce");
    return pending;
  }

  void broadcast(void* buf, size_t count, DType dtype, int root) override {
    begin("broadcast", count, dtype);
    LOOM_CHECK(root >= 0 && root < size_, dist::DistError, "dist::broadcast: root ", root,
               " is outside the world of ", size_);
    MPI_Request req;
    check(MPI_Ibcast(buf, int(count), mpi_type(dtype, false), root, comm_, &req), "broadcast");
    wait(req, "broadcast", count, dtype);
  }

  void all_gather(const void* send, void* recv, size_t count, DType dtype) override {
    begin("all_gather", count * size_t(size_), dtype);
    MPI_Request req;
    MPI_Datatype t = mpi_type(dtype, false);
    check(MPI_Iallgather(send, int(count), t, recv, int(count), t, comm_, &req), "all_gather");
    wait(req, "all_gather", count, dtype);
  }

  void reduce_scatter(const void* send, void* recv, size_t count, DType dtype,
                      ReduceOp op) override {
    begin("reduce_scatter", count * size_t(size_), dtype);
    MPI_Request req;
    check(MPI_Ireduce_scatter_block(send, recv, int(count), mpi_type(dtype, true), MPI_SUM, comm_,
                                    &req),
          "reduce_scatter");
    wait(req, "reduce_scatter", count, dtype);
    if (op == ReduceOp::Mean) divide(recv, count, dtype);
  }

  void barrier() override {
    begin("barrier", 0, DType::U8);
    MPI_Request req;
    check(MPI_Ibarrier(comm_, &req), "barrier");
    wait(req, "barrier", 0, DType::U8);
  }

  void abort(int exit_code) override {
    g_failed = true;
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);
  }

 private:
  /// An MPI_Iallreduce in flight; wait() polls it against the timeout like a blocking call.
  struct Pending final : PendingCollective {
    Pending(MpiCommunicator& c, void* b, size_t n, DType d, ReduceOp o)
        : comm(c), buf(b), count(n), dtype(d), op(o) {}
    bool test() override {
      if (done) return true;
      int flag = 0;
      comm.check(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), "all_reduce");
      done = flag != 0;
      return done;
    }
    void wait() override {
      if (!done) comm.wait(req, "all_reduce", count, dtype);
      done = true;
      if (op == ReduceOp::Mean && !divided) comm.divide(buf, count, dtype);
      divided = true;
    }
    MpiCommunicator& comm;
    void* buf;
    size_t count;
    DType dtype;
    ReduceOp op;
    MPI_Request req = MPI_REQUEST_NULL;
    bool done = false, divided = false;
  };

  void begin(const char* what, size_t count, DType dtype) const {
    LOOM_CHECK(!broken_, dist::DistError, "dist (mpi): ", what, " on rank ", rank_,
               ": the communicator is unusable after an earlier failure (", broken_reason_, ")");
    LOOM_CHECK(count <= size_t(INT_MAX), dist::DistError, "dist (mpi): ", what, " of ", count, " ",
               dtype_name(dtype), " elements exceeds MPI's int count; use buckets");
  }

  void check(int code, const char* what) {
    if (code == MPI_SUCCESS) return;
    fail(detail::cat("dist (mpi): ", what, " on rank ", rank_, " of ", size_, " failed: ",
                     mpi_error_text(code)));
  }

  [[noreturn]] void fail(std::string message) {
    broken_ = true;
    broken_reason_ = message;
    g_failed = true;
    throw DistError(message);
  }

  /// Polls `req` until it completes or the timeout passes. Sleeps between polls so that
  /// oversubscribed ranks (more ranks than cores) leave the CPU to the peers they wait for.
  void wait(MPI_Request& req, const char* what, size_t count, DType dtype) {
    using clock = std::chrono::steady_clock;
    const double limit = timeout();
    const auto start = clock::now();
    int done = 0;
    for (int polls = 0;; ++polls) {
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
      if (done) return;
      double waited = std::chrono::duration<double>(clock::now() - start).count();
      if (waited > limit)
        fail(detail::cat("dist (mpi): ", what, " of ", count, " ", dtype_name(dtype),
                         " elements on rank ", rank_, " of ", size_, " did not complete within ",
                         limit, " s (LOOM_DIST_TIMEOUT): a peer rank died or hangs; this process "
                         "must stop (dist::abort)"));
      if (polls > 100)
        std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, 10 * (polls - 100))));
      else
        std::this_thread::yield();
    }
  }

  static void divide(void* buf, size_t count, DType dtype, int n) {
    if (dtype == DType::F32) {
      float* p = static_cast<float*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] /= float(n);
    } else if (dtype == DType::F64) {
      double* p = static_cast<double*>(buf);
      for (size_t i = 0; i < count; ++i) p[i] /= double(n);
    } else {
      LOOM_THROW(dist::DistError, "dist (mpi): mean of ", dtype_name(dtype),
                 " is not supported (floating dtypes only)");
    }
  }
  void divide(void* buf, size_t count, DType dtype) const { divide(buf, count, dtype, size_); }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  bool broken_ = false;
  std::string broken_reason_;
};

}  // namespace

bool mpi_compiled() { return true; }

std::unique_ptr<Communicator> make_mpi_communicator() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (!initialised) {
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    LOOM_CHECK(rc == MPI_SUCCESS, dist::DistError, "dist: MPI_Init_thread failed: ", mpi_error_text(rc));
    g_initialised_by_loom = true;
    std::atexit(at_exit);
  }
  return std::make_unique<MpiCommunicator>();
}

void mpi_finalize() {
  if (!g_initialised_by_loom || g_finalised.exchange(true)) return;
  int finalised = 0;
  MPI_Finalized(&finalised);
  if (finalised) return;
  // After a failed collective MPI_Finalize could wait forever on the dead peer: abort instead,
  // which also stops the other ranks.
  if (g_failed) MPI_Abort(MPI_COMM_WORLD, 1);
  MPI_Finalize();
}

#endif

}  // namespace loom::dist

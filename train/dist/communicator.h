// The communicator interface behind loom::dist: collectives on raw, contiguous buffers of one
// device. Implementations: LocalCommunicator (a world of one: every collective is the identity),
// MPI (CPU buffers, mpi_communicator.cc), NCCL (CUDA buffers, nccl_communicator.cc). Tensor- and
// Tree-level collectives (dist.h) check shapes/dtypes/devices and call these.
//
// Every blocking call honours a deadline (dist::timeout()): a peer that died or hangs makes the
// call throw DistError naming the collective, the rank and the timeout instead of hanging. After
// such an error the communicator is broken (further calls throw at once) and the process should
// stop (dist::abort()).
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace loom::dist {

/// A collective failed or timed out (a peer died or hangs), or the world is misconfigured.
class DistError : public Error {
  using Error::Error;
};

/// Seconds a collective may wait for its peers before it throws DistError: LOOM_DIST_TIMEOUT
/// (default 300) read by dist::init, or set_timeout.
double timeout();
void set_timeout(double seconds);

enum class ReduceOp { Sum, Mean };
inline const char* reduce_op_name(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "mean"; }

/// A collective that has been started but may not have finished (Communicator::all_reduce_async).
/// Its buffer must stay alive and untouched until wait() returns.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  /// Whether it has finished; also lets MPI progress it (MPI moves non-blocking collectives
  /// only inside MPI calls). A finished collective still needs wait() (Mean divides there).
  virtual bool test() = 0;
  /// Returns when the buffer holds the result; DistError on failure or after dist::timeout().
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual std::string backend() const = 0;  // "local", "mpi", "nccl"
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  /// Whether all_reduce/reduce_scatter accept `dtype` (MPI has no bfloat16: dist.h reduces those
  /// in float32 and rounds once).
  virtual bool reduces(DType dtype) const = 0;

  /// In place: buf[0..count) = op over ranks.
  virtual void all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) = 0;
  /// all_reduce started without waiting, so the caller can compute while it runs (MPI: a
  /// non-blocking MPI_Iallreduce; NCCL: a side stream ordered after the compute stream). It takes
  /// its place in the order of collectives when called, like a blocking one. The default runs
  /// the blocking all_reduce at once (no overlap) and returns a finished collective.
  virtual std::unique_ptr<PendingCollective> all_reduce_async(void* buf, size_t count,
                                                              DType dtype, ReduceOp op);
  /// In place: every rank gets root's buf.
  virtual void broadcast(void* buf, size_t count, DType dtype, int root) = 0;
  /// recv[r * count ..] = rank r's send[0..count).
  virtual void all_gather(const void* send, void* recv, size_t count, DType dtype) = 0;
  /// recv[0..count) = op over ranks of send[rank * count .. (rank + 1) * count).
  virtual void reduce_scatter(const void* send, void* recv, size_t count, DType dtype,
                              ReduceOp op) = 0;
  virtual void barrier() = 0;
  /// Tears the world down after an error (MPI_Abort / ncclCommAbort); does not return for MPI.
  virtual void abort(int exit_code) = 0;
};

/// A world of one: collectives copy at most (all_gather / reduce_scatter) and never wait.
class LocalCommunicator final : public Communicator {
 public:
  std::string backend() const override { return "local"; }
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  bool reduces(DType) const override { return true; }
  void all_reduce(void*, size_t, DType, ReduceOp) override {}
  void broadcast(void*, size_t, DType, int) override {}
  void all_gather(const void* send, void* recv, size_t count, DType dtype) override;
  void reduce_scatter(const void* send, void* recv, size_t count, DType dtype, ReduceOp) override;
  void barrier() override {}
  void abort(int exit_code) override;
};

}  // namespace loom::dist

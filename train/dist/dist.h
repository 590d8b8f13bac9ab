// Data parallelism, as a Flax step writes it with explicit collectives (lax.psum / lax.pmean over
// a named axis): one process per device, params broadcast from rank 0, each rank on its shard of
// the data, `grads = dist::pmean(grads)` before the optimizer, BatchNorm{.axis_name = "batch"}
// averaging its statistics across ranks.
//
// dist::init() reads the world from the launcher (launch_env.h: mpirun, SLURM, `loom launch`) and
// builds the communicators: MPI for CPU tensors, NCCL for CUDA tensors (created on first use; its
// unique id travels over MPI or loom's TCP store). Without a launcher the world has one rank and
// every collective returns its input without copying or waiting.
//
// A collective that waits longer than dist::timeout() (LOOM_DIST_TIMEOUT, default 300 s) for a
// dead or hung peer throws DistError naming the collective and the rank; call dist::abort() then
// (a broken world cannot be used again).
//
// Example (the DDP step):
//   dist::init();
//   params = dist::broadcast(params, 0);
//   auto [begin, end] = dist::shard(dataset_size, dist::rank(), dist::world_size());
//   ...
//   auto [loss, grads] = value_and_grad(loss_fn)(params);   // loss: mean over the local batch
//   grads = dist::pmean(grads);
//   auto [updates, opt_state] = tx.update(grads, opt_state, params);
// The last two steps overlapped (train/dist/gradient_reducer.h): the all-reduce of each ~25 MB
// bucket starts as soon as backward has finished its gradients, while backward goes on:
//   auto [loss, grads] = dist::value_and_grad_pmean(loss_fn)(params);
// Sharded optimizer state (ZeRO-1, train/dist/zero.h): each rank updates 1/N of the params.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "core/tree.h"
#include "train/dist/communicator.h"
#include "train/dist/launch_env.h"

namespace loom::dist {

struct InitOptions {
  /// The world; read from the environment (detect_launch()) when unset.
  std::optional<LaunchInfo> launch = {};
  /// Collective timeout in seconds; LOOM_DIST_TIMEOUT (default 300) when unset.
  std::optional<double> timeout_s = {};
  /// Registers nn::set_axis_reducer(axis_name, pmean over the world) for BatchNorm; "" skips it.
  std::string axis_name = "batch";
};

/// Sets the world up (idempotent: a second call returns at once). Throws DistError when the
/// launcher's variables are malformed or the needed communicator was not compiled in.
void init(const InitOptions& options = {});
/// Finalises MPI / destroys NCCL communicators; the world is one rank again afterwards.
void finalize();
bool initialized();
int rank();
int world_size();
int local_rank();
bool is_main();  // rank() == 0: the rank that logs and writes checkpoints
const LaunchInfo& launch_info();
/// The communicator for tensors on `device` (MPI / local for CPU, NCCL for CUDA).
Communicator& communicator(Device device = Device::cpu());
/// Replaces the CPU communicator (tests, custom transports); its rank/size become the world's.
void set_communicator(std::unique_ptr<Communicator> comm);
/// Installs `comm` for CUDA tensors on cuda:`device` (e.g. a world-of-one NCCL communicator from
/// make_nccl_communicator). Collectives then go through it even in a world of one, so tests on
/// one GPU exercise the NCCL path; finalize() removes it.
void set_gpu_communicator(std::unique_ptr<Communicator> comm, int device);
/// Stops every rank after a failure (MPI_Abort / ncclCommAbort, then exit).
[[noreturn]] void abort(int exit_code = 1);

// --- collectives on tensors (f32, f64, bf16, f16; sum also i32/i64). Every rank must call them
// in the same order with the same shapes and dtypes. They return new tensors and do not
// record gradients (psum / pmean below do).
Tensor all_reduce(const Tensor& x, ReduceOp op = ReduceOp::Sum);
/// Root's x on every rank (each rank passes a tensor of the same shape and dtype).
Tensor broadcast(const Tensor& x, int root = 0);
/// Stacks every rank's x on a new leading axis: [world_size, ...x.shape] (lax.all_gather).
Tensor all_gather(const Tensor& x);
/// x [world_size * n, ...] reduced over ranks; this rank keeps rows [rank * n, (rank + 1) * n)
/// (lax.psum_scatter with tiled=True).
Tensor reduce_scatter(const Tensor& x, ReduceOp op = ReduceOp::Sum);
void barrier();

/// Differentiable lax.psum / lax.pmean over the world: the gradient is psum / pmean of the
/// incoming gradient (the transpose JAX uses), so BatchNorm's cross-replica statistics
/// backpropagate into every rank.
Tensor psum(const Tensor& x);
Tensor pmean(const Tensor& x);
/// Weighted mean over ranks: sum_r weight_r * x_r / sum_r weight_r, the weights all-reduced in the
/// same collective as x. With weight = this rank's example count it is the statistic of the
/// joint batch when ranks hold unequal batches (equal weights: pmean up to rounding).
/// Differentiable: the gradient is psum(g) * weight / sum_r weight_r (the transpose). x: float32
/// or float64. The total weight stays on x's device (no host synchronisation); for CPU tensors a
/// total of zero throws ValueError, on CUDA it gives NaN.
Tensor pmean_weighted(const Tensor& x, double weight);

// --- collectives on trees: leaves grouped by dtype and device, packed into flat buckets of at
// most bucket_bytes() (default 25 MiB), one collective per bucket.
Tree psum(const Tree& tree);
Tree pmean(const Tree& tree);
Tree broadcast(const Tree& tree, int root = 0);
void set_bucket_bytes(size_t bytes);
size_t bucket_bytes();
/// True when every collective is the identity: a world of one with no communicator installed.
bool trivial_world();
/// A contiguous copy of x with its own storage, for collectives that write in place.
Tensor fresh_copy(const Tensor& x);

/// Registers `name` as an axis for nn::BatchNorm{.axis_name = name}: each rank's statistics
/// weighted by its local count (pmean_weighted), so ranks with unequal batches equal one process
/// on the joint batch (init does this for "batch").
void register_axis(const std::string& name = "batch");

/// This rank's part [begin, end) of `size` examples: contiguous, sizes differing by at most one
/// (the first size % world ranks get one more); with drop_remainder every rank gets
/// size / world examples, so all ranks run the same number of equal steps.
struct Shard {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};
Shard shard(int64_t size, int rank, int world, bool drop_remainder = false);

}  // namespace loom::dist

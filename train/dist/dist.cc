#include "train/dist/dist.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/shape.h"
#include "kernels/cuda/runtime.h"
#include "modules/layers/normalization.h"
#include "train/dist/mpi_communicator.h"
#include "train/dist/nccl_communicator.h"
#include "train/dist/tcp_store.h"

namespace loom::dist {
namespace {

struct State {
  std::recursive_mutex mutex;
  bool initialized = false;
  LaunchInfo info;
  std::unique_ptr<Communicator> cpu;  // null: a world of one (local)
  std::unique_ptr<Communicator> gpu;  // NCCL, created on the first CUDA collective
  int gpu_device = -1;
  std::shared_ptr<TcpStore> store;    // loom's launcher: rendezvous, NCCL id, CPU collectives
};

State& state() {
  static State s;
  return s;
}

// A communicator installed explicitly (set_communicator / set_gpu_communicator): collectives use
// it even in a world of one instead of returning their input.
std::atomic<bool> g_installed{false};

std::atomic<double> g_timeout{0};  // 0: not set yet (read LOOM_DIST_TIMEOUT)
std::atomic<size_t> g_bucket_bytes{size_t(25) << 20};

LocalCommunicator& local() {
  static LocalCommunicator c;
  return c;
}

bool floating(DType d) {
  return d == DType::F32 || d == DType::F64 || d == DType::BF16 || d == DType::F16;
}

void check_tensor(const char* op, const Tensor& x) {
  LOOM_CHECK(x.defined(), ValueError, "dist::", op, ": undefined tensor");
  LOOM_CHECK(floating(x.dtype()) || x.dtype() == DType::I32 || x.dtype() == DType::I64, DTypeError,
             "dist::", op, ": unsupported dtype ", dtype_name(x.dtype()), " (shape ",
             shape_str(x.shape()), "); use float32, float64, bfloat16, float16, int32 or int64");
}

/// Reductions the communicator cannot do in `dtype` (bfloat16 over MPI) run in float32 and round
/// once at the end.
bool needs_f32(const Communicator& c, DType d) { return !c.reduces(d); }

void share_nccl_id(void* id, size_t bytes) {
  State& s = state();
  if (s.cpu) {
    s.cpu->broadcast(id, bytes, DType::U8, 0);
  } else {
    LOOM_CHECK(s.store, dist::DistError, "dist: no transport to share the NCCL unique id (neither MPI "
               "nor loom's TCP store is set up)");
    s.store->broadcast_bytes("nccl_id", id, bytes, s.info.rank == 0);
  }
}

class FinishedCollective final : public PendingCollective {
 public:
  bool test() override { return true; }
  void wait() override {}
};

}  // namespace

bool trivial_world() { return state().info.world_size == 1 && !g_installed.load(); }

Tensor fresh_copy(const Tensor& x) {
  Tensor c = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (out.nbytes() == 0) return out;
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::copy_device_to_device(out.raw_data(), c.raw_data(), c.nbytes(),
                                               x.device().index));
  } else {
    std::memcpy(out.raw_data(), c.raw_data(), c.nbytes());
  }
  return out;
}

std::unique_ptr<PendingCollective> Communicator::all_reduce_async(void* buf, size_t count,
                                                                  DType dtype, ReduceOp op) {
  all_reduce(buf, count, dtype, op);
  return std::make_unique<FinishedCollective>();
}

double timeout() {
  double t = g_timeout.load();
  if (t <= 0) {
    t = timeout_from_env();
    g_timeout = t;
  }
  return t;
}
void set_timeout(double seconds) {
  LOOM_CHECK(seconds > 0, ValueError, "dist::set_timeout: seconds must be positive, got ",
             seconds);
  g_timeout = seconds;
}

void LocalCommunicator::all_gather(const void* send, void* recv, size_t count, DType dtype) {
  if (send != recv) std::memmove(recv, send, count * dtype_size(dtype));
}
void LocalCommunicator::reduce_scatter(const void* send, void* recv, size_t count, DType dtype,
                                       ReduceOp) {
  if (send != recv) std::memmove(recv, send, count * dtype_size(dtype));
}
void LocalCommunicator::abort(int exit_code) { std::_Exit(exit_code); }

void init(const InitOptions& options) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  if (s.initialized) return;
  if (options.timeout_s) set_timeout(*options.timeout_s);
  else g_timeout = timeout_from_env();
  LaunchInfo info = options.launch ? *options.launch : detect_launch();
  LOOM_CHECK(info.world_size >= 1 && info.rank >= 0 && info.rank < info.world_size, dist::DistError,
             "dist::init: rank ", info.rank, " is outside the world of ", info.world_size);
  if (info.world_size > 1) {
    if (info.launcher == "loom") {
      // loom's launcher: a TCP store on rank 0 carries the rendezvous and the CPU collectives.
      s.store = std::make_shared<TcpStore>(info.master_addr, info.master_port, info.rank,
                                           info.world_size, info.master_listen_fd);
      s.cpu = make_store_communicator(s.store);
    } else {
      s.cpu = make_mpi_communicator();
      LOOM_CHECK(s.cpu->rank() == info.rank && s.cpu->world_size() == info.world_size, dist::DistError,
                 "dist::init: MPI says rank ", s.cpu->rank(), " of ", s.cpu->world_size(),
                 " but the ", info.launcher, " environment says rank ", info.rank, " of ",
                 info.world_size);
    }
  }
  s.info = info;
  s.initialized = true;
  if (!options.axis_name.empty()) register_axis(options.axis_name);
}

void finalize() {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  s.gpu.reset();
  s.cpu.reset();
  s.store.reset();
  s.gpu_device = -1;
  g_installed = false;
  s.info = LaunchInfo{};
  s.initialized = false;
  mpi_finalize();
}

bool initialized() { return state().initialized; }
int rank() { return state().info.rank; }
int world_size() { return state().info.world_size; }
int local_rank() { return state().info.local_rank; }
bool is_main() { return rank() == 0; }
const LaunchInfo& launch_info() { return state().info; }

Communicator& communicator(Device device) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  if (device.is_cpu()) {
    if (s.cpu) return *s.cpu;
    if (s.info.world_size == 1) return local();
    LOOM_THROW(dist::DistError, "dist: no CPU communicator for a world of ", s.info.world_size);
  }
  if (!s.gpu && s.info.world_size == 1) return local();
  if (!s.gpu) {
    s.gpu = make_nccl_communicator(s.info.rank, s.info.world_size, device.index, share_nccl_id);
    s.gpu_device = device.index;
  }
  LOOM_CHECK(s.gpu_device == device.index, dist::DistError, "dist: this rank's NCCL communicator is on ",
             Device::cuda(s.gpu_device).str(), " but a collective was called on ", device.str(),
             " (one device per rank)");
  return *s.gpu;
}

void set_communicator(std::unique_ptr<Communicator> comm) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  LOOM_CHECK(comm != nullptr, ValueError, "dist::set_communicator: null communicator");
  s.info.rank = comm->rank();
  s.info.world_size = comm->world_size();
  s.cpu = std::move(comm);
  s.gpu.reset();
  s.initialized = true;
  g_installed = true;
}

void set_gpu_communicator(std::unique_ptr<Communicator> comm, int device) {
  State& s = state();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  LOOM_CHECK(comm != nullptr, ValueError, "dist::set_gpu_communicator: null communicator");
  LOOM_CHECK(comm->world_size() == s.info.world_size && comm->rank() == s.info.rank,
             dist::DistError, "dist::set_gpu_communicator: the communicator is rank ", comm->rank(),
             " of ", comm->world_size(), " but this process is rank ", s.info.rank, " of ",
             s.info.world_size);
  s.gpu = std::move(comm);
  s.gpu_device = device;
  s.initialized = true;
  g_installed = true;
}

void abort(int exit_code) {
  std::fflush(stdout);
  std::fflush(stderr);
  State& s = state();
  if (s.gpu) s.gpu->abort(exit_code);
  if (s.cpu) s.cpu->abort(exit_code);
  std::_Exit(exit_code);
}

// --- tensors ------------------------------------------------------------------------------------

Tensor all_reduce(const Tensor& x, ReduceOp op) {
  check_tensor("all_reduce", x);
  LOOM_CHECK(op == ReduceOp::Sum || floating(x.dtype()), DTypeError,
             "dist::all_reduce: mean needs a floating dtype, got ", dtype_name(x.dtype()));
  if (trivial_world()) return x;
  Communicator& c = communicator(x.device());
  if (needs_f32(c, x.dtype())) return all_reduce(x.to(DType::F32), op).to(x.dtype());
  Tensor out = fresh_copy(x);
  c.all_reduce(out.raw_data(), size_t(out.numel()), out.dtype(), op);
  return out;
}

Tensor broadcast(const Tensor& x, int root) {
  check_tensor("broadcast", x);
  LOOM_CHECK(root >= 0 && root < world_size(), dist::DistError, "dist::broadcast: root ", root,
             " is outside the world of ", world_size());
  if (trivial_world()) return x;
  Tensor out = fresh_copy(x);
  communicator(x.device()).broadcast(out.raw_data(), size_t(out.numel()), out.dtype(), root);
  return out;
}

Tensor all_gather(const Tensor& x) {
  check_tensor("all_gather", x);
  Shape shape = x.shape();
  shape.insert(shape.begin(), world_size());
  if (trivial_world()) return x.reshape(shape);
  Tensor in = x.contiguous();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  communicator(x.device()).all_gather(in.raw_data(), out.raw_data(), size_t(in.numel()),
                                      x.dtype());
  return out;
}

Tensor reduce_scatter(const Tensor& x, ReduceOp op) {
  check_tensor("reduce_scatter", x);
  int w = world_size();
  LOOM_CHECK(x.ndim() >= 1 && x.dim(0) % w == 0, ShapeError, "dist::reduce_scatter: the leading "
             "axis of ", shape_str(x.shape()), " must be a multiple of the world size ", w);
  LOOM_CHECK(op == ReduceOp::Sum || floating(x.dtype()), DTypeError,
             "dist::reduce_scatter: mean needs a floating dtype, got ", dtype_name(x.dtype()));
  if (trivial_world()) return x;
  Communicator& c = communicator(x.device());
  if (needs_f32(c, x.dtype())) return reduce_scatter(x.to(DType::F32), op).to(x.dtype());
  Shape shape = x.shape();
  shape[0] /= w;
  Tensor in = x.contiguous();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  c.reduce_scatter(in.raw_data(), out.raw_data(), size_t(out.numel()), x.dtype(), op);
  return out;
}

void barrier() {
  if (trivial_world()) return;
  communicator(Device::cpu()).barrier();
}

Tensor psum(const Tensor& x) {
  if (trivial_world()) return x;
  Tensor out = all_reduce(x.detach(), ReduceOp::Sum);
  if (!autograd::needs_grad({&x})) return out;
  return autograd::record("dist::psum", out, {x}, [](const Tensor& g) {
    return std::vector<Tensor>{all_reduce(g, ReduceOp::Sum)};
  });
}

Tensor pmean(const Tensor& x) {
  if (trivial_world()) return x;
  Tensor out = all_reduce(x.detach(), ReduceOp::Mean);
  if (!autograd::needs_grad({&x})) return out;
  return autograd::record("dist::pmean", out, {x}, [](const Tensor& g) {
    return std::vector<Tensor>{all_reduce(g, ReduceOp::Mean)};
  });
}

Tensor pmean_weighted(const Tensor& x, double weight) {
  check_tensor("pmean_weighted", x);
  LOOM_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64, DTypeError,
             "dist::pmean_weighted: needs float32 or float64, got ", dtype_name(x.dtype()),
             " (shape ", shape_str(x.shape()), ")");
  LOOM_CHECK(weight >= 0, ValueError, "dist::pmean_weighted: weight must be >= 0, got ", weight);
  if (trivial_world()) return x;
  // One collective: [weight * x..., weight] summed over ranks (counts are exact in float32 up
  // to 2^24), then divided by the total weight on the device: BatchNorm calls this in every
  // layer, and reading the total back would stall the GPU each time.
  Tensor flat = x.detach().reshape({-1});
  Tensor w = full({1}, weight, x.dtype(), x.device());
  Tensor packed = all_reduce(concatenate({flat * weight, w}, 0), ReduceOp::Sum);
  const int64_t n = flat.numel();
  Tensor total = slice_axis(packed, 0, n, n + 1);
  if (!total.is_cuda())
    LOOM_CHECK(total.to(DType::F64).item<double>() > 0, ValueError,
               "dist::pmean_weighted: the weights sum to 0 over the world (every rank passed 0; "
               "x ", shape_str(x.shape()), ")");
  Tensor out = (slice_axis(packed, 0, 0, n) / total).reshape(x.shape());
  if (!autograd::needs_grad({&x})) return out;
  Tensor share = (w / total).reshape({});  // this rank's weight / the total
  return autograd::record("dist::pmean_weighted", out, {x}, [share](const Tensor& g) {
    return std::vector<Tensor>{all_reduce(g, ReduceOp::Sum) * share};
  });
}

// --- trees --------------------------------------------------------------------------------------

namespace {

/// Applies `collective` to the leaves packed per (dtype, device) into flat buckets of at most
/// bucket_bytes(); leaves keep their order, shapes and dtypes.
Tree bucketed(const Tree& tree, const std::function<Tensor(const Tensor&)>& collective) {
  if (trivial_world()) return tree;
  std::vector<Tensor> leaves = tree.leaves();
  std::vector<Tensor> out(leaves.size());
  std::map<std::pair<int, std::string>, std::vector<size_t>> groups;  // ordered: same on all ranks
  for (size_t i = 0; i < leaves.size(); ++i)
    groups[{int(leaves[i].dtype()), leaves[i].device().str()}].push_back(i);
  const size_t limit = bucket_bytes();
  for (auto& [key, members] : groups) {
    size_t begin = 0;
    while (begin < members.size()) {
      size_t end = begin, bytes = 0;
      while (end < members.size() && (end == begin || bytes + leaves[members[end]].nbytes() <= limit))
        bytes += leaves[members[end++]].nbytes();
      std::vector<Tensor> parts;
      for (size_t k = begin; k < end; ++k) parts.push_back(leaves[members[k]].detach().reshape({-1}));
      Tensor flat = collective(parts.size() == 1 ? parts[0] : concatenate(parts, 0));
      int64_t offset = 0;
      for (size_t k = begin; k < end; ++k) {
        const Tensor& leaf = leaves[members[k]];
        out[members[k]] = slice_axis(flat, 0, offset, offset + leaf.numel()).reshape(leaf.shape());
        offset += leaf.numel();
      }
      begin = end;
    }
  }
  return tree.unflatten(out);
}

}  // namespace

Tree psum(const Tree& tree) {
  return bucketed(tree, [](const Tensor& t) { return all_reduce(t, ReduceOp::Sum); });
}
Tree pmean(const Tree& tree) {
  return bucketed(tree, [](const Tensor& t) { return all_reduce(t, ReduceOp::Mean); });
}
Tree broadcast(const Tree& tree, int root) {
  return bucketed(tree, [root](const Tensor& t) { return broadcast(t, root); });
}
void set_bucket_bytes(size_t bytes) {
  LOOM_CHECK(bytes > 0, ValueError, "dist::set_bucket_bytes: bytes must be positive");
  g_bucket_bytes = bytes;
}
size_t bucket_bytes() { return g_bucket_bytes.load(); }

void register_axis(const std::string& name) {
  nn::set_axis_reducer(name, [](const Tensor& stats, int64_t count) {
    return pmean_weighted(stats, double(count));
  });
}

Shard shard(int64_t size, int rank, int world, bool drop_remainder) {
  LOOM_CHECK(size >= 0 && world >= 1 && rank >= 0 && rank < world, ValueError,
             "dist::shard: need size >= 0 and 0 <= rank < world, got size ", size, ", rank ", rank,
             ", world ", world);
  int64_t base = size / world, extra = drop_remainder ? 0 : size % world;
  int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

}  // namespace loom::dist

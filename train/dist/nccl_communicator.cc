#include "train/dist/nccl_communicator.h"

#if LOOM_CUDA
#include "kernels/cuda/nccl.h"
#include "kernels/cuda/runtime.h"
#endif

namespace loom::dist {

#if !LOOM_CUDA

bool nccl_compiled() { return false; }
std::unique_ptr<Communicator> make_nccl_communicator(int, int, int, const ShareId&) {
  LOOM_THROW(dist::DistError, "dist: a collective on a CUDA tensor needs NCCL, but loom was built "
             "without CUDA");
}

#else

namespace {

cuda::NcclOp nccl_op(ReduceOp op) {
  return op == ReduceOp::Sum ? cuda::NcclOp::Sum : cuda::NcclOp::Avg;
}

/// Collectives on loom's compute stream of the device, so they order with the kernels that
/// produce and consume the buffers; each waits (with the watchdog) before returning, which keeps
/// the host-side semantics of the MPI path.
class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const void* id, int rank, int world, int device)
      : comm_(id, rank, world, device) {}
  std::string backend() const override { return "nccl"; }
  int rank() const override { return comm_.rank(); }
  int world_size() const override { return comm_.world_size(); }
  bool reduces(DType) const override { return true; }

  void all_reduce(void* buf, size_t count, DType dtype, ReduceOp op) override {
    run("all_reduce", [&](cuda::Stream s) { comm_.all_reduce(buf, buf, count, dtype, nccl_op(op), s); });
  }
  std::unique_ptr<PendingCollective> all_reduce_async(void* buf, size_t count, DType dtype,
                                                      ReduceOp op) override {
    cuda::Stream s = cuda::current_stream(comm_.device());
    try {
      return std::make_unique<Pending>(
          comm_, comm_.all_reduce_on_side_stream(buf, count, dtype, nccl_op(op), s));
    } catch (const CudaError& e) {
      LOOM_THROW(dist::DistError, "dist (nccl): ", e.what());
    }
  }
  void broadcast(void* buf, size_t count, DType dtype, int root) override {
    run("broadcast", [&](cuda::Stream s) { comm_.broadcast(buf, buf, count, dtype, root, s); });
  }
  void all_gather(const void* send, void* recv, size_t count, DType dtype) override {
    run("all_gather", [&](cuda::Stream s) { comm_.all_gather(send, recv, count, dtype, s); });
  }
  void reduce_scatter(const void* send, void* recv, size_t count, DType dtype,
                      ReduceOp op) override {
    run("reduce_scatter",
        [&](cuda::Stream s) { comm_.reduce_scatter(send, recv, count, dtype, nccl_op(op), s); });
  }
  void barrier() override {
    run("barrier", [&](cuda::Stream s) { comm_.barrier(s, timeout()); });
  }
  void abort(int) override { comm_.abort(); }

 private:
  /// A collective on the side stream; wait() orders the compute stream after it.
  struct Pending final : PendingCollective {
    Pending(cuda::NcclComm& c, void* e) : comm(c), event(e) {}
    ~Pending() override { cuda::NcclComm::destroy_event(event); }
    bool test() override { return event == nullptr || comm.event_done(event); }
    void wait() override {
      if (!event) return;
      void* e = event;
      event = nullptr;  // wait_event destroys it, also when it throws
      try {
        comm.wait_event(e, cuda::current_stream(comm.device()), timeout(), "all_reduce");
      } catch (const CudaError& err) {
        LOOM_THROW(dist::DistError, "dist (nccl): ", err.what());
      }
    }
    cuda::NcclComm& comm;
    void* event;
  };

  template <typename F>
  void run(const char* what, F enqueue) {
    cuda::Stream s = cuda::current_stream(comm_.device());
    try {
      enqueue(s);
      comm_.wait(s, timeout(), what);
    } catch (const CudaError& e) {
      LOOM_THROW(dist::DistError, "dist (nccl): ", e.what());
    }
  }
  cuda::NcclComm comm_;
};

}  // namespace

bool nccl_compiled() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(int rank, int world, int device,
                                                     const ShareId& share_id) {
  uint8_t id[cuda::kNcclUniqueIdBytes] = {};
  if (rank == 0) cuda::NcclComm::make_unique_id(id);
  share_id(id, sizeof id);
  return std::make_unique<NcclCommunicator>(id, rank, world, device);
}

#endif

}  // namespace loom::dist

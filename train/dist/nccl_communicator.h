// The NCCL communicator (CUDA buffers, on loom's compute stream of the device), built on the
// kernels/cuda/nccl.h wrapper: collectives are enqueued and then waited for with
// ncclCommGetAsyncError polling against dist::timeout(); on error or timeout the NCCL
// communicator is aborted (ncclCommAbort) and DistError is thrown. Compiled with CUDA only.
#pragma once
#include <functional>
#include <memory>

#include "train/dist/communicator.h"

namespace loom::dist {

bool nccl_compiled();
/// Called on every rank with the unique id's bytes: rank 0's bytes must reach every rank
/// (broadcast over MPI or the TCP store).
using ShareId = std::function<void(void* id, size_t bytes)>;
/// A communicator of `world` ranks on CUDA device `device`; throws DistError without CUDA.
std::unique_ptr<Communicator> make_nccl_communicator(int rank, int world, int device,
                                                     const ShareId& share_id);

}  // namespace loom::dist

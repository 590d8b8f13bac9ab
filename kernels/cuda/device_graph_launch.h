// A graph launched from the device: one kernel that tail-launches an executable graph
// instantiated for device launch, so the host's cost of a replay is one tiny launch however
// many nodes the graph has (kernels/cuda/graph.h's device launch). Includes no CUDA header.
#pragma once

#include "kernels/cuda/runtime.h"

struct CUgraphExec_st;

namespace loom::cuda {

/// Queues on `stream` a one-thread kernel that tail-launches `graph` and writes the device-side
/// cudaGraphLaunch's status (0: launched) to status[0] in device memory; when status[1] is
/// nonzero a failed launch traps instead (a sticky error at the next synchronisation). Returns
/// the kernel launch's own status (a cudaError_t; 0: queued).
int enqueue_tail_launch(CUgraphExec_st* graph, int* status, Stream stream);

}  // namespace loom::cuda

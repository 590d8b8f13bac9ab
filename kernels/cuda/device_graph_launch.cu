// Built apart from the other kernels (CMakeLists.txt: loom_device_launch): the device-side
// cudaGraphLaunch is part of the CUDA device runtime, which needs relocatable device code and a
// device link with cudadevrt.
#include <cuda_runtime.h>

#include "kernels/cuda/device_graph_launch.h"

namespace loom::cuda {
namespace {

// A tail launch starts `graph` when the launching graph completes, and stream-ordered work after
// the launching graph waits for it: the replay stays in order on loom's stream. Once status[1]
// is set (the first launch was checked), a failed launch traps: the step would otherwise be
// skipped in silence, and the trap fails the next synchronisation with an error instead.
__global__ void tail_launch_kernel(cudaGraphExec_t graph, int* status) {
  const cudaError_t launched = cudaGraphLaunch(graph, cudaStreamGraphTailLaunch);
  status[0] = int(launched);
  if (launched != cudaSuccess && status[1] != 0) __trap();
}

}  // namespace

int enqueue_tail_launch(CUgraphExec_st* graph, int* status, Stream stream) {
  tail_launch_kernel<<<1, 1, 0, stream>>>(graph, status);
  return int(cudaGetLastError());
}

}  // namespace loom::cuda

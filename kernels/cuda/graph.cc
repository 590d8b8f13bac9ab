#include "kernels/cuda/graph.h"

#include <cuda_runtime_api.h>

#include "core/error.h"

namespace loom::cuda {

Graph::~Graph() {
  if (exec_) cudaGraphExecDestroy(exec_);
}

void Graph::begin_capture() {
  set_device(device_);
  LOOM_CUDA_CHECK(cudaStreamBeginCapture(current_stream(device_), cudaStreamCaptureModeRelaxed));
}

void Graph::end_capture() {
  cudaGraph_t graph = nullptr;
  LOOM_CUDA_CHECK(cudaStreamEndCapture(current_stream(device_), &graph));
  cudaGraphExec_t exec = nullptr;
  cudaError_t s = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);  // the executable graph keeps what it needs
  LOOM_CUDA_CHECK(s);
  exec_ = exec;
}

void Graph::abandon_capture() noexcept {
  try {
    cudaGraph_t graph = nullptr;
    if (cudaStreamEndCapture(current_stream(device_), &graph) == cudaSuccess && graph)
      cudaGraphDestroy(graph);
  } catch (...) {  // the capture's own error is what the caller reports
  }
  cudaGetLastError();
}

void Graph::replay() {
  LOOM_CHECK(exec_ != nullptr, ValueError, "cuda::Graph::replay: nothing was captured");
  set_device(device_);
  LOOM_CUDA_CHECK(cudaGraphLaunch(exec_, current_stream(device_)));
}

}  // namespace loom::cuda

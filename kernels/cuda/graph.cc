#include "kernels/cuda/graph.h"

#include <cuda_runtime_api.h>

#include <chrono>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/device_graph_launch.h"

namespace loom::cuda {

Graph::~Graph() {
  if (launcher_) {  // a device-launched replay may still be running
    try {
      set_device(device_);
      if (cudaStreamSynchronize(current_stream(device_)) != cudaSuccess) cudaGetLastError();
    } catch (...) {  // a destructor must not throw; a broken context frees nothing anyway
    }
  }
  drop_launcher();
  if (exec_) cudaGraphExecDestroy(exec_);
}

void Graph::begin_capture() {
  set_device(device_);
  LOOM_CUDA_CHECK(cudaStreamBeginCapture(current_stream(device_), cudaStreamCaptureModeRelaxed));
}

namespace {

GraphNodeCounts count_nodes(cudaGraph_t graph) {
  size_t n = 0;
  LOOM_CUDA_CHECK(cudaGraphGetNodes(graph, nullptr, &n));
  std::vector<cudaGraphNode_t> nodes(n);
  LOOM_CUDA_CHECK(cudaGraphGetNodes(graph, nodes.data(), &n));
  GraphNodeCounts counts;
  for (cudaGraphNode_t node : nodes) {
    cudaGraphNodeType type;
    LOOM_CUDA_CHECK(cudaGraphNodeGetType(node, &type));
    if (type == cudaGraphNodeTypeKernel) ++counts.kernels;
    else if (type == cudaGraphNodeTypeMemcpy) ++counts.copies;
    else if (type == cudaGraphNodeTypeMemset) ++counts.memsets;
    else ++counts.other;
  }
  // The shape is a diagnostic: if the driver will not say, it stays unknown (edges = -1) rather
  // than failing the capture. Edge data is asked for too, since edges that carry some (a
  // programmatic dependent launch's) make a query without it an error.
  auto unknown = [&] {
    cudaGetLastError();
    counts.edges = -1;
    return counts;
  };
  size_t edges = 0, roots = 0;
  if (cudaGraphGetEdges(graph, nullptr, nullptr, nullptr, &edges) != cudaSuccess ||
      cudaGraphGetRootNodes(graph, nullptr, &roots) != cudaSuccess)
    return unknown();
  std::vector<cudaGraphNode_t> from(edges), to(edges);
  std::vector<cudaGraphEdgeData> data(edges);
  if (cudaGraphGetEdges(graph, from.data(), to.data(), data.data(), &edges) != cudaSuccess)
    return unknown();
  std::unordered_map<cudaGraphNode_t, int> out_degree, in_degree;
  bool branches = false;
  for (size_t i = 0; i < edges; ++i)
    branches = branches || ++out_degree[from[i]] > 1 || ++in_degree[to[i]] > 1;
  counts.edges = int64_t(edges);
  counts.straight_line = n > 0 && roots == 1 && !branches;
  return counts;
}

}  // namespace

void Graph::end_capture() {
  cudaGraph_t graph = nullptr;
  LOOM_CUDA_CHECK(cudaStreamEndCapture(current_stream(device_), &graph));
  try {
    nodes_ = count_nodes(graph);
  } catch (...) {
    cudaGraphDestroy(graph);
    throw;
  }
  cudaGraphExec_t exec = nullptr;
  cudaError_t s = cudaErrorUnknown;
  if (want_device_launch_) {
    // Device graphs take kernel, memcpy and memset nodes on one device, device memory only;
    // a graph the driver refuses is launched from the host.
    s = cudaGraphInstantiate(&exec, graph, cudaGraphInstantiateFlagDeviceLaunch);
    if (s != cudaSuccess) {
      device_launch_refusal_ = detail::cat("instantiating for device launch: ", cudaGetErrorName(s));
      cudaGetLastError();
      exec = nullptr;
    }
  }
  const bool for_device = exec != nullptr;
  if (!exec) s = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);  // the executable graph keeps what it needs
  LOOM_CUDA_CHECK(s);
  exec_ = exec;
  if (for_device) make_launcher();
}

// The launching kernel must itself run in a graph, so the launcher is a captured one-kernel
// graph. A device graph must be uploaded before the device launches it. Any failure leaves
// host launches.
void Graph::make_launcher() noexcept {
  cudaGraph_t graph = nullptr;
  try {
    const Stream stream = current_stream(device_);
    LOOM_CUDA_CHECK(cudaGraphUpload(exec_, stream));
    void* status = nullptr;
    LOOM_CUDA_CHECK(cudaMalloc(&status, 2 * sizeof(int)));
    launch_status_ = static_cast<int*>(status);
    // status[0] = -1 (not run), status[1] = 0 (not checked yet: a failure is reported, no trap)
    LOOM_CUDA_CHECK(cudaMemsetAsync(launch_status_, 0xff, sizeof(int), stream));
    LOOM_CUDA_CHECK(cudaMemsetAsync(launch_status_ + 1, 0, sizeof(int), stream));
    LOOM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
    try {
      LOOM_CUDA_CHECK(cudaError_t(enqueue_tail_launch(exec_, launch_status_, stream)));
    } catch (...) {
      abandon_capture();
      throw;
    }
    LOOM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t launcher = nullptr;
    LOOM_CUDA_CHECK(cudaGraphInstantiate(&launcher, graph, 0));
    launcher_ = launcher;
  } catch (const std::exception& e) {
    device_launch_refusal_ = detail::cat("making the launcher: ", e.what());
  } catch (...) {
    device_launch_refusal_ = "making the launcher failed";
  }
  if (!launcher_) {
    drop_launcher();
    cudaGetLastError();
  }
  if (graph) cudaGraphDestroy(graph);
}

void Graph::drop_launcher() noexcept {
  if (launcher_) cudaGraphExecDestroy(launcher_);
  if (launch_status_) cudaFree(launch_status_);
  launcher_ = nullptr;
  launch_status_ = nullptr;
}

// The device-side launch reports a failure only to the kernel that called it, so the first
// replay reads the status back. If the launch failed, the graph did not run: it runs from the
// host now, and so does every later replay. If it worked, later launches trap on failure. If the
// check itself fails, the launcher is dropped too: unarmed, it would skip failed launches
// silently.
void Graph::check_device_launch() {
  launch_checked_ = true;
  const Stream stream = current_stream(device_);
  note_host_wait("the first device launch of a CUDA graph, checked");
  int status = -1;
  try {
    LOOM_CUDA_CHECK(cudaMemcpyAsync(&status, launch_status_, sizeof(int),
                                    cudaMemcpyDeviceToHost, stream));
    LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (status == 0) {
      const int armed = 1;
      LOOM_CUDA_CHECK(cudaMemcpyAsync(launch_status_ + 1, &armed, sizeof(int),
                                      cudaMemcpyHostToDevice, stream));
      LOOM_CUDA_CHECK(cudaStreamSynchronize(stream));
      return;
    }
  } catch (...) {
    drop_launcher();
    throw;
  }
  device_launch_refusal_ =
      status == -1 ? std::string("the launcher kernel did not run (its status was never written)")
                   : detail::cat("the device-side launch returned ",
                                 cudaGetErrorName(cudaError_t(status)));
  drop_launcher();
  cudaGetLastError();
  LOOM_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
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
  const auto start = std::chrono::steady_clock::now();
  LOOM_CUDA_CHECK(cudaGraphLaunch(launcher_ ? launcher_ : exec_, current_stream(device_)));
  last_launch_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (launcher_ && !launch_checked_) check_device_launch();
}

}  // namespace loom::cuda

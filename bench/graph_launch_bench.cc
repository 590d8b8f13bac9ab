// The host time of one CUDA graph launch against the graph's size and kinds of node: what a
// loom::jit step's launch costs (loom_bench's graph_launch_ms) and whether copy and memset nodes
// cost more than kernels. Each graph is a straight line of tiny nodes on loom's compute stream,
// captured as loom::jit captures a step. One JSON line per graph:
//
//   loom_graph_launch_bench [--launches N]
//   {"nodes":1000,"every_tenth":"memset","launch_us":...,"per_node_ns":...,"counts":{...}}
#include <cuda_runtime_api.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "core/dtype.h"
#include "kernels/cuda/copy.h"
#include "kernels/cuda/graph.h"
#include "kernels/cuda/runtime.h"

using namespace loom;

namespace {

constexpr int kDevice = 0;

/// A graph of `nodes` nodes: fill kernels, with every tenth node a memset or a copy instead
/// when `every_tenth` says so ("kernel" keeps them all kernels).
std::unique_ptr<cuda::Graph> capture(int nodes, const std::string& every_tenth, void* a, void* b) {
  auto graph = std::make_unique<cuda::Graph>(kDevice);
  cuda::Stream stream = cuda::current_stream(kDevice);
  graph->begin_capture();
  for (int i = 0; i < nodes; ++i) {
    if (i % 10 == 9 && every_tenth == "memset")
      LOOM_CUDA_CHECK(cudaMemsetAsync(a, 0, 256 * sizeof(float), stream));
    else if (i % 10 == 9 && every_tenth == "copy")
      LOOM_CUDA_CHECK(cudaMemcpyAsync(b, a, 256 * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    else
      cuda::fill(a, DType::F32, 256, double(i), stream);
  }
  graph->end_capture();
  return graph;
}

nlohmann::json measure(int nodes, const std::string& every_tenth, int launches, void* a, void* b) {
  std::unique_ptr<cuda::Graph> graph = capture(nodes, every_tenth, a, b);
  std::vector<double> launch_us;
  for (int i = 0; i < launches + 5; ++i) {
    graph->replay();
    cuda::synchronize(kDevice);  // each launch into an empty queue, as a step's launch is
    if (i >= 5) launch_us.push_back(graph->last_launch_ms() * 1000.0);
  }
  const cuda::GraphNodeCounts& n = graph->node_counts();
  const double us = bench::median(launch_us);
  return {{"nodes", nodes},
          {"every_tenth", every_tenth},
          {"launch_us", us},
          {"per_node_ns", us * 1000.0 / nodes},
          {"counts", {{"kernels", n.kernels}, {"copies", n.copies}, {"memsets", n.memsets}, {"other", n.other}}},
          {"straight_line", n.straight_line}};
}

}  // namespace

int main(int argc, char** argv) {
  int launches = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--launches") {
      launches = std::stoi(argv[i + 1]);
    } else {
      std::cerr << "usage: loom_graph_launch_bench [--launches N]\n";
      return 2;
    }
  }
  if (cuda::device_count() == 0) {
    std::cout << nlohmann::json{{"error", "no CUDA device"}}.dump() << "\n";
    return 1;
  }
  cuda::set_device(kDevice);
  void *a = nullptr, *b = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(&a, 256 * sizeof(float)));
  LOOM_CUDA_CHECK(cudaMalloc(&b, 256 * sizeof(float)));
  for (int nodes : {10, 100, 500, 1000, 2000})
    for (const char* kind : {"kernel", "memset", "copy"})
      std::cout << measure(nodes, kind, launches, a, b).dump() << std::endl;
  cudaFree(a);
  cudaFree(b);
}

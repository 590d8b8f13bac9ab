// The host time of one CUDA graph launch against the graph's size and kinds of node: what a
// loom::jit step's launch costs (loom_bench's graph_launch_ms), whether copy and memset nodes
// cost more than kernels, and what launching from the device (JitOptions::device_launch) costs
// the host instead. Each graph is a straight line of tiny nodes on loom's compute stream,
// captured as loom::jit captures a step, opened by a 256 MiB memset and closed by a marker
// written to `b`; after every launch the marker is copied back in stream order, so "ordered"
// says whether the stream waited for the whole graph. One JSON line per graph:
//
//   loom_graph_launch_bench [--launches N]
//   {"nodes":1000,"every_tenth":"memset","launch":"host","launch_us":...,"per_node_ns":...,
//    "ordered":true,"device_launched":false,"counts":{...}}
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

/// Bytes of the memset that opens every graph: long enough (about 0.1 ms) that a launch the
/// stream did not wait for would still be running when the marker is read.
constexpr size_t kOpeningBytes = size_t(256) << 20;

/// A graph of `nodes` nodes: fill kernels, with every tenth node a memset or a copy instead
/// when `every_tenth` says so ("kernel" keeps them all kernels), between an opening memset of
/// `big` and b[0] = nodes as the last node.
std::unique_ptr<cuda::Graph> capture(int nodes, const std::string& every_tenth, bool device_launch,
                                     void* a, void* b, void* big) {
  auto graph = std::make_unique<cuda::Graph>(kDevice, device_launch);
  cuda::Stream stream = cuda::current_stream(kDevice);
  graph->begin_capture();
  LOOM_CUDA_CHECK(cudaMemsetAsync(big, 0, kOpeningBytes, stream));
  for (int i = 0; i < nodes; ++i) {
    if (i % 10 == 9 && every_tenth == "memset")
      LOOM_CUDA_CHECK(cudaMemsetAsync(a, 0, 256 * sizeof(float), stream));
    else if (i % 10 == 9 && every_tenth == "copy")
      LOOM_CUDA_CHECK(cudaMemcpyAsync(b, a, 256 * sizeof(float), cudaMemcpyDeviceToDevice, stream));
    else
      cuda::fill(a, DType::F32, 256, double(i), stream);
  }
  cuda::fill(b, DType::F32, 1, double(nodes), stream);
  graph->end_capture();
  return graph;
}

nlohmann::json measure(int nodes, const std::string& every_tenth, bool device_launch, int launches,
                       void* a, void* b, void* big) {
  std::unique_ptr<cuda::Graph> graph = capture(nodes, every_tenth, device_launch, a, b, big);
  cuda::Stream stream = cuda::current_stream(kDevice);
  std::vector<double> launch_us;
  bool ordered = true;
  for (int i = 0; i < launches + 5; ++i) {
    LOOM_CUDA_CHECK(cudaMemsetAsync(b, 0, sizeof(float), stream));
    cuda::synchronize(kDevice);  // each launch into an empty queue, as a step's launch is
    graph->replay();
    float marker = 0;  // read in stream order: the stream must wait for the whole graph
    LOOM_CUDA_CHECK(cudaMemcpyAsync(&marker, b, sizeof(float), cudaMemcpyDeviceToHost, stream));
    cuda::synchronize(kDevice);
    ordered = ordered && marker == float(nodes);
    if (i >= 5) launch_us.push_back(graph->last_launch_ms() * 1000.0);
  }
  const cuda::GraphNodeCounts& n = graph->node_counts();
  const double us = bench::median(launch_us);
  return {{"nodes", nodes},
          {"every_tenth", every_tenth},
          {"launch", device_launch ? "device" : "host"},
          {"launch_us", us},
          {"per_node_ns", us * 1000.0 / nodes},
          {"ordered", ordered},
          {"device_launched", graph->device_launched()},
          {"refused", graph->device_launch_refusal()},
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
  void *a = nullptr, *b = nullptr, *big = nullptr;
  LOOM_CUDA_CHECK(cudaMalloc(&a, 256 * sizeof(float)));
  LOOM_CUDA_CHECK(cudaMalloc(&b, 256 * sizeof(float)));
  LOOM_CUDA_CHECK(cudaMalloc(&big, kOpeningBytes));
  for (bool device_launch : {false, true})
    for (int nodes : {10, 100, 500, 1000, 2000})
      for (const char* kind : {"kernel", "memset", "copy"})
        std::cout << measure(nodes, kind, device_launch, launches, a, b, big).dump() << std::endl;
  cudaFree(a);
  cudaFree(b);
  cudaFree(big);
}

// CUDA graph capture and replay on loom's compute stream (the mechanism behind core/jit.h).
// Includes no CUDA header.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/cuda/runtime.h"

struct CUgraphExec_st;

namespace loom::cuda {

/// A captured graph's nodes by kind, and its shape: the host's cost of a launch grows with the
/// nodes, except (by NVIDIA's account, with drivers from CUDA 12.6 on) in a straight line.
struct GraphNodeCounts {
  int64_t kernels = 0, copies = 0, memsets = 0, other = 0;
  int64_t edges = 0;             // -1: the driver would not say
  bool straight_line = false;  // one root, and no node with two dependencies or two dependents
};

class Graph {
 public:
  /// device_launch: replays launch the graph from the device where the driver allows it (one
  /// small host launch of a kernel that tail-launches the graph, kernels/cuda/
  /// device_graph_launch.h), so a replay's host cost does not grow with the nodes; from the
  /// host otherwise.
  explicit Graph(int device, bool device_launch = false)
      : device_(device), want_device_launch_(device_launch) {}
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  /// Starts recording the work queued on the device's compute stream (relaxed mode: allocating
  /// is allowed, synchronising with the host is an error).
  void begin_capture();
  /// Stops recording, counts the nodes and instantiates the graph (for device launch too, when
  /// asked and allowed).
  void end_capture();
  /// After a failed capture: ends it and drops what was recorded, leaving the stream usable.
  void abandon_capture() noexcept;
  /// Queues one replay on the compute stream.
  void replay();
  bool ready() const { return exec_ != nullptr; }
  const GraphNodeCounts& node_counts() const { return nodes_; }
  /// Host time the last replay's launch call took.
  double last_launch_ms() const { return last_launch_ms_; }
  /// Whether replays launch the graph from the device (asked for, instantiated so, and, after
  /// the first replay, seen to work).
  bool device_launched() const { return launcher_ != nullptr; }
  /// Why replays launch from the host although device launch was asked for ("" otherwise).
  const std::string& device_launch_refusal() const { return device_launch_refusal_; }

 private:
  void make_launcher() noexcept;
  void drop_launcher() noexcept;
  void check_device_launch();

  int device_;
  bool want_device_launch_;
  CUgraphExec_st* exec_ = nullptr;
  CUgraphExec_st* launcher_ = nullptr;  // one kernel that tail-launches exec_
  int* launch_status_ = nullptr;        // [the launch's status, whether a failure traps]
  std::string device_launch_refusal_;
  bool launch_checked_ = false;
  GraphNodeCounts nodes_;
  double last_launch_ms_ = 0;
};

}  // namespace loom::cuda

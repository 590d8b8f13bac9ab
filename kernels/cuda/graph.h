// CUDA graph capture and replay on loom's compute stream (the mechanism behind core/jit.h).
// Includes no CUDA header.
#pragma once
#include "kernels/cuda/runtime.h"

struct CUgraphExec_st;

namespace loom::cuda {

class Graph {
 public:
  explicit Graph(int device) : device_(device) {}
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  /// Starts recording the work queued on the device's compute stream (relaxed mode: allocating
  /// is allowed, synchronising with the host is an error).
  void begin_capture();
  /// Stops recording and instantiates the graph.
  void end_capture();
  /// After a failed capture: ends it and drops what was recorded, leaving the stream usable.
  void abandon_capture() noexcept;
  /// Queues one replay on the compute stream.
  void replay();
  bool ready() const { return exec_ != nullptr; }

 private:
  int device_;
  CUgraphExec_st* exec_ = nullptr;
};

}  // namespace loom::cuda

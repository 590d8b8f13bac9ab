// Device time per kernel name, read through CUPTI's activity API: where a GPU step's time goes,
// without a profiler on the machine. libcupti is loaded at run time (dlopen), so programs that
// link this run where CUPTI is missing and only the trace is unavailable.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom::bench {

struct KernelTime {
  std::string name;  // demangled where CUPTI gives a mangled name
  int64_t calls = 0;
  double total_ms = 0;
};

/// Starts recording every kernel launched from now on. False (and `why`) when CUPTI is absent.
bool kernel_trace_start(std::string* why);
/// Stops recording and returns the kernels by total device time, largest first.
std::vector<KernelTime> kernel_trace_stop();

}  // namespace loom::bench

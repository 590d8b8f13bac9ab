// Shared glue for the libFuzzer targets: every reader must either succeed or throw a loom::Error;
// any other exception, crash or sanitizer report is a finding.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <unistd.h>
#include <vector>

#include "core/error.h"

namespace loom_fuzz {

inline std::vector<uint8_t> to_vector(const uint8_t* data, size_t size) {
  return std::vector<uint8_t>(data, data + size);
}

// Runs `f`; a loom::Error is the expected way to reject input, anything else aborts so libFuzzer
// records the input.
template <typename F>
void expect_loom_error_or_success(F&& f) {
  try {
    f();
  } catch (const loom::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "non-loom exception escaped a reader: %s\n", e.what());
    std::abort();
  }
}

// Readers with only a path-based entry point get the bytes through a per-process temporary file.
inline std::string write_temp(const uint8_t* data, size_t size, const char* suffix) {
  std::string path = std::string("/tmp/loom_fuzz_") + std::to_string(::getpid()) + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace loom_fuzz

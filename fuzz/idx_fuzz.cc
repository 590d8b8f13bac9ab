// libFuzzer target: the IDX reader. It only has a path-based entry point, so the bytes go
// through a temporary file (plain or gzip is detected from the content, so both paths are fuzzed).
#include <cstdio>

#include "fuzz/fuzz_common.h"
#include "train/io/idx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string path = loom_fuzz::write_temp(data, size, ".idx");
  loom_fuzz::expect_loom_error_or_success([&] { (void)loom::train::load_idx(path); });
  loom_fuzz::expect_loom_error_or_success([&] { (void)loom::train::load_idx_images(path); });
  loom_fuzz::expect_loom_error_or_success([&] { (void)loom::train::load_idx_labels(path); });
  std::remove(path.c_str());
  return 0;
}

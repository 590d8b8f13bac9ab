// libFuzzer target: safetensors_from_bytes on arbitrary bytes, then (when it parses) the tree
// conversion, which walks the names and shapes the header declared.
#include "fuzz/fuzz_common.h"
#include "train/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loom_fuzz::expect_loom_error_or_success([&] {
    auto file = loom::train::safetensors_from_bytes(loom_fuzz::to_vector(data, size), "fuzz");
    (void)file;
  });
  return 0;
}

// libFuzzer target: the Flax msgpack reader (msgpack decoding plus Flax's ndarray/chunk
// extensions) on arbitrary bytes; depth and length bombs must be typed errors.
#include "fuzz/fuzz_common.h"
#include "train/io/flax_msgpack.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loom_fuzz::expect_loom_error_or_success([&] {
    auto tree = loom::train::flax_from_bytes(loom_fuzz::to_vector(data, size), "fuzz");
    (void)tree;
  });
  return 0;
}

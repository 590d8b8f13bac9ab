// libFuzzer target: text_corpus_from_bytes. The first byte picks the validation fraction
// (including out-of-range ones, which must be ValueError) and the token dtype.
#include "fuzz/fuzz_common.h"
#include "train/io/text_corpus.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    loom_fuzz::expect_loom_error_or_success(
        [&] { (void)loom::train::text_corpus_from_bytes({}, "fuzz"); });
    return 0;
  }
  // Fractions from -0.25 to 1.25 in steps of 1/64 exercise both bounds.
  double fraction = (static_cast<int>(data[0] & 0x7f) - 16) / 64.0;
  loom::DType dtype = (data[0] & 0x80) ? loom::DType::I32 : loom::DType::U8;
  auto bytes = loom_fuzz::to_vector(data + 1, size - 1);
  loom_fuzz::expect_loom_error_or_success(
      [&] { (void)loom::train::text_corpus_from_bytes(bytes, "fuzz", fraction, dtype); });
  return 0;
}

// libFuzzer target: cifar_from_bytes for both record layouts (3073 and 3074 bytes).
#include "fuzz/fuzz_common.h"
#include "train/io/cifar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto bytes = loom_fuzz::to_vector(data, size);
  for (auto kind : {loom::train::CifarKind::Cifar10, loom::train::CifarKind::Cifar100})
    loom_fuzz::expect_loom_error_or_success(
        [&] { (void)loom::train::cifar_from_bytes(bytes, kind, "fuzz"); });
  return 0;
}

// Inputs found by the fuzz targets (fuzz/, scripts/fuzz.sh), kept as regression tests. Each must
// be rejected with a typed error or read correctly; under scripts/sanitize.sh (ASan + fatal UBSan)
// they must also be free of undefined behaviour.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "train/io/idx.h"
#include "train/io/safetensors.h"

namespace loom {
namespace {

std::string write_temp(const std::vector<uint8_t>& bytes, const std::string& name) {
  auto path = std::filesystem::temp_directory_path() /
              ("loom_regression_" + std::to_string(::getpid()) + "_" + name);
  FILE* f = std::fopen(path.c_str(), "wb");
  EXPECT_NE(f, nullptr);
  std::fwrite(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  return path.string();
}

// idx_fuzz crash-b29376e3 (fuzz/corpus/idx_fuzz/regression_zero_dim_overflow.idx): a 4-D header
// [151808, 65532, 1023347457, 0]. The u64 element count is 0 and matches the empty body, but the
// partial products overflow int64, and shape_numel (core/shape.cc) multiplied them as signed
// integers in Tensor::empty: UBSan "signed integer overflow" at core/shape.cc:18.
TEST(ReaderRegressions, IdxZeroDimWithHugeOtherDims) {
  const std::vector<uint8_t> bytes = {0x00, 0x00, 0x08, 0x04, 0x00, 0x02, 0x51, 0x00, 0x00, 0x00,
                                      0xff, 0xfc, 0x3c, 0xff, 0x0b, 0x01, 0x00, 0x00, 0x00, 0x00};
  std::string path = write_temp(bytes, "zero_dim.idx");
  try {
    Tensor t = train::load_idx(path);
    EXPECT_EQ(t.numel(), 0);
    EXPECT_EQ(t.shape(), (Shape{151808, 65532, 1023347457, 0}));
  } catch (const Error&) {
    // Rejecting the header (a FormatError naming the file) is equally fine.
  }
  std::remove(path.c_str());
}

// idx_fuzz crash-b945cdb7 (fuzz/corpus/idx_fuzz/regression_zero_dim_stride_overflow.idx): a 6-D
// header [8, 512, 0, 33554435, 14803425, 3789676847] with an empty body. The element count is 0,
// but the row-major strides of the dimensions left of the zero multiply past 2^63: UBSan "signed
// integer overflow" in contiguous_strides (core/shape.cc) while allocating the empty tensor.
TEST(ReaderRegressions, IdxZeroDimLeftOfHugeDims) {
  const std::vector<uint8_t> bytes = {0x00, 0x00, 0x08, 0x06, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00,
                                      0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x03,
                                      0x00, 0xe1, 0xe1, 0xe1, 0xe1, 0xe1, 0xe1, 0x2f};
  std::string path = write_temp(bytes, "zero_dim_strides.idx");
  try {
    Tensor t = train::load_idx(path);
    EXPECT_EQ(t.numel(), 0);
    EXPECT_EQ(t.shape(), (Shape{8, 512, 0, 33554435, 14803425, 3789676847}));
  } catch (const Error&) {
    // Rejecting the header (a FormatError naming the file) is equally fine.
  }
  std::remove(path.c_str());
  // Non-empty shapes whose strides overflow are still refused.
  EXPECT_THROW(Tensor::empty({int64_t(1) << 40, int64_t(1) << 40}, DType::U8), ShapeError);
}

// The same shape pattern through safetensors (checked while triaging the IDX finding): a zero
// dimension next to dimensions whose product overflows.
TEST(ReaderRegressions, SafetensorsZeroDimWithHugeOtherDims) {
  std::string header =
      R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})";
  const uint64_t n = header.size();
  std::vector<uint8_t> bytes(8 + n);
  for (size_t i = 0; i < 8; ++i) bytes[i] = uint8_t(n >> (8 * i));
  for (size_t i = 0; i < n; ++i) bytes[8 + i] = uint8_t(header[i]);
  try {
    auto file = train::safetensors_from_bytes(bytes, "regression");
    (void)file;
  } catch (const Error&) {
  }
}

}  // namespace
}  // namespace loom

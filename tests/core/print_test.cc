// Printing: header line, numpy-like nesting, per-dtype value formats, summarisation past 1000.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "core/tensor.h"

namespace loom {
namespace {

TEST(Print, Float32Matrix) {
  Tensor t = arange(6).reshape({2, 3});
  EXPECT_EQ(t.str(),
            "Tensor(shape=[2, 3], dtype=float32, device=cpu)\n"
            "[[0, 1, 2],\n"
            " [3, 4, 5]]");
  std::ostringstream os;
  os << t;
  EXPECT_EQ(os.str(), t.str());
}

TEST(Print, FloatFormats) {
  Tensor t = from_vector<float>({0.5f, -1.25f, 1e-7f, 123456789.0f, 0.1f, -0.0f}, {6});
  EXPECT_EQ(t.str(),
            "Tensor(shape=[6], dtype=float32, device=cpu)\n"
            "[0.5, -1.25, 1e-07, 1.23457e+08, 0.1, -0]");
  Tensor d = from_vector<double>({M_PI, 1.0 / 3, 2}, {3});
  EXPECT_EQ(d.str(),
            "Tensor(shape=[3], dtype=float64, device=cpu)\n"
            "[3.1415927, 0.33333333, 2]");
  Tensor special = from_vector<float>({NAN, INFINITY, -INFINITY}, {3});
  EXPECT_EQ(special.str(),
            "Tensor(shape=[3], dtype=float32, device=cpu)\n"
            "[nan, inf, -inf]");
}

TEST(Print, HalfTypesShowTheirStoredValue) {
  Tensor b = from_vector<float>({0.1f, 1.0f, 256.5f}, {3}).to(DType::BF16);
  EXPECT_EQ(b.str(),
            "Tensor(shape=[3], dtype=bfloat16, device=cpu)\n"
            "[0.100098, 1, 256]");
  Tensor h = from_vector<float>({0.1f, 65504.0f, 1e5f}, {3}).to(DType::F16);
  EXPECT_EQ(h.str(),
            "Tensor(shape=[3], dtype=float16, device=cpu)\n"
            "[0.0999756, 65504, inf]");
}

TEST(Print, IntegersAndBool) {
  EXPECT_EQ(from_vector<int32_t>({1, -2, 300}, {3}).str(),
            "Tensor(shape=[3], dtype=int32, device=cpu)\n"
            "[1, -2, 300]");
  EXPECT_EQ(from_vector<int64_t>({-9000000000, 7}, {2, 1}).str(),
            "Tensor(shape=[2, 1], dtype=int64, device=cpu)\n"
            "[[-9000000000],\n"
            " [7]]");
  // Past 2^53, where a double could not hold them.
  EXPECT_EQ(from_vector<int64_t>({9007199254740993, -9223372036854775807 - 1}, {2}).str(),
            "Tensor(shape=[2], dtype=int64, device=cpu)\n"
            "[9007199254740993, -9223372036854775808]");
  EXPECT_EQ(from_vector<uint8_t>({0, 255}, {2}).str(),
            "Tensor(shape=[2], dtype=uint8, device=cpu)\n"
            "[0, 255]");
  EXPECT_EQ(from_vector<uint32_t>({4000000000u}, {1}).str(),
            "Tensor(shape=[1], dtype=uint32, device=cpu)\n"
            "[4000000000]");
  EXPECT_EQ(from_vector<bool>({true, false, true, true}, {2, 2}).str(),
            "Tensor(shape=[2, 2], dtype=bool, device=cpu)\n"
            "[[True, False],\n"
            " [True, True]]");
}

TEST(Print, ScalarsEmptyAndHigherRanks) {
  EXPECT_EQ(scalar(3.5).str(), "Tensor(shape=[], dtype=float32, device=cpu)\n3.5");
  EXPECT_EQ(scalar(1, DType::Bool).str(), "Tensor(shape=[], dtype=bool, device=cpu)\nTrue");
  EXPECT_EQ(zeros({0}).str(), "Tensor(shape=[0], dtype=float32, device=cpu)\n[]");
  EXPECT_EQ(arange(8, DType::I32).reshape({2, 2, 2}).str(),
            "Tensor(shape=[2, 2, 2], dtype=int32, device=cpu)\n"
            "[[[0, 1],\n"
            "  [2, 3]],\n"
            "\n"
            " [[4, 5],\n"
            "  [6, 7]]]");
}

TEST(Print, StridedViewPrintsLogicalOrder) {
  Tensor base = arange(6, DType::I32).reshape({2, 3});
  Tensor tr(base.storage(), {3, 2}, {1, 3}, 0, DType::I32);
  EXPECT_EQ(tr.str(),
            "Tensor(shape=[3, 2], dtype=int32, device=cpu)\n"
            "[[0, 3],\n"
            " [1, 4],\n"
            " [2, 5]]");
}

TEST(Print, ThousandElementsAreShownInFull) {
  std::string s = arange(1000, DType::I32).str();
  EXPECT_EQ(s.find("..."), std::string::npos);
  EXPECT_NE(s.find("[0, 1, 2, 3, 4, "), std::string::npos);
  EXPECT_NE(s.find(", 998, 999]"), std::string::npos);
}

TEST(Print, LargeTensorsAreSummarised) {
  EXPECT_EQ(arange(1001, DType::I32).str(),
            "Tensor(shape=[1001], dtype=int32, device=cpu)\n"
            "[0, 1, 2, ..., 998, 999, 1000]");
  EXPECT_EQ(arange(1500, DType::I32).reshape({50, 30}).str(),
            "Tensor(shape=[50, 30], dtype=int32, device=cpu)\n"
            "[[0, 1, 2, ..., 27, 28, 29],\n"
            " [30, 31, 32, ..., 57, 58, 59],\n"
            " [60, 61, 62, ..., 87, 88, 89],\n"
            " ...,\n"
            " [1410, 1411, 1412, ..., 1437, 1438, 1439],\n"
            " [1440, 1441, 1442, ..., 1467, 1468, 1469],\n"
            " [1470, 1471, 1472, ..., 1497, 1498, 1499]]");
  // Short dimensions are kept whole even when the tensor is large.
  EXPECT_EQ(zeros({1000, 2}, DType::Bool).str(),
            "Tensor(shape=[1000, 2], dtype=bool, device=cpu)\n"
            "[[False, False],\n"
            " [False, False],\n"
            " [False, False],\n"
            " ...,\n"
            " [False, False],\n"
            " [False, False],\n"
            " [False, False]]");
  // In 3-D the ellipsis between blocks is set off by blank lines, as the blocks are.
  std::string s3 = arange(1008, DType::I32).reshape({7, 12, 12}).str();
  const std::string head =
      "Tensor(shape=[7, 12, 12], dtype=int32, device=cpu)\n"
      "[[[0, 1, 2, ..., 9, 10, 11],\n"
      "  [12, 13, 14, ..., 21, 22, 23],\n"
      "  [24, 25, 26, ..., 33, 34, 35],\n"
      "  ...,\n"
      "  [108, 109, 110, ..., 117, 118, 119],\n"
      "  [120, 121, 122, ..., 129, 130, 131],\n"
      "  [132, 133, 134, ..., 141, 142, 143]],\n"
      "\n"
      " [[144, 145, 146, ..., 153, 154, 155],\n";
  EXPECT_EQ(s3.substr(0, head.size()), head);
  EXPECT_NE(s3.find("431]],\n\n ...,\n\n [[576, 577, 578, ..., "), std::string::npos) << s3;
  const std::string tail = "..., 1005, 1006, 1007]]]";
  EXPECT_EQ(s3.substr(s3.size() - tail.size()), tail);
  std::string big = zeros({2000, 2000}).str();
  EXPECT_LT(big.size(), 400u) << big;  // bounded however large the tensor
}

}  // namespace
}  // namespace loom

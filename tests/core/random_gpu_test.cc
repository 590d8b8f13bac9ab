// CUDA samplers must produce exactly the CPU's bits (both run kernels/cpu/random.h's functions).
#include <gtest/gtest.h>

#include <cstring>

#include "core/random.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using random::Key;

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {{}, {1}, {7}, {256}, {1001}, {3, 5, 7}, {(1 << 20) + 3}};
  return s;
}

/// Byte-for-byte equality of a CUDA result (copied back) with the CPU result.
::testing::AssertionResult same_bytes(const Tensor& gpu, const Tensor& cpu) {
  if (!gpu.is_cuda()) return ::testing::AssertionFailure() << "result is not on the GPU";
  Tensor g = gpu.to(Device::cpu());
  if (g.shape() != cpu.shape() || g.dtype() != cpu.dtype())
    return ::testing::AssertionFailure() << "got " << dtype_name(g.dtype()) << shape_str(g.shape())
                                         << ", expected " << dtype_name(cpu.dtype())
                                         << shape_str(cpu.shape());
  const auto* a = static_cast<const unsigned char*>(g.raw_data());
  const auto* b = static_cast<const unsigned char*>(cpu.raw_data());
  size_t esize = dtype_size(cpu.dtype());
  for (size_t i = 0; i < cpu.nbytes(); ++i)
    if (a[i] != b[i])
      return ::testing::AssertionFailure() << "first difference in element " << i / esize << " of "
                                           << cpu.numel();
  return ::testing::AssertionSuccess();
}

TEST(RandomGpuTest, BitsMatchCpu) {
  LOOM_REQUIRE_GPU();
  Key k = random::key(11);
  for (const Shape& s : shapes())
    EXPECT_TRUE(same_bytes(random::bits(k, s, Device::cuda()), random::bits(k, s))) << shape_str(s);
}

TEST(RandomGpuTest, UniformMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Key k = random::key(-5);
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16})
    for (const Shape& s : shapes()) {
      EXPECT_TRUE(same_bytes(random::uniform(k, s, dt, 0, 1, Device::cuda()), random::uniform(k, s, dt)))
          << dtype_name(dt) << shape_str(s);
      EXPECT_TRUE(same_bytes(random::uniform(k, s, dt, -3.3, 7.1, Device::cuda()),
                             random::uniform(k, s, dt, -3.3, 7.1)))
          << dtype_name(dt) << shape_str(s);
    }
}

TEST(RandomGpuTest, NormalMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Key k = random::fold_in(random::key(3), 9);
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16})
    for (const Shape& s : shapes())
      EXPECT_TRUE(same_bytes(random::normal(k, s, dt, Device::cuda()), random::normal(k, s, dt)))
          << dtype_name(dt) << shape_str(s);
}

TEST(RandomGpuTest, TruncatedNormalMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Key k = random::key(42);
  for (DType dt : {DType::F32, DType::F64, DType::BF16})
    for (auto [lo, hi] : std::vector<std::pair<double, double>>{{-2.0, 2.0}, {0.5, 1.5}, {-INFINITY, 1.0}})
      for (const Shape& s : shapes())
        EXPECT_TRUE(same_bytes(random::truncated_normal(k, lo, hi, s, dt, Device::cuda()),
                               random::truncated_normal(k, lo, hi, s, dt)))
            << dtype_name(dt) << " (" << lo << ", " << hi << ") " << shape_str(s);
}

TEST(RandomGpuTest, BernoulliMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Key k = random::key(2147483647);
  for (double p : {0.0, 0.1, 0.5, 0.9, 1.0})
    for (const Shape& s : shapes())
      EXPECT_TRUE(same_bytes(random::bernoulli(k, p, s, Device::cuda()), random::bernoulli(k, p, s)))
          << "p " << p << shape_str(s);
}

TEST(RandomGpuTest, PermutationOnDevice) {
  LOOM_REQUIRE_GPU();
  Key k = random::key(7);
  for (int64_t n : {0, 1, 10, 5000})
    EXPECT_TRUE(same_bytes(random::permutation(k, n, Device::cuda()), random::permutation(k, n)))
        << "n " << n;
}

TEST(RandomGpuTest, GoldenNormalOnDevice) {
  LOOM_REQUIRE_GPU();
  nlohmann::json g = testing::load_golden("random.json");
  int checked = 0;
  for (const auto& c : g.at("cases")) {
    if (c.at("op") != "normal" || c.at("dtype") != "float32") continue;
    Key k{c.at("key").at(0).get<uint32_t>(), c.at("key").at(1).get<uint32_t>()};
    Tensor got = random::normal(k, c.at("shape").get<Shape>(), DType::F32, Device::cuda());
    EXPECT_ALLCLOSE(got, testing::golden_tensor(c.at("expected")), 1e-6, 1e-6);
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace loom

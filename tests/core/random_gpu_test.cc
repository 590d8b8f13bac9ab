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

// A key on the GPU (wrap_key_data of a CUDA tensor) draws, folds and splits there, with the bits
// of the same key on the host.
TEST(RandomGpuTest, KeysOnTheDeviceMatchHostKeys) {
  LOOM_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  const Key host = random::key(1234);
  const Key dev = random::wrap_key_data(random::key_data(host).to(gpu));
  ASSERT_TRUE(dev.on_device());
  EXPECT_TRUE(same_bytes(random::key_data(dev), random::key_data(host)));
  EXPECT_EQ(dev, dev);
  EXPECT_FALSE(dev == host);
  // derived keys, compared through their words
  const Key folded = random::fold_in(dev, 77);
  ASSERT_TRUE(folded.on_device());
  EXPECT_TRUE(same_bytes(random::key_data(folded), random::key_data(random::fold_in(host, 77))));
  const std::vector<Key> dev_split = random::split(dev, 3), host_split = random::split(host, 3);
  ASSERT_EQ(dev_split.size(), 3u);
  for (size_t j = 0; j < 3; ++j)
    EXPECT_TRUE(same_bytes(random::key_data(dev_split[j]), random::key_data(host_split[j]))) << j;
  EXPECT_TRUE(random::split(dev, 0).empty());
  // every sampler, from a derived key
  const Key d = dev_split[2], h = host_split[2];
  EXPECT_TRUE(same_bytes(random::bits(d, {1001}, gpu), random::bits(h, {1001})));
  for (DType dt : {DType::F32, DType::BF16, DType::F64}) {
    EXPECT_TRUE(same_bytes(random::uniform(d, {513}, dt, -2, 3, gpu), random::uniform(h, {513}, dt, -2, 3)))
        << dtype_name(dt);
    EXPECT_TRUE(same_bytes(random::normal(d, {513}, dt, gpu), random::normal(h, {513}, dt))) << dtype_name(dt);
    EXPECT_TRUE(same_bytes(random::truncated_normal(d, -1, 2, {513}, dt, gpu),
                           random::truncated_normal(h, -1, 2, {513}, dt)))
        << dtype_name(dt);
  }
  EXPECT_TRUE(same_bytes(random::bernoulli(random::fold_in(d, 5), 0.3, {4097}, gpu),
                         random::bernoulli(random::fold_in(h, 5), 0.3, {4097})));
  // a key on the GPU draws there only, and permutation sorts on the host
  EXPECT_THROW_WITH((void)random::normal(d, {4}), DeviceError, "random.normal", "draws there only");
  EXPECT_THROW_WITH((void)random::permutation(d, 5, gpu), ValueError, "host key");
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

#include "core/random.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>

#include "kernels/cpu/random.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using random::Key;

Key key_of(const nlohmann::json& j) { return {j.at(0).get<uint32_t>(), j.at(1).get<uint32_t>()}; }

/// Position of a value on the number line of its format, so |a - b| counts ulps.
int64_t ordered(uint64_t bits, int width) {
  uint64_t sign = uint64_t(1) << (width - 1);
  return (bits & sign) ? -int64_t(bits & (sign - 1)) : int64_t(bits);
}

/// Largest ulp distance between two tensors of the same floating dtype, measured in float32
/// ulps for f32/f64 (f64 values are rounded to f32 first) and in the format's own ulps for the
/// 16-bit types.
int64_t max_ulps(const Tensor& actual, const Tensor& expected) {
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  int64_t worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    int64_t d;
    if (expected.dtype() == DType::BF16) {
      d = ordered(cpu::rng::bf16_bits(float(a[i])), 16) - ordered(cpu::rng::bf16_bits(float(e[i])), 16);
    } else if (expected.dtype() == DType::F16) {
      d = ordered(cpu::rng::f16_bits(float(a[i])), 16) - ordered(cpu::rng::f16_bits(float(e[i])), 16);
    } else {
      d = ordered(float_bits(float(a[i])), 32) - ordered(float_bits(float(e[i])), 32);
    }
    worst = std::max(worst, std::abs(d));
  }
  return worst;
}

::testing::AssertionResult same_values(const Tensor& actual, const Tensor& expected) {
  if (actual.shape() != expected.shape() || actual.dtype() != expected.dtype())
    return ::testing::AssertionFailure()
           << "got " << dtype_name(actual.dtype()) << shape_str(actual.shape()) << ", expected "
           << dtype_name(expected.dtype()) << shape_str(expected.shape());
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == e[i]))
      return ::testing::AssertionFailure() << "element " << i << ": got " << a[i] << ", expected "
                                           << e[i];
  return ::testing::AssertionSuccess();
}

Shape shape_of(const nlohmann::json& c) { return c.at("shape").get<Shape>(); }
DType dtype_of_case(const nlohmann::json& c) {
  return dtype_from_name(c.at("dtype").get<std::string>());
}

// --- threefry known answers (jax tests/random_test.py) --------------------------------------------

TEST(RandomTest, ThreefryKnownAnswers) {
  using cpu::rng::threefry2x32;
  cpu::rng::Pair p = threefry2x32(0, 0, 0, 0);
  EXPECT_EQ(p.a, 0x6b200159u);
  EXPECT_EQ(p.b, 0x99ba4efeu);
  p = threefry2x32(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  EXPECT_EQ(p.a, 0x1cb996fcu);
  EXPECT_EQ(p.b, 0xbb002be7u);
  p = threefry2x32(0x13198a2eu, 0x03707344u, 0x243f6a88u, 0x85a308d3u);
  EXPECT_EQ(p.a, 0xc4923a9cu);
  EXPECT_EQ(p.b, 0x483df7a0u);
}

// --- keys ---------------------------------------------------------------------------------------

TEST(RandomTest, KeyFromSeedUsesX32Semantics) {
  EXPECT_EQ(random::key(0), (Key{0, 0}));
  EXPECT_EQ(random::key(42), (Key{0, 42}));
  EXPECT_EQ(random::key(-1), (Key{0, 4294967295u}));
  EXPECT_EQ(random::key(-7), (Key{0, 4294967289u}));
  EXPECT_EQ(random::key((int64_t(1) << 32) + 5), (Key{0, 5}));
  EXPECT_EQ(random::key(1).str(), "Key(0, 1)");
  std::ostringstream os;
  os << Key{3, 4};
  EXPECT_EQ(os.str(), "Key(3, 4)");
}

TEST(RandomTest, SplitEqualsFoldInOfTheIndex) {
  Key k = random::key(123);
  std::vector<Key> ks = random::split(k, 5);
  ASSERT_EQ(ks.size(), 5u);
  for (uint32_t j = 0; j < 5; ++j) EXPECT_EQ(ks[j], random::fold_in(k, j));
  EXPECT_NE(ks[0], ks[1]);
  EXPECT_TRUE(random::split(k, 0).empty());
  EXPECT_EQ(random::split(k).size(), 2u);
}

TEST(RandomTest, KeyDataRoundTrips) {
  Key k{7, 4000000000u};
  Tensor d = random::key_data(k);
  EXPECT_EQ(d.dtype(), DType::U32);
  EXPECT_EQ(d.shape(), (Shape{2}));
  EXPECT_EQ(d.to_vector<uint32_t>(), (std::vector<uint32_t>{7, 4000000000u}));
  EXPECT_EQ(random::wrap_key_data(d), k);
  EXPECT_FALSE(random::wrap_key_data(d).on_device());  // a CPU tensor gives a host key
  EXPECT_EQ(k.str(), "Key(7, 4000000000)");
  EXPECT_FALSE(k == Key(7, 4));
  EXPECT_THROW(random::wrap_key_data(zeros({3}, DType::U32)), ValueError);
  EXPECT_THROW(random::wrap_key_data(zeros({2}, DType::I32)), ValueError);
}

// --- golden cases from real JAX -------------------------------------------------------------------

class RandomGoldenTest : public ::testing::Test {
 protected:
  static const nlohmann::json& golden() {
    static const nlohmann::json j = testing::load_golden("random.json");
    return j;
  }
  static std::vector<nlohmann::json> cases(const std::string& op) {
    std::vector<nlohmann::json> out;
    for (const auto& c : golden().at("cases"))
      if (c.at("op") == op) out.push_back(c);
    return out;
  }
};

TEST_F(RandomGoldenTest, HasEnoughCases) {
  EXPECT_GE(golden().at("cases").size(), 50u);
  EXPECT_EQ(golden().at("versions").at("jax"), "0.10.2");
}

TEST_F(RandomGoldenTest, Keys) {
  auto cs = cases("key");
  ASSERT_FALSE(cs.empty());
  for (const auto& c : cs)
    EXPECT_EQ(random::key(c.at("seed").get<int64_t>()), key_of(c.at("expected")))
        << "seed " << c.at("seed");
}

TEST_F(RandomGoldenTest, SplitAndFoldIn) {
  auto cs = cases("split");
  ASSERT_FALSE(cs.empty());
  for (const auto& c : cs) {
    std::vector<Key> ks = random::split(key_of(c.at("key")), c.at("n").get<int64_t>());
    ASSERT_EQ(ks.size(), c.at("expected").size());
    for (size_t j = 0; j < ks.size(); ++j) EXPECT_EQ(ks[j], key_of(c.at("expected")[j]));
  }
  auto fs = cases("fold_in");
  ASSERT_FALSE(fs.empty());
  for (const auto& c : fs)
    EXPECT_EQ(random::fold_in(key_of(c.at("key")), c.at("data").get<uint32_t>()),
              key_of(c.at("expected")));
  for (const auto& c : cases("chain")) {
    // split key(0), split the second child into 4, take the last, fold in 7
    Key b = random::split(key_of(c.at("key")))[1];
    Key d = random::fold_in(random::split(b, 4)[3], 7);
    EXPECT_EQ(d, key_of(c.at("expected")));
  }
}

TEST_F(RandomGoldenTest, Bits) {
  auto cs = cases("bits");
  ASSERT_FALSE(cs.empty());
  for (const auto& c : cs) {
    Tensor got = random::bits(key_of(c.at("key")), shape_of(c));
    Tensor want = testing::golden_tensor(c.at("expected"));
    ASSERT_EQ(got.dtype(), DType::U32);
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_EQ(got.to_vector<uint32_t>(), want.to_vector<uint32_t>()) << c.at("key");
  }
}

TEST_F(RandomGoldenTest, UniformIsBitExact) {
  auto cs = cases("uniform");
  ASSERT_FALSE(cs.empty());
  for (const auto& c : cs) {
    Tensor got = random::uniform(key_of(c.at("key")), shape_of(c), dtype_of_case(c),
                                 c.at("minval").get<double>(), c.at("maxval").get<double>());
    EXPECT_TRUE(same_values(got, testing::golden_tensor(c.at("expected"))))
        << c.at("dtype") << " [" << c.at("minval") << ", " << c.at("maxval") << ")";
  }
}

// Normal-family values depend on the backend's log1p/erf_inv; loom follows XLA CPU's sequence,
// and the requirement is 2 ulps (they are bit-exact on the machine that made the goldens).
TEST_F(RandomGoldenTest, NormalWithinTwoUlps) {
  auto cs = cases("normal");
  ASSERT_FALSE(cs.empty());
  for (const auto& c : cs) {
    Tensor got = random::normal(key_of(c.at("key")), shape_of(c), dtype_of_case(c));
    Tensor want = testing::golden_tensor(c.at("expected"));
    ASSERT_EQ(got.dtype(), want.dtype());
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(max_ulps(got, want), 2) << c.at("dtype") << " key " << c.at("key");
  }
}

TEST_F(RandomGoldenTest, TruncatedNormalWithinTwoUlps) {
  auto cs = cases("truncated_normal");
  ASSERT_FALSE(cs.empty());
  for (const auto& c : cs) {
    double lo = c.at("lower").get<double>(), hi = c.at("upper").get<double>();
    Tensor got = random::truncated_normal(key_of(c.at("key")), lo, hi, shape_of(c),
                                          dtype_of_case(c));
    Tensor want = testing::golden_tensor(c.at("expected"));
    ASSERT_EQ(got.dtype(), want.dtype());
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_LE(max_ulps(got, want), 2) << c.at("dtype") << " (" << lo << ", " << hi << ")";
    for (double v : got.to_vector<double>()) {
      EXPECT_GT(v, lo);
      EXPECT_LT(v, hi);
    }
  }
}

TEST_F(RandomGoldenTest, Bernoulli) {
  auto cs = cases("bernoulli");
  ASSERT_FALSE(cs.empty());
  for (const auto& c : cs) {
    Tensor got = random::bernoulli(key_of(c.at("key")), c.at("p").get<double>(), shape_of(c));
    Tensor want = testing::golden_tensor(c.at("expected"));
    ASSERT_EQ(got.dtype(), DType::Bool);
    EXPECT_TRUE(same_values(got, want)) << "p = " << c.at("p");
  }
}

TEST_F(RandomGoldenTest, Permutation) {
  auto cs = cases("permutation");
  ASSERT_FALSE(cs.empty());
  for (const auto& c : cs) {
    int64_t n = c.at("n").get<int64_t>();
    Tensor got = random::permutation(key_of(c.at("key")), n);
    Tensor want = testing::golden_tensor(c.at("expected"));
    ASSERT_EQ(got.dtype(), DType::I32);
    ASSERT_EQ(got.shape(), (Shape{n}));
    EXPECT_EQ(got.to_vector<int64_t>(), want.to_vector<int64_t>()) << "n = " << n;
  }
}

// --- properties -----------------------------------------------------------------------------------

TEST(RandomTest, ElementsDependOnlyOnTheirIndex) {
  Key k = random::key(9);
  std::vector<uint32_t> small = random::bits(k, {10}).to_vector<uint32_t>();
  std::vector<uint32_t> big = random::bits(k, {40000}).to_vector<uint32_t>();  // parallel path
  EXPECT_TRUE(std::equal(small.begin(), small.end(), big.begin()));
  std::vector<uint32_t> shaped = random::bits(k, {4, 10000}).to_vector<uint32_t>();
  EXPECT_EQ(shaped, big);
  for (size_t i : {size_t(0), size_t(12345), size_t(39999)}) {
    cpu::rng::Pair p = cpu::rng::counter_pair(k.k0, k.k1, i);
    EXPECT_EQ(big[i], p.a ^ p.b);
  }
}

TEST(RandomTest, ScalarAndEmptyShapes) {
  Key k = random::key(1);
  Tensor s = random::uniform(k, {});
  EXPECT_EQ(s.ndim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(random::normal(k, {0, 3}).numel(), 0);
  EXPECT_EQ(random::bits(k, {2, 0}).numel(), 0);
  EXPECT_EQ(random::permutation(k, 0).numel(), 0);
  EXPECT_EQ(random::permutation(k, 1).to_vector<int32_t>(), std::vector<int32_t>{0});
}

TEST(RandomTest, UniformStaysInRange) {
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    std::vector<double> v = random::uniform(random::key(5), {20000}, dt, -2.0, 3.0).to_vector<double>();
    double mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
    for (double x : v) {
      ASSERT_GE(x, -2.0) << dtype_name(dt);
      ASSERT_LT(x, 3.0) << dtype_name(dt);
    }
    EXPECT_NEAR(mean, 0.5, 0.05) << dtype_name(dt);
  }
}

TEST(RandomTest, NormalMoments) {
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    std::vector<double> v = random::normal(random::key(6), {100000}, dt).to_vector<double>();
    double mean = 0, sq = 0;
    for (double x : v) {
      ASSERT_TRUE(std::isfinite(x));
      mean += x;
      sq += x * x;
    }
    mean /= double(v.size());
    double var = sq / double(v.size()) - mean * mean;
    EXPECT_NEAR(mean, 0.0, 0.02) << dtype_name(dt);
    EXPECT_NEAR(var, 1.0, 0.03) << dtype_name(dt);
  }
}

TEST(RandomTest, TruncatedNormalRespectsBounds) {
  std::vector<double> v =
      random::truncated_normal(random::key(2), -0.5, 0.25, {5000}).to_vector<double>();
  for (double x : v) {
    ASSERT_GT(x, -0.5);
    ASSERT_LT(x, 0.25);
  }
  // Infinite bounds are allowed (a plain normal clipped to the finite float range).
  std::vector<double> w =
      random::truncated_normal(random::key(2), -INFINITY, INFINITY, {1000}).to_vector<double>();
  for (double x : w) ASSERT_TRUE(std::isfinite(x));
}

TEST(RandomTest, BernoulliRate) {
  std::vector<int64_t> v = random::bernoulli(random::key(3), 0.25, {40000}).to_vector<int64_t>();
  double rate = double(std::accumulate(v.begin(), v.end(), int64_t(0))) / double(v.size());
  EXPECT_NEAR(rate, 0.25, 0.01);
  for (int64_t b : random::bernoulli(random::key(3), 0.0, {100}).to_vector<int64_t>()) EXPECT_EQ(b, 0);
  for (int64_t b : random::bernoulli(random::key(3), 1.0, {100}).to_vector<int64_t>()) EXPECT_EQ(b, 1);
}

TEST(RandomTest, PermutationIsAPermutation) {
  std::vector<int32_t> p = random::permutation(random::key(8), 3000).to_vector<int32_t>();
  std::vector<int32_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int32_t> iota(3000);
  std::iota(iota.begin(), iota.end(), 0);
  EXPECT_EQ(sorted, iota);
  EXPECT_NE(p, iota);
}

TEST(RandomTest, HalfPrecisionRounding) {
  using namespace cpu::rng;
  for (float f : {0.0f, 1.0f, -2.5f, 3.14159f, 1e-5f, 6e-8f, 65504.0f, 70000.0f, 1e-30f}) {
    EXPECT_EQ(bf16_bits(f), bfloat16::from_float(f)) << f;
    EXPECT_EQ(f16_bits(f), float16::from_float(f)) << f;
    EXPECT_EQ(f16_value(f16_bits(f)), float16::to_float(float16::from_float(f))) << f;
  }
}

// --- errors ---------------------------------------------------------------------------------------

TEST(RandomTest, BadInputsThrow) {
  Key k = random::key(0);
  EXPECT_THROW(random::bits(k, {2, -1}), ShapeError);
  EXPECT_THROW(random::uniform(k, {-3}), ShapeError);
  EXPECT_THROW(random::normal(k, {-1, 2}), ShapeError);
  EXPECT_THROW(random::truncated_normal(k, -2, 2, {-1}), ShapeError);
  EXPECT_THROW(random::bernoulli(k, 0.5, {-2}), ShapeError);
  EXPECT_THROW(random::bernoulli(k, -0.1, {2}), ValueError);
  EXPECT_THROW(random::bernoulli(k, 1.5, {2}), ValueError);
  EXPECT_THROW(random::bernoulli(k, NAN, {2}), ValueError);
  EXPECT_THROW(random::uniform(k, {2}, DType::I32), DTypeError);
  EXPECT_THROW(random::uniform(k, {2}, DType::U32), DTypeError);
  EXPECT_THROW(random::normal(k, {2}, DType::Bool), DTypeError);
  EXPECT_THROW(random::truncated_normal(k, -2, 2, {2}, DType::I64), DTypeError);
  EXPECT_THROW(random::truncated_normal(k, 1, 1, {2}), ValueError);
  EXPECT_THROW(random::truncated_normal(k, 2, -2, {2}), ValueError);
  EXPECT_THROW(random::split(k, -1), ValueError);
  EXPECT_THROW(random::permutation(k, -1), ValueError);
  EXPECT_THROW(random::permutation(k, int64_t(1) << 31), ValueError);
  try {
    random::uniform(k, {2}, DType::I32);
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("random.uniform"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("int32"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace loom

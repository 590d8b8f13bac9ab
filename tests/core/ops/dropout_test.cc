// dropout: bit-exact Flax masks for given keys (tests/golden/nn_ops.json), the mask/keep
// gradient, broadcast_dims, the rate 0 and 1 special cases and errors.
#include <cmath>

#include "core/autodiff.h"
#include "core/ops/dropout.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::golden_tensor;
using testing::test_values;

std::vector<Tensor> vjp(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, const Tensor& ct) {
  Tensor leaf = autograd::make_leaf(x, 0);
  autograd::RecordingGuard rec(true);
  return autograd::backward(sum(f(leaf) * ct), {leaf});
}

TEST(Dropout, MatchesFlaxExactly) {
  nlohmann::json doc = testing::load_golden("nn_ops.json");
  int seen = 0;
  for (const auto& c : doc.at("cases")) {
    if (c.at("name") != "dropout") continue;
    ++seen;
    random::Key key{c["key"][0].get<uint32_t>(), c["key"][1].get<uint32_t>()};
    double rate = c["rate"].get<double>();
    Axes bdims = c["broadcast_dims"].get<Axes>();
    Tensor x = golden_tensor(c["inputs"]["x"]);
    Tensor y = dropout(x, rate, key, bdims);
    EXPECT_ALLCLOSE(y, golden_tensor(c["outputs"]["y"]), 0, 0) << "key " << key << " rate " << rate;
    auto g = vjp([&](const Tensor& t) { return dropout(t, rate, key, bdims); }, x, golden_tensor(c["cotangent"]));
    // XLA may turn the division by keep into a multiplication by 1/keep: allow one ulp
    EXPECT_ALLCLOSE(g[0], golden_tensor(c["grads"]["x"]), 2.5e-7, 0) << "key " << key;
  }
  EXPECT_EQ(seen, 4);
}

TEST(Dropout, ModuleRngsUseTheFlaxDerivedKey) {
  // nn.Dropout applied with rngs={'dropout': key} draws make_rng('dropout'), which for a
  // root-level module is fold_in(key, be32(sha1(b"\x01")[:4])); the functional op takes that key.
  nlohmann::json doc = testing::load_golden("nn_ops.json");
  for (const auto& c : doc.at("cases")) {
    if (c.at("name") != "dropout_module_rngs") continue;
    random::Key key{c["key"][0].get<uint32_t>(), c["key"][1].get<uint32_t>()};
    random::Key derived = random::fold_in(key, c["fold_in"].get<uint32_t>());
    EXPECT_EQ(derived, (random::Key{c["module_key"][0].get<uint32_t>(), c["module_key"][1].get<uint32_t>()}));
    EXPECT_ALLCLOSE(dropout(golden_tensor(c["inputs"]["x"]), c["rate"].get<double>(), derived),
                    golden_tensor(c["outputs"]["y"]), 0, 0);
    return;
  }
  FAIL() << "no dropout_module_rngs case";
}

TEST(Dropout, MaskScalingAndGradient) {
  Tensor x = test_values({64, 50}, 1, 0.5, 1.5, DType::F32);
  const double rate = 0.3, keep = 1 - rate;
  random::Key key = random::key(5);
  Tensor y = dropout(x, rate, key);
  auto xv = x.to_vector<float>(), yv = y.to_vector<float>();
  int kept = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (yv[i] != 0) {
      ++kept;
      EXPECT_EQ(yv[i], xv[i] / float(keep));
    }
  }
  EXPECT_NEAR(double(kept) / double(xv.size()), keep, 0.03);
  // the same key gives the same mask; the gradient is mask / keep
  EXPECT_ALLCLOSE(dropout(x, rate, key), y, 0, 0);
  Tensor g = vjp([&](const Tensor& t) { return dropout(t, rate, key); }, x, ones_like(x))[0];
  auto gv = g.to_vector<float>();
  for (size_t i = 0; i < gv.size(); ++i) EXPECT_EQ(gv[i], yv[i] != 0 ? float(1 / keep) : 0.0f);
  // another key, another mask
  EXPECT_FALSE(testing::allclose(dropout(x, rate, random::key(6)), y, 0, 0));
}

TEST(Dropout, BroadcastDimsShareTheMask) {
  Tensor x = ones({4, 6, 5}, DType::F32);
  Tensor y = dropout(x, 0.5, random::key(3), {0, -1});
  auto v = y.to_vector<float>();
  for (int64_t a = 0; a < 4; ++a)
    for (int64_t b = 0; b < 6; ++b)
      for (int64_t c = 0; c < 5; ++c) EXPECT_EQ(v[size_t((a * 6 + b) * 5 + c)], v[size_t(b * 5)]);
  // the mask is the bernoulli of the broadcast shape [1, 6, 1]
  Tensor mask = random::bernoulli(random::key(3), 0.5, {1, 6, 1});
  EXPECT_ALLCLOSE(y, where(mask, x / 0.5, 0.0), 0, 0);
}

// The one-pass kernels (masks broadcast over leading dims, or not at all) against the ops they
// replace, bit for bit in every floating dtype, forward and backward; a mask broadcast in the
// middle still composes those ops.
TEST(Dropout, OnePassEqualsTheComposedOps) {
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    Tensor x = test_values({3, 5, 37}, 11, -2, 2, DType::F64).to(dt);
    Tensor ct = test_values({3, 5, 37}, 12, -1, 1, DType::F64).to(dt);
    for (Axes bdims : {Axes{}, Axes{0}, Axes{0, 1}, Axes{1}, Axes{2}}) {
      for (double rate : {0.1, 0.75}) {
        const random::Key key = random::key(int64_t(bdims.size()) * 10 + int64_t(rate * 4));
        std::string what = std::string(dtype_name(dt)) + " rate " + std::to_string(rate) + " dims " + shape_str(Shape(bdims));
        Shape mask_shape = x.shape();
        for (int64_t d : bdims) mask_shape[size_t(d)] = 1;
        auto composed = [&](const Tensor& t) {
          return where(random::bernoulli(key, 1 - rate, mask_shape), t / (1 - rate), 0.0);
        };
        auto op = [&](const Tensor& t) { return dropout(t, rate, key, bdims); };
        EXPECT_ALLCLOSE(op(x), composed(x), 0, 0) << what;
        EXPECT_ALLCLOSE(vjp(op, x, ct)[0], vjp(composed, x, ct)[0], 0, 0) << what;
      }
    }
  }
}

// Attention weights' dropout (Flax: weights * (mask.astype(dtype) / keep)): the same one pass.
TEST(Dropout, AttentionWeightsEqualTheComposedOps) {
  for (DType dt : {DType::F32, DType::BF16}) {
    Tensor w = test_values({2, 3, 8, 8}, 13, 0, 1, DType::F64).to(dt);
    Tensor ct = test_values({2, 3, 8, 8}, 14, -1, 1, DType::F64).to(dt);
    for (Shape mask_shape : {Shape{1, 1, 8, 8}, Shape{2, 3, 8, 8}}) {
      const random::Key key = random::key(int64_t(mask_shape[0]));
      auto composed = [&](const Tensor& t) {
        return t * (random::bernoulli(key, 0.8, mask_shape).to(dt) / 0.8);
      };
      auto op = [&](const Tensor& t) { return attention_dropout(t, 0.2, key, mask_shape); };
      EXPECT_ALLCLOSE(op(w), composed(w), 0, 0) << dtype_name(dt) << " " << shape_str(mask_shape);
      EXPECT_ALLCLOSE(vjp(op, w, ct)[0], vjp(composed, w, ct)[0], 0, 0) << dtype_name(dt);
    }
  }
}

// Finite differences in float64 through the one-pass kernels (a fixed key: a linear map of x).
TEST(Dropout, OnePassGradientsMatchFiniteDifferences) {
  Tensor x = test_values({3, 4, 8}, 15, -1, 1, DType::F64), w = test_values({3, 4, 8}, 16, -1, 1, DType::F64);
  EXPECT_TRUE(testing::check_gradients([&](const std::vector<Tensor>& in) {
    return sum(dropout(in[0], 0.3, random::key(21), {0}) * w);
  }, {x}));
  EXPECT_TRUE(testing::check_gradients([&](const std::vector<Tensor>& in) {
    return sum(attention_dropout(in[0], 0.3, random::key(22), {1, 4, 8}) * w);
  }, {x}));
}

TEST(Dropout, MaskBitsAreTheBernoulliDraws) {
  for (int64_t n : {0, 1, 31, 32, 33, 100}) {
    Tensor bits = random::bernoulli_bits(random::key(4), 0.3, n);
    EXPECT_EQ(bits.shape(), (Shape{(n + 31) / 32}));
    auto words = bits.to_vector<uint32_t>();
    auto draws = random::bernoulli(random::key(4), 0.3, {n}).to_vector<bool>();
    for (int64_t j = 0; j < n; ++j)
      EXPECT_EQ(bool((words[size_t(j / 32)] >> (j % 32)) & 1u), draws[size_t(j)]) << n << " " << j;
    if (n % 32) {
      EXPECT_EQ(words.back() >> (n % 32), 0u) << n;  // bits past n are clear
    }
  }
}

TEST(Dropout, RateZeroAndOneAndErrors) {
  Tensor x = test_values({3, 4}, 2, -1, 1, DType::F32);
  EXPECT_EQ(dropout(x, 0.0, random::key(0)).storage(), x.storage());  // x itself
  EXPECT_ALLCLOSE(dropout(x, 1.0, random::key(0)), zeros({3, 4}), 0, 0);
  Tensor g = vjp([&](const Tensor& t) { return dropout(t, 1.0, random::key(0)); }, x, ones_like(x))[0];
  EXPECT_ALLCLOSE(g, zeros({3, 4}), 0, 0);
  EXPECT_EQ(dropout(x.to(DType::BF16), 0.5, random::key(0)).dtype(), DType::BF16);
  EXPECT_THROW((void)dropout(x, 1.5, random::key(0)), ValueError);
  EXPECT_THROW((void)dropout(x, -0.1, random::key(0)), ValueError);
  EXPECT_THROW((void)dropout(ones({2}, DType::I32), 0.5, random::key(0)), DTypeError);
  EXPECT_THROW((void)dropout(x, 0.5, random::key(0), {2}), IndexError);
}

}  // namespace
}  // namespace loom

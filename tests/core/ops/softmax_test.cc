// softmax / log_softmax: a float64 reference over every axis, finite-difference gradients,
// edge cases, errors, and JAX goldens (tests/golden/nn_ops.json, also for gelu).
#include <cmath>
#include <limits>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/ops/softmax.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::golden_tensor;
using testing::test_values;
using testing::vjp;

const nlohmann::json& golden(const std::string& name) { return testing::golden_case("nn_ops.json", name); }

/// Softmax over `axis` of a float64 tensor, element by element.
Tensor reference_softmax(const Tensor& x, int64_t axis, bool log) {
  Shape s = x.shape();
  int64_t outer = 1, n = s[size_t(axis)], inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= s[size_t(d)];
  for (size_t d = size_t(axis) + 1; d < s.size(); ++d) inner *= s[d];
  std::vector<double> v = x.to_vector<double>(), out(v.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double m = -INFINITY, z = 0;
      for (int64_t j = 0; j < n; ++j) m = std::max(m, v[size_t((o * n + j) * inner + i)]);
      for (int64_t j = 0; j < n; ++j) z += std::exp(v[size_t((o * n + j) * inner + i)] - m);
      for (int64_t j = 0; j < n; ++j) {
        double e = v[size_t((o * n + j) * inner + i)] - m;
        out[size_t((o * n + j) * inner + i)] = log ? e - std::log(z) : std::exp(e) / z;
      }
    }
  return from_vector(out, s);
}

TEST(Softmax, MatchesReferenceOnEveryAxis) {
  Tensor x = test_values({3, 5, 4}, 1, -4, 4);
  for (int64_t axis : {0, 1, 2}) {
    for (bool log : {false, true}) {
      Tensor expect = reference_softmax(x, axis, log);
      Tensor got = log ? log_softmax(x, axis) : softmax(x, axis);
      EXPECT_ALLCLOSE(got, expect, 1e-13, 1e-15) << "axis " << axis << " log " << log;
      Tensor got32 = log ? log_softmax(x.to(DType::F32), axis) : softmax(x.to(DType::F32), axis);
      EXPECT_EQ(got32.dtype(), DType::F32);
      EXPECT_ALLCLOSE(got32, expect, 1e-6, 1e-7) << "axis " << axis << " log " << log;
      Tensor got16 = log ? log_softmax(x.to(DType::BF16), axis) : softmax(x.to(DType::BF16), axis);
      EXPECT_EQ(got16.dtype(), DType::BF16);
      // bf16 inputs are rounded first; compare with the reference of the rounded input
      Tensor expect16 = reference_softmax(x.to(DType::BF16).to(DType::F64), axis, log);
      EXPECT_ALLCLOSE(got16, expect16, 1e-2, 1e-2);
    }
  }
  // negative axis and a long row
  EXPECT_ALLCLOSE(softmax(x, -1), reference_softmax(x, 2, false), 1e-13, 1e-15);
  Tensor wide = test_values({2, 3000}, 2, -20, 20);
  EXPECT_ALLCLOSE(log_softmax(wide), reference_softmax(wide, 1, true), 1e-12, 1e-12);
  // float's exponentials (no libm) over the whole range a row's values span below its max,
  // against the float64 reference of the same float values; below float's normal range (1.2e-38)
  // a probability is 0
  Tensor spread = test_values({4, 1000}, 7, -90, 0).to(DType::F32);
  Tensor spread64 = spread.to(DType::F64);
  EXPECT_ALLCLOSE(softmax(spread), reference_softmax(spread64, 1, false), 1e-5, 1.2e-38);
  EXPECT_ALLCLOSE(log_softmax(spread), reference_softmax(spread64, 1, true), 1e-6, 1e-6);
}

TEST(Softmax, RowsSumToOneAndStayStable) {
  Tensor x = from_vector<float>({1000, 1001, 1002, -1000, 0, 1000}, {2, 3});
  Tensor p = softmax(x);
  EXPECT_ALLCLOSE(sum(p, {-1}), ones({2}), 1e-6, 0);
  auto lp = log_softmax(x).to_vector<float>();
  for (float v : lp) EXPECT_TRUE(std::isfinite(v) || v == -INFINITY);
  EXPECT_NEAR(lp[2], -0.40760596, 1e-6);
}

TEST(Softmax, MaskedEntriesAndEdgeCases) {
  const float inf = std::numeric_limits<float>::infinity();
  Tensor x = from_vector<float>({0, -inf, 0, -inf, -inf, -inf}, {2, 3});
  auto p = softmax(x).to_vector<float>();
  EXPECT_FLOAT_EQ(p[0], 0.5f);
  EXPECT_FLOAT_EQ(p[1], 0.0f);
  EXPECT_FLOAT_EQ(p[2], 0.5f);
  for (int i = 3; i < 6; ++i) EXPECT_TRUE(std::isnan(p[size_t(i)]));  // as JAX: all -inf -> NaN
  for (DType dt : {DType::F32, DType::F64}) {  // one NaN makes its whole row NaN, as in JAX
    auto q = softmax(from_vector<float>({1, NAN, 2, 1, 3, 2}, {2, 3}).to(dt)).to_vector<double>();
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(std::isnan(q[size_t(i)])) << dtype_name(dt) << " " << i;
    for (int i = 3; i < 6; ++i) EXPECT_TRUE(std::isfinite(q[size_t(i)])) << dtype_name(dt) << " " << i;
    // rows long enough for the row max's eight lanes: a NaN in the lanes, one in the tail, none
    std::vector<float> rows(3 * 19);
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(i % 7) - 3.f;
    rows[5] = NAN;
    rows[19 + 17] = NAN;
    auto r = softmax(from_vector(rows, {3, 19}).to(dt)).to_vector<double>();
    double third = 0;
    for (size_t i = 0; i < 19; ++i) {
      EXPECT_TRUE(std::isnan(r[i]) && std::isnan(r[19 + i])) << dtype_name(dt) << " " << i;
      third += r[38 + i];
    }
    EXPECT_NEAR(third, 1.0, 1e-6) << dtype_name(dt);
  }
  EXPECT_EQ(softmax(zeros({0, 4})).shape(), (Shape{0, 4}));
  EXPECT_EQ(softmax(zeros({3, 0})).shape(), (Shape{3, 0}));
  EXPECT_ALLCLOSE(softmax(zeros({2, 1})), ones({2, 1}), 0, 0);
  // a non-contiguous (transposed) input
  Tensor base = test_values({4, 3}, 3);
  Tensor t = transpose(base, {1, 0});
  ASSERT_FALSE(t.is_contiguous());
  EXPECT_ALLCLOSE(softmax(t, 1), reference_softmax(t.contiguous(), 1, false), 1e-13, 1e-15);
}

TEST(Softmax, Gradients) {
  Tensor x = test_values({3, 4, 2}, 4, -2, 2);
  Tensor w = test_values({3, 4, 2}, 5);
  for (int64_t axis : {0, 1, 2}) {
    EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return sum(softmax(in[0], axis) * w); }, {x}))
        << "softmax axis " << axis;
    EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return sum(log_softmax(in[0], axis) * w); }, {x}))
        << "log_softmax axis " << axis;
  }
  // composed with other ops (the input used twice)
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) {
    return sum(softmax(in[0] * in[0], 1) * in[0]);
  }, {x.reshape({3, 8})}));
}

TEST(Softmax, MaskedSoftmaxIsSoftmaxOfWhere) {
  Tensor x = test_values({2, 3, 4, 5}, 6, -2, 2);
  Tensor mask = tril(ones({4, 5}, DType::Bool)).reshape({1, 1, 4, 5});
  EXPECT_ALLCLOSE(masked_softmax(x, mask, -1e9), softmax(where(mask, x, -1e9), -1), 0, 0);
  Tensor w = test_values({2, 3, 4, 5}, 7);
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) {
    return sum(masked_softmax(in[0], mask, -1e9) * w);
  }, {x}));
  try {
    (void)masked_softmax(x, ones({4, 5}, DType::F32), -1e9);
    FAIL() << "expected DTypeError";
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("mask must be bool"), std::string::npos) << e.what();
  }
  try {
    (void)masked_softmax(x, ones({3, 5}, DType::Bool), -1e9);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("[3, 5]"), std::string::npos) << e.what();
  }
}

// The one-pass kernels (forward, and backward with where's zeros) against the ops they replace,
// bit for bit: masks broadcast over leading dims, over the middle, not at all, a transposed one,
// and a fully masked row; every floating dtype.
TEST(Softmax, MaskedKernelsEqualWhereThenSoftmax) {
  Tensor causal = tril(ones({4, 5}, DType::Bool));
  Tensor padding = greater(test_values({2, 1, 1, 5}, 8, -1, 3), zeros({2, 1, 1, 5}));
  Tensor full_mask = greater(test_values({2, 3, 4, 5}, 9, -1, 2), zeros({2, 3, 4, 5}));
  Tensor transposed = transpose(greater(test_values({5, 4}, 10, -1, 2), zeros({5, 4})), {1, 0});
  Tensor none_kept = concatenate({zeros({1, 5}, DType::Bool), ones({3, 5}, DType::Bool)}, 0);
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::F16}) {
    Tensor x = test_values({2, 3, 4, 5}, 11, -3, 3, DType::F64).to(dt);
    Tensor ct = test_values({2, 3, 4, 5}, 12, -1, 1, DType::F64).to(dt);
    for (const Tensor& mask : {causal, padding, full_mask, transposed, none_kept}) {
      std::string what = std::string(dtype_name(dt)) + " mask " + shape_str(mask.shape());
      auto fused = [&](const std::vector<Tensor>& in) { return masked_softmax(in[0], mask, -1e4); };
      auto composed = [&](const std::vector<Tensor>& in) { return softmax(where(mask, in[0], -1e4), -1); };
      EXPECT_ALLCLOSE(fused({x}), composed({x}), 0, 0) << what;
      EXPECT_ALLCLOSE(testing::vjp(fused, {x}, ct)[0], testing::vjp(composed, {x}, ct)[0], 0, 0) << what;
    }
  }
}

TEST(Softmax, Errors) {
  try {
    (void)softmax(ones({2, 3}, DType::I32));
    FAIL() << "expected DTypeError";
  } catch (const DTypeError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("softmax"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  }
  EXPECT_THROW((void)log_softmax(ones({2, 3}), 2), IndexError);
  EXPECT_THROW((void)softmax(Tensor()), ValueError);
}

void check_golden_unary(const std::string& name, const std::function<Tensor(const Tensor&)>& f,
                        double atol = 1e-7) {
  const auto& c = golden(name);
  Tensor x = golden_tensor(c["inputs"]["x"]);
  EXPECT_ALLCLOSE(f(x), golden_tensor(c["outputs"]["y"]), 2e-6, atol) << name;
  auto g = vjp([&](const std::vector<Tensor>& in) { return f(in[0]); }, {x}, golden_tensor(c["cotangent"]));
  EXPECT_ALLCLOSE(g[0], golden_tensor(c["grads"]["x"]), 2e-5, 1e-6) << name << " gradient";
}

TEST(Softmax, MatchesJax) {
  check_golden_unary("softmax_last", [](const Tensor& x) { return softmax(x, -1); });
  check_golden_unary("log_softmax_last", [](const Tensor& x) { return log_softmax(x, -1); });
  check_golden_unary("softmax_axis1", [](const Tensor& x) { return softmax(x, 1); });
  check_golden_unary("log_softmax_axis0", [](const Tensor& x) { return log_softmax(x, 0); });
}

TEST(Activations, GeluMatchesJax) {
  // At x = -4 the tanh form computes 1 + tanh(z) ~ 3.5e-5 in float32, where one ulp of tanh is a
  // relative 2e-3 of the result: XLA's tanh and libm's differ there (loom is the closer one to
  // the float64 value), so the absolute tolerance allows a few float32 ulps of 1.
  check_golden_unary("gelu_tanh", [](const Tensor& x) { return gelu(x); }, 5e-7);
  check_golden_unary("gelu_exact", [](const Tensor& x) { return gelu(x, false); });
}

}  // namespace
}  // namespace loom

#include <cmath>
#include <cstring>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "kernels/elementwise_math.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::test_values;

double reference_unary(UnaryOp op, double x, double alpha) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return std::fabs(x);
    case UnaryOp::Sign: return x > 0 ? 1 : (x < 0 ? -1 : 0);
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Log1p: return std::log1p(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return 1 / std::sqrt(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Reciprocal: return 1 / x;
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Sigmoid: return 1 / (1 + std::exp(-x));
    case UnaryOp::Relu: return std::max(x, 0.0);
    case UnaryOp::Relu6: return std::min(std::max(x, 0.0), 6.0);
    case UnaryOp::Gelu:
      return 0.5 * x * (1 + std::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    case UnaryOp::GeluExact: return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0)));
    case UnaryOp::Silu: return x / (1 + std::exp(-x));
    case UnaryOp::Softplus: return std::log(1 + std::exp(x));
    case UnaryOp::Elu: return x > 0 ? x : alpha * (std::exp(x) - 1);
    case UnaryOp::LeakyRelu: return x >= 0 ? x : alpha * x;
    case UnaryOp::Erf: return std::erf(x);
    case UnaryOp::LogSigmoid: return -std::log(1 + std::exp(-x));
    case UnaryOp::Sin: return std::sin(x);
    case UnaryOp::Cos: return std::cos(x);
  }
  return 0;
}

struct UnaryCase {
  UnaryOp op;
  double lo, hi;  // sampling range (positive for log/sqrt)
};
const UnaryCase kUnary[] = {
    {UnaryOp::Neg, -3, 3},     {UnaryOp::Abs, -3, 3},        {UnaryOp::Sign, -3, 3},
    {UnaryOp::Exp, -3, 3},     {UnaryOp::Log, 0.1, 4},       {UnaryOp::Log1p, -0.5, 3},
    {UnaryOp::Sqrt, 0.1, 4},   {UnaryOp::Rsqrt, 0.1, 4},     {UnaryOp::Square, -3, 3},
    {UnaryOp::Reciprocal, 0.5, 3}, {UnaryOp::Tanh, -3, 3},   {UnaryOp::Sigmoid, -5, 5},
    {UnaryOp::Relu, -3, 3},    {UnaryOp::Relu6, -3, 9},      {UnaryOp::Gelu, -3, 3},
    {UnaryOp::GeluExact, -3, 3}, {UnaryOp::Silu, -3, 3},     {UnaryOp::Softplus, -5, 5},
    {UnaryOp::Elu, -3, 3},     {UnaryOp::LeakyRelu, -3, 3},  {UnaryOp::Erf, -2, 2},
    {UnaryOp::LogSigmoid, -5, 5}, {UnaryOp::Sin, -7, 7},        {UnaryOp::Cos, -7, 7}};

TEST(Elementwise, UnaryMatchesReference) {
  for (const UnaryCase& c : kUnary) {
    Tensor x = test_values({3, 5}, 11, c.lo, c.hi);
    std::vector<double> xs = x.to_vector<double>(), expect;
    for (double v : xs) expect.push_back(reference_unary(c.op, v, 0.3));
    EXPECT_ALLCLOSE(unary(c.op, x, 0.3), from_vector(expect, {3, 5}), 1e-12, 1e-12) << unary_op_name(c.op);
    // float32 path agrees with the float64 reference to float precision
    EXPECT_ALLCLOSE(unary(c.op, x.to(DType::F32), 0.3), from_vector(expect, {3, 5}), 2e-6, 1e-6)
        << unary_op_name(c.op);
  }
}

// Float ulps between a and b (a large number across signs, unless both are zeros).
int float_ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return (ia < 0) != (ib < 0) ? (a == b ? 0 : 1 << 30) : std::abs(ia - ib);
}

// The float tanh behind tanh and GELU on the CPU (kernels/elementwise_math.h) against double
// tanh rounded to float: within 2 ulp over [-12, 12] on both sides of its branch point (0.625),
// signed zeros, infinities and NaN as tanh.
TEST(Elementwise, FloatTanhWithinTwoUlps) {
  int worst = 0;
  float at = 0;
  for (int i = -2000000; i <= 2000000; ++i) {
    const float x = float(i) * 6e-6f;
    const int u = float_ulps(tanh_float(x), float(std::tanh(double(x))));
    if (u > worst) worst = u, at = x;
  }
  for (float x = 0.6f; x < 0.65f; x = std::nextafter(x, 1.0f)) {
    const int u = float_ulps(tanh_float(x), float(std::tanh(double(x))));
    if (u > worst) worst = u, at = x;
  }
  EXPECT_LE(worst, 2) << "at x = " << at;
  EXPECT_TRUE(std::signbit(tanh_float(-0.0f)));
  EXPECT_EQ(tanh_float(INFINITY), 1.0f);
  EXPECT_EQ(tanh_float(-INFINITY), -1.0f);
  EXPECT_TRUE(std::isnan(tanh_float(NAN)));
  EXPECT_EQ(tanh_float(1e-40f), 1e-40f);
}

// The float exp behind them against double exp rounded to float, over the range its callers
// clamp to.
TEST(Elementwise, FloatExpWithinTwoUlps) {
  int worst = 0;
  float at = 0;
  for (int i = -870000; i <= 880000; ++i) {
    const float y = float(i) * 1e-4f;
    const int u = float_ulps(exp_float_in_range(y), float(std::exp(double(y))));
    if (u > worst) worst = u, at = y;
  }
  EXPECT_LE(worst, 2) << "at y = " << at;
}

// GELU's tanh form on the CPU (x sigmoid(2u) in float) and its derivative against the float64
// formulas over [-6, 6]: GELU within a relative 6e-6, the rounding of u carried through the
// exponential (|2u| = 12 at x = -6), where the tanh form in float has no correct digit left of
// 1 + tanh(u); the derivative within 4e-7, a few float ulps of its values near 1. Signed zeros,
// infinities and NaN as the tanh form gives them.
TEST(Elementwise, FloatGeluMatchesFloat64) {
  const double c = std::sqrt(2.0 / M_PI);
  auto gelu64 = [&](double x) { return 0.5 * x * (1 + std::tanh(c * (x + 0.044715 * x * x * x))); };
  auto dgelu64 = [&](double x) {
    const double t = std::tanh(c * (x + 0.044715 * x * x * x));
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
  };
  double worst = 0, worst_d = 0;
  for (int i = -600000; i <= 600000; ++i) {
    const float x = float(i) * 1e-5f;
    const double g = gelu64(x);
    worst = std::max(worst, std::fabs(gelu_tanh_of(x) - g) / std::max(std::fabs(g), 1e-30));
    worst_d = std::max(worst_d, std::fabs(gelu_tanh_derivative_of(x) - dgelu64(x)));
  }
  EXPECT_LT(worst, 6e-6);
  EXPECT_LT(worst_d, 4e-7);
  EXPECT_EQ(gelu_tanh_of(0.0f), 0.0f);
  EXPECT_EQ(gelu_tanh_of(INFINITY), INFINITY);
  EXPECT_TRUE(std::isnan(gelu_tanh_of(-INFINITY)));  // -inf * (1 + tanh(-inf)), as JAX
  EXPECT_TRUE(std::isnan(gelu_tanh_of(NAN)));
  EXPECT_TRUE(std::isnan(gelu_tanh_derivative_of(NAN)));
  EXPECT_EQ(gelu_tanh_of(-20.0f), 0.0f);
  EXPECT_EQ(gelu_tanh_of(20.0f), 20.0f);
}

TEST(Elementwise, UnaryGradients) {
  for (const UnaryCase& c : kUnary) {
    if (c.op == UnaryOp::Sign) continue;  // piecewise constant
    // keep away from kinks (relu at 0, relu6 at 0 and 6, abs at 0)
    Tensor x = test_values({7}, 12, c.lo, c.hi);
    std::vector<double> v = x.to_vector<double>();
    for (double& e : v)
      if (std::fabs(e) < 1e-3 || std::fabs(e - 6) < 1e-3) e += 0.01;
    x = from_vector(v, {7});
    EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return sum(unary(c.op, in[0], 0.3)); }, {x}))
        << unary_op_name(c.op);
  }
}

// A value computed elsewhere (a product's fused GELU epilogue) carries the op's gradient, and is
// returned as given.
TEST(Elementwise, ValueComputedElsewhereCarriesTheOpsGradient) {
  Tensor x = test_values({7}, 13, -3, 3);
  EXPECT_TRUE(check_gradients([](const std::vector<Tensor>& in) {
    return sum(unary_with_value(UnaryOp::Gelu, in[0], gelu(in[0].detach())));
  }, {x}));
  Tensor given = full({7}, 5.0, DType::F64);
  EXPECT_EQ(unary_with_value(UnaryOp::Gelu, x, given).to_vector<double>(), given.to_vector<double>());
}

TEST(Elementwise, BinaryBroadcastingAndValues) {
  Tensor a = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = from_vector<double>({10, 20, 30}, {3});
  EXPECT_ALLCLOSE(a + b, from_vector<double>({11, 22, 33, 14, 25, 36}, {2, 3}), 0, 0);
  EXPECT_ALLCLOSE(b - a, from_vector<double>({9, 18, 27, 6, 15, 24}, {2, 3}), 0, 0);
  Tensor col = from_vector<double>({2, 3}, {2, 1});
  EXPECT_ALLCLOSE(a * col, from_vector<double>({2, 4, 6, 12, 15, 18}, {2, 3}), 0, 0);
  EXPECT_ALLCLOSE(a / 2.0, from_vector<double>({0.5, 1, 1.5, 2, 2.5, 3}, {2, 3}), 0, 0);
  EXPECT_ALLCLOSE(pow(a, 2.0), from_vector<double>({1, 4, 9, 16, 25, 36}, {2, 3}), 1e-15, 0);
  EXPECT_ALLCLOSE(maximum(a, scalar(3.5, DType::F64)), from_vector<double>({3.5, 3.5, 3.5, 4, 5, 6}, {2, 3}), 0, 0);
  EXPECT_ALLCLOSE(minimum(a, col), from_vector<double>({1, 2, 2, 3, 3, 3}, {2, 3}), 0, 0);
  EXPECT_EQ((a + b).shape(), (Shape{2, 3}));
  // size-1 and empty
  EXPECT_EQ((zeros({0, 3}) + ones({3})).shape(), (Shape{0, 3}));
  EXPECT_EQ((ones({1}) * ones({4, 1, 2})).shape(), (Shape{4, 1, 2}));
}

// Rows through several outer dims that do not merge (a strided view, a broadcast operand), on
// one thread and split across the threads: every element is its operands' at its own index
// (the rows' offsets advance without a division per row, kernels/cpu/strided_loop.h).
TEST(Elementwise, BroadcastOverManyShortRows) {
  for (int64_t n0 : {2, 6}) {  // 2,002 rows of 7 on one thread; 6,006 rows across the threads
    Tensor a = swapaxes(test_values({n0, 13, 11, 7}, 1), 1, 2);  // [n0, 11, 13, 7], strided
    Tensor b = test_values({11, 1, 7}, 2);
    const std::vector<double> av = a.contiguous().to_vector<double>(), bv = b.to_vector<double>();
    const std::vector<double> sum = (a + b).to_vector<double>(), neg = (-a).to_vector<double>();
    ASSERT_EQ(sum.size(), size_t(n0 * 11 * 13 * 7));
    int64_t wrong = 0;
    for (int64_t i = 0; i < n0; ++i)
      for (int64_t j = 0; j < 11; ++j)
        for (int64_t k = 0; k < 13; ++k)
          for (int64_t l = 0; l < 7; ++l) {
            const size_t e = size_t(((i * 11 + j) * 13 + k) * 7 + l);
            wrong += sum[e] != av[e] + bv[size_t(j * 7 + l)];
            wrong += neg[e] != -av[e];
          }
    EXPECT_EQ(wrong, 0) << n0;
  }
}

TEST(Elementwise, ComparisonsAndWhere) {
  Tensor a = from_vector<float>({1, 2, 3}, {3});
  Tensor b = from_vector<float>({3, 2, 1}, {3});
  EXPECT_EQ(less(a, b).to_vector<bool>(), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(equal(a, b).to_vector<bool>(), (std::vector<bool>{false, true, false}));
  EXPECT_EQ(greater_equal(a, b).dtype(), DType::Bool);
  EXPECT_EQ(where(less(a, b), a, b).to_vector<float>(), (std::vector<float>{1, 2, 1}));
  EXPECT_EQ(logical_not(less(a, b)).to_vector<bool>(), (std::vector<bool>{false, true, true}));
}

TEST(Elementwise, NaNPropagatesThroughMaximum) {
  Tensor a = from_vector<float>({NAN, 1}, {2});
  Tensor b = from_vector<float>({0, NAN}, {2});
  auto m = maximum(a, b).to_vector<float>();
  EXPECT_TRUE(std::isnan(m[0]) && std::isnan(m[1]));
}

TEST(Elementwise, BinaryGradientsWithBroadcasting) {
  Tensor a = test_values({2, 3}, 21, 0.5, 2);
  Tensor b = test_values({3}, 22, 0.5, 2);
  auto check = [&](auto f) { EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return sum(f(in[0], in[1])); }, {a, b})); };
  check([](const Tensor& x, const Tensor& y) { return x + y; });
  check([](const Tensor& x, const Tensor& y) { return x - y; });
  check([](const Tensor& x, const Tensor& y) { return x * y; });
  check([](const Tensor& x, const Tensor& y) { return x / y; });
  check([](const Tensor& x, const Tensor& y) { return pow(x, y); });
  check([](const Tensor& x, const Tensor& y) { return maximum(x, y) * minimum(x, y); });
  check([](const Tensor& x, const Tensor& y) { return where(greater(x, y), x * x, y * 3.0); });
  check([](const Tensor& x, const Tensor& y) { return clip(x * y, 0.5, 2.0); });
}

TEST(Elementwise, ValueUsedSeveralTimesAccumulates) {
  Tensor a = test_values({4}, 23);
  EXPECT_TRUE(check_gradients([](const std::vector<Tensor>& in) {
    Tensor x = in[0];
    return sum(x * x * x + exp(x) * x);
  }, {a}));
}

TEST(Elementwise, MaximumTieSplitsGradient) {
  Tensor a = from_vector<double>({1.0}, {1});
  std::vector<Tensor> leaves{autograd::make_leaf(a, 0), autograd::make_leaf(a, 1)};
  autograd::RecordingGuard rec(true);
  auto g = autograd::backward(sum(maximum(leaves[0], leaves[1])), leaves);
  EXPECT_DOUBLE_EQ(g[0].item<double>(), 0.5);
  EXPECT_DOUBLE_EQ(g[1].item<double>(), 0.5);
}

TEST(Elementwise, ErrorsNameOpAndShapes) {
  try {
    (void)(ones({2, 3}) + ones({4}));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("add"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  }
  EXPECT_THROW((void)exp(ones({2}, DType::I32)), DTypeError);
  EXPECT_THROW((void)where(ones({2}), ones({2}), ones({2})), DTypeError);
  EXPECT_THROW((void)clip(ones({2}), 1, 0), ValueError);
}

TEST(Elementwise, IntegerArithmeticAndPromotion) {
  Tensor i = from_vector<int32_t>({1, 2, 3}, {3});
  EXPECT_EQ((i + i).dtype(), DType::I32);
  EXPECT_EQ((i + i).to_vector<int32_t>(), (std::vector<int32_t>{2, 4, 6}));
  EXPECT_EQ((i / i).dtype(), DType::F32);  // true division
  EXPECT_EQ((i + ones({3})).dtype(), DType::F32);
  EXPECT_EQ((ones({3}, DType::BF16) * 2.0).dtype(), DType::BF16);  // weak scalar keeps dtype
}

TEST(Elementwise, HalfPrecisionComputesInFloat) {
  Tensor x = from_vector<float>({0.1f, 1.5f, -2.25f}, {3});
  Tensor y = gelu(x.to(DType::BF16)).to(DType::F32);
  EXPECT_ALLCLOSE(y, gelu(x), 1e-2, 1e-3);
  EXPECT_EQ(gelu(x.to(DType::F16)).dtype(), DType::F16);
}

}  // namespace
}  // namespace loom

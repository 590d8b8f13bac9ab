// Reductions against plain C++ references, float64 gradient checks, JAX goldens and errors.
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/autodiff.h"
#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::golden_tensor;
using testing::test_values;

/// The elements of each output of a reduction over `axes` (normalised), in row-major order.
std::vector<std::vector<double>> groups(const Tensor& x, Axes axes) {
  std::vector<double> v = x.to_vector<double>();
  const Shape& shape = x.shape();
  if (axes.empty())
    for (int64_t d = 0; d < x.ndim(); ++d) axes.push_back(d);
  for (int64_t& a : axes) a = a < 0 ? a + x.ndim() : a;
  int64_t m = 1;
  for (int64_t d = 0; d < x.ndim(); ++d)
    if (std::find(axes.begin(), axes.end(), d) == axes.end()) m *= shape[size_t(d)];
  std::vector<std::vector<double>> out(static_cast<size_t>(m));
  for (size_t flat = 0; flat < v.size(); ++flat) {
    int64_t rem = int64_t(flat), o = 0, scale = 1;
    for (int64_t d = x.ndim() - 1; d >= 0; --d) {
      int64_t i = rem % shape[size_t(d)];
      rem /= shape[size_t(d)];
      if (std::find(axes.begin(), axes.end(), d) != axes.end()) continue;
      o += i * scale;
      scale *= shape[size_t(d)];
    }
    out[size_t(o)].push_back(v[flat]);
  }
  return out;
}

template <typename F>
std::vector<double> per_group(const std::vector<std::vector<double>>& gs, F f) {
  std::vector<double> r;
  for (const auto& g : gs) r.push_back(f(g));
  return r;
}

double ref_sum(const std::vector<double>& g) {
  double s = 0;
  for (double v : g) s += v;
  return s;
}
double ref_mean(const std::vector<double>& g) { return ref_sum(g) / double(g.size()); }
double ref_var(const std::vector<double>& g) {
  double m = ref_mean(g), s = 0;
  for (double v : g) s += (v - m) * (v - m);
  return s / double(g.size());
}
double ref_lse(const std::vector<double>& g) {
  double s = 0;
  for (double v : g) s += std::exp(v);
  return std::log(s);
}

struct AxesCase {
  Shape shape;
  Axes axes;
  bool keepdims;
};
const AxesCase kAxesCases[] = {
    {{2, 3, 4}, {}, false},      {{2, 3, 4}, {1}, false},  {{2, 3, 4}, {0, 2}, true},
    {{2, 3, 4}, {-1}, true},     {{2, 3, 4}, {-3, -2}, false}, {{5}, {0}, false},
    {{1, 7, 1}, {1}, false},     {{3, 1, 2}, {1}, true},   {{4, 33}, {1}, false},
};

Shape expected_shape(const AxesCase& c) {
  Axes axes = normalize_axes(c.axes, int64_t(c.shape.size()), "test");
  return reduced_shape(c.shape, axes, c.keepdims);
}

TEST(Reduce, SumMeanMaxMinVarLogsumexpMatchReference) {
  uint64_t seed = 1;
  for (const AxesCase& c : kAxesCases) {
    Tensor x = test_values(c.shape, seed++, -2, 2);
    auto gs = groups(x, c.axes);
    Shape out_shape = expected_shape(c);
    auto check = [&](const Tensor& got, std::vector<double> want, const char* op) {
      EXPECT_ALLCLOSE(got, from_vector(want, out_shape), 1e-12, 1e-12)
          << op << " shape " << shape_str(c.shape) << " axes " << shape_str(c.axes);
    };
    check(sum(x, c.axes, c.keepdims), per_group(gs, ref_sum), "sum");
    check(mean(x, c.axes, c.keepdims), per_group(gs, ref_mean), "mean");
    check(max(x, c.axes, c.keepdims), per_group(gs, [](auto& g) { return *std::max_element(g.begin(), g.end()); }), "max");
    check(min(x, c.axes, c.keepdims), per_group(gs, [](auto& g) { return *std::min_element(g.begin(), g.end()); }), "min");
    check(var(x, c.axes, c.keepdims), per_group(gs, ref_var), "var");
    check(logsumexp(x, c.axes, c.keepdims), per_group(gs, ref_lse), "logsumexp");
    // float32 agrees with the float64 reference to float precision
    EXPECT_ALLCLOSE(var(x.to(DType::F32), c.axes, c.keepdims), from_vector(per_group(gs, ref_var), out_shape), 1e-5, 1e-6);
    EXPECT_ALLCLOSE(logsumexp(x.to(DType::F32), c.axes, c.keepdims), from_vector(per_group(gs, ref_lse), out_shape), 1e-6, 1e-6);
  }
}

TEST(Reduce, NonContiguousInputs) {
  Tensor base = test_values({4, 5, 6}, 7);
  Tensor x = transpose(base, {2, 0, 1});  // [6, 4, 5], strided
  ASSERT_FALSE(x.is_contiguous());
  Tensor xc = x.contiguous();
  for (Axes axes : {Axes{}, Axes{0}, Axes{1, 2}, Axes{2}}) {
    EXPECT_ALLCLOSE(sum(x, axes), sum(xc, axes), 1e-12, 1e-12);
    EXPECT_ALLCLOSE(var(x, axes), var(xc, axes), 1e-12, 1e-12);
    EXPECT_ALLCLOSE(logsumexp(x, axes, true), logsumexp(xc, axes, true), 1e-12, 1e-12);
  }
  EXPECT_ALLCLOSE(argmax(x, 1), argmax(xc, 1), 0, 0);
  EXPECT_ALLCLOSE(argmin(x, 0, true), argmin(xc, 0, true), 0, 0);
}

TEST(Reduce, EmptyAndSizeOne) {
  EXPECT_EQ(sum(zeros({0, 3}), {0}).to_vector<float>(), (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(sum(zeros({0, 3}), {1}).shape(), (Shape{0}));
  EXPECT_TRUE(std::isnan(var(zeros({0})).item<float>()));
  // logsumexp of nothing is log(0) = -inf, as jax.nn.logsumexp
  EXPECT_EQ(logsumexp(zeros({2, 0}), {1}).to_vector<float>(), (std::vector<float>(2, -INFINITY)));
  EXPECT_EQ(logsumexp(zeros({0, 2}), {1}).shape(), (Shape{0}));
  Tensor one = from_vector<double>({3.5}, {1, 1});
  EXPECT_DOUBLE_EQ(var(one).item<double>(), 0.0);
  EXPECT_DOUBLE_EQ(logsumexp(one).item<double>(), 3.5);
  EXPECT_EQ(argmax(one, 1).to_vector<int32_t>(), (std::vector<int32_t>{0}));
  EXPECT_EQ(argmax(zeros({0, 4}), 1).shape(), (Shape{0}));
  Tensor s = scalar(2.0, DType::F64);
  EXPECT_DOUBLE_EQ(logsumexp(s).item<double>(), 2.0);
  EXPECT_DOUBLE_EQ(l2_norm(s).item<double>(), 2.0);
}

TEST(Reduce, LogsumexpIsStableAndHandlesInfinities) {
  Tensor x = from_vector<float>({1000, 1000, -1000, -1000, -INFINITY, -INFINITY, INFINITY, 1,
                                 -INFINITY, 0},
                                {5, 2});
  std::vector<float> got = logsumexp(x, {1}).to_vector<float>();
  EXPECT_NEAR(got[0], 1000 + std::log(2.0), 1e-3);
  EXPECT_NEAR(got[1], -1000 + std::log(2.0), 1e-3);
  EXPECT_EQ(got[2], -INFINITY);
  EXPECT_EQ(got[3], INFINITY);
  EXPECT_FLOAT_EQ(got[4], 0.0f);
  // bf16 computes the shifted sum without overflow too
  EXPECT_NEAR(logsumexp(x.to(DType::BF16), {1}).to_vector<float>()[0], 1000.69, 4.0);
}

TEST(Reduce, LogsumexpGradientIsSoftmax) {
  Tensor x = test_values({3, 4}, 9, -3, 3);
  auto [value, g] = value_and_grad_tensor([](const Tensor& t) { return sum(logsumexp(t, {1})); })(x);
  std::vector<double> xv = x.to_vector<double>(), want;
  for (int r = 0; r < 3; ++r) {
    double s = 0;
    for (int c = 0; c < 4; ++c) s += std::exp(xv[size_t(r * 4 + c)]);
    for (int c = 0; c < 4; ++c) want.push_back(std::exp(xv[size_t(r * 4 + c)]) / s);
  }
  EXPECT_ALLCLOSE(g, from_vector(want, {3, 4}), 1e-12, 1e-14);
  // a masked (-inf) entry gets zero gradient
  Tensor m = from_vector<double>({0.5, -INFINITY, 1.0}, {3});
  auto [v2, g2] = value_and_grad_tensor([](const Tensor& t) { return logsumexp(t); })(m);
  EXPECT_EQ(g2.to_vector<double>()[1], 0.0);
}

TEST(Reduce, Gradients) {
  Tensor x = test_values({3, 4, 2}, 10);
  Tensor w = test_values({3, 4, 2}, 11);
  auto check = [&](auto f) {
    EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return f(in[0]); }, {x}));
  };
  check([&](const Tensor& t) { return sum(var(t, {1}) * sum(w, {1})); });
  check([&](const Tensor& t) { return sum(var(t, {0, 2}, true)); });
  check([&](const Tensor& t) { return var(t); });
  check([&](const Tensor& t) { return sum(logsumexp(t * 3.0, {-1}) * sum(w, {-1})); });
  check([&](const Tensor& t) { return sum(logsumexp(t, {0, 1}, true)); });
  check([&](const Tensor& t) { return l2_norm(t); });
  check([&](const Tensor& t) { return sum(mean(t, {2}) * max(t, {2})) + sum(min(t, {0, 1})); });
}

TEST(Reduce, ArgmaxArgmin) {
  Tensor x = from_vector<float>({1, 3, 3, 0,  //
                                 5, -1, 5, -1,  //
                                 2, NAN, 7, NAN},
                                {3, 4});
  EXPECT_EQ(argmax(x, 1).to_vector<int32_t>(), (std::vector<int32_t>{1, 0, 1}));  // first tie; NaN wins
  EXPECT_EQ(argmin(x, 1).to_vector<int32_t>(), (std::vector<int32_t>{3, 1, 1}));
  EXPECT_EQ(argmax(x, 0).to_vector<int32_t>(), (std::vector<int32_t>{1, 2, 2, 2}));
  EXPECT_EQ(argmax(x, -1, true).shape(), (Shape{3, 1}));
  EXPECT_EQ(argmax(x, 0).dtype(), DType::I32);
  Tensor i = from_vector<int32_t>({4, 9, 9, -2}, {4});
  EXPECT_EQ(argmax(i, 0).item<int32_t>(), 1);
  EXPECT_EQ(argmin(i, 0).item<int32_t>(), 3);
  EXPECT_EQ(argmax(i, 0).ndim(), 0);
  // reference over a larger random tensor on every axis
  Tensor r = test_values({3, 70, 5}, 12);
  for (int64_t axis = 0; axis < 3; ++axis) {
    Tensor moved = swapaxes(r, axis, -1).contiguous();
    auto gs = groups(moved, {-1});
    std::vector<double> want;
    for (auto& g : gs) want.push_back(double(std::max_element(g.begin(), g.end()) - g.begin()));
    Shape s = moved.shape();
    s.pop_back();
    EXPECT_ALLCLOSE(argmax(moved, -1).to(DType::F64), from_vector(want, s), 0, 0);
    EXPECT_ALLCLOSE(swapaxes(argmax(r, axis, true), axis, -1).reshape(s).to(DType::F64),
                    from_vector(want, s), 0, 0);
  }
}

TEST(Reduce, GlobalNormAndL2Norm) {
  Tree t;
  t.set("params/a", from_vector<float>({3, 4}, {2}));
  t.set("params/b/c", from_vector<float>({12}, {1, 1}));
  t.set("params/b/d", zeros({0}));
  t.set("steps", from_vector<int32_t>({0}, {1}));
  Tensor n = global_norm(t);
  EXPECT_EQ(n.dtype(), DType::F32);
  EXPECT_EQ(n.ndim(), 0);
  EXPECT_FLOAT_EQ(n.item<float>(), 13.0f);
  EXPECT_FLOAT_EQ(global_norm(Tree()).item<float>(), 0.0f);
  t.set("params/a", from_vector<float>({3, 4}, {2}).to(DType::BF16));
  EXPECT_FLOAT_EQ(global_norm(t).item<float>(), 13.0f);  // bf16 leaves summed in float32
  EXPECT_FLOAT_EQ(l2_norm(from_vector<float>({-3, 4}, {2})).item<float>(), 5.0f);
  // differentiable through a tree of float64 leaves: d||p|| / dp = p / ||p||
  Tensor a = test_values({2, 3}, 13), b = test_values({4}, 14);
  EXPECT_TRUE(check_gradients([](const std::vector<Tensor>& in) {
    Tree p;
    p.set("a", in[0]);
    p.set("b", in[1]);
    return global_norm(p);
  }, {a, b}));
}

TEST(Reduce, JaxGoldens) {
  nlohmann::json golden = testing::load_golden("reduce_shape.json");
  int checked = 0;
  for (const auto& c : golden.at("cases")) {
    std::string op = c.at("op");
    std::string name = c.at("name");
    if (op == "global_norm") {
      Tree t;
      for (auto& [path, leaf] : c.at("leaves").items()) t.set(path, golden_tensor(leaf));
      EXPECT_ALLCLOSE(global_norm(t), golden_tensor(c.at("out")), 1e-6, 1e-6) << name;
      ++checked;
      continue;
    }
    if (op != "var" && op != "logsumexp" && op != "argmax" && op != "argmin") continue;
    Tensor x = golden_tensor(c.at("x"));
    if (op == "argmax" || op == "argmin") {
      int64_t axis = c.at("axis");
      Tensor got = op == "argmax" ? argmax(x, axis) : argmin(x, axis);
      EXPECT_ALLCLOSE(got, golden_tensor(c.at("out")), 0, 0) << name;
      ++checked;
      continue;
    }
    Axes axes = c.at("axes").get<Axes>();
    bool keep = c.at("keepdims");
    auto f = [&](const Tensor& t) { return op == "var" ? var(t, axes, keep) : logsumexp(t, axes, keep); };
    EXPECT_ALLCLOSE(f(x), golden_tensor(c.at("out")), 1e-5, 1e-6) << name;
    Tensor w = golden_tensor(c.at("w"));
    auto [v, g] = value_and_grad_tensor([&](const Tensor& t) { return sum(f(t) * w); })(x);
    EXPECT_ALLCLOSE(g, golden_tensor(c.at("grad")), 1e-4, 1e-6) << name << " gradient";
    ++checked;
  }
  EXPECT_EQ(checked, 11);
}

TEST(Reduce, ErrorsNameOpAndShapes) {
  try {
    (void)argmax(zeros({2, 0, 3}), 1);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("argmax"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 0, 3]"), std::string::npos) << msg;
  }
  try {
    (void)var(ones({2, 3}), {2});
    FAIL() << "expected IndexError";
  } catch (const IndexError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("var"), std::string::npos) << msg;
    EXPECT_NE(msg.find("rank 2"), std::string::npos) << msg;
  }
  EXPECT_THROW((void)logsumexp(ones({2, 3}), {0, -2}), IndexError);  // repeated axis
  EXPECT_THROW((void)argmin(scalar(1.0), 0), IndexError);
  EXPECT_THROW((void)max(zeros({3, 0}), {1}), ShapeError);
}

}  // namespace
}  // namespace loom

// Pooling and padding on the CPU: resolve_padding's rules, max/min/avg pools against a padded-
// buffer reference in 1-D to 3-D, JAX's gradient routing for ties, NaN and all-padding windows,
// float64 finite-difference gradients, errors, and Flax goldens.
#include <cmath>
#include <limits>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/pool.h"
#include "core/ops/reduce.h"
#include "kernels/cpu/pool.h"  // PoolOp
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::test_values;

// Reference pool: copy x into an explicitly padded buffer filled with the init value (and a 0/1
// mask of real elements), then reduce every window of the padded buffer. Independent of the
// kernel's bounds arithmetic.
Tensor ref_pool(PoolOp op, const Tensor& x, const Shape& window, Shape strides, const PadPairs& pads,
                bool count_include_pad = true) {
  size_t nd = window.size();
  if (strides.empty()) strides.assign(nd, 1);
  Shape xs = x.shape();
  int64_t batch = 1;
  for (size_t d = 0; d + nd + 1 < xs.size(); ++d) batch *= xs[d];
  int64_t ch = xs.back();
  Shape in(xs.end() - 1 - int64_t(nd), xs.end() - 1), padded(nd), out(nd);
  for (size_t d = 0; d < nd; ++d) {
    padded[d] = in[d] + pads[d].first + pads[d].second;
    out[d] = padded[d] < window[d] ? 0 : (padded[d] - window[d]) / strides[d] + 1;
  }
  double init = op == PoolOp::Max ? -INFINITY : op == PoolOp::Min ? INFINITY : 0.0;
  int64_t psz = shape_numel(padded), isz = shape_numel(in), osz = shape_numel(out);
  std::vector<double> v = x.to_vector<double>();
  std::vector<double> buf(size_t(batch * psz * ch), init), mask(size_t(batch * psz), 0.0);
  std::vector<int64_t> idx(nd);
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t i = 0; i < isz; ++i) {
      int64_t rest = i, p = 0;
      for (size_t d = nd; d-- > 0;) {
        idx[d] = rest % in[d];
        rest /= in[d];
      }
      for (size_t d = 0; d < nd; ++d) p = p * padded[d] + idx[d] + pads[d].first;
      mask[size_t(n * psz + p)] = 1;
      for (int64_t c = 0; c < ch; ++c) buf[size_t((n * psz + p) * ch + c)] = v[size_t((n * isz + i) * ch + c)];
    }
  std::vector<double> res(size_t(batch * osz * ch));
  int64_t wn = shape_numel(window);
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t o = 0; o < osz; ++o) {
      std::vector<int64_t> oi(nd);
      int64_t rest = o;
      for (size_t d = nd; d-- > 0;) {
        oi[d] = rest % out[d];
        rest /= out[d];
      }
      for (int64_t c = 0; c < ch; ++c) {
        double acc = init, count = 0;
        for (int64_t w = 0; w < wn; ++w) {
          int64_t wr = w, p = 0;
          std::vector<int64_t> wi(nd);
          for (size_t d = nd; d-- > 0;) {
            wi[d] = wr % window[d];
            wr /= window[d];
          }
          for (size_t d = 0; d < nd; ++d) p = p * padded[d] + oi[d] * strides[d] + wi[d];
          double e = buf[size_t((n * psz + p) * ch + c)];
          if (op == PoolOp::Max) acc = std::max(acc, e);
          else if (op == PoolOp::Min) acc = std::min(acc, e);
          else acc += e;
          count += mask[size_t(n * psz + p)];
        }
        if (op == PoolOp::Avg) acc /= count_include_pad ? double(wn) : count;
        res[size_t((n * osz + o) * ch + c)] = acc;
      }
    }
  Shape out_shape(xs.begin(), xs.end() - 1 - int64_t(nd));
  out_shape.insert(out_shape.end(), out.begin(), out.end());
  out_shape.push_back(ch);
  return from_vector(res, out_shape);
}

Tensor run_pool(PoolOp op, const Tensor& x, const Shape& window, const Shape& strides,
                const Padding& padding, bool count_include_pad = true) {
  if (op == PoolOp::Max) return max_pool(x, window, strides, padding);
  if (op == PoolOp::Min) return min_pool(x, window, strides, padding);
  return avg_pool(x, window, strides, padding, count_include_pad);
}

std::vector<double> grad_of_sum(PoolOp op, const Tensor& x, const Shape& window, const Shape& strides,
                                const Padding& padding) {
  Tensor leaf = autograd::make_leaf(x, 0);
  autograd::RecordingGuard rec(true);
  Tensor out = run_pool(op, leaf, window, strides, padding);
  return autograd::backward(sum(out), {leaf})[0].to_vector<double>();
}

TEST(Padding, ResolveFollowsJaxRules) {
  using P = PadPairs;
  EXPECT_EQ(resolve_padding(Padding::same(), {5}, {3}, {2}, {}), (P{{1, 1}}));
  EXPECT_EQ(resolve_padding(Padding::same(), {6}, {3}, {2}, {}), (P{{0, 1}}));
  EXPECT_EQ(resolve_padding(Padding::same(), {28, 28}, {3, 3}, {2, 2}, {}), (P{{0, 1}, {0, 1}}));
  EXPECT_EQ(resolve_padding(Padding::same(), {5}, {1}, {2}, {}), (P{{0, 0}}));  // stride > window
  EXPECT_EQ(resolve_padding(Padding::same(), {4}, {4}, {1}, {}), (P{{1, 2}}));  // extra goes high
  EXPECT_EQ(resolve_padding(Padding::same(), {7}, {3}, {1}, {2}), (P{{2, 2}}));  // k_eff = 5
  EXPECT_EQ(resolve_padding(Padding::valid(), {7, 3}, {3, 2}, {}, {}), (P{{0, 0}, {0, 0}}));
  EXPECT_EQ(resolve_padding(Padding::uniform(2), {7, 3}, {3, 2}, {}, {}), (P{{2, 2}, {2, 2}}));
  EXPECT_EQ(resolve_padding(Padding::explicit_pads({{1, 0}, {0, 3}}), {7, 3}, {3, 2}, {}, {}),
            (P{{1, 0}, {0, 3}}));
  EXPECT_EQ(resolve_padding(Padding::circular(), {7, 7}, {4, 3}, {}, {}), (P{{1, 2}, {1, 1}}));
  EXPECT_EQ(resolve_padding(Padding::reflect(), {7}, {3}, {}, {2}), (P{{2, 2}}));
  EXPECT_EQ(resolve_padding(Padding::causal(), {7}, {3}, {}, {2}), (P{{4, 0}}));
  EXPECT_THROW(resolve_padding(Padding::causal(), {7, 7}, {3, 3}, {}, {}), ShapeError);
  EXPECT_THROW(resolve_padding(Padding::explicit_pads({{1, 1}, {1, 1}, {1, 1}}), {7, 7}, {3, 3}, {}, {}),
               ShapeError);
  EXPECT_THROW(resolve_padding(Padding::same(), {7, 7}, {3}, {}, {}), ShapeError);
  EXPECT_THROW(resolve_padding(Padding::same(), {7}, {3}, {0}, {}), ValueError);
  EXPECT_EQ(Padding::explicit_pads({{1, 0}, {0, 3}}).str(), "[(1, 0), (0, 3)]");
  EXPECT_EQ(window_output_size(5, 3, 2, 1, 1), 3);
  EXPECT_EQ(window_output_size(2, 3, 1, 0, 0), 0);
}

TEST(Pool, MatchesPaddedReference) {
  struct Case {
    Shape x, window, strides;
    Padding padding;
  };
  std::vector<Case> cases = {
      {{2, 5, 6, 3}, {2, 2}, {2, 2}, Padding::valid()},
      {{2, 5, 6, 3}, {3, 3}, {2, 2}, Padding::same()},
      {{1, 4, 5, 2}, {2, 3}, {1, 2}, Padding::explicit_pads({{1, 0}, {2, 1}})},
      {{1, 4, 4, 1}, {3, 3}, {}, Padding::valid()},
      {{2, 7, 2}, {3}, {2}, Padding::same()},
      {{1, 4, 3, 5, 2}, {2, 2, 3}, {2, 1, 2}, Padding::same()},
      {{1, 3, 3, 2}, {2, 2}, {3, 3}, Padding::explicit_pads({{2, 2}, {0, 1}})},  // stride > window
      // Windows that tile the input, with inputs no window covers and a window partly outside.
      {{1, 5, 4, 7, 2}, {2, 2, 3}, {2, 2, 3}, Padding::valid()},
      {{2, 7, 3}, {3}, {3}, Padding::same()},
  };
  for (const Case& c : cases) {
    Tensor x = test_values(c.x, 60);
    PadPairs pads = resolve_padding(c.padding, Shape(c.x.end() - 1 - int64_t(c.window.size()), c.x.end() - 1),
                                    c.window, c.strides, {});
    for (PoolOp op : {PoolOp::Max, PoolOp::Min, PoolOp::Avg}) {
      std::string what = shape_str(c.x) + " " + c.padding.str() + " op " + std::to_string(int(op));
      Tensor expect = ref_pool(op, x, c.window, c.strides, pads);
      EXPECT_ALLCLOSE(run_pool(op, x, c.window, c.strides, c.padding), expect, 1e-12, 1e-12) << what;
      EXPECT_ALLCLOSE(run_pool(op, x.to(DType::F32), c.window, c.strides, c.padding), expect, 1e-6, 1e-6) << what;
      EXPECT_ALLCLOSE(run_pool(op, x.to(DType::BF16), c.window, c.strides, c.padding).to(DType::F64),
                      expect, 1e-2, 1e-2) << what;
    }
    EXPECT_ALLCLOSE(avg_pool(x, c.window, c.strides, c.padding, false),
                    ref_pool(PoolOp::Avg, x, c.window, c.strides, pads, false), 1e-12, 1e-12)
        << shape_str(c.x) << " " << c.padding.str();
  }
}

TEST(Pool, BatchDimsOptionalOrSeveral) {
  Tensor x = test_values({5, 6, 3}, 61);
  Tensor with_batch = max_pool(x.reshape({1, 5, 6, 3}), {2, 2}, {2, 2}, Padding::same());
  Tensor without = max_pool(x, {2, 2}, {2, 2}, Padding::same());
  EXPECT_EQ(without.shape(), (Shape{3, 3, 3}));
  EXPECT_ALLCLOSE(without, with_batch.reshape({3, 3, 3}), 0, 0);
  Tensor y = test_values({2, 3, 5, 4, 2}, 62);
  Tensor many = avg_pool(y, {2, 2}, {1, 2}, Padding::same(), false);
  Tensor flat = avg_pool(y.reshape({6, 5, 4, 2}), {2, 2}, {1, 2}, Padding::same(), false);
  EXPECT_EQ(many.shape(), (Shape{2, 3, 5, 2, 2}));
  EXPECT_ALLCLOSE(many, flat.reshape({2, 3, 5, 2, 2}), 0, 0);
}

TEST(Pool, EmptyOutputAndStridedInput) {
  EXPECT_EQ(max_pool(ones({1, 2, 2, 1}), {3, 3}).shape(), (Shape{1, 0, 0, 1}));
  EXPECT_EQ(avg_pool(zeros({0, 4, 4, 2}), {2, 2}).shape(), (Shape{0, 3, 3, 2}));
  // an NCHW-strided view of NHWC data: pooled through the contiguous copy
  Tensor base = test_values({2, 3, 4, 5}, 63);  // [N, C, H, W]
  Tensor nhwc(base.storage(), {2, 4, 5, 3}, {60, 5, 1, 20}, 0, DType::F64);
  EXPECT_ALLCLOSE(max_pool(nhwc, {2, 2}), max_pool(nhwc.contiguous(), {2, 2}), 0, 0);
}

TEST(Pool, GradientRoutingMatchesJax) {
  // Values computed with jax.grad of flax.linen.max_pool (jax 0.10.2): ties go to the first
  // maximum of each window.
  Tensor x = from_vector(std::vector<double>{1, 3, 3, 2, 3}, {1, 5, 1});
  EXPECT_EQ(grad_of_sum(PoolOp::Max, x, {3}, {}, Padding::valid()),
            (std::vector<double>{0, 2, 1, 0, 0}));
  EXPECT_EQ(grad_of_sum(PoolOp::Max, x, {2}, {1}, Padding::same()),
            (std::vector<double>{0, 2, 1, 0, 2}));
  EXPECT_EQ(grad_of_sum(PoolOp::Min, x, {3}, {}, Padding::valid()),
            (std::vector<double>{1, 0, 0, 2, 0}));
  // A window of padding and -inf selects the padding, whose gradient is dropped.
  Tensor ninf = full({1, 3, 1}, -INFINITY, DType::F64);
  EXPECT_EQ(grad_of_sum(PoolOp::Max, ninf, {2}, {}, Padding::explicit_pads({{1, 1}})),
            (std::vector<double>{1, 1, 1}));
  // NaN propagates through the value; the selection skips past it as XLA's `ge` does.
  Tensor withnan = from_vector(std::vector<double>{1, NAN, 2}, {1, 3, 1});
  std::vector<double> y = max_pool(withnan, {2}).to_vector<double>();
  EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1]));
  EXPECT_EQ(grad_of_sum(PoolOp::Max, withnan, {2}, {}, Padding::valid()),
            (std::vector<double>{0, 1, 1}));
  // count_include_pad=false: an all-padding window divides 0 by 0, as Flax.
  Tensor a = avg_pool(ones({1, 1, 1}), {1}, {}, Padding::explicit_pads({{1, 0}}), false);
  std::vector<double> av = a.to_vector<double>();
  EXPECT_TRUE(std::isnan(av[0]));
  EXPECT_EQ(av[1], 1.0);
}

TEST(Pool, Gradients) {
  auto weighted = [](const Tensor& out, uint64_t seed) { return sum(out * test_values(out.shape(), seed)); };
  struct Case {
    Shape x, window, strides;
    Padding padding;
  };
  std::vector<Case> cases = {
      {{2, 5, 4, 2}, {3, 3}, {2, 1}, Padding::same()},
      {{1, 5, 3}, {2}, {2}, Padding::explicit_pads({{1, 1}})},
      {{1, 3, 4, 3, 1}, {2, 2, 2}, {1, 2, 1}, Padding::same()},
      // Windows that tile the input (kernels/cpu/pool.cc windows_tile): a last row and column no
      // window covers; SAME padding after the input only.
      {{2, 5, 7, 3}, {2, 2}, {2, 2}, Padding::valid()},
      {{1, 5, 6, 2}, {2, 3}, {2, 3}, Padding::same()},
      {{1, 5, 4, 7, 2}, {2, 2, 3}, {2, 2, 3}, Padding::valid()},
      {{2, 7, 3}, {3}, {3}, Padding::same()},
      // Overlapping windows with padding before and after in the last dim (ResNet's stem pool).
      {{1, 4, 9, 2}, {3, 3}, {2, 2}, Padding::explicit_pads({{1, 0}, {1, 2}})},
  };
  for (const Case& c : cases) {
    Tensor x = test_values(c.x, 64);
    for (PoolOp op : {PoolOp::Max, PoolOp::Min, PoolOp::Avg})
      EXPECT_TRUE(check_gradients(
          [&](const std::vector<Tensor>& in) { return weighted(run_pool(op, in[0], c.window, c.strides, c.padding), 65); },
          {x}))
          << shape_str(c.x) << " op " << int(op);
    EXPECT_TRUE(check_gradients(
        [&](const std::vector<Tensor>& in) { return weighted(avg_pool(in[0], c.window, c.strides, c.padding, false), 66); },
        {x}))
        << shape_str(c.x) << " avg exclude";
  }
}

// Max/min keep each output's position in its window, in one byte under 255 window elements and
// in int32 from there (kernels/cpu/pool.h): both widths route the gradient as the finite
// differences say, including a window of exactly 255 and one over it with padding selected.
TEST(Pool, SelectionWidthsRouteTheGradient) {
  EXPECT_EQ(pool_selection_dtype({3, 3}), DType::U8);
  EXPECT_EQ(pool_selection_dtype({254}), DType::U8);
  EXPECT_EQ(pool_selection_dtype({255}), DType::I32);
  EXPECT_EQ(pool_selection_dtype({16, 16}), DType::I32);
  auto weighted = [](const Tensor& out) { return sum(out * test_values(out.shape(), 67)); };
  struct Case {
    Shape x, window, strides;
    Padding padding;
  };
  for (const Case& c : {Case{{1, 20, 20, 2}, {16, 16}, {3, 3}, Padding::same()},
                        Case{{2, 300, 2}, {255}, {40}, Padding::valid()},
                        Case{{2, 300, 2}, {254}, {40}, Padding::same()}}) {
    Tensor x = test_values(c.x, 68);
    for (PoolOp op : {PoolOp::Max, PoolOp::Min})
      EXPECT_TRUE(check_gradients(
          [&](const std::vector<Tensor>& in) { return weighted(run_pool(op, in[0], c.window, c.strides, c.padding)); },
          {x}))
          << shape_str(c.x) << " window " << shape_str(c.window) << " op " << int(op);
  }
}

TEST(Pool, ErrorsNameShapes) {
  Tensor x = zeros({2, 5, 5, 3});
  try {
    max_pool(zeros({5, 3}), {2, 2});
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("max_pool"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[5, 3]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 2]"), std::string::npos) << msg;
  }
  EXPECT_THROW(max_pool(x, {2, 2}, {1}), ShapeError);
  EXPECT_THROW(max_pool(x, {}), ShapeError);
  EXPECT_THROW(avg_pool(x, {0, 2}), ValueError);
  EXPECT_THROW(min_pool(x, {2, 2}, {0, 1}), ValueError);
  EXPECT_THROW(max_pool(ones({2, 5, 5, 3}, DType::I32), {2, 2}), DTypeError);
  EXPECT_THROW(max_pool(x, {2, 2}, {}, Padding::circular()), ValueError);
  EXPECT_THROW(max_pool(x, {2, 2}, {}, Padding::explicit_pads({{-1, 0}, {0, 0}})), ValueError);
  EXPECT_THROW(avg_pool(x, {2, 2}, {}, Padding::explicit_pads({{1, 0}, {0, 0}, {0, 0}})), ShapeError);
}

TEST(Pool, MatchesFlaxGoldens) {
  nlohmann::json golden = testing::load_golden("linalg_pool.json");
  for (const auto& c : golden.at("pool")) {
    std::string name = c.at("name"), op = c.at("op");
    Tensor x = testing::golden_tensor(c.at("x")), w = testing::golden_tensor(c.at("w"));
    Shape window = c.at("window").get<Shape>(), strides = c.at("strides").get<Shape>();
    Padding padding;
    if (c.at("padding").is_string()) {
      padding = c.at("padding") == "SAME" ? Padding::same() : Padding::valid();
    } else {
      PadPairs pairs;
      for (const auto& p : c.at("padding")) pairs.push_back({p.at(0).get<int64_t>(), p.at(1).get<int64_t>()});
      padding = Padding::explicit_pads(pairs);
    }
    PoolOp kind = op == "max_pool" ? PoolOp::Max : op == "min_pool" ? PoolOp::Min : PoolOp::Avg;
    bool include = c.at("count_include_pad").get<bool>();
    EXPECT_ALLCLOSE(run_pool(kind, x, window, strides, padding, include),
                    testing::golden_tensor(c.at("out")), 1e-6, 1e-6) << name;
    Tensor leaf = autograd::make_leaf(x, 0);
    Tensor g;
    {
      autograd::RecordingGuard rec(true);
      g = autograd::backward(sum(run_pool(kind, leaf, window, strides, padding, include) * w), {leaf})[0];
    }
    EXPECT_ALLCLOSE(g, testing::golden_tensor(c.at("grad_x")), 1e-6, 1e-6) << name;
  }
}

}  // namespace
}  // namespace loom

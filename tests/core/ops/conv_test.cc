// conv / conv_transpose on the CPU: against a direct-summation reference over an explicitly
// padded and dilated input (independent of im2col), float64 finite-difference gradients for
// every option, Flax goldens (conv_transpose's too), the CUDA path's symmetric-padding rewrite,
// errors and edge cases; conv_transpose's sizes and gradients are in conv_transpose_test.cc.
#include "core/ops/conv.h"

#include <chrono>
#include <cmath>
#include <string>
#include <tuple>

#include "core/autodiff.h"
#include "core/fusions.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "kernels/cpu/conv.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::test_values;

// --- reference ------------------------------------------------------------------------------

// Row-major multi-index <-> flat index helpers.
Shape unflatten(int64_t i, const Shape& shape) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = i % shape[d];
    i /= shape[d];
  }
  return idx;
}
int64_t flat(const Shape& idx, const Shape& shape) {
  int64_t f = 0;
  for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + idx[d];
  return f;
}

/// jnp.pad of the spatial dims with mode 'wrap' (wrap = true) or 'reflect'.
Tensor reference_pad(const Tensor& x, const PadPairs& pads, bool wrap) {
  Shape in = x.shape(), out = in;
  for (size_t d = 0; d < pads.size(); ++d) out[d + 1] += pads[d].first + pads[d].second;
  std::vector<double> xs = x.to_vector<double>(), ys(size_t(shape_numel(out)));
  for (int64_t i = 0; i < int64_t(ys.size()); ++i) {
    Shape idx = unflatten(i, out);
    for (size_t d = 0; d < pads.size(); ++d) {
      int64_t n = in[d + 1], j = idx[d + 1] - pads[d].first;
      if (wrap) {
        j = ((j % n) + n) % n;
      } else {  // reflect about the edges, repeatedly
        while (j < 0 || j >= n) j = j < 0 ? -j : 2 * (n - 1) - j;
      }
      idx[d + 1] = j;
    }
    ys[size_t(i)] = xs[size_t(flat(idx, in))];
  }
  return from_vector(ys, out);
}

/// Direct convolution: builds the padded, dilated input explicitly, then sums every window.
Tensor reference_conv(const Tensor& x, const Tensor& w, const Shape& strides, const PadPairs& pads,
                      const Shape& lhs, const Shape& rhs, int64_t groups) {
  size_t r = size_t(x.ndim() - 2);
  Shape xs = x.shape(), wsh = w.shape();
  Shape ps = xs, ys{xs[0]};
  for (size_t d = 0; d < r; ++d) {
    ps[d + 1] = std::max<int64_t>(0, (xs[d + 1] - 1) * lhs[d] + 1 + pads[d].first + pads[d].second);
    int64_t k_eff = (wsh[d] - 1) * rhs[d] + 1;
    ys.push_back(ps[d + 1] >= k_eff ? (ps[d + 1] - k_eff) / strides[d] + 1 : 0);
  }
  ys.push_back(wsh.back());
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>();
  std::vector<double> pv(size_t(shape_numel(ps)), 0.0), yv(size_t(shape_numel(ys)), 0.0);
  for (int64_t i = 0; i < int64_t(pv.size()); ++i) {
    Shape idx = unflatten(i, ps);
    bool ok = true;
    for (size_t d = 0; d < r && ok; ++d) {
      int64_t q = idx[d + 1] - pads[d].first;
      ok = q >= 0 && q % lhs[d] == 0 && q / lhs[d] < xs[d + 1];
      idx[d + 1] = ok ? q / lhs[d] : 0;
    }
    if (ok) pv[size_t(i)] = xv[size_t(flat(idx, xs))];
  }
  int64_t cg = xs.back() / groups, coutg = wsh.back() / groups;
  Shape kshape(wsh.begin(), wsh.begin() + int64_t(r));
  for (int64_t i = 0; i < int64_t(yv.size()); ++i) {
    Shape o = unflatten(i, ys);
    int64_t co = o.back(), g = co / coutg;
    double acc = 0;
    for (int64_t t = 0; t < shape_numel(kshape); ++t) {
      Shape k = unflatten(t, kshape), p{o[0]};
      for (size_t d = 0; d < r; ++d) p.push_back(o[d + 1] * strides[d] + k[d] * rhs[d]);
      p.push_back(0);
      for (int64_t ci = 0; ci < cg; ++ci) {
        p.back() = g * cg + ci;
        Shape widx = k;
        widx.push_back(ci);
        widx.push_back(co);
        acc += pv[size_t(flat(p, ps))] * wv[size_t(flat(widx, wsh))];
      }
    }
    yv[size_t(i)] = acc;
  }
  return from_vector(yv, ys);
}

Shape ones_or(const Shape& v, size_t r) { return v.empty() ? Shape(r, 1) : v; }

/// The reference for conv(x, w, opt), resolving Flax's padding modes itself.
Tensor reference(const Tensor& x, const Tensor& w, const ConvOptions& opt) {
  size_t r = size_t(x.ndim() - 2);
  Shape st = ones_or(opt.strides, r), lhs = ones_or(opt.input_dilation, r);
  Shape rhs = ones_or(opt.kernel_dilation, r);
  PadPairs pads(r, {0, 0});
  Tensor xp = x;
  for (size_t d = 0; d < r; ++d) {
    int64_t k_eff = (w.shape()[d] - 1) * rhs[d] + 1, n = x.shape()[d + 1];
    switch (opt.padding.kind) {
      case Padding::Same: {
        int64_t out = (n + st[d] - 1) / st[d];
        int64_t total = std::max<int64_t>(0, (out - 1) * st[d] + k_eff - n);
        pads[d] = {total / 2, total - total / 2};
        break;
      }
      case Padding::Explicit:
        pads[d] = opt.padding.pairs.size() == 1 ? opt.padding.pairs[0] : opt.padding.pairs[d];
        break;
      case Padding::Causal:
        pads[d] = {k_eff - 1, 0};
        break;
      case Padding::Circular:
      case Padding::Reflect:
        pads[d] = {(k_eff - 1) / 2, k_eff / 2};
        break;
      case Padding::Valid:
        break;
    }
  }
  if (opt.padding.kind == Padding::Circular || opt.padding.kind == Padding::Reflect) {
    xp = reference_pad(x, pads, opt.padding.kind == Padding::Circular);
    pads.assign(r, {0, 0});
  }
  return reference_conv(xp, w, st, pads, lhs, rhs, opt.feature_group_count);
}

// --- cases ----------------------------------------------------------------------------------

struct Case {
  const char* name;
  Shape x, w;
  ConvOptions opt;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"1d_same", {2, 6, 3}, {3, 3, 2}, {}},
      {"1d_same_even_kernel_stride2", {1, 7, 2}, {4, 2, 2}, {.strides = {2}}},
      {"1d_valid_stride2_dilation2",
       {2, 9, 1},
       {2, 1, 2},
       {.strides = {2}, .padding = Padding::valid(), .kernel_dilation = {2}}},
      {"1d_causal_dilation2",
       {1, 5, 2},
       {3, 2, 2},
       {.padding = Padding::causal(), .kernel_dilation = {2}}},
      {"1d_circular_even_kernel", {1, 5, 2}, {4, 2, 1}, {.padding = Padding::circular()}},
      {"1d_reflect_dilation2",
       {1, 5, 1},
       {3, 1, 2},
       {.padding = Padding::reflect(), .kernel_dilation = {2}}},
      {"1d_explicit_negative_input_dilation",
       {1, 4, 2},
       {2, 2, 2},
       {.padding = Padding::explicit_pads({{2, -1}}), .input_dilation = {2}}},
      {"2d_same_stride_groups",
       {1, 5, 4, 4},
       {3, 2, 2, 4},
       {.strides = {2, 1}, .feature_group_count = 2}},
      {"2d_valid_kernel_dilation",
       {1, 6, 4, 2},
       {2, 2, 2, 2},
       {.padding = Padding::valid(), .kernel_dilation = {2, 1}}},
      {"2d_explicit_both_dilations",
       {1, 3, 4, 2},
       {2, 2, 2, 2},
       {.strides = {1, 2},
        .padding = Padding::explicit_pads({{1, 2}, {0, 1}}),
        .input_dilation = {2, 1},
        .kernel_dilation = {1, 2}}},
      {"2d_circular_stride2",
       {1, 4, 5, 1},
       {3, 3, 1, 2},
       {.strides = {2, 2}, .padding = Padding::circular()}},
      {"2d_reflect_kernel_dilation",
       {1, 4, 5, 2},
       {3, 2, 2, 1},
       {.padding = Padding::reflect(), .kernel_dilation = {1, 2}}},
      {"2d_depthwise_same", {1, 4, 4, 2}, {3, 3, 1, 4}, {.feature_group_count = 2}},
      {"2d_1x1_direct_groups",
       {2, 3, 3, 4},
       {1, 1, 2, 4},
       {.padding = Padding::valid(), .feature_group_count = 2}},
      {"2d_1x1_stride2", {1, 5, 5, 2}, {1, 1, 2, 3}, {.strides = {2, 2}}},
      {"2d_1x1_product", {2, 3, 4, 3}, {1, 1, 3, 5}, {}},
      {"3d_1x1_valid_product", {1, 2, 3, 2, 4}, {1, 1, 1, 4, 2}, {.padding = Padding::valid()}},
      {"2d_uniform_padding", {1, 4, 4, 1}, {3, 3, 1, 2}, {.padding = Padding::uniform(1)}},
      {"2d_crop_everything",
       {1, 3, 3, 1},
       {2, 2, 1, 1},
       {.padding = Padding::explicit_pads({{-4, 3}, {0, 0}})}},
      {"2d_one_channel_both_dilations",  // one input channel: im2col's gather of single values
       {2, 3, 4, 1},
       {2, 3, 1, 3},
       {.strides = {1, 2},
        .padding = Padding::explicit_pads({{1, 2}, {2, -1}}),
        .input_dilation = {2, 1},
        .kernel_dilation = {1, 2}}},
      {"3d_one_channel_same", {1, 3, 4, 3, 1}, {2, 3, 2, 1, 2}, {}},
      {"3d_same_stride", {1, 3, 4, 3, 2}, {2, 2, 3, 2, 2}, {.strides = {2, 1, 2}}},
      {"3d_valid_groups_dilation",
       {1, 4, 3, 4, 2},
       {2, 1, 2, 1, 2},
       {.padding = Padding::valid(), .kernel_dilation = {2, 1, 1}, .feature_group_count = 2}},
  };
  return c;
}

Tensor loss_weights(const Shape& shape) { return test_values(shape, 99, -1, 1); }

TEST(Conv, MatchesReferenceForEveryOption) {
  uint64_t seed = 1;
  for (const Case& c : cases()) {
    Tensor x = test_values(c.x, seed++), w = test_values(c.w, seed++);
    Tensor expect = reference(x, w, c.opt);
    Tensor y = conv(x, w, c.opt);
    EXPECT_ALLCLOSE(y, expect, 1e-12, 1e-12) << c.name;
    EXPECT_ALLCLOSE(conv(x.to(DType::F32), w.to(DType::F32), c.opt), expect, 1e-5, 1e-5) << c.name;
  }
}

TEST(Conv, GradientsByFiniteDifferences) {
  uint64_t seed = 100;
  for (const Case& c : cases()) {
    Tensor x = test_values(c.x, seed++), w = test_values(c.w, seed++);
    Shape y_shape = conv(x, w, c.opt).shape();
    if (shape_numel(y_shape) == 0) continue;
    Tensor r = loss_weights(y_shape);
    auto f = [&](const std::vector<Tensor>& in) { return sum(conv(in[0], in[1], c.opt) * r); };
    EXPECT_TRUE(check_gradients(f, {x, w})) << c.name;
  }
}

// conv_bias: on the CPU in float32/float64 the products add the bias (one "conv" node with the
// bias as its third input); the values and all three gradients are those of conv + bias. The
// 1x1 product route and half types add it as a separate op.
TEST(Conv, BiasAddedByTheProductsEqualsTheAdd) {
  uint64_t seed = 400;
  for (const Case& c : cases()) {
    Tensor x = test_values(c.x, seed++), w = test_values(c.w, seed++);
    Tensor b = test_values({c.w.back()}, seed++);
    for (DType dt : {DType::F64, DType::F32}) {
      const double tol = dt == DType::F64 ? 1e-12 : 1e-5;
      Tensor xd = x.to(dt), wd = w.to(dt), bd = b.to(dt);
      EXPECT_ALLCLOSE(conv_bias(xd, wd, bd, c.opt), conv(xd, wd, c.opt) + bd, tol, tol) << c.name;
    }
    Shape y_shape = conv(x, w, c.opt).shape();
    if (shape_numel(y_shape) == 0) continue;
    Tensor lx = autograd::make_leaf(x, 0), lw = autograd::make_leaf(w, 1),
           lb = autograd::make_leaf(b, 2);
    autograd::RecordingGuard rec(true);
    Tensor y = conv_bias(lx, lw, lb, c.opt);
    const bool product = std::string(c.name).find("product") != std::string::npos;
    EXPECT_EQ(std::string(y.grad_node()->op), product ? "add" : "conv") << c.name;
    EXPECT_EQ(y.grad_node()->inputs.size(), product ? 2u : 3u) << c.name;
    Tensor r = loss_weights(y_shape);
    auto fused = autograd::backward(sum(y * r), {lx, lw, lb});
    auto apart = autograd::backward(sum((conv(lx, lw, c.opt) + lb) * r), {lx, lw, lb});
    for (size_t i = 0; i < 3; ++i) EXPECT_ALLCLOSE(fused[i], apart[i], 1e-12, 1e-12) << c.name << i;
    auto f = [&](const std::vector<Tensor>& in) {
      return sum(conv_bias(in[0], in[1], in[2], c.opt) * r);
    };
    EXPECT_TRUE(check_gradients(f, {x, w, b})) << c.name;
  }
  // Half types: the convolution rounds to bfloat16 before the add, as conv + bias does.
  Tensor x = test_values({2, 5, 5, 3}, 8, -1, 1, DType::BF16),
         k = test_values({3, 3, 3, 4}, 9, -1, 1, DType::BF16), b = test_values({4}, 10).to(DType::BF16);
  EXPECT_ALLCLOSE(conv_bias(x, k, b).to(DType::F32), (conv(x, k) + b).to(DType::F32), 0, 0);
  // No input channels: the output is the bias.
  Tensor none = conv_bias(zeros({1, 3, 3, 0}, DType::F64), zeros({3, 3, 0, 4}, DType::F64),
                          from_vector(std::vector<double>{1, 2, 3, 4}, {4}));
  EXPECT_ALLCLOSE(none, broadcast_to(from_vector(std::vector<double>{1, 2, 3, 4}, {4}), {1, 3, 3, 4}),
                  0, 0);
}

// A second contribution to x's gradient (here sum(x * s), whose backward runs first) is offered
// to the convolution's backward, which adds its input gradient into it (beta = 1 on the CPU's
// GEMM and col2im, cuDNN's beta on CUDA). The sum must equal the separate gradients.
TEST(Conv, InputGradientAddsIntoAnEarlierContribution) {
  uint64_t seed = 300;
  for (const Case& c : cases()) {
    Tensor x = test_values(c.x, seed++), w = test_values(c.w, seed++);
    Tensor r = loss_weights(conv(x, w, c.opt).shape()), s = test_values(c.x, seed++);
    Tensor lx = autograd::make_leaf(x, 0), lw = autograd::make_leaf(w, 1);
    autograd::RecordingGuard rec(true);
    auto alone = autograd::backward(sum(conv(lx, lw, c.opt) * r), {lx, lw});
    auto both = autograd::backward(sum(conv(lx, lw, c.opt) * r) + sum(lx * s), {lx, lw});
    EXPECT_ALLCLOSE(both[0], alone[0] + s, 1e-12, 1e-12) << c.name;
    EXPECT_ALLCLOSE(both[1], alone[1], 1e-12, 1e-12) << c.name;
  }
}

TEST(Conv, BackwardInputKernelAccumulates) {
  // im2col (3x3, padded) and direct (1x1: the GEMM writes dx itself) paths
  for (int64_t k : {3, 1}) {
    const int64_t p = k / 2;
    const ConvGeometry g{.batch = 2, .in_channels = 4, .out_channels = 5, .groups = 1,
                         .in_spatial = {6, 6}, .kernel_spatial = {k, k}, .out_spatial = {6, 6},
                         .strides = {1, 1}, .pad_lo = {p, p}, .pad_hi = {p, p},
                         .lhs_dilation = {1, 1}, .rhs_dilation = {1, 1}};
    const Shape w_shape = g.kernel_shape();
    Tensor dy = test_values(g.y_shape(), 1), w = test_values(w_shape, 2);
    Tensor fresh = test_values(g.x_shape(), 3), earlier = test_values(g.x_shape(), 4);
    Tensor sum_in = earlier.contiguous() * 1.0;
    cpu::conv_backward_input(g, DType::F64, dy.raw_data(), w.raw_data(), fresh.raw_data(), false);
    cpu::conv_backward_input(g, DType::F64, dy.raw_data(), w.raw_data(), sum_in.raw_data(), true);
    EXPECT_ALLCLOSE(sum_in, earlier + fresh, 1e-13, 1e-13) << shape_str(w_shape);
  }
}

// The CPU forward can keep its im2col columns for the kernel gradient: the same product, so the
// same numbers to the bit; a 1x1 unit-stride convolution has no columns to keep.
TEST(Conv, KernelGradientFromKeptColumnsIsExact) {
  const ConvGeometry g{.batch = 3, .in_channels = 4, .out_channels = 6, .groups = 2,
                       .in_spatial = {7, 6}, .kernel_spatial = {3, 2}, .out_spatial = {4, 3},
                       .strides = {2, 2}, .pad_lo = {1, 0}, .pad_hi = {1, 0},
                       .lhs_dilation = {1, 1}, .rhs_dilation = {1, 1}};
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor x = test_values(g.x_shape(), 1).to(dt), w = test_values(g.kernel_shape(), 2).to(dt);
    Tensor dy = test_values(g.y_shape(), 3).to(dt);
    Tensor y = Tensor::empty(g.y_shape(), dt), y_kept = Tensor::empty(g.y_shape(), dt);
    Tensor columns = Tensor::empty({cpu::conv_columns_size(g)}, dt);
    EXPECT_EQ(cpu::conv_columns_size(g), 3 * 4 * 3 * (3 * 2) * 4);  // rows x (taps x channels)
    cpu::conv_forward(g, dt, x.raw_data(), w.raw_data(), y.raw_data());
    cpu::conv_forward(g, dt, x.raw_data(), w.raw_data(), y_kept.raw_data(), columns.raw_data());
    EXPECT_ALLCLOSE(y_kept, y, 0, 0);
    Tensor dw = Tensor::empty(g.kernel_shape(), dt), dw_kept = Tensor::empty(g.kernel_shape(), dt);
    cpu::conv_backward_kernel(g, dt, x.raw_data(), dy.raw_data(), dw.raw_data());
    cpu::conv_backward_kernel(g, dt, x.raw_data(), dy.raw_data(), dw_kept.raw_data(),
                              columns.raw_data());
    EXPECT_ALLCLOSE(dw_kept, dw, 0, 0) << dtype_name(dt);
  }
  ConvGeometry pointwise = g;
  pointwise.kernel_spatial = {1, 1};
  pointwise.strides = {1, 1};
  pointwise.pad_lo = pointwise.pad_hi = {0, 0};
  pointwise.out_spatial = pointwise.in_spatial;
  EXPECT_EQ(cpu::conv_columns_size(pointwise), 0);
}

// A 1x1 convolution with unit strides, no padding and one group runs as a matrix product (the
// kernel read as [C_in, C_out] through a reshape; the node is still named conv, for debug_nans
// and errors); the convolution kernels compute the same values, and convolutions with anything
// else to do stay convolutions.
TEST(Conv, PointwiseConvolutionIsAProduct) {
  struct Route {
    Shape x, w;
    ConvOptions opt;
    bool product;
  };
  const std::vector<Route> routes = {
      {{2, 3, 4, 3}, {1, 1, 3, 5}, {}, true},
      {{2, 5, 3}, {1, 3, 4}, {.padding = Padding::valid()}, true},
      {{2, 3, 4, 3}, {1, 1, 3, 4}, {.strides = {2, 1}}, false},
      {{2, 3, 4, 4}, {1, 1, 2, 4}, {.feature_group_count = 2}, false},
      {{2, 3, 4, 3}, {1, 1, 3, 4}, {.padding = Padding::explicit_pads({{1, 0}, {0, 0}})}, false},
      {{2, 3, 4, 3}, {3, 3, 3, 4}, {}, false},
  };
  uint64_t seed = 700;
  for (const Route& c : routes) {
    Tensor x = test_values(c.x, seed++), w = test_values(c.w, seed++);
    auto run = [&](bool as_product) {
      FusionScope route({Fusion::pointwise_conv_as_product}, as_product);
      Tensor lx = autograd::make_leaf(x, 0), lw = autograd::make_leaf(w, 1);
      autograd::RecordingGuard rec(true);
      Tensor y = conv(lx, lw, c.opt);
      const autograd::Node& node = *y.grad_node();
      EXPECT_EQ(std::string(node.op), "conv");
      bool product = node.inputs.at(1) != lw.grad_node();  // the kernel's reshape in between
      auto g = autograd::backward(sum(y * loss_weights(y.shape())), {lx, lw});
      return std::make_tuple(y.detach(), g[0], g[1], product);
    };
    auto [y, dx, dw, product] = run(true);
    auto [y_conv, dx_conv, dw_conv, product_when_off] = run(false);
    std::string name = shape_str(c.x) + " * " + shape_str(c.w);
    EXPECT_EQ(product, c.product) << name;
    EXPECT_FALSE(product_when_off) << name;
    EXPECT_EQ(dw.shape(), c.w) << name;
    EXPECT_ALLCLOSE(y, y_conv, 1e-13, 1e-13) << name;
    EXPECT_ALLCLOSE(dx, dx_conv, 1e-13, 1e-13) << name;
    EXPECT_ALLCLOSE(dw, dw_conv, 1e-13, 1e-13) << name;
  }
}

// The CUDA path rewrites input dilation and asymmetric / negative padding into pad/slice ops
// plus a symmetric convolution; check that rewrite (forward and gradients) on the CPU.
TEST(Conv, SymmetricPaddingRewriteMatches) {
  uint64_t seed = 200;
  for (const Case& c : cases()) {
    Tensor x = test_values(c.x, seed++), w = test_values(c.w, seed++);
    EXPECT_ALLCLOSE(detail::conv_symmetric_padding_form(x, w, c.opt), conv(x, w, c.opt), 1e-12,
                    1e-12)
        << c.name;
    Shape y_shape = conv(x, w, c.opt).shape();
    if (shape_numel(y_shape) == 0) continue;
    Tensor r = loss_weights(y_shape);
    std::vector<Tensor> direct, rewritten;
    for (int pass = 0; pass < 2; ++pass) {
      Tensor lx = autograd::make_leaf(x, 0), lw = autograd::make_leaf(w, 1);
      autograd::RecordingGuard rec(true);
      Tensor y =
          pass == 0 ? conv(lx, lw, c.opt) : detail::conv_symmetric_padding_form(lx, lw, c.opt);
      (pass == 0 ? direct : rewritten) = autograd::backward(sum(y * r), {lx, lw});
    }
    EXPECT_ALLCLOSE(rewritten[0], direct[0], 1e-12, 1e-12) << c.name;
    EXPECT_ALLCLOSE(rewritten[1], direct[1], 1e-12, 1e-12) << c.name;
  }
}

// The rewrite keeps x, not its padded copy, for the kernel gradient and pads it again there (as
// on the GPU, where ResNet-50's stride-2 SAME convolutions pad (0, 1)): with im2col columns
// over kConvColumnsChunkBytes the CPU kernel gradient reads x too (37.7 MB of columns here).
TEST(Conv, SymmetricPaddingRewriteRepadsForTheKernelGradient) {
  Tensor x = test_values({8, 128, 128, 16}, 300), w = test_values({3, 3, 16, 8}, 301);
  const ConvOptions opt{.strides = {2, 2}};  // SAME: pads (0, 1) per spatial dim
  ASSERT_GT(size_t(8 * 64 * 64) * (9 * 16) * sizeof(double), cpu::kConvColumnsChunkBytes);
  Tensor r = loss_weights({8, 64, 64, 8});
  std::vector<Tensor> direct, rewritten;
  for (int pass = 0; pass < 2; ++pass) {
    Tensor lx = autograd::make_leaf(x, 0), lw = autograd::make_leaf(w, 1);
    autograd::RecordingGuard rec(true);
    Tensor y = pass == 0 ? conv(lx, lw, opt) : detail::conv_symmetric_padding_form(lx, lw, opt);
    (pass == 0 ? direct : rewritten) = autograd::backward(sum(y * r), {lx, lw});
  }
  EXPECT_ALLCLOSE(rewritten[0], direct[0], 1e-12, 1e-12);
  EXPECT_ALLCLOSE(rewritten[1], direct[1], 1e-12, 1e-12);
}

// --- goldens from Flax ----------------------------------------------------------------------

Padding golden_padding(const nlohmann::json& p) {
  if (p.is_string()) {
    std::string s = p.get<std::string>();
    if (s == "SAME") return Padding::same();
    if (s == "VALID") return Padding::valid();
    if (s == "CIRCULAR") return Padding::circular();
    if (s == "REFLECT") return Padding::reflect();
    if (s == "CAUSAL") return Padding::causal();
    ADD_FAILURE() << "unknown padding " << s;
  }
  PadPairs pairs;
  for (const auto& pr : p) pairs.push_back({pr[0].get<int64_t>(), pr[1].get<int64_t>()});
  return Padding::explicit_pads(pairs);
}

Tensor golden_apply(const nlohmann::json& c, const Tensor& x, const Tensor& k) {
  const auto& o = c.at("options");
  auto shape_of = [&](const char* key) {
    return o.contains(key) ? o.at(key).get<Shape>() : Shape{};
  };
  Padding padding = o.contains("padding") ? golden_padding(o.at("padding")) : Padding::same();
  if (c.at("op") == "conv")
    return conv(x, k,
                {.strides = shape_of("strides"),
                 .padding = padding,
                 .input_dilation = shape_of("input_dilation"),
                 .kernel_dilation = shape_of("kernel_dilation"),
                 .feature_group_count = o.value("feature_group_count", int64_t(1))});
  return conv_transpose(x, k,
                        {.strides = shape_of("strides"),
                         .padding = padding,
                         .kernel_dilation = shape_of("kernel_dilation"),
                         .transpose_kernel = o.value("transpose_kernel", false)});
}

TEST(Conv, MatchesFlaxGoldens) {
  nlohmann::json doc = testing::load_golden("conv.json");
  ASSERT_GE(doc.at("cases").size(), 20u);
  for (const auto& c : doc.at("cases")) {
    std::string name = c.at("name");
    Tensor x = testing::golden_tensor(c.at("x")), k = testing::golden_tensor(c.at("kernel"));
    Tensor y = testing::golden_tensor(c.at("y"));
    EXPECT_ALLCLOSE(golden_apply(c, x, k), y, 1e-12, 1e-12) << name;
    EXPECT_ALLCLOSE(golden_apply(c, x.to(DType::F32), k.to(DType::F32)), y, 1e-5, 1e-5) << name;
    if (!c.contains("dx")) continue;
    Tensor ct = testing::golden_tensor(c.at("cotangent"));
    Tensor lx = autograd::make_leaf(x, 0), lk = autograd::make_leaf(k, 1);
    autograd::RecordingGuard rec(true);
    auto grads = autograd::backward(sum(golden_apply(c, lx, lk) * ct), {lx, lk});
    EXPECT_ALLCLOSE(grads[0], testing::golden_tensor(c.at("dx")), 1e-12, 1e-12) << name;
    EXPECT_ALLCLOSE(grads[1], testing::golden_tensor(c.at("dkernel")), 1e-12, 1e-12) << name;
  }
}

// --- edge cases and errors ------------------------------------------------------------------

TEST(Conv, HalfTypesComputeInFloat32OnCpu) {
  Tensor x = test_values({2, 5, 5, 3}, 8, -1, 1, DType::BF16),
         k = test_values({3, 3, 3, 4}, 9, -1, 1, DType::BF16);
  Tensor y = conv(x, k, {.strides = {2, 2}});
  EXPECT_EQ(y.dtype(), DType::BF16);
  EXPECT_ALLCLOSE(y.to(DType::F32), conv(x.to(DType::F32), k.to(DType::F32), {.strides = {2, 2}}),
                  1e-2, 1e-2);
  Tensor h = conv(x.to(DType::F16), k.to(DType::F16));
  EXPECT_EQ(h.dtype(), DType::F16);
}

TEST(Conv, EmptyBatchAndEmptyOutput) {
  Tensor k = test_values({3, 3, 2, 4}, 1);
  Tensor x0 = zeros({0, 5, 5, 2}, DType::F64);
  EXPECT_EQ(conv(x0, k).shape(), (Shape{0, 5, 5, 4}));
  Tensor lx = autograd::make_leaf(x0, 0), lk = autograd::make_leaf(k, 1);
  {
    autograd::RecordingGuard rec(true);
    auto g = autograd::backward(sum(conv(lx, lk)), {lx, lk});
    EXPECT_EQ(g[0].shape(), x0.shape());
    EXPECT_ALLCLOSE(g[1], zeros_like(k), 0, 0);
  }
  Tensor small = test_values({1, 2, 2, 2}, 2);
  EXPECT_EQ(conv(small, k, {.padding = Padding::valid()}).shape(), (Shape{1, 0, 0, 4}));
}

// Large enough that the im2col buffer is split into several batch chunks (~32 MB each); the
// batched result must equal image-by-image convolutions, and dW must sum over every chunk.
TEST(Conv, BatchChunkingMatchesPerImage) {
  Tensor x = test_values({4, 64, 64, 64}, 3, -1, 1, DType::F32);
  Tensor k = test_values({3, 3, 64, 4}, 4, -1, 1, DType::F32);
  Tensor lk = autograd::make_leaf(k, 0);
  autograd::RecordingGuard rec(true);
  Tensor y = conv(x, lk);
  Tensor dk = autograd::backward(sum(y), {lk})[0], dk_sum;
  for (int64_t n = 0; n < 4; ++n) {
    Tensor lk1 = autograd::make_leaf(k, 0);
    Tensor yn = conv(slice_axis(x, 0, n, n + 1), lk1);
    EXPECT_ALLCLOSE(yn, slice_axis(y, 0, n, n + 1), 1e-5, 1e-5) << n;
    Tensor g = autograd::backward(sum(yn), {lk1})[0];
    dk_sum = dk_sum.defined() ? dk_sum + g : g;
  }
  EXPECT_ALLCLOSE(dk, dk_sum, 1e-4, 1e-3);
}

// The input gradient goes in chunks of images whose column matrix fits a core's L2 (1 MiB: here
// 12 x 12 x 9 x 64 floats = 332 KiB per image, chunks of 3 and 2 images). Every column element
// is still one dot product, so each image's gradient equals the image alone's to the bit.
TEST(Conv, InputGradientChunksEqualEachImageAlone) {
  Tensor x = test_values({5, 12, 12, 64}, 5, -1, 1, DType::F32);
  Tensor k = test_values({3, 3, 64, 8}, 6, -1, 1, DType::F32);
  Tensor ct = test_values({5, 12, 12, 8}, 7, -1, 1, DType::F32);
  auto dx = testing::vjp([&](const std::vector<Tensor>& in) { return conv(in[0], k); }, {x}, ct)[0];
  for (int64_t n = 0; n < 5; ++n) {
    auto dxn = testing::vjp([&](const std::vector<Tensor>& in) { return conv(in[0], k); },
                            {slice_axis(x, 0, n, n + 1)}, slice_axis(ct, 0, n, n + 1))[0];
    EXPECT_ALLCLOSE(dxn, slice_axis(dx, 0, n, n + 1), 0, 0) << n;
  }
}

template <typename E, typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "unexpected exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception";
  return "";
}

TEST(Conv, ErrorsNameTheOpAndShapes) {
  Tensor x = test_values({1, 5, 5, 4}, 1), k = test_values({3, 3, 4, 6}, 2);
  std::string m = error_of<ShapeError>([&] { conv(x, test_values({3, 3, 3, 6}, 3)); });
  EXPECT_NE(m.find("conv"), std::string::npos) << m;
  EXPECT_NE(m.find("[1, 5, 5, 4]"), std::string::npos) << m;
  EXPECT_NE(m.find("[3, 3, 3, 6]"), std::string::npos) << m;
  m = error_of<ShapeError>([&] {
    conv(x, test_values({3, 3, 2, 5}, 3), {.feature_group_count = 2});
  });
  EXPECT_NE(m.find("[3, 3, 2, 5]"), std::string::npos) << m;
  m = error_of<ShapeError>([&] { conv(test_values({5, 4}, 1), k); });
  EXPECT_NE(m.find("[5, 4]"), std::string::npos) << m;
  m = error_of<ShapeError>([&] { conv(x, test_values({3, 4, 6}, 2)); });
  EXPECT_NE(m.find("[3, 4, 6]"), std::string::npos) << m;
  m = error_of<DTypeError>([&] { conv(x.to(DType::F32), k); });
  EXPECT_NE(m.find("float32"), std::string::npos) << m;
  EXPECT_NE(m.find("float64"), std::string::npos) << m;
  error_of<DTypeError>([&] { conv(x.to(DType::I32), k.to(DType::I32)); });
  m = error_of<ShapeError>([&] { conv(x, k, {.strides = {2}}); });
  EXPECT_NE(m.find("strides"), std::string::npos) << m;
  error_of<ValueError>([&] { conv(x, k, {.kernel_dilation = {0, 1}}); });
  m = error_of<ShapeError>([&] { conv(x, k, {.padding = Padding::causal()}); });
  EXPECT_NE(m.find("CAUSAL"), std::string::npos) << m;
  m = error_of<ValueError>([&] { conv(x, k, {.input_dilation = {2, 2}}); });
  EXPECT_NE(m.find("SAME"), std::string::npos) << m;
  m = error_of<ValueError>([&] { conv_transpose(x, k, {.padding = Padding::circular()}); });
  EXPECT_NE(m.find("conv_transpose"), std::string::npos) << m;
  m = error_of<ShapeError>([&] { conv_transpose(x, test_values({3, 3, 5, 6}, 4)); });
  EXPECT_NE(m.find("conv_transpose"), std::string::npos) << m;
  m = error_of<ShapeError>([&] { conv_bias(x, k, test_values({4}, 5)); });
  EXPECT_NE(m.find("bias [4]"), std::string::npos) << m;
  EXPECT_NE(m.find("[3, 3, 4, 6]"), std::string::npos) << m;
}

// Not a test: the seed CNN's two convolutions (3x3x1->32 on 28x28, 3x3x32->64 on 14x14) forward
// and backward for a batch of 128. Run with --gtest_also_run_disabled_tests
// --gtest_filter=Conv.DISABLED_BenchmarkSeedCnn.
TEST(Conv, DISABLED_BenchmarkSeedCnn) {
  Tensor x1 = test_values({128, 28, 28, 1}, 1, -1, 1, DType::F32),
         k1 = test_values({3, 3, 1, 32}, 2, -1, 1, DType::F32);
  Tensor x2 = test_values({128, 14, 14, 32}, 3, -1, 1, DType::F32),
         k2 = test_values({3, 3, 32, 64}, 4, -1, 1, DType::F32);
  for (int rep = 0; rep < 6; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    Tensor lk1 = autograd::make_leaf(k1, 0), lx2 = autograd::make_leaf(x2, 1),
           lk2 = autograd::make_leaf(k2, 2);
    autograd::RecordingGuard rec(true);
    Tensor y =
        sum(conv(x1, lk1)) + sum(conv(lx2, lk2));  // conv1 has no input gradient, as in training
    auto g = autograd::backward(y, {lk1, lx2, lk2});
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("seed CNN convs, batch 128, forward+backward: %.1f ms\n", ms);
  }
}

}  // namespace
}  // namespace loom

// Layer / RMS / group norm: float64 references, fused-vs-composed agreement; and for every norm
// (BatchNorm's own cases: batch_norm_test.cc) finite-difference gradients of the fused kernels
// and composed paths, Flax goldens and error cases.
#include <cmath>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/norm.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::golden_tensor;
using testing::test_values;
using testing::vjp;

const nlohmann::json& golden(const std::string& name) { return testing::golden_case("nn_ops.json", name); }

/// Normalises each row of x [rows, n] (two-pass statistics in double); scale/bias per column.
Tensor reference_rows(const Tensor& x2d, const std::vector<double>& scale,
                      const std::vector<double>& bias, double eps, bool rms) {
  int64_t rows = x2d.shape()[0], n = x2d.shape()[1];
  std::vector<double> v = x2d.to_vector<double>(), out(v.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mu = 0, var = 0;
    for (int64_t j = 0; j < n; ++j) mu += v[size_t(r * n + j)] / double(n);
    if (rms) mu = 0;
    for (int64_t j = 0; j < n; ++j) var += std::pow(v[size_t(r * n + j)] - mu, 2) / double(n);
    for (int64_t j = 0; j < n; ++j)
      out[size_t(r * n + j)] = (v[size_t(r * n + j)] - mu) / std::sqrt(var + eps) *
                                   (scale.empty() ? 1.0 : scale[size_t(j)]) +
                               (bias.empty() ? 0.0 : bias[size_t(j)]);
  }
  return from_vector(out, x2d.shape());
}

TEST(LayerNorm, MatchesReference) {
  Tensor x = test_values({5, 7}, 1, -3, 5);
  Tensor s = test_values({7}, 2, 0.5, 1.5), b = test_values({7}, 3);
  auto sv = s.to_vector<double>(), bv = b.to_vector<double>();
  EXPECT_ALLCLOSE(layer_norm(x, s, b), reference_rows(x, sv, bv, 1e-6, false), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(layer_norm(x, Tensor(), Tensor(), 0.1), reference_rows(x, {}, {}, 0.1, false), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(layer_norm(x, s, Tensor()), reference_rows(x, sv, {}, 1e-6, false), 1e-12, 1e-12);
  Tensor y32 = layer_norm(x.to(DType::F32), s.to(DType::F32), b.to(DType::F32));
  EXPECT_EQ(y32.dtype(), DType::F32);
  EXPECT_ALLCLOSE(y32, reference_rows(x, sv, bv, 1e-6, false), 1e-5, 1e-5);
  // Flax promotes the result with the parameters: bf16 input with f32 params gives f32
  Tensor xb = x.to(DType::BF16);
  Tensor expect_b = reference_rows(xb.to(DType::F64), sv, bv, 1e-6, false);
  Tensor yb = layer_norm(xb, s.to(DType::F32), b.to(DType::F32));
  EXPECT_EQ(yb.dtype(), DType::F32);
  EXPECT_ALLCLOSE(yb, expect_b, 1e-5, 1e-5);  // statistics in f32: only the input was rounded
  EXPECT_EQ(layer_norm(xb, Tensor(), Tensor()).dtype(), DType::BF16);
  EXPECT_ALLCLOSE(layer_norm(xb, s.to(DType::BF16), b.to(DType::BF16)), expect_b, 2e-2, 2e-2);
  // f16 with bf16 parameters promotes to f32 (as jnp.promote_types)
  Tensor yh = layer_norm(x.to(DType::F16), s.to(DType::BF16), Tensor());
  EXPECT_EQ(yh.dtype(), DType::F32);
  EXPECT_ALLCLOSE(yh, reference_rows(x.to(DType::F16).to(DType::F64), s.to(DType::BF16).to_vector<double>(), {}, 1e-6, false), 1e-5, 1e-5);
}

TEST(LayerNorm, AxesAndParameterLayouts) {
  // two trailing axes with a [3, 4] scale (fused), against the same rows flattened
  Tensor x = test_values({2, 3, 4}, 4, -2, 2);
  Tensor s = test_values({3, 4}, 5, 0.5, 1.5), b = test_values({3, 4}, 6);
  EXPECT_ALLCLOSE(layer_norm(x, s, b, 1e-3, {1, 2}),
                  reference_rows(x.reshape({2, 12}), s.to_vector<double>(), b.to_vector<double>(), 1e-3, false).reshape({2, 3, 4}),
                  1e-12, 1e-12);
  // a middle axis (composed from ops), against the transposed problem
  Tensor s4 = test_values({3}, 7, 0.5, 1.5), b4 = test_values({3}, 8);
  Tensor mid = layer_norm(x, s4, b4, 1e-6, {1});
  Tensor xt = transpose(x, {0, 2, 1}).contiguous().reshape({8, 3});
  Tensor expect = reference_rows(xt, s4.to_vector<double>(), b4.to_vector<double>(), 1e-6, false);
  EXPECT_ALLCLOSE(transpose(mid, {0, 2, 1}).contiguous().reshape({8, 3}), expect, 1e-12, 1e-12);
  // all axes
  EXPECT_ALLCLOSE(layer_norm(x, Tensor(), Tensor(), 1e-6, {0, 1, 2}),
                  reference_rows(x.reshape({1, 24}), {}, {}, 1e-6, false).reshape({2, 3, 4}), 1e-12, 1e-12);
  // a scale that broadcasts over the batch too (not a feature vector: composed path) equals
  // normalising without parameters and applying them afterwards
  Tensor sb = test_values({2, 1, 4}, 9, 0.5, 1.5), bb = test_values({2, 1, 4}, 10);
  EXPECT_ALLCLOSE(layer_norm(x, sb, bb), layer_norm(x, Tensor(), Tensor()) * sb + bb, 1e-14, 1e-14);
  // a constant row has zero variance: y = bias
  Tensor c = full({2, 5}, 3.25, DType::F32);
  Tensor cb = from_vector<float>({1, 2, 3, 4, 5}, {5});
  EXPECT_ALLCLOSE(layer_norm(c, ones({5}), cb), broadcast_to(cb, {2, 5}), 0, 1e-6);
}

TEST(LayerNorm, ParameterGradientsSumOverRows) {
  // d scale = sum over rows of g * xhat, d bias = sum of g (over more rows than the kernels'
  // row chunks), in float64 and for bfloat16 inputs with float32 parameters.
  Tensor x = test_values({300, 24}, 12, -2, 3);
  Tensor s = test_values({24}, 13, 0.5, 1.5), b = test_values({24}, 14);
  Tensor ct = test_values({300, 24}, 15, -1, 1);
  auto g = vjp([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }, {x, s, b}, ct);
  EXPECT_ALLCLOSE(g[1], sum(ct * layer_norm(x, Tensor(), Tensor()), {0}), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(g[2], sum(ct, {0}), 1e-12, 1e-12);
  auto gr = vjp([](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); }, {x, s}, ct);
  EXPECT_ALLCLOSE(gr[1], sum(ct * rms_norm(x, Tensor()), {0}), 1e-12, 1e-12);
  Tensor xb = x.to(DType::BF16), s32 = s.to(DType::F32), b32 = b.to(DType::F32);
  auto gb = vjp([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }, {xb, s32, b32},
                ct.to(DType::F32));
  EXPECT_EQ(gb[1].dtype(), DType::F32);
  Tensor ct32 = ct.to(DType::F32).to(DType::F64);
  EXPECT_ALLCLOSE(gb[1], sum(ct32 * layer_norm(xb.to(DType::F64), Tensor(), Tensor()), {0}), 1e-5, 1e-5);
  EXPECT_ALLCLOSE(gb[2], sum(ct32, {0}), 1e-5, 1e-5);
}

// In ln(x) + x * x the product's gradient reaches x first and the norm's backward adds its dx
// into it in place (autograd::accumulation_target); the sum must equal the two gradients'.
TEST(LayerNorm, InputGradientAddsIntoAnEarlierContribution) {
  Tensor x = test_values({7, 33}, 21, -2, 3), s = test_values({33}, 22, 0.5, 1.5);
  Tensor b = test_values({33}, 23), ct = test_values({7, 33}, 24);
  for (bool rms : {false, true}) {
    auto norm = [rms](const std::vector<Tensor>& in) {
      return rms ? rms_norm(in[0], in[1]) : layer_norm(in[0], in[1], in[2]);
    };
    auto both = vjp([&](const std::vector<Tensor>& in) { return norm(in) + in[0] * in[0]; }, {x, s, b}, ct);
    auto alone = vjp(norm, {x, s, b}, ct);
    EXPECT_ALLCLOSE(both[0], alone[0] + ct * x * 2.0, 1e-12, 1e-12) << rms;
    EXPECT_ALLCLOSE(both[1], alone[1], 1e-12, 1e-12) << rms;
  }
}

// Flax's LayerNorm / RMSNorm(dtype=bf16) with float32 parameters: the kernels write bf16 from the
// exact value (the separate cast rounds the float32 result: within a bf16 step); a float32 x,
// which has no such kernel, is computed in float32 and cast.
TEST(LayerNorm, DtypeIsWrittenDirectly) {
  Tensor x = test_values({5, 24}, 90, -2, 3, DType::F32), w = test_values({5, 24}, 91, -1, 1, DType::F32);
  Tensor s = test_values({24}, 92, 0.5, 1.5, DType::F32), b = test_values({24}, 93, -1, 1, DType::F32);
  for (bool rms : {false, true})
    for (DType in : {DType::BF16, DType::F32}) {
      std::string what = std::string(rms ? "rms_norm " : "layer_norm ") + std::string(dtype_name(in));
      auto direct = [rms](const std::vector<Tensor>& v) {
        return rms ? rms_norm(v[0], v[1], 1e-6, {-1}, DType::BF16)
                   : layer_norm(v[0], v[1], v[2], 1e-6, {-1}, DType::BF16);
      };
      auto cast = [rms](const std::vector<Tensor>& v) {
        return (rms ? rms_norm(v[0], v[1]) : layer_norm(v[0], v[1], v[2])).to(DType::BF16);
      };
      std::vector<Tensor> in_v{x.to(in), s, b};
      Tensor y = direct(in_v);
      EXPECT_EQ(y.dtype(), DType::BF16) << what;
      EXPECT_ALLCLOSE(y.to(DType::F32), cast(in_v).to(DType::F32), 1e-2, 1e-2) << what;
      auto g = vjp(direct, in_v, w.to(DType::BF16)), g_ref = vjp(cast, in_v, w.to(DType::BF16));
      for (size_t i = 0; i < g.size(); ++i) {
        if (!g_ref[i].defined()) continue;  // rms_norm's unused bias
        EXPECT_EQ(g[i].dtype(), g_ref[i].dtype()) << what << " input " << i;
        EXPECT_ALLCLOSE(g[i].to(DType::F32), g_ref[i].to(DType::F32), 1e-5, 1e-5) << what << " input " << i;
      }
    }
}

TEST(RmsNorm, MatchesReference) {
  Tensor x = test_values({4, 9}, 11, -3, 3);
  Tensor s = test_values({9}, 12, 0.5, 1.5);
  EXPECT_ALLCLOSE(rms_norm(x, s), reference_rows(x, s.to_vector<double>(), {}, 1e-6, true), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(rms_norm(x.to(DType::F32), Tensor(), 1e-2), reference_rows(x, {}, {}, 1e-2, true), 1e-5, 1e-6);
  // over a leading axis (composed)
  Tensor t = transpose(x, {1, 0});
  EXPECT_ALLCLOSE(transpose(rms_norm(t, Tensor(), 1e-6, {0}), {1, 0}), reference_rows(x, {}, {}, 1e-6, true), 1e-12, 1e-12);
}

TEST(GroupNorm, MatchesReference) {
  const int64_t n = 2, h = 3, w = 2, c = 6, g = 3, cg = c / g;
  Tensor x = test_values({n, h, w, c}, 13, -2, 3);
  Tensor s = test_values({c}, 14, 0.5, 1.5), b = test_values({c}, 15);
  std::vector<double> v = x.to_vector<double>(), sv = s.to_vector<double>(), bv = b.to_vector<double>();
  std::vector<double> out(v.size());
  for (int64_t bi = 0; bi < n; ++bi)
    for (int64_t gi = 0; gi < g; ++gi) {
      auto at = [&](int64_t p, int64_t k) { return size_t((bi * h * w + p) * c + gi * cg + k); };
      double mu = 0, var = 0, count = double(h * w * cg);
      for (int64_t p = 0; p < h * w; ++p)
        for (int64_t k = 0; k < cg; ++k) mu += v[at(p, k)] / count;
      for (int64_t p = 0; p < h * w; ++p)
        for (int64_t k = 0; k < cg; ++k) var += std::pow(v[at(p, k)] - mu, 2) / count;
      for (int64_t p = 0; p < h * w; ++p)
        for (int64_t k = 0; k < cg; ++k)
          out[at(p, k)] = (v[at(p, k)] - mu) / std::sqrt(var + 1e-6) * sv[size_t(gi * cg + k)] + bv[size_t(gi * cg + k)];
    }
  EXPECT_ALLCLOSE(group_norm(x, g, s, b), from_vector(out, x.shape()), 1e-12, 1e-12);
  // one group is layer norm over every non-batch axis
  EXPECT_ALLCLOSE(group_norm(x, 1, s, b), layer_norm(x, Tensor(), Tensor(), 1e-6, {1, 2, 3}) * s + b, 1e-12, 1e-12);
  // bf16 input with f32 parameters: f32 result
  EXPECT_EQ(group_norm(x.to(DType::BF16), g, s.to(DType::F32), b.to(DType::F32)).dtype(), DType::F32);
  EXPECT_EQ(group_norm(x.to(DType::BF16), g, Tensor(), Tensor()).dtype(), DType::BF16);
}

TEST(Norms, Gradients) {
  Tensor x = test_values({3, 5}, 30, -2, 2), w = test_values({3, 5}, 31);
  Tensor s = test_values({5}, 32, 0.5, 1.5), b = test_values({5}, 33);
  auto weighted = [&](std::function<Tensor(const std::vector<Tensor>&)> f) {
    return [f, w](const std::vector<Tensor>& in) { return sum(f(in) * w); };
  };
  // fused kernels
  EXPECT_TRUE(check_gradients(weighted([](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }), {x, s, b}));
  EXPECT_TRUE(check_gradients(weighted([](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor(), 0.5); }), {x}));
  EXPECT_TRUE(check_gradients(weighted([](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); }), {x, s}));
  EXPECT_TRUE(check_gradients(weighted([](const std::vector<Tensor>& in) { return batch_norm_train(in[0], in[1], in[2]).y; }), {x, s, b}));
  EXPECT_TRUE(check_gradients(weighted([](const std::vector<Tensor>& in) { return batch_norm_train(in[0], Tensor(), in[1]).y; }), {x, b}));
  // fused kernels with a pmean hook (the hook runs in the backward pass too)
  PmeanFn hook = [](const Tensor& t, int64_t) { return t * 1.0; };
  EXPECT_TRUE(check_gradients(weighted([&](const std::vector<Tensor>& in) {
    return batch_norm_train(in[0], in[1], in[2], 1e-5, {}, hook).y;
  }), {x, s, b}));
  // composed paths
  Tensor s3 = test_values({3}, 34, 0.5, 1.5);
  EXPECT_TRUE(check_gradients(weighted([&](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], Tensor(), 1e-6, {0}); }), {x, s3.reshape({3, 1})}));
  EXPECT_TRUE(check_gradients(weighted([](const std::vector<Tensor>& in) { return rms_norm(in[0], Tensor(), 1e-6, {0}); }), {x}));
  Tensor xg = test_values({2, 2, 2, 4}, 35, -2, 2), wg = test_values({2, 2, 2, 4}, 36);
  Tensor sg = test_values({4}, 37, 0.5, 1.5), bg = test_values({4}, 38);
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return sum(group_norm(in[0], 2, in[1], in[2]) * wg); }, {xg, sg, bg}));
  for (const PmeanFn& p : {PmeanFn(), hook})
    EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return sum(batch_norm_train(in[0], in[1], in[2], 1e-5, {0, 1}, p).y * wg); },
                                {xg, test_values({2, 4}, 39, 0.5, 1.5), test_values({2, 4}, 40)}));
  Tensor mu = test_values({5}, 41), var = test_values({5}, 42, 0.5, 2);
  EXPECT_TRUE(check_gradients(weighted([](const std::vector<Tensor>& in) { return batch_norm_inference(in[0], in[1], in[2], in[3], in[4]); }),
                              {x, mu, var, s, b}));
}

void check_golden(const std::string& name, const std::vector<std::string>& inputs,
                  const std::function<Tensor(const std::vector<Tensor>&)>& f) {
  const auto& c = golden(name);
  std::vector<Tensor> in;
  for (const auto& k : inputs) in.push_back(golden_tensor(c["inputs"][k]));
  EXPECT_ALLCLOSE(f(in), golden_tensor(c["outputs"]["y"]), 1e-5, 1e-5) << name;
  if (!c.contains("grads")) return;
  auto g = vjp(f, in, golden_tensor(c["cotangent"]));
  for (size_t i = 0; i < inputs.size(); ++i)
    EXPECT_ALLCLOSE(g[i], golden_tensor(c["grads"][inputs[i]]), 1e-4, 1e-5) << name << " d" << inputs[i];
}

TEST(Norms, MatchFlax) {
  check_golden("layer_norm", {"x", "scale", "bias"}, [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); });
  check_golden("layer_norm_2axes", {"x", "scale", "bias"},
               [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-3, {1, 2}); });
  check_golden("layer_norm_middle", {"x", "scale", "bias"},
               [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-6, {1}); });
  check_golden("rms_norm", {"x", "scale"}, [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); });
  check_golden("group_norm", {"x", "scale", "bias"}, [](const std::vector<Tensor>& in) { return group_norm(in[0], 4, in[1], in[2]); });
  check_golden("batch_norm_train", {"x", "scale", "bias"},
               [](const std::vector<Tensor>& in) { return batch_norm_train(in[0], in[1], in[2]).y; });
  check_golden("batch_norm_inference", {"x", "mean", "var", "scale", "bias"},
               [](const std::vector<Tensor>& in) { return batch_norm_inference(in[0], in[1], in[2], in[3], in[4]); });
  const auto& c = golden("batch_norm_train");
  auto r = batch_norm_train(golden_tensor(c["inputs"]["x"]), golden_tensor(c["inputs"]["scale"]), golden_tensor(c["inputs"]["bias"]));
  EXPECT_ALLCLOSE(r.mean, golden_tensor(c["outputs"]["mean"]), 1e-6, 1e-6);
  EXPECT_ALLCLOSE(r.var, golden_tensor(c["outputs"]["var"]), 1e-5, 1e-6);
}

// Infinite inputs give Flax 0.12.8's values (nn.BatchNorm and nn.LayerNorm on these x, jax
// 0.10.2): the fast variance of an infinite column or row is inf - inf, which jnp.maximum(0, .)
// keeps NaN, so its outputs are NaN; an infinite column's mean is infinite. The fused kernels
// and the composed paths agree (the GPU's: NormGpu.NonFiniteInputsMatchCpu).
TEST(Norms, InfiniteInputsAsFlax) {
  const float inf = INFINITY, nan = NAN;
  Tensor x = from_vector<float>({inf, 1, 2, 1, 2, 3, 2, -inf, 4, 3, 1, 5}, {4, 3});
  const Tensor bn_y = from_vector<float>({nan, nan, -1.3416355f, nan, nan, -0.4472118f,  //
                                          nan, nan, 0.4472118f, nan, nan, 1.3416355f},
                                         {4, 3});
  auto fused = batch_norm_train(x, Tensor(), Tensor());
  EXPECT_ALLCLOSE(fused.y, bn_y, 1e-6, 1e-6);
  EXPECT_ALLCLOSE(fused.mean, from_vector<float>({inf, -inf, 3.5f}, {3}), 1e-7, 0);
  EXPECT_ALLCLOSE(fused.var, from_vector<float>({nan, nan, 1.25f}, {3}), 1e-7, 0);
  // the composed path (a reduction over axis 0 named explicitly)
  EXPECT_ALLCLOSE(batch_norm_train(x.reshape({4, 3, 1}), Tensor(), Tensor(), 1e-5, {0, 2}).y,
                  bn_y.reshape({4, 3, 1}), 1e-6, 1e-6);
  const Tensor ln_y = from_vector<float>({nan, nan, nan, -1.2247436f, 0, 1.2247436f,  //
                                          nan, nan, nan, 0, -1.2247446f, 1.2247446f},
                                         {4, 3});
  Tensor ones3 = ones({3}), zeros3 = zeros({3});
  EXPECT_ALLCLOSE(layer_norm(x, ones3, zeros3), ln_y, 1e-6, 1e-6);
  EXPECT_ALLCLOSE(layer_norm(x.reshape({4, 3, 1}), Tensor(), Tensor(), 1e-6, {1, 2}).reshape({4, 3}),
                  ln_y, 1e-6, 1e-6);
}

TEST(Norms, Errors) {
  auto expect_msg = [](auto&& fn, std::initializer_list<const char*> parts) {
    try {
      fn();
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      std::string msg = e.what();
      for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    }
  };
  Tensor x = zeros({4, 6});
  expect_msg([&] { (void)layer_norm(x, ones({5}), Tensor()); }, {"layer_norm", "scale", "[5]", "[4, 6]"});
  EXPECT_THROW((void)layer_norm(x, ones({5}), Tensor()), ShapeError);
  EXPECT_THROW((void)rms_norm(x, ones({3, 6})), ShapeError);
  EXPECT_THROW((void)layer_norm(zeros({4, 6}, DType::I32), Tensor(), Tensor()), DTypeError);
  EXPECT_THROW((void)layer_norm(x, ones({6}, DType::I32), Tensor()), DTypeError);
  EXPECT_THROW((void)layer_norm(x, Tensor(), Tensor(), 1e-6, {2}), IndexError);
  expect_msg([&] { (void)group_norm(zeros({2, 3, 6}), 4, Tensor(), Tensor()); }, {"group_norm", "4", "6"});
  EXPECT_THROW((void)group_norm(zeros({2, 3, 6}), 4, Tensor(), Tensor()), ValueError);
  EXPECT_THROW((void)group_norm(zeros({6}), 2, Tensor(), Tensor()), ShapeError);
  EXPECT_THROW((void)group_norm(zeros({2, 6}), 2, ones({3}), Tensor()), ShapeError);
  expect_msg([&] { (void)batch_norm_train(zeros({6}), Tensor(), Tensor()); }, {"batch_norm_train", "[6]"});
  expect_msg([&] { (void)batch_norm_train(x, Tensor(), ones({4})); }, {"batch_norm_train", "bias", "[4]", "[4, 6]"});
  expect_msg([&] { (void)batch_norm_train(x, Tensor(), Tensor(), 1e-5, {}, {}, {.residual = zeros({4, 5})}); },
             {"batch_norm_train", "residual", "[4, 5]", "[4, 6]"});
  EXPECT_THROW((void)batch_norm_train(x, Tensor(), Tensor(), 1e-5, {}, {}, {.residual = zeros({4, 5})}), ShapeError);
  expect_msg([&] { (void)batch_norm_train(x, Tensor(), Tensor(), 1e-5, {}, {}, {.residual = zeros({4, 6}, DType::F64)}); },
             {"batch_norm_train", "residual", "float64", "float32", "[4, 6]"});
  EXPECT_THROW((void)batch_norm_train(x, Tensor(), Tensor(), 1e-5, {}, {}, {.residual = zeros({4, 6}, DType::F64)}), DTypeError);
  EXPECT_THROW((void)batch_norm_inference(x, Tensor(), ones({6}), Tensor(), Tensor()), ValueError);
  EXPECT_THROW((void)batch_norm_inference(x, ones({5}), ones({6}), Tensor(), Tensor()), ShapeError);
}

}  // namespace
}  // namespace loom

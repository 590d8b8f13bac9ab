// BatchNorm (batch_norm_train / batch_norm_inference, core/ops/batch_norm.cc): float64
// references, the pmean hook, the fused epilogue against the composed ops, running statistics
// and empty channel axes. Gradients, Flax goldens and errors of all the norms: norm_test.cc.
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
using testing::test_values;
using testing::vjp;

/// Batch statistics of x over all but the last axis, in double.
std::pair<std::vector<double>, std::vector<double>> column_stats(const Tensor& x) {
  int64_t c = x.shape().back(), m = x.numel() / c;
  std::vector<double> v = x.to_vector<double>(), mu(static_cast<size_t>(c), 0.0), var(static_cast<size_t>(c), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < c; ++j) mu[size_t(j)] += v[size_t(i * c + j)] / double(m);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < c; ++j) var[size_t(j)] += std::pow(v[size_t(i * c + j)] - mu[size_t(j)], 2) / double(m);
  return {mu, var};
}

Tensor reference_batch_norm(const Tensor& x, const std::vector<double>& mu, const std::vector<double>& var,
                            const std::vector<double>& s, const std::vector<double>& b, double eps) {
  int64_t c = x.shape().back(), m = x.numel() / c;
  std::vector<double> v = x.to_vector<double>(), out(v.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < c; ++j) {
      size_t k = size_t(i * c + j), jj = size_t(j);
      out[k] = (v[k] - mu[jj]) / std::sqrt(var[jj] + eps) * (s.empty() ? 1.0 : s[jj]) + (b.empty() ? 0.0 : b[jj]);
    }
  return from_vector(out, x.shape());
}

TEST(BatchNorm, TrainMatchesReference) {
  Tensor x = test_values({4, 3, 2, 5}, 16, -1, 3);
  Tensor s = test_values({5}, 17, 0.5, 1.5), b = test_values({5}, 18);
  auto [mu, var] = column_stats(x);
  auto r = batch_norm_train(x, s, b);
  EXPECT_ALLCLOSE(r.mean, from_vector(mu, {5}), 1e-13, 1e-14);
  EXPECT_ALLCLOSE(r.var, from_vector(var, {5}), 1e-12, 1e-14);
  EXPECT_ALLCLOSE(r.y, reference_batch_norm(x, mu, var, s.to_vector<double>(), b.to_vector<double>(), 1e-5), 1e-12, 1e-12);
  // float32 and bfloat16: statistics come back in float32
  auto r32 = batch_norm_train(x.to(DType::F32), s.to(DType::F32), b.to(DType::F32), 1e-3);
  EXPECT_EQ(r32.mean.dtype(), DType::F32);
  EXPECT_ALLCLOSE(r32.y, reference_batch_norm(x, mu, var, s.to_vector<double>(), b.to_vector<double>(), 1e-3), 1e-5, 1e-5);
  auto r16 = batch_norm_train(x.to(DType::BF16), Tensor(), Tensor());
  EXPECT_EQ(r16.y.dtype(), DType::BF16);
  EXPECT_EQ(r16.var.dtype(), DType::F32);
  // other reduction axes (composed): statistics over axes 0 and 2 of [4, 3, 5], features [3]
  Tensor x3 = test_values({4, 3, 5}, 19);
  Tensor s3 = test_values({3}, 20, 0.5, 1.5);
  auto r3 = batch_norm_train(x3, s3, Tensor(), 1e-5, {0, 2});
  EXPECT_EQ(r3.mean.shape(), (Shape{3}));
  Tensor moved = transpose(x3, {0, 2, 1}).contiguous();  // features last
  auto [mu3, var3] = column_stats(moved);
  EXPECT_ALLCLOSE(r3.mean, from_vector(mu3, {3}), 1e-13, 1e-14);
  EXPECT_ALLCLOSE(r3.var, from_vector(var3, {3}), 1e-12, 1e-14);
  EXPECT_ALLCLOSE(transpose(r3.y, {0, 2, 1}), reference_batch_norm(moved, mu3, var3, s3.to_vector<double>(), {}, 1e-5), 1e-12, 1e-12);
}

// No channels: empty statistics and output, forward and backward.
TEST(BatchNorm, EmptyChannelAxis) {
  Tensor x = autograd::make_leaf(zeros({4, 0}, DType::F32), 0);
  autograd::RecordingGuard rec(true);
  auto r = batch_norm_train(x, Tensor(), Tensor());
  EXPECT_EQ(r.y.shape(), (Shape{4, 0}));
  EXPECT_EQ(r.mean.shape(), (Shape{0}));
  EXPECT_EQ(r.var.shape(), (Shape{0}));
  EXPECT_EQ(autograd::backward(sum(r.y), {x})[0].shape(), (Shape{4, 0}));
}

TEST(BatchNorm, PmeanHookAveragesStatistics) {
  Tensor x1 = test_values({3, 4}, 21, -1, 2), x2 = test_values({3, 4}, 22, 0, 3);
  Tensor s = test_values({4}, 23, 0.5, 1.5), b = test_values({4}, 24);
  // identity hook: same as without one
  int calls = 0;
  auto same = batch_norm_train(x1, s, b, 1e-5, {}, [&](const Tensor& t, int64_t count) {
    ++calls;
    EXPECT_EQ(t.shape(), (Shape{2, 4}));
    EXPECT_EQ(count, 3);
    return t;
  });
  EXPECT_EQ(calls, 1);
  auto plain = batch_norm_train(x1, s, b);
  EXPECT_ALLCLOSE(same.y, plain.y, 1e-12, 1e-12);
  EXPECT_ALLCLOSE(same.mean, plain.mean, 1e-14, 1e-14);
  EXPECT_EQ(same.mean.shape(), (Shape{4}));
  // two "replicas" of equal batch size: the averaged statistics are those of the joint batch
  Tensor x2_mu = mean(x2, {0}), x2_ms = mean(square(x2), {0});
  Tensor other = stack({x2_mu, x2_ms}, 0);
  auto joint = batch_norm_train(x1, s, b, 1e-5, {}, [&](const Tensor& t, int64_t) { return (t + other) * 0.5; });
  auto both = batch_norm_train(concatenate({x1, x2}, 0), s, b);
  EXPECT_ALLCLOSE(joint.mean, both.mean, 1e-14, 1e-14);
  EXPECT_ALLCLOSE(joint.var, both.var, 1e-13, 1e-14);
  EXPECT_ALLCLOSE(joint.y, slice_axis(both.y, 0, 0, 3), 1e-12, 1e-12);
  // unequal batches (3 and 5 examples): weighting by the count gives the joint batch's statistics
  Tensor x5 = test_values({5, 4}, 20, -1, 3);
  Tensor other5 = stack({mean(x5, {0}), mean(square(x5), {0})}, 0);
  auto weighted = batch_norm_train(x1, s, b, 1e-5, {}, [&](const Tensor& t, int64_t count) {
    return (t * double(count) + other5 * 5.0) * (1.0 / double(count + 5));
  });
  auto both5 = batch_norm_train(concatenate({x1, x5}, 0), s, b);
  EXPECT_ALLCLOSE(weighted.mean, both5.mean, 1e-14, 1e-14);
  EXPECT_ALLCLOSE(weighted.var, both5.var, 1e-13, 1e-14);
  EXPECT_ALLCLOSE(weighted.y, slice_axis(both5.y, 0, 0, 3), 1e-12, 1e-12);
  EXPECT_THROW((void)batch_norm_train(x1, s, b, 1e-5, {}, [](const Tensor& t, int64_t) { return t.reshape({-1}); }), ShapeError);
}

// Across replicas the fused kernels average the statistics [mean(x), mean(x^2)] between the
// forward passes and the gradient's [mean(g), mean(g * xhat)] between the backward passes: one
// hook call each way, [2, C] over the local row count. With the identity (a world of one) the
// values and gradients are those without a hook.
TEST(BatchNorm, PmeanHookRunsOnceEachWay) {
  Tensor x = test_values({2, 3, 4}, 70, -1, 3), w = test_values({2, 3, 4}, 71);
  Tensor s = test_values({4}, 72, 0.5, 1.5), b = test_values({4}, 73), res = test_values({2, 3, 4}, 74);
  std::vector<Shape> shapes;
  std::vector<int64_t> counts;
  PmeanFn hook = [&](const Tensor& t, int64_t count) {
    shapes.push_back(t.shape());
    counts.push_back(count);
    return t;
  };
  auto run = [&](const PmeanFn& p) {
    return vjp([&](const std::vector<Tensor>& in) {
      return batch_norm_train(in[0], in[1], in[2], 1e-5, {}, p, {.residual = in[3], .relu = true}).y;
    }, {x, s, b, res}, w);
  };
  auto with_hook = run(hook), without = run({});
  EXPECT_EQ(shapes, (std::vector<Shape>{{2, 4}, {2, 4}}));
  EXPECT_EQ(counts, (std::vector<int64_t>{6, 6}));
  ASSERT_EQ(with_hook.size(), without.size());
  for (size_t i = 0; i < without.size(); ++i) EXPECT_ALLCLOSE(with_hook[i], without[i], 1e-12, 1e-12) << i;
  // The composed path (features on a middle axis) calls the hook once; its autodiff does the rest.
  shapes.clear();
  Tensor s3 = test_values({3}, 75, 0.5, 1.5);
  (void)vjp([&](const std::vector<Tensor>& in) { return batch_norm_train(in[0], s3, Tensor(), 1e-5, {0, 2}, hook).y; }, {x}, w);
  EXPECT_EQ(shapes, (std::vector<Shape>{{2, 3}}));
}

TEST(BatchNorm, InferenceMatchesReference) {
  Tensor x = test_values({6, 4}, 25, -2, 2);
  Tensor mu = test_values({4}, 26), var = test_values({4}, 27, 0.5, 2);
  Tensor s = test_values({4}, 28, 0.5, 1.5), b = test_values({4}, 29);
  Tensor expect = reference_batch_norm(x, mu.to_vector<double>(), var.to_vector<double>(), s.to_vector<double>(), b.to_vector<double>(), 1e-5);
  EXPECT_ALLCLOSE(batch_norm_inference(x, mu, var, s, b), expect, 1e-12, 1e-12);
  // f32 running stats with a bf16 input and no parameters: bf16 result (Flax ignores the stats'
  // dtype when promoting)
  Tensor y16 = batch_norm_inference(x.to(DType::BF16), mu.to(DType::F32), var.to(DType::F32), Tensor(), Tensor());
  EXPECT_EQ(y16.dtype(), DType::BF16);
  EXPECT_ALLCLOSE(y16, reference_batch_norm(x.to(DType::BF16).to(DType::F64), mu.to_vector<double>(), var.to_vector<double>(), {}, {}, 1e-5), 1e-2, 1e-2);
  // an epilogue, in the kernel's pass or (under autodiff) composed: act(cast(bn) + residual)
  Tensor r = test_values({6, 4}, 30, -2, 2);
  for (bool relu_on : {false, true}) {
    Tensor sep = batch_norm_inference(x, mu, var, s, b) + r;
    if (relu_on) sep = relu(sep);
    EXPECT_ALLCLOSE(batch_norm_inference(x, mu, var, s, b, 1e-5, {.residual = r, .relu = relu_on}), sep, 0, 0) << relu_on;
    auto gr = vjp([&](const std::vector<Tensor>& in) {
      return batch_norm_inference(x, mu, var, s, b, 1e-5, {.residual = in[0], .relu = relu_on});
    }, {r}, ones({6, 4}, DType::F64));
    EXPECT_ALLCLOSE(gr[0], relu_on ? greater(sep, zeros_like(sep)).to(DType::F64) : ones({6, 4}, DType::F64), 0, 0) << relu_on;
  }
  Tensor xb = x.to(DType::BF16), rb = r.to(DType::BF16);
  Tensor yb = batch_norm_inference(xb, mu.to(DType::F32), var.to(DType::F32), s.to(DType::F32), b.to(DType::F32),
                                   1e-5, {.residual = rb, .relu = true, .dtype = DType::BF16});
  EXPECT_EQ(yb.dtype(), DType::BF16);
  Tensor yb_sep = relu(batch_norm_inference(xb, mu.to(DType::F32), var.to(DType::F32), s.to(DType::F32), b.to(DType::F32)).to(DType::BF16) + rb);
  EXPECT_ALLCLOSE(yb.to(DType::F32), yb_sep.to(DType::F32), 1e-2, 1e-2);
  EXPECT_THROW((void)batch_norm_inference(x, mu, var, s, b, 1e-5, {.residual = rb}), DTypeError);
  // under autodiff (composed) the values agree
  auto g = vjp([&](const std::vector<Tensor>& in) { return batch_norm_inference(in[0], mu, var, in[1], in[2]); },
               {x, s, b}, ones({6, 4}, DType::F64));
  EXPECT_ALLCLOSE(g[2], full({4}, 6.0, DType::F64), 0, 0);
}

/// batch_norm_train with an epilogue through the fused kernels, or the same computation composed
/// from loom ops here (Flax's formula; autodiff from the ops).
BatchNormResult bn_epilogue(const Tensor& x, const Tensor& s, const Tensor& b, const Tensor& res,
                            bool relu, bool composed) {
  if (!composed) return batch_norm_train(x, s, b, 1e-5, {}, {}, {.residual = res, .relu = relu});
  Axes rows;
  for (int64_t d = 0; d + 1 < x.ndim(); ++d) rows.push_back(d);
  Tensor xa = x.to(promote_types(x.dtype(), DType::F32));
  Tensor mu = mean(xa, rows), ms = mean(square(xa), rows);
  Tensor var = maximum(ms - square(mu), zeros_like(ms));
  Tensor y = ((xa - mu) * (rsqrt(var + 1e-5) * s.to(xa.dtype())) + b.to(xa.dtype()))
                 .to(promote_types(x.dtype(), s.dtype()));
  if (res.defined()) y = y + res;
  if (relu) y = loom::relu(y);
  BatchNormResult r;
  r.y = y, r.mean = mu.detach(), r.var = var.detach();
  return r;
}

TEST(BatchNorm, EpilogueFusedMatchesComposed) {
  for (DType dt : {DType::F64, DType::F32}) {
    Tensor x = test_values({4, 3, 3, 6}, 50, -2, 3, dt), res = test_values({4, 3, 3, 6}, 51, -2, 2, dt);
    Tensor s = test_values({6}, 52, -1, 1.5, dt), b = test_values({6}, 53, -1, 1, dt);
    Tensor w = test_values({4, 3, 3, 6}, 54, -1, 1, dt);
    double tol = dt == DType::F64 ? 1e-12 : 1e-5;
    for (bool with_res : {false, true})
      for (bool relu : {false, true}) {
        Tensor r = with_res ? res : Tensor();
        std::string what = std::string(dtype_name(dt)) + (with_res ? " residual" : "") + (relu ? " relu" : "");
        auto fused = bn_epilogue(x, s, b, r, relu, false), composed = bn_epilogue(x, s, b, r, relu, true);
        EXPECT_EQ(fused.y.dtype(), dt) << what;
        EXPECT_ALLCLOSE(fused.y, composed.y, tol, tol) << what;
        EXPECT_ALLCLOSE(fused.mean, composed.mean, tol, tol) << what;
        // against the plain op followed by loom's add and relu
        Tensor expect = batch_norm_train(x, s, b).y;
        if (with_res) expect = expect + res;
        if (relu) expect = loom::relu(expect);
        EXPECT_ALLCLOSE(fused.y, expect, tol, tol) << what;
        if (relu) {
          EXPECT_GE(min(fused.y).item<double>(), 0.0) << what;
        }
        auto grads = [&](bool comp) {
          std::vector<Tensor> in{x, s, b};
          if (with_res) in.push_back(res);
          return vjp([&](const std::vector<Tensor>& v) {
            return bn_epilogue(v[0], v[1], v[2], with_res ? v[3] : Tensor(), relu, comp).y;
          }, in, w);
        };
        auto gf = grads(false), gc = grads(true);
        ASSERT_EQ(gf.size(), gc.size());
        for (size_t i = 0; i < gf.size(); ++i) EXPECT_ALLCLOSE(gf[i], gc[i], 10 * tol, 10 * tol) << what << " input " << i;
      }
  }
  // bf16 input with f32 parameters: the result and the sum are f32, the residual's gradient bf16
  Tensor xb = test_values({8, 5}, 55, -2, 2, DType::F32).to(DType::BF16);
  Tensor rb = test_values({8, 5}, 56, -2, 2, DType::F32).to(DType::BF16);
  Tensor s = test_values({5}, 57, 0.5, 1.5, DType::F32), b = test_values({5}, 58, -1, 1, DType::F32);
  auto fused = bn_epilogue(xb, s, b, rb, true, false), composed = bn_epilogue(xb, s, b, rb, true, true);
  EXPECT_EQ(fused.y.dtype(), DType::F32);
  EXPECT_ALLCLOSE(fused.y, composed.y, 1e-5, 1e-5);
  auto g = vjp([&](const std::vector<Tensor>& v) { return bn_epilogue(v[0], s, b, v[1], true, false).y; },
               {xb, rb}, ones({8, 5}));
  EXPECT_EQ(g[1].dtype(), DType::BF16);
  EXPECT_ALLCLOSE(g[1].to(DType::F32), greater(fused.y, zeros_like(fused.y)).to(DType::F32), 0, 0);
}

// Flax's BatchNorm(dtype=bf16) with float32 scale and bias: the float32 result cast to bf16, then
// the residual added and the ReLU applied (in bf16 for a bf16 residual). The kernels write bf16
// directly (one rounding of the exact value where the separate cast rounds the float32 one:
// within a bf16 step); a float32 input, which has no such kernel, composes the same ops.
TEST(BatchNorm, EpilogueCastsBeforeTheSum) {
  Tensor x = test_values({6, 2, 7}, 80, -2, 3, DType::F32), res = test_values({6, 2, 7}, 81, -2, 2, DType::F32);
  Tensor s = test_values({7}, 82, 0.5, 1.5, DType::F32), b = test_values({7}, 83, -1, 1, DType::F32);
  Tensor w = test_values({6, 2, 7}, 84, -1, 1, DType::F32).to(DType::BF16);
  for (DType in : {DType::BF16, DType::F32}) {
    Tensor xi = x.to(in), ri = res.to(in);
    auto cast_first = [](const std::vector<Tensor>& v) {
      return batch_norm_train(v[0], v[1], v[2], 1e-5, {}, {}, {.residual = v[3], .relu = true, .dtype = DType::BF16}).y;
    };
    auto separate = [](const std::vector<Tensor>& v) {
      return relu(batch_norm_train(v[0], v[1], v[2]).y.to(DType::BF16) + v[3]);
    };
    Tensor y = cast_first({xi, s, b, ri});
    EXPECT_EQ(y.dtype(), in) << dtype_name(in);  // a float32 residual promotes the sum
    EXPECT_ALLCLOSE(y.to(DType::F32), separate({xi, s, b, ri}).to(DType::F32), 1e-2, 1e-2) << dtype_name(in);
    auto g = vjp(cast_first, {xi, s, b, ri}, w), g_ref = vjp(separate, {xi, s, b, ri}, w);
    ASSERT_EQ(g.size(), g_ref.size());
    for (size_t i = 0; i < g.size(); ++i) {
      EXPECT_EQ(g[i].dtype(), g_ref[i].dtype()) << dtype_name(in) << " input " << i;
      EXPECT_ALLCLOSE(g[i].to(DType::F32), g_ref[i].to(DType::F32), 2e-2, 2e-2) << dtype_name(in) << " input " << i;
    }
  }
}

TEST(BatchNorm, EpilogueGradients) {
  Tensor x = test_values({3, 2, 5}, 60, -2, 2), res = test_values({3, 2, 5}, 61, -1, 1);
  Tensor s = test_values({5}, 62, 0.5, 1.5), b = test_values({5}, 63, -0.5, 0.5);
  Tensor w = test_values({3, 2, 5}, 64);
  for (bool relu : {false, true}) {
    // fused kernels
    EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) {
      return sum(bn_epilogue(in[0], in[1], in[2], in[3], relu, false).y * w);
    }, {x, s, b, res})) << relu;
    EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) {
      return sum(bn_epilogue(in[0], in[1], in[2], Tensor(), relu, false).y * w);
    }, {x, s, b})) << relu;
    // composed path
    EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) {
      return sum(bn_epilogue(in[0], in[1], in[2], in[3], relu, true).y * w);
    }, {x, s, b, res})) << relu;
  }
  // only the residual differentiable: its gradient is the masked cotangent
  Tensor y = bn_epilogue(x, s, b, res, true, false).y;
  auto g = vjp([&](const std::vector<Tensor>& in) { return bn_epilogue(x, s, b, in[0], true, false).y; }, {res}, w);
  EXPECT_ALLCLOSE(g[0], where(greater(y, zeros_like(y)), w, 0.0), 0, 0);
}

// Several running statistics in one call are each the separate ops' update (CUDA: one kernel
// for all, tests/core/ops/norm_gpu_test.cc).
TEST(BatchNorm, RunningAveragesAreTheSeparateUpdates) {
  Tensor m = test_values({5}, 1, -1, 1, DType::F32), v = test_values({5}, 2, 0, 2, DType::F32);
  Tensor am = test_values({5}, 3, -1, 1, DType::F32), av = test_values({5}, 4, 0, 2, DType::F32);
  std::vector<Tensor> both = running_average({am, av}, {m, v}, 0.9);
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0].to_vector<float>(), (am * 0.9 + m * (1.0 - 0.9)).to_vector<float>());
  EXPECT_EQ(both[1].to_vector<float>(), running_average(av, v, 0.9).to_vector<float>());
  EXPECT_THROW((void)running_average({am, av}, {m}, 0.9), ValueError);
}

// A training call given the running statistics returns running_average's update of them, bit
// for bit, on the fused kernels (channels last) and the composed ops (other axes), for float64
// statistics too; and names what is wrong with them.
TEST(BatchNorm, TrainingCallUpdatesTheRunningStatistics) {
  for (DType dt : {DType::F32, DType::BF16, DType::F64})
    for (bool channels_last : {true, false}) {
      Tensor x = test_values({4, 3, 5}, 7, -2, 3, dt);
      const Axes axes = channels_last ? Axes{} : Axes{0, 2};
      const int64_t c = channels_last ? 5 : 3;
      Tensor am = test_values({c}, 8, -1, 1, DType::F32), av = test_values({c}, 9, 0.5, 2, DType::F32);
      BatchNormResult r = batch_norm_train(x, Tensor(), Tensor(), 1e-5, axes, {}, {}, {am, av, 0.9});
      const std::string what = std::string(dtype_name(dt)) + (channels_last ? " channels last" : " axes 0, 2");
      ASSERT_TRUE(r.running_mean.defined() && r.running_var.defined()) << what;
      EXPECT_EQ(r.running_mean.to_vector<float>(),
                running_average(am, r.mean.reshape({c}), 0.9).to_vector<float>()) << what;
      EXPECT_EQ(r.running_var.to_vector<float>(),
                running_average(av, r.var.reshape({c}), 0.9).to_vector<float>()) << what;
      EXPECT_FALSE(batch_norm_train(x, Tensor(), Tensor(), 1e-5, axes).running_mean.defined());
    }
  Tensor x = test_values({4, 5}, 7, -2, 3, DType::F32), am = zeros({5}, DType::F32);
  EXPECT_THROW((void)batch_norm_train(x, Tensor(), Tensor(), 1e-5, {}, {}, {}, {am, Tensor(), 0.9}),
               ValueError);
  EXPECT_THROW((void)batch_norm_train(x, Tensor(), Tensor(), 1e-5, {}, {}, {}, {zeros({4}, DType::F32), am, 0.9}),
               ShapeError);
}

}  // namespace
}  // namespace loom

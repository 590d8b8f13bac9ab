// Losses: Optax goldens (values and vjps), float64 references, finite-difference gradients and
// error cases.
#include <cmath>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/ops/softmax.h"
#include "kernels/cpu/cross_entropy.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::golden_tensor;
using testing::test_values;
using testing::vjp;

const nlohmann::json& golden(const std::string& name) { return testing::golden_case("nn_ops.json", name); }

/// Checks a two-input loss against its golden case: value and the vjp for both inputs.
void check_golden(const std::string& name, const char* a, const char* b,
                  const std::function<Tensor(const Tensor&, const Tensor&)>& f) {
  const auto& c = golden(name);
  Tensor x = golden_tensor(c["inputs"][a]), y = golden_tensor(c["inputs"][b]);
  EXPECT_ALLCLOSE(f(x, y), golden_tensor(c["outputs"]["y"]), 2e-6, 1e-6) << name;
  auto g = vjp([&](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, {x, y},
               golden_tensor(c["cotangent"]));
  EXPECT_ALLCLOSE(g[0], golden_tensor(c["grads"][a]), 2e-5, 1e-6) << name << " d" << a;
  if (c["grads"].contains(b)) {
    EXPECT_ALLCLOSE(g[1], golden_tensor(c["grads"][b]), 2e-5, 1e-6) << name << " d" << b;
  }
}

TEST(Loss, MatchesOptax) {
  check_golden("softmax_cross_entropy", "logits", "labels", softmax_cross_entropy);
  check_golden("sigmoid_binary_cross_entropy", "logits", "labels", sigmoid_binary_cross_entropy);
  check_golden("l2_loss", "predictions", "targets", [](const Tensor& p, const Tensor& t) { return l2_loss(p, t); });
  check_golden("squared_error", "predictions", "targets", [](const Tensor& p, const Tensor& t) { return squared_error(p, t); });
  check_golden("huber_loss", "predictions", "targets", [](const Tensor& p, const Tensor& t) { return huber_loss(p, t, 1.0); });
  check_golden("huber_loss_delta", "predictions", "targets", [](const Tensor& p, const Tensor& t) { return huber_loss(p, t, 0.5); });
}

TEST(Loss, IntegerLabelsMatchOptax) {
  for (const char* name : {"softmax_cross_entropy_with_integer_labels", "integer_labels_out_of_range"}) {
    const auto& c = golden(name);
    Tensor logits = golden_tensor(c["inputs"]["logits"]), labels = golden_tensor(c["inputs"]["labels"]);
    ASSERT_EQ(labels.dtype(), DType::I32);
    for (DType ldt : {DType::I32, DType::I64}) {
      Tensor l = labels.to(ldt);
      EXPECT_ALLCLOSE(softmax_cross_entropy_with_integer_labels(logits, l), golden_tensor(c["outputs"]["y"]), 2e-6, 1e-6)
          << name;  // out-of-range labels give NaN, as JAX
      auto g = vjp([&](const std::vector<Tensor>& in) { return softmax_cross_entropy_with_integer_labels(in[0], l); },
                   {logits}, golden_tensor(c["cotangent"]));
      EXPECT_ALLCLOSE(g[0], golden_tensor(c["grads"]["logits"]), 2e-5, 1e-6) << name;
    }
  }
}

TEST(Loss, IntegerLabelsAgreeWithOneHot) {
  Tensor logits = test_values({2, 3, 7}, 1, -5, 5);
  Tensor labels = from_vector<int64_t>({0, 6, 3, 2, 5, 1}, {2, 3});
  Tensor expect = softmax_cross_entropy(logits, one_hot(labels, 7, DType::F64));
  EXPECT_ALLCLOSE(softmax_cross_entropy_with_integer_labels(logits, labels), expect, 1e-13, 1e-14);
  // float32 and bfloat16 logits keep their dtype
  Tensor l32 = softmax_cross_entropy_with_integer_labels(logits.to(DType::F32), labels);
  EXPECT_EQ(l32.dtype(), DType::F32);
  EXPECT_ALLCLOSE(l32, expect, 1e-6, 1e-6);
  Tensor l16 = softmax_cross_entropy_with_integer_labels(logits.to(DType::BF16), labels);
  EXPECT_EQ(l16.dtype(), DType::BF16);
  EXPECT_ALLCLOSE(l16, expect, 2e-2, 2e-2);
  // huge logits stay finite
  Tensor big = from_vector<float>({1000, 0, -1000}, {1, 3});
  EXPECT_NEAR(softmax_cross_entropy_with_integer_labels(big, from_vector<int32_t>({1}, {1})).item<float>(), 1000, 1e-3);
}

TEST(Loss, IntegerLabelsInFloat32FromHalfLogits) {
  // dtype = F32 over half logits is the float32 loss of the cast logits, bit for bit, with the
  // gradient back in the logits' dtype; other dtypes cast first.
  Tensor labels = from_vector<int32_t>({0, 6, 3, 2, 5, -1}, {2, 3});
  auto f32_of = [&](const Tensor& x) { return softmax_cross_entropy_with_integer_labels(x.to(DType::F32), labels); };
  auto fused = [&](const Tensor& x) { return softmax_cross_entropy_with_integer_labels(x, labels, DType::F32); };
  Tensor ct = test_values({2, 3}, 9, -1, 1, DType::F32);
  for (DType half : {DType::BF16, DType::F16}) {
    Tensor logits = test_values({2, 3, 7}, 1, -8, 8).to(half);
    Tensor loss = fused(logits);
    EXPECT_EQ(loss.dtype(), DType::F32);
    EXPECT_ALLCLOSE(loss, f32_of(logits), 0, 0) << dtype_name(half);
    auto g = vjp([&](const std::vector<Tensor>& in) { return fused(in[0]); }, {logits}, ct);
    auto expect = vjp([&](const std::vector<Tensor>& in) { return f32_of(in[0]); }, {logits}, ct);
    EXPECT_EQ(g[0].dtype(), half);
    EXPECT_ALLCLOSE(g[0], expect[0], 0, 0) << dtype_name(half);
  }
  Tensor l32 = test_values({3, 5}, 2, -3, 3, DType::F32);
  Tensor lab = from_vector<int64_t>({1, 4, 0}, {3});
  Tensor wide = softmax_cross_entropy_with_integer_labels(l32, lab, DType::F64);
  EXPECT_EQ(wide.dtype(), DType::F64);
  EXPECT_ALLCLOSE(wide, softmax_cross_entropy_with_integer_labels(l32.to(DType::F64), lab), 0, 0);
  EXPECT_THROW_WITH(softmax_cross_entropy_with_integer_labels(l32, lab, DType::I32), DTypeError,
                    "softmax_cross_entropy_with_integer_labels:", "dtype must be floating");
}

// float logits: exponentials in float (kernels/cpu/row_exp.h), against the float64 loss and
// gradient of the same float values, over rows spanning float's exponent range below their max
// and a confident row; a NaN logit makes its row's loss and gradient NaN.
TEST(Loss, IntegerLabelsInFloatAgainstFloat64) {
  Tensor spread = test_values({4, 1000}, 11, -90, 0).to(DType::F32);
  std::vector<float> v = spread.to_vector<float>();
  v[size_t(1 * 1000 + 7)] = 20.f;  // row 1's label: p within 3e-8 of 1
  v[size_t(3 * 1000 + 500)] = std::nanf("");
  Tensor logits = from_vector(v, {4, 1000});
  const std::vector<int32_t> label = {3, 7, 999, 0};
  Tensor labels = from_vector<int32_t>(label, {4});
  const std::vector<float> cotangent = {1.0f, -0.5f, 2.0f, 1.0f};
  Tensor ct = from_vector<float>(cotangent, {4});
  auto loss_of = [&](const Tensor& x) {
    return softmax_cross_entropy_with_integer_labels(x, labels);
  };
  auto grad_of = [&](const Tensor& x) {
    return vjp([&](const std::vector<Tensor>& in) { return loss_of(in[0]); }, {x},
               ct.to(x.dtype()))[0];
  };
  std::vector<float> loss = loss_of(logits).to_vector<float>();
  std::vector<double> loss64 = loss_of(logits.to(DType::F64)).to_vector<double>();
  for (size_t r = 0; r < 3; ++r)
    EXPECT_NEAR(loss[r], loss64[r], 2e-6 * std::fabs(loss64[r]) + 1e-9) << r;
  EXPECT_TRUE(std::isnan(loss[3]));
  std::vector<float> g = grad_of(logits).to_vector<float>();
  std::vector<double> g64 = grad_of(logits.to(DType::F64)).to_vector<double>();
  int64_t wrong = 0;
  for (size_t r = 0; r < 3; ++r) {
    for (size_t j = 0; j < 1000; ++j) {
      const size_t i = r * 1000 + j;
      // Below e^-87 (1.6e-38) a probability is 0 (row_exp.h), |g| <= 2. The label's g (p - 1)
      // is off by |g| times float's rounding of lse (kept in float, as JAX's).
      const double tol = j == size_t(label[r]) ? 4e-7 * std::fabs(cotangent[r]) * (1 + loss64[r])
                                               : 1e-5 * std::fabs(g64[i]) + 3.3e-38;
      if (std::fabs(g[i] - g64[i]) > tol && ++wrong <= 3)
        ADD_FAILURE() << "gradient [" << r << ", " << j << "]: " << g[i] << " vs " << g64[i];
    }
  }
  EXPECT_EQ(wrong, 0);
  for (size_t i = 3000; i < 4000; ++i) EXPECT_TRUE(std::isnan(g[i])) << i;
}

// Infinite logits, against jax.grad of optax 0.2.8's softmax_cross_entropy_with_integer_labels
// (jax 0.10.2), whose log-sum-exp is jax.nn.logsumexp's: a row of -inf has a NaN loss and
// gradient (the CPU's exp_or_zero alone had given p = 0 for the NaN of -inf - -inf); a -inf
// logit's p is 0; a +inf logit makes the log-sum-exp +inf, so the loss is +inf (NaN where the
// label's logit is the +inf) and the gradient 0 but NaN at the +inf logits (minus the upstream
// gradient at the label); a NaN logit makes the row NaN. The GPU's agree (LossGpu).
TEST(Loss, InfiniteLogits) {
  const float inf = INFINITY, nan = NAN;
  for (DType dt : {DType::F32, DType::F64}) {
    Tensor logits = from_vector(std::vector<float>{-inf, -inf, -inf, -inf,  //
                                                   1, -inf, 2, 3,           //
                                                   1, inf, 2, 3,            //
                                                   1, inf, 2, 3,            //
                                                   nan, inf, 2, 3,          //
                                                   inf, inf, 2, -inf},
                                {6, 4})
                        .to(dt);
    Tensor labels = from_vector<int32_t>({1, 1, 0, 1, 2, 2}, {6});
    auto f = [&](const std::vector<Tensor>& in) {
      return softmax_cross_entropy_with_integer_labels(in[0], labels);
    };
    const std::vector<double> expect_loss = {NAN, INFINITY, INFINITY, NAN, NAN, INFINITY};
    EXPECT_ALLCLOSE(f({logits}), from_vector(expect_loss, {6}).to(dt), 0, 0) << dtype_name(dt);
    // row 1: softmax of (1, -inf, 2, 3), the label's minus 1 (optax's values)
    const std::vector<double> expect_grad = {NAN, NAN, NAN, NAN,                      //
                                             0.09003057, -1.0, 0.24472848, 0.66524094,  //
                                             -1, NAN, 0, 0,                           //
                                             0, NAN, 0, 0,                            //
                                             NAN, NAN, NAN, NAN,                      //
                                             NAN, NAN, -1, 0};
    EXPECT_ALLCLOSE(vjp(f, {logits}, ones({6}, dt))[0], from_vector(expect_grad, {6, 4}).to(dt),
                    1e-6, 1e-7)
        << dtype_name(dt);
  }
}

// The kernels read rows at a pitch and write the gradient at the same pitch, zeroing each row's
// padding (a GPU product reads it as the zero padding of its contracted extent).
TEST(Loss, IntegerLabelKernelsAtAPitch) {
  const int64_t rows = 3, n = 5, ld = 8;
  Tensor wide = test_values({rows, ld}, 40, -2, 2, DType::F32);
  Tensor logits(wide.storage(), {rows, n}, {ld, 1}, 0, DType::F32);
  std::vector<int32_t> label_values = {4, 0, 2};
  Tensor labels = from_vector(label_values, {rows});
  Tensor loss = Tensor::empty({rows}), lse = Tensor::empty({rows});
  cpu::cross_entropy_int(logits.raw_data(), DType::F32, labels.raw_data(), DType::I32,
                         loss.raw_data(), DType::F32, lse.raw_data(), rows, n, ld);
  Tensor g = full({rows}, 0.5, DType::F32);
  Tensor dx = full({rows, ld}, std::nan(""), DType::F32);
  cpu::cross_entropy_int_backward(logits.raw_data(), DType::F32, labels.raw_data(), DType::I32,
                                  lse.raw_data(), g.raw_data(), DType::F32, dx.raw_data(), rows, n, ld);
  // Against the same rows stored contiguously.
  Tensor packed = logits.contiguous(), packed_loss = Tensor::empty({rows}), packed_lse = Tensor::empty({rows});
  cpu::cross_entropy_int(packed.raw_data(), DType::F32, labels.raw_data(), DType::I32,
                         packed_loss.raw_data(), DType::F32, packed_lse.raw_data(), rows, n, n);
  Tensor packed_dx = Tensor::empty({rows, n});
  cpu::cross_entropy_int_backward(packed.raw_data(), DType::F32, labels.raw_data(), DType::I32,
                                  packed_lse.raw_data(), g.raw_data(), DType::F32,
                                  packed_dx.raw_data(), rows, n, n);
  EXPECT_ALLCLOSE(loss, packed_loss, 0, 0);
  EXPECT_ALLCLOSE(slice_axis(dx, 1, 0, n), packed_dx, 0, 0);
  EXPECT_ALLCLOSE(slice_axis(dx, 1, n, ld), zeros({rows, ld - n}), 0, 0);

  // Through the op: rows padded by under 16 bytes are read in place and the gradient comes at
  // their pitch; a narrow slice of wider rows is copied, its gradient as narrow as the slice.
  for (int64_t pitch : {int64_t(8), int64_t(64)}) {
    Tensor storage_rows = test_values({rows, pitch}, 41, -2, 2, DType::F32);
    Tensor view = autograd::make_leaf(Tensor(storage_rows.storage(), {rows, n}, {pitch, 1}, 0, DType::F32), 0);
    autograd::RecordingGuard rec(true);
    Tensor l = softmax_cross_entropy_with_integer_labels(view, labels);
    Tensor d = autograd::backward(sum(l), {view})[0];
    EXPECT_ALLCLOSE(l, softmax_cross_entropy_with_integer_labels(view.contiguous(), labels), 0, 0);
    EXPECT_EQ(d.strides(), pitch == 8 ? (Shape{8, 1}) : (Shape{n, 1})) << pitch;
  }
}

TEST(Loss, Gradients) {
  Tensor logits = test_values({3, 5}, 2, -3, 3);
  Tensor probs = softmax(test_values({3, 5}, 3, -1, 1));
  Tensor labels = from_vector<int32_t>({4, 0, -2}, {3});
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return sum(softmax_cross_entropy(in[0], in[1])); },
                              {logits, probs}));
  Tensor w = test_values({3}, 4);
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) {
    return sum(softmax_cross_entropy_with_integer_labels(in[0], labels) * w);
  }, {logits}));
  Tensor z = test_values({2, 4}, 5, -4, 4), t = test_values({2, 4}, 6, 0, 1);
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return sum(sigmoid_binary_cross_entropy(in[0], in[1])); }, {z, t}));
  Tensor p = test_values({2, 4}, 7, -3, 3), q = test_values({2, 4}, 8, -3, 3);
  Tensor wp = test_values({2, 4}, 9);
  auto weighted = [&](std::function<Tensor(const Tensor&, const Tensor&)> f) {
    return [f, wp](const std::vector<Tensor>& in) { return sum(f(in[0], in[1]) * wp); };
  };
  EXPECT_TRUE(check_gradients(weighted([](const Tensor& a, const Tensor& b) { return l2_loss(a, b); }), {p, q}));
  EXPECT_TRUE(check_gradients(weighted([](const Tensor& a, const Tensor& b) { return squared_error(a, b); }), {p, q}));
  // huber on both sides of delta (no |error| within 1e-3 of delta or 0)
  for (double delta : {1.0, 0.7}) {
    std::vector<double> e = (p - q).to_vector<double>();
    for (double v : e) ASSERT_GT(std::fabs(std::fabs(v) - delta), 1e-3);
    EXPECT_TRUE(check_gradients(weighted([delta](const Tensor& a, const Tensor& b) { return huber_loss(a, b, delta); }), {p, q}));
  }
  EXPECT_TRUE(check_gradients([](const std::vector<Tensor>& in) { return sum(l2_loss(in[0])); }, {p}));
}

TEST(Loss, MatchReferenceFormulas) {
  Tensor p = from_vector<double>({0.5, -2.0, 3.0, 0.0}, {4});
  Tensor t = from_vector<double>({1.0, 1.0, 1.0, 0.0}, {4});
  EXPECT_ALLCLOSE(squared_error(p, t), from_vector<double>({0.25, 9, 4, 0}, {4}), 0, 0);
  EXPECT_ALLCLOSE(l2_loss(p, t), from_vector<double>({0.125, 4.5, 2, 0}, {4}), 0, 0);
  EXPECT_ALLCLOSE(l2_loss(p), from_vector<double>({0.125, 2, 4.5, 0}, {4}), 0, 0);
  // huber: 0.5 e^2 inside delta, 0.5 d^2 + d (|e| - d) outside
  EXPECT_ALLCLOSE(huber_loss(p, t, 1.0), from_vector<double>({0.125, 2.5, 1.5, 0}, {4}), 1e-15, 0);
  EXPECT_ALLCLOSE(huber_loss(p), from_vector<double>({0.125, 1.5, 2.5, 0}, {4}), 1e-15, 0);
  // sigmoid BCE = -y log s(x) - (1 - y) log(1 - s(x)), stable for large |x|
  Tensor z = from_vector<double>({0.3, -1.2, 40, -40}, {4});
  Tensor y = from_vector<double>({1, 0, 0.25, 1}, {4});
  std::vector<double> expect;
  for (int i = 0; i < 4; ++i) {
    double x = z.to_vector<double>()[size_t(i)], l = y.to_vector<double>()[size_t(i)];
    double log_s = -std::log1p(std::exp(-std::fabs(x))) + std::min(x, 0.0);
    double log_not_s = -std::log1p(std::exp(-std::fabs(x))) + std::min(-x, 0.0);
    expect.push_back(-l * log_s - (1 - l) * log_not_s);
  }
  EXPECT_ALLCLOSE(sigmoid_binary_cross_entropy(z, y), from_vector(expect, {4}), 1e-12, 1e-12);
  // soft labels broadcast: one label distribution for every row
  Tensor logits = test_values({3, 4}, 10, -2, 2);
  Tensor dist = from_vector<double>({0.1, 0.2, 0.3, 0.4}, {4});
  Tensor ce = softmax_cross_entropy(logits, dist);
  EXPECT_EQ(ce.shape(), (Shape{3}));
  EXPECT_ALLCLOSE(ce, -sum(log_softmax(logits) * dist, {-1}), 1e-15, 0);
}

TEST(Loss, ErrorsNameShapesAndDtypes) {
  auto expect_msg = [](auto&& fn, std::initializer_list<const char*> parts) {
    try {
      fn();
      ADD_FAILURE() << "expected an error";
    } catch (const Error& e) {
      std::string msg = e.what();
      for (const char* p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    }
  };
  Tensor logits = zeros({4, 10});
  expect_msg([&] { (void)softmax_cross_entropy_with_integer_labels(logits, zeros({3}, DType::I32)); },
             {"softmax_cross_entropy_with_integer_labels", "[3]", "[4, 10]"});
  expect_msg([&] { (void)softmax_cross_entropy_with_integer_labels(logits, zeros({4})); },
             {"softmax_cross_entropy_with_integer_labels", "float32", "[4]", "[4, 10]"});
  EXPECT_THROW((void)softmax_cross_entropy_with_integer_labels(logits, zeros({4})), DTypeError);
  EXPECT_THROW((void)softmax_cross_entropy_with_integer_labels(logits, zeros({4}, DType::Bool)), DTypeError);
  EXPECT_THROW((void)softmax_cross_entropy_with_integer_labels(zeros({4, 10}, DType::I32), zeros({4}, DType::I32)), DTypeError);
  expect_msg([&] { (void)softmax_cross_entropy(logits, zeros({4, 9})); }, {"softmax_cross_entropy", "[4, 9]", "[4, 10]"});
  EXPECT_THROW((void)softmax_cross_entropy(logits, zeros({4, 9})), ShapeError);
  expect_msg([&] { (void)l2_loss(zeros({2, 3}), zeros({3})); }, {"l2_loss", "[2, 3]", "[3]"});
  EXPECT_THROW((void)squared_error(zeros({2, 3}), zeros({3, 2})), ShapeError);
  EXPECT_THROW((void)sigmoid_binary_cross_entropy(zeros({2, 3}), zeros({4})), ShapeError);
  EXPECT_THROW((void)huber_loss(zeros({2}, DType::I32)), DTypeError);
  EXPECT_THROW((void)softmax_cross_entropy_with_integer_labels(zeros({}), zeros({}, DType::I32)), ShapeError);
}

}  // namespace
}  // namespace loom

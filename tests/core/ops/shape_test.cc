// Shape and indexing ops against plain C++ references, float64 gradient checks, JAX goldens,
// view semantics and errors.
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

/// Row-major element of a contiguous [.., ..] index.
int64_t flat_index(const Shape& shape, const Shape& idx) {
  int64_t f = 0;
  for (size_t d = 0; d < shape.size(); ++d) f = f * shape[d] + idx[d];
  return f;
}
/// Multi-index of flat position `f`.
Shape unflat(const Shape& shape, int64_t f) {
  Shape idx(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = f % shape[d];
    f /= shape[d];
  }
  return idx;
}

/// A scalar loss that weights every output element differently, so gradients are informative.
Tensor weighted(const Tensor& y, uint64_t seed = 99) {
  return sum(y * test_values(y.shape(), seed, 0.5, 1.5));
}

template <typename F>
void expect_gradients(F f, const std::vector<Tensor>& inputs, const char* what) {
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return weighted(f(in)); }, inputs)) << what;
}

void expect_error_names(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning " << parts[0];
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << " lacks " << p;
  }
}

TEST(Shape, TransposeIsAViewWithPermutedValues) {
  Tensor x = test_values({2, 3, 4}, 1);
  Tensor t = transpose(x, {2, 0, -2});
  EXPECT_EQ(t.shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(t.storage(), x.storage());
  std::vector<double> xv = x.to_vector<double>(), tv = t.to_vector<double>();
  for (int64_t f = 0; f < t.numel(); ++f) {
    Shape i = unflat({4, 2, 3}, f);
    EXPECT_EQ(tv[size_t(f)], xv[size_t(flat_index({2, 3, 4}, {i[1], i[2], i[0]}))]);
  }
  EXPECT_EQ(transpose(x).shape(), (Shape{4, 3, 2}));  // default reverses
  EXPECT_ALLCLOSE(transpose(transpose(x)), x, 0, 0);
  EXPECT_ALLCLOSE(swapaxes(x, 0, -1), transpose(x), 0, 0);
  EXPECT_EQ(transpose(scalar(1.0)).ndim(), 0);
  expect_gradients([](auto& in) { return transpose(in[0], {1, 2, 0}) * 2.0; }, {x}, "transpose");
  expect_gradients([](auto& in) { return swapaxes(in[0], 1, 2); }, {x}, "swapaxes");
}

TEST(Shape, ExpandDimsSqueezeFlatten) {
  Tensor x = test_values({2, 1, 3}, 2);
  EXPECT_EQ(expand_dims(x, 0).shape(), (Shape{1, 2, 1, 3}));
  EXPECT_EQ(expand_dims(x, -1).shape(), (Shape{2, 1, 3, 1}));
  EXPECT_EQ(expand_dims(x, 3).shape(), (Shape{2, 1, 3, 1}));
  EXPECT_EQ(expand_dims(x, -4).shape(), (Shape{1, 2, 1, 3}));
  EXPECT_EQ(squeeze(x).shape(), (Shape{2, 3}));
  EXPECT_EQ(squeeze(x, {-2}).shape(), (Shape{2, 3}));
  EXPECT_EQ(squeeze(ones({1, 1})).ndim(), 0);
  EXPECT_EQ(expand_dims(x, 1).storage(), x.storage());
  EXPECT_EQ(squeeze(x).storage(), x.storage());
  EXPECT_ALLCLOSE(squeeze(expand_dims(x, 2), {2}), x, 0, 0);
  EXPECT_EQ(expand_dims(x, 2).contiguous().to_vector<double>(), x.to_vector<double>());
  EXPECT_EQ(flatten(test_values({2, 3, 4, 5}, 3), 1, 2).shape(), (Shape{2, 12, 5}));
  EXPECT_EQ(flatten(test_values({2, 3, 4}, 3)).shape(), (Shape{24}));
  EXPECT_EQ(flatten(test_values({2, 3, 4}, 3), -2).shape(), (Shape{2, 12}));
  expect_gradients([](auto& in) { return expand_dims(squeeze(in[0]), 0); }, {x}, "squeeze");
  expect_gradients([](auto& in) { return flatten(transpose(in[0])); }, {x}, "flatten");
  expect_error_names([&] { (void)squeeze(x, {0}); }, {"squeeze", "[2, 1, 3]", "size 2"});
  expect_error_names([&] { (void)expand_dims(x, 4); }, {"expand_dims", "axis 4"});
}

TEST(Shape, ConcatenateAndStack) {
  Tensor a = test_values({2, 3}, 4), b = test_values({2, 1}, 5), c = zeros({2, 0}, DType::F64);
  Tensor y = concatenate({a, b, c}, -1);
  EXPECT_EQ(y.shape(), (Shape{2, 4}));
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>();
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{av[0], av[1], av[2], bv[0], av[3], av[4], av[5], bv[1]}));
  Tensor z = concatenate({a, a}, 0);
  EXPECT_EQ(z.shape(), (Shape{4, 3}));
  EXPECT_ALLCLOSE(slice_axis(z, 0, 2, 4), a, 0, 0);
  // dtypes promote
  Tensor mixed = concatenate({from_vector<int32_t>({1, 2}, {2}), from_vector<float>({0.5f}, {1})});
  EXPECT_EQ(mixed.dtype(), DType::F32);
  EXPECT_EQ(mixed.to_vector<float>(), (std::vector<float>{1, 2, 0.5f}));
  // strided inputs
  Tensor t = transpose(test_values({3, 2}, 6));
  EXPECT_ALLCLOSE(concatenate({t, a}, 0), concatenate({t.contiguous(), a}, 0), 0, 0);

  Tensor s = stack({a, a * 2.0, a * 3.0}, 1);
  EXPECT_EQ(s.shape(), (Shape{2, 3, 3}));
  EXPECT_ALLCLOSE(squeeze(slice_axis(s, 1, 2, 3), {1}), a * 3.0, 0, 0);
  EXPECT_EQ(stack({a, a}, -1).shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(stack({scalar(1.0), scalar(2.0)}).to_vector<float>(), (std::vector<float>{1, 2}));

  expect_gradients([](auto& in) { return concatenate({in[0], in[1], in[0]}, 1); }, {a, b}, "concatenate");
  expect_gradients([](auto& in) { return stack({in[0], in[1]}, 0); }, {a, a + 1.0}, "stack");
  expect_error_names([&] { (void)concatenate({a, ones({3, 1}, DType::F64)}, 1); },
                     {"concatenate", "[2, 3]", "[3, 1]"});
  expect_error_names([&] { (void)stack({a, b}); }, {"stack", "[2, 3]", "[2, 1]"});
  EXPECT_THROW((void)concatenate({}, 0), ValueError);
  EXPECT_THROW((void)concatenate({scalar(1.0), scalar(2.0)}, 0), ShapeError);
}

TEST(Shape, SplitAndSlice) {
  Tensor x = test_values({4, 6}, 7);
  std::vector<Tensor> parts = split(x, 3, -1);
  ASSERT_EQ(parts.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(parts[i].shape(), (Shape{4, 2}));
    EXPECT_EQ(parts[i].storage(), x.storage());
  }
  EXPECT_ALLCLOSE(concatenate(parts, 1), x, 0, 0);
  std::vector<Tensor> uneven = split(x, std::vector<int64_t>{1, 1, 4}, 0);
  ASSERT_EQ(uneven.size(), 4u);
  EXPECT_EQ(uneven[0].shape(), (Shape{1, 6}));
  EXPECT_EQ(uneven[1].shape(), (Shape{0, 6}));
  EXPECT_EQ(uneven[2].shape(), (Shape{3, 6}));
  EXPECT_EQ(uneven[3].shape(), (Shape{0, 6}));
  EXPECT_ALLCLOSE(concatenate(uneven, 0), x, 0, 0);

  Tensor s = slice(x, {1, 0}, {4, 6}, {2, 4});
  EXPECT_EQ(s.shape(), (Shape{2, 2}));
  EXPECT_EQ(s.storage(), x.storage());
  std::vector<double> xv = x.to_vector<double>();
  EXPECT_EQ(s.to_vector<double>(), (std::vector<double>{xv[6], xv[10], xv[18], xv[22]}));
  EXPECT_EQ(slice(x, {2, 3}, {2, 5}).shape(), (Shape{0, 2}));
  EXPECT_ALLCLOSE(slice_axis(x, 1, -2, 6), slice(x, {0, 4}, {4, 6}), 0, 0);
  EXPECT_ALLCLOSE(slice_axis(x, -1, 1, -1), slice(x, {0, 1}, {4, 5}), 0, 0);

  expect_gradients([](auto& in) { auto p = split(in[0], 2, 1); return p[0] * p[1]; }, {x}, "split");
  expect_gradients([](auto& in) { return slice(in[0], {1, 1}, {4, 6}, {2, 3}); }, {x}, "slice");
  expect_gradients([](auto& in) { return slice_axis(slice_axis(in[0], 0, 1, 3), 1, 2, 5); }, {x}, "slice_axis");

  expect_error_names([&] { (void)split(x, 4, 1); }, {"split", "[4, 6]", "4 equal"});
  expect_error_names([&] { (void)split(x, std::vector<int64_t>{3, 2}, 0); }, {"split", "[4, 6]"});
  expect_error_names([&] { (void)slice(x, {0, 0}, {5, 6}); }, {"slice", "[4, 6]", "[5, 6]"});
  expect_error_names([&] { (void)slice(x, {0}, {4}); }, {"slice", "[4, 6]"});
  expect_error_names([&] { (void)slice(x, {0, 0}, {4, 6}, {1, 0}); }, {"slice", "strides"});
  expect_error_names([&] { (void)slice_axis(x, 0, 3, 2); }, {"slice_axis", "[4, 6]"});
}

// Reference padding with numpy's index rules, written independently of the kernels.
double ref_pad_source(int64_t j, int64_t n, PadMode mode) {
  if (j >= 0 && j < n) return double(j);
  if (mode == PadMode::Constant) return -1;
  if (mode == PadMode::Wrap) return double(((j % n) + n) % n);
  // reflect: walk back and forth over 0..n-1 without repeating the edges
  if (n == 1) return 0;
  int64_t pos = 0, dir = 1;
  for (int64_t s = 0; s < (j < 0 ? -j : j); ++s) {
    int64_t step = j < 0 ? -dir : dir;
    if (pos + step < 0 || pos + step >= n) dir = -dir, step = -step;
    pos += step;
  }
  return double(pos);
}

TEST(Shape, PadMatchesReference) {
  Tensor x = test_values({3, 4}, 8);
  std::vector<double> xv = x.to_vector<double>();
  const std::vector<std::pair<int64_t, int64_t>> pads = {{2, 5}, {0, 9}};
  for (PadMode mode : {PadMode::Constant, PadMode::Wrap, PadMode::Reflect}) {
    Tensor y = pad(x, pads, mode, 7.5);
    ASSERT_EQ(y.shape(), (Shape{10, 13}));
    std::vector<double> want;
    for (int64_t r = 0; r < 10; ++r)
      for (int64_t c = 0; c < 13; ++c) {
        double i = ref_pad_source(r - 2, 3, mode), j = ref_pad_source(c, 4, mode);
        want.push_back(i < 0 || j < 0 ? 7.5 : xv[size_t(i * 4 + j)]);
      }
    EXPECT_ALLCLOSE(y, from_vector(want, {10, 13}), 0, 0) << int(mode);
    // strided input
    EXPECT_ALLCLOSE(pad(transpose(transpose(x).contiguous()), pads, mode, 7.5), y, 0, 0);
    expect_gradients([&](auto& in) { return pad(in[0], pads, mode); }, {x}, "pad");
  }
  EXPECT_EQ(pad(x, {{0, 0}, {0, 0}}).storage(), x.storage());  // nothing to pad
  EXPECT_EQ(pad(from_vector<int32_t>({1, 2}, {2}), {{1, 1}}, 9).to_vector<int32_t>(),
            (std::vector<int32_t>{9, 1, 2, 9}));
  EXPECT_EQ(pad(zeros({0, 2}), {{1, 0}, {0, 0}}, 3).to_vector<float>(), (std::vector<float>{3, 3}));
  EXPECT_EQ(pad(scalar(4.0), {}).item<float>(), 4.0f);
  expect_error_names([&] { (void)pad(x, {{1, 1}}); }, {"pad", "[3, 4]"});
  expect_error_names([&] { (void)pad(x, {{1, -1}, {0, 0}}); }, {"pad", "negative", "[3, 4]"});
  expect_error_names([&] { (void)pad(zeros({0, 2}), {{1, 0}, {0, 0}}, PadMode::Wrap); },
                     {"pad", "wrap", "[0, 2]"});
}

TEST(Shape, TakeMatchesReference) {
  Tensor x = test_values({3, 5, 2}, 9);
  std::vector<double> xv = x.to_vector<double>();
  Tensor idx = from_vector<int32_t>({0, 4, -1, 7, -6, 2}, {2, 3});
  Tensor y = take(x, idx, 1);
  ASSERT_EQ(y.shape(), (Shape{3, 2, 3, 2}));
  std::vector<int32_t> iv = idx.to_vector<int32_t>();
  std::vector<double> want, want_clip;
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t k = 0; k < 6; ++k)
      for (int64_t b = 0; b < 2; ++b) {
        int64_t j = iv[size_t(k)];
        int64_t jn = j < 0 ? j + 5 : j;
        want.push_back(jn >= 0 && jn < 5 ? xv[size_t((a * 5 + jn) * 2 + b)] : NAN);
        int64_t jc = std::min<int64_t>(std::max<int64_t>(j, 0), 4);
        want_clip.push_back(xv[size_t((a * 5 + jc) * 2 + b)]);
      }
  EXPECT_ALLCLOSE(y, from_vector(want, {3, 2, 3, 2}), 0, 0);
  EXPECT_ALLCLOSE(take(x, idx, 1, TakeMode::Clip), from_vector(want_clip, {3, 2, 3, 2}), 0, 0);
  // every integer index dtype, scalar indices, axis 0 and -1
  Tensor swapped = concatenate({slice_axis(x, 2, 1, 2), slice_axis(x, 2, 0, 1)}, 2);
  for (DType dt : {DType::I32, DType::I64, DType::U8, DType::U32})
    EXPECT_ALLCLOSE(take(x, from_vector<int32_t>({1, 0}, {2}).to(dt), -1), swapped, 0, 0) << dtype_name(dt);
  EXPECT_ALLCLOSE(take(x, scalar(1, DType::I32), 0), slice_axis(x, 0, 1, 2).reshape({5, 2}), 0, 0);
  EXPECT_EQ(take(x, zeros({0}, DType::I32), 0).shape(), (Shape{0, 5, 2}));
  // integer data fills with the lowest value, as jnp
  Tensor ints = from_vector<int32_t>({10, 20, 30}, {3});
  EXPECT_EQ(take(ints, from_vector<int32_t>({2, 3}, {2})).to_vector<int32_t>(),
            (std::vector<int32_t>{30, std::numeric_limits<int32_t>::min()}));
  // checked mode names the bad index
  EXPECT_ALLCLOSE(take(x, from_vector<int32_t>({-5, 4}, {2}), 1, TakeMode::Checked),
                  take(x, from_vector<int32_t>({0, 4}, {2}), 1), 0, 0);
  expect_error_names([&] { (void)take(x, idx, 1, TakeMode::Checked); },
                     {"take", "index 7", "size 5", "[3, 5, 2]"});
  expect_error_names([&] { (void)take(x, ones({2}), 0); }, {"take", "integer", "float32", "[3, 5, 2]"});
  expect_error_names([&] { (void)take(x, idx, 3); }, {"take", "axis 3"});
  // the backward is a scatter-add: repeated indices accumulate, out-of-range ones get nothing
  expect_gradients([&](auto& in) { return take(in[0], from_vector<int32_t>({0, 4, -1, 4, 2, 2}, {2, 3}), 1); }, {x}, "take");
  expect_gradients([&](auto& in) { return take(in[0], idx, 1, TakeMode::Clip); }, {x}, "take clip");
  auto [v, g] = value_and_grad_tensor([&](const Tensor& t) {
    return sum(where(equal(take(t, idx, 1), take(t, idx, 1)), take(t, idx, 1), 0.0));  // NaNs masked
  })(x);
  std::vector<double> gv = g.to_vector<double>(), want_g(30, 0.0);
  for (int64_t a = 0; a < 3; ++a)
    for (int32_t j : iv)
      if (j >= -5 && j < 5) want_g[size_t((a * 5 + (j < 0 ? j + 5 : j)) * 2)] += 1, want_g[size_t((a * 5 + (j < 0 ? j + 5 : j)) * 2 + 1)] += 1;
  EXPECT_EQ(gv, want_g);
}

TEST(Shape, TakeAlongAxisAndOneHot) {
  Tensor logits = test_values({4, 5}, 10);
  Tensor labels = from_vector<int32_t>({3, 0, 4, 1}, {4, 1});
  Tensor picked = take_along_axis(logits, labels, 1);
  ASSERT_EQ(picked.shape(), (Shape{4, 1}));
  std::vector<double> lv = logits.to_vector<double>();
  EXPECT_EQ(picked.to_vector<double>(), (std::vector<double>{lv[3], lv[5], lv[14], lv[16]}));
  // broadcasting outside the axis: x [3, 1, 4] with indices [1, 2, 3]
  Tensor x = test_values({3, 1, 4}, 11);
  Tensor idx = from_vector<int64_t>({0, 3, -1, 1, 1, 9}, {1, 2, 3});
  Tensor y = take_along_axis(x, idx, -1);
  ASSERT_EQ(y.shape(), (Shape{3, 2, 3}));
  std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>();
  std::vector<int64_t> iv = idx.to_vector<int64_t>();
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t c = 0; c < 3; ++c) {
        int64_t j = iv[size_t(b * 3 + c)];
        j = j < 0 ? j + 4 : j;
        double got = yv[size_t((a * 2 + b) * 3 + c)];
        if (j >= 4) EXPECT_TRUE(std::isnan(got));
        else EXPECT_EQ(got, xv[size_t(a * 4 + j)]);
      }
  expect_gradients([&](auto& in) { return take_along_axis(in[0], labels, 1); }, {logits}, "take_along_axis");
  expect_gradients([&](auto& in) { return take_along_axis(in[0], idx, 2, TakeMode::Clip); }, {x}, "take_along_axis bcast");
  expect_error_names([&] { (void)take_along_axis(logits, from_vector<int32_t>({0}, {1}), 1); },
                     {"take_along_axis", "[4, 5]", "[1]"});
  expect_error_names([&] { (void)take_along_axis(logits, zeros({3, 1}, DType::I32), 1); },
                     {"take_along_axis", "[4, 5]", "[3, 1]"});

  Tensor oh = one_hot(from_vector<int32_t>({0, 2, -1, 3}, {2, 2}), 3);
  EXPECT_EQ(oh.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(oh.dtype(), DType::F32);
  EXPECT_EQ(oh.to_vector<float>(), (std::vector<float>{1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(one_hot(from_vector<uint8_t>({1}, {1}), 2, DType::Bool).to_vector<bool>(), (std::vector<bool>{false, true}));
  EXPECT_EQ(one_hot(zeros({0}, DType::I32), 4).shape(), (Shape{0, 4}));
  expect_error_names([&] { (void)one_hot(ones({2}), 3); }, {"one_hot", "float32", "[2]"});
}

TEST(Shape, TriangularMasks) {
  Tensor x = test_values({2, 3, 4}, 12);
  std::vector<double> xv = x.to_vector<double>();
  for (int64_t k : {-2, -1, 0, 1, 3}) {
    std::vector<double> lo, up;
    for (int64_t f = 0; f < 24; ++f) {
      int64_t r = (f / 4) % 3, c = f % 4;
      lo.push_back(c - r <= k ? xv[size_t(f)] : 0.0);
      up.push_back(c - r >= k ? xv[size_t(f)] : 0.0);
    }
    EXPECT_EQ(tril(x, k).to_vector<double>(), lo) << k;
    EXPECT_EQ(triu(x, k).to_vector<double>(), up) << k;
  }
  EXPECT_EQ(causal_mask(3).to_vector<bool>(),
            (std::vector<bool>{true, false, false, true, true, false, true, true, true}));
  EXPECT_EQ(causal_mask(3).dtype(), DType::Bool);
  EXPECT_EQ(causal_mask(0).shape(), (Shape{0, 0}));
  EXPECT_EQ(tril(transpose(x, {0, 2, 1})).to_vector<double>(),
            tril(transpose(x, {0, 2, 1}).contiguous()).to_vector<double>());
  expect_gradients([](auto& in) { return tril(in[0], 1) + triu(in[0], -1); }, {x}, "tril/triu");
  expect_error_names([&] { (void)tril(ones({3})); }, {"tril", "[3]"});
}

TEST(Shape, JaxGoldens) {
  nlohmann::json golden = testing::load_golden("reduce_shape.json");
  int checked = 0;
  for (const auto& c : golden.at("cases")) {
    std::string op = c.at("op"), name = c.at("name");
    std::function<Tensor(const Tensor&)> f;
    if (op == "pad") {
      std::vector<std::pair<int64_t, int64_t>> pads;
      for (const auto& p : c.at("pads")) pads.push_back({p[0].get<int64_t>(), p[1].get<int64_t>()});
      std::string m = c.at("mode");
      PadMode mode = m == "wrap" ? PadMode::Wrap : m == "reflect" ? PadMode::Reflect : PadMode::Constant;
      double value = c.at("value");
      f = [=](const Tensor& t) { return pad(t, pads, mode, value); };
    } else if (op == "take" || op == "take_along_axis") {
      Tensor idx = golden_tensor(c.at("indices"));
      int64_t axis = c.at("axis");
      TakeMode mode = c.value("mode", "fill") == "clip" ? TakeMode::Clip : TakeMode::Fill;
      if (op == "take") f = [=](const Tensor& t) { return take(t, idx, axis, mode); };
      else f = [=](const Tensor& t) { return take_along_axis(t, idx, axis, mode); };
    } else if (op == "tril" || op == "triu") {
      int64_t k = c.at("k");
      f = [=](const Tensor& t) { return op == "tril" ? tril(t, k) : triu(t, k); };
    } else if (op == "slice") {
      Shape start = c.at("start"), limit = c.at("limit"), strides = c.at("strides");
      f = [=](const Tensor& t) { return slice(t, start, limit, strides); };
    } else if (op == "one_hot") {
      EXPECT_ALLCLOSE(one_hot(golden_tensor(c.at("x")), c.at("num_classes")), golden_tensor(c.at("out")), 0, 0);
      ++checked;
      continue;
    } else {
      continue;
    }
    Tensor x = golden_tensor(c.at("x"));
    EXPECT_ALLCLOSE(f(x), golden_tensor(c.at("out")), 0, 0) << name;
    Tensor w = golden_tensor(c.at("w"));
    auto [v, g] = value_and_grad_tensor([&](const Tensor& t) {
      Tensor y = f(t);
      return sum(where(equal(y, y), y, 0.0) * w);  // NaN fills carry no gradient
    })(x);
    EXPECT_ALLCLOSE(g, golden_tensor(c.at("grad")), 1e-5, 1e-6) << name << " gradient";
    ++checked;
  }
  EXPECT_EQ(checked, 16);
}

}  // namespace
}  // namespace loom

// CUDA shape and indexing ops against the CPU, forward and backward (f32 exact or rtol 1e-5;
// bf16 where the op moves data without arithmetic, so it must match exactly too).
#include <cmath>

#include "core/autodiff.h"
#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::test_values;

Tensor gpu(const Tensor& t) { return t.to(Device::cuda()); }

/// Runs f on the CPU and on the GPU and compares outputs and the gradients of a weighted sum.
template <typename F>
void expect_same_on_gpu(F f, const Tensor& x, const char* what, double rtol = 1e-5) {
  Tensor cpu_out = f(x), gpu_out = f(gpu(x));
  ASSERT_TRUE(gpu_out.is_cuda()) << what;
  EXPECT_ALLCLOSE(gpu_out, cpu_out, rtol, 0) << what;
  if (!is_floating(x.dtype())) return;
  Tensor w = test_values(cpu_out.shape(), 77, 0.5, 1.5, x.dtype());
  auto loss = [&](const Tensor& w_dev) {
    return [&f, w_dev](const Tensor& t) {
      Tensor y = f(t);
      return sum(where(equal(y, y), y, 0.0) * w_dev);  // NaN fills carry no gradient
    };
  };
  auto [vc, gc] = value_and_grad_tensor(loss(w))(x);
  auto [vg, gg] = value_and_grad_tensor(loss(gpu(w)))(gpu(x));
  ASSERT_TRUE(gg.is_cuda()) << what;
  EXPECT_ALLCLOSE(gg, gc, rtol, 1e-6) << what << " gradient";
}

TEST(ShapeGpu, ViewsConcatenateSplitSlice) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({4, 6, 5}, 1, -2, 2, DType::F32);
  expect_same_on_gpu([](const Tensor& t) { return transpose(t, {2, 0, 1}).contiguous(); }, x, "transpose");
  expect_same_on_gpu([](const Tensor& t) { return squeeze(expand_dims(swapaxes(t, 0, 2), 1)) * 2.0; }, x, "views");
  expect_same_on_gpu([](const Tensor& t) {
    return concatenate({t, transpose(t, {1, 0, 2}).contiguous().reshape({4, 6, 5}), slice_axis(t, 1, 1, 3)}, 1);
  }, x, "concatenate");
  expect_same_on_gpu([](const Tensor& t) { return stack({t, t * 3.0}, -1); }, x, "stack");
  expect_same_on_gpu([](const Tensor& t) {
    auto p = split(t, std::vector<int64_t>{1, 4}, 1);
    return concatenate({p[2] * p[2], p[0], p[1] + 1.0}, 1);
  }, x, "split");
  expect_same_on_gpu([](const Tensor& t) { return slice(t, {1, 0, 1}, {4, 6, 5}, {2, 4, 3}); }, x, "slice");
  expect_same_on_gpu([](const Tensor& t) { return tril(t, 1) + triu(t, -2) * 3.0; }, x, "tril/triu");
  Tensor xb = x.to(DType::BF16);
  expect_same_on_gpu([](const Tensor& t) { return concatenate({t, t}, -1); }, xb, "concatenate bf16", 0);
  expect_same_on_gpu([](const Tensor& t) { return tril(t); }, xb, "tril bf16", 0);
  EXPECT_EQ(causal_mask(5, Device::cuda()).to_vector<bool>(), causal_mask(5).to_vector<bool>());
  Tensor ints = from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(concatenate({gpu(ints), gpu(ints)}, 0).to_vector<int32_t>(),
            concatenate({ints, ints}, 0).to_vector<int32_t>());
}

TEST(ShapeGpu, PadEveryMode) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({3, 4, 2}, 2, -2, 2, DType::F32);
  const std::vector<std::pair<int64_t, int64_t>> pads = {{2, 5}, {0, 7}, {1, 0}};
  for (PadMode mode : {PadMode::Constant, PadMode::Wrap, PadMode::Reflect}) {
    expect_same_on_gpu([&](const Tensor& t) { return pad(t, pads, mode, -3.0); }, x, "pad");
    expect_same_on_gpu([&](const Tensor& t) { return pad(transpose(t, {1, 0, 2}), {{1, 1}, {3, 2}, {0, 0}}, mode); },
                       x, "pad strided");
    expect_same_on_gpu([&](const Tensor& t) { return pad(t, pads, mode, 0.5); }, x.to(DType::BF16), "pad bf16", 1e-2);
  }
  // NHWC with the channels unpadded (a strided conv's SAME padding): rows of 16-byte packs, also
  // under a transposed batch/height (outer strides) and with channels too few for a pack.
  Tensor nhwc = test_values({2, 5, 6, 16}, 3, -2, 2, DType::F32);
  const std::vector<std::pair<int64_t, int64_t>> spatial = {{0, 0}, {0, 1}, {2, 1}, {0, 0}};
  for (DType dt : {DType::F32, DType::BF16}) {
    const double rtol = dt == DType::BF16 ? 1e-2 : 1e-6;  // the gradients' sums of copies
    for (PadMode mode : {PadMode::Constant, PadMode::Reflect}) {
      expect_same_on_gpu([&](const Tensor& t) { return pad(t, spatial, mode, -1.5); }, nhwc.to(dt), "pad rows", rtol);
      expect_same_on_gpu([&](const Tensor& t) { return pad(transpose(t, {1, 0, 2, 3}), spatial, mode); },
                         nhwc.to(dt), "pad rows strided", rtol);
      expect_same_on_gpu([&](const Tensor& t) { return pad(slice_axis(t, 3, 0, 3), spatial, mode); },
                         nhwc.to(dt), "pad short rows", rtol);
    }
  }
}

TEST(ShapeGpu, TakeAndTakeAlongAxis) {
  LOOM_REQUIRE_GPU();
  Tensor table = test_values({50, 16}, 3, -1, 1, DType::F32);  // an embedding table
  Tensor ids = from_vector<int32_t>({3, 7, 3, 49, -1, 50, 0, 3, 3, 12, -51, 8}, {3, 4});
  for (TakeMode mode : {TakeMode::Fill, TakeMode::Clip}) {
    expect_same_on_gpu([&](const Tensor& t) { return take(t, ids.to(t.device()), 0, mode); }, table, "take");
    expect_same_on_gpu([&](const Tensor& t) { return take(t, ids.to(t.device()), 1, mode); }, table, "take axis 1");
  }
  expect_same_on_gpu([&](const Tensor& t) { return take(transpose(t), ids.to(DType::I64).to(t.device()), -1); },
                     table, "take strided");
  expect_same_on_gpu([&](const Tensor& t) { return take(t, ids.to(t.device()), 0); }, table.to(DType::BF16),
                     "take bf16", 1e-2);
  EXPECT_THROW((void)take(gpu(table), gpu(ids), 0, TakeMode::Checked), IndexError);
  Tensor labels = from_vector<int64_t>({2, 0, 15, 7, 16, -1}, {6, 1});
  Tensor logits = test_values({6, 16}, 4, -3, 3, DType::F32);
  expect_same_on_gpu([&](const Tensor& t) { return take_along_axis(t, labels.to(t.device()), 1); }, logits,
                     "take_along_axis");
  expect_same_on_gpu([&](const Tensor& t) {
    return take_along_axis(expand_dims(t, 0), labels.reshape({1, 6, 1}).to(t.device()), -1, TakeMode::Clip);
  }, logits, "take_along_axis broadcast");
  Tensor oh_idx = from_vector<int32_t>({0, 3, -1, 9, 2}, {5});
  EXPECT_ALLCLOSE(one_hot(gpu(oh_idx), 4), one_hot(oh_idx, 4), 0, 0);
  EXPECT_ALLCLOSE(one_hot(gpu(oh_idx.to(DType::U8)), 10, DType::BF16).to(DType::F32),
                  one_hot(oh_idx.to(DType::U8), 10), 0, 0);
}

}  // namespace
}  // namespace loom

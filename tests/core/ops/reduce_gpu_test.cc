// CUDA reductions against the CPU, forward and backward, over layouts that exercise every launch
// plan of kernels/cuda/reduce.cu (warp rows, block rows with and without split, columns with
// and without split, generic strided) and argmax's two kernels.
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

Tensor rounded(const Shape& shape, uint64_t seed) {
  std::vector<double> v = test_values(shape, seed, -3, 3).to_vector<double>();
  for (double& e : v) e = std::round(e);
  return from_vector(v, shape).to(DType::F32);
}

struct Layout {
  Shape shape;
  Axes axes;
};
const Layout kLayouts[] = {
    {{64, 100}, {1}},         // short contiguous rows: a warp per output
    {{8, 5000}, {1}},         // long rows, few outputs: split block reduction
    {{300, 3000}, {1}},       // long rows, many outputs: a block per output
    {{1 << 20}, {}},          // everything into one value: split block reduction
    {{3000, 40}, {0}},        // columns (bias gradients): thread per output, split
    {{20, 50000}, {0}},       // many columns, few rows: thread per output
    {{6, 7, 9}, {0, 2}},      // generic strided reduced dims
    {{5, 12, 7}, {1}},        // middle axis: columns
    {{4, 5, 6, 8}, {0, 2}},   // columns over two non-adjacent reduced dims
    {{4, 3}, {0, 1}},         // tiny
    {{7, 0, 3}, {1}},         // empty reduction: identity
    {{5, 1, 3}, {1}},         // size-1 reduced axis
};

TEST(ReduceGpu, SumMeanMaxMinMatchCpu) {
  LOOM_REQUIRE_GPU();
  uint64_t seed = 1;
  for (const Layout& l : kLayouts) {
    Tensor x = test_values(l.shape, seed++, -2, 2, DType::F32);
    Tensor g = x.to(Device::cuda());
    std::string what = shape_str(l.shape) + " axes " + shape_str(l.axes);
    EXPECT_ALLCLOSE(sum(g, l.axes), sum(x, l.axes), 1e-5, 1e-4) << what;
    EXPECT_ALLCLOSE(mean(g, l.axes, true), mean(x, l.axes, true), 1e-5, 1e-6) << what;
    if (x.numel() == 0) continue;
    EXPECT_ALLCLOSE(max(g, l.axes), max(x, l.axes), 0, 0) << what;
    EXPECT_ALLCLOSE(min(g, l.axes), min(x, l.axes), 0, 0) << what;
    EXPECT_ALLCLOSE(var(g, l.axes), var(x, l.axes), 1e-5, 1e-6) << what;
    EXPECT_ALLCLOSE(logsumexp(g, l.axes), logsumexp(x, l.axes), 1e-5, 1e-6) << what;
    // bf16 storage, float accumulation
    Tensor gb = x.to(DType::BF16).to(Device::cuda());
    Tensor xb = x.to(DType::BF16).to(DType::F32);
    EXPECT_ALLCLOSE(sum(gb, l.axes).to(DType::F32), sum(xb, l.axes), 1e-2, 1e-1) << what << " bf16";
    EXPECT_ALLCLOSE(max(gb, l.axes).to(DType::F32), max(xb, l.axes), 0, 0) << what << " bf16";
  }
}

TEST(ReduceGpu, StridedIntegerAndNaN) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({40, 30, 20}, 3, -2, 2, DType::F32);
  Tensor t = transpose(x, {2, 0, 1}), tg = transpose(x.to(Device::cuda()), {2, 0, 1});
  for (Axes axes : {Axes{0}, Axes{1}, Axes{2}, Axes{0, 2}, Axes{}})
    EXPECT_ALLCLOSE(sum(tg, axes), sum(t, axes), 1e-5, 1e-4) << shape_str(axes);
  Tensor i = from_vector<int32_t>({1, -7, 3, 100000, 5, 6}, {2, 3});
  EXPECT_EQ(sum(i.to(Device::cuda()), {1}).to_vector<int32_t>(), sum(i, {1}).to_vector<int32_t>());
  EXPECT_EQ(max(i.to(Device::cuda()), {0}).to_vector<int32_t>(), max(i, {0}).to_vector<int32_t>());
  Tensor b = from_vector<bool>({true, false, true, true}, {4});
  EXPECT_EQ(sum(b.to(Device::cuda())).item<int32_t>(), 3);
  Tensor n = from_vector<float>({1, NAN, 3, 4, 5, 6}, {2, 3});
  EXPECT_ALLCLOSE(max(n.to(Device::cuda()), {1}), max(n, {1}), 0, 0);
  EXPECT_ALLCLOSE(min(n.to(Device::cuda()), {0}), min(n, {0}), 0, 0);
  Tensor inf = from_vector<float>({-INFINITY, -INFINITY, INFINITY, 1}, {2, 2});
  EXPECT_ALLCLOSE(logsumexp(inf.to(Device::cuda()), {1}), logsumexp(inf, {1}), 0, 0);
}

TEST(ReduceGpu, ArgmaxArgminMatchCpu) {
  LOOM_REQUIRE_GPU();
  for (Shape shape : {Shape{50, 300}, Shape{300, 50}, Shape{7, 5, 3}, Shape{1, 1000}}) {
    Tensor x = rounded(shape, 4);  // many ties: the first occurrence must win on both devices
    for (int64_t axis = 0; axis < int64_t(shape.size()); ++axis) {
      Tensor g = x.to(Device::cuda());
      EXPECT_ALLCLOSE(argmax(g, axis), argmax(x, axis), 0, 0) << shape_str(shape) << " " << axis;
      EXPECT_ALLCLOSE(argmin(g, axis, true), argmin(x, axis, true), 0, 0) << shape_str(shape);
      EXPECT_ALLCLOSE(argmax(g.to(DType::BF16), axis), argmax(x.to(DType::BF16), axis), 0, 0);
    }
  }
  Tensor n = from_vector<float>({1, 2, 9, 3, 4, 9, 5, 6, 7, 8}, {1, 10});
  n = concatenate({n, from_vector<float>({NAN}, {1, 1}), n, from_vector<float>({NAN}, {1, 1}), ones({1, 80})}, 1);
  EXPECT_EQ(argmax(n.to(Device::cuda()), 1).item<int32_t>(), 10);  // first NaN, warp kernel
  EXPECT_EQ(argmin(n.to(Device::cuda()), 1).item<int32_t>(), 10);
  EXPECT_EQ(argmax(slice_axis(n, 1, 0, 10).to(Device::cuda()), 1).item<int32_t>(), 2);  // first tie
}

TEST(ReduceGpu, GradientsMatchCpu) {
  LOOM_REQUIRE_GPU();
  Tensor a = test_values({6, 33}, 5, -2, 2, DType::F32);
  auto f = [](const Tensor& x) {
    return sum(var(x, {1}) * 0.5) + sum(logsumexp(x * 2.0, {0})) + sum(max(x, {1})) +
           mean(min(x, {0})) + l2_norm(x);
  };
  auto [vc, gc] = value_and_grad_tensor(f)(a);
  auto [vg, gg] = value_and_grad_tensor(f)(a.to(Device::cuda()));
  EXPECT_ALLCLOSE(vg, vc, 1e-5, 1e-5);
  EXPECT_TRUE(gg.is_cuda());
  EXPECT_ALLCLOSE(gg, gc, 1e-5, 1e-6);
  // bf16: against the CPU on the same rounded inputs, so that max/min see the same ties
  Tensor ab = a.to(DType::BF16);
  auto [vr, gr] = value_and_grad_tensor(f)(ab.to(DType::F32));
  auto [vb, gb] = value_and_grad_tensor(f)(ab.to(Device::cuda()));
  EXPECT_ALLCLOSE(gb.to(DType::F32), gr, 1e-2, 2e-2);

  Tree cpu_tree, gpu_tree;
  cpu_tree.set("w", a);
  cpu_tree.set("b/c", test_values({17}, 6, -1, 1, DType::F32));
  gpu_tree = tree_map([](const Tensor& t) { return t.to(Device::cuda()); }, cpu_tree);
  EXPECT_ALLCLOSE(global_norm(gpu_tree), global_norm(cpu_tree), 1e-6, 0);
  auto gn = [](const Tree& p) { return global_norm(p); };
  EXPECT_TRUE(tree_allclose(tree_map([](const Tensor& t) { return t.to(Device::cpu()); },
                                     value_and_grad(gn)(gpu_tree).second),
                            value_and_grad(gn)(cpu_tree).second, 1e-5, 1e-7));
}

}  // namespace
}  // namespace loom

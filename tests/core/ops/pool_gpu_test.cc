// CUDA pooling against the CPU kernels, forward and backward, in float32 (rtol 1e-5) and
// bfloat16 (rtol 1e-2); max/min gradients must go to the same elements on both backends.
#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/pool.h"
#include "core/ops/reduce.h"
#include "kernels/cpu/pool.h"  // PoolOp
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::test_values;

Tensor run_pool(PoolOp op, const Tensor& x, const Shape& window, const Shape& strides,
                const Padding& padding, bool count_include_pad) {
  if (op == PoolOp::Max) return max_pool(x, window, strides, padding);
  if (op == PoolOp::Min) return min_pool(x, window, strides, padding);
  return avg_pool(x, window, strides, padding, count_include_pad);
}

struct Case {
  Shape x, window, strides;
  Padding padding;
  bool ties;  // values rounded to halves, so windows hold equal maxima
};

TEST(PoolGpu, ForwardAndBackwardMatchCpu) {
  LOOM_REQUIRE_GPU();
  std::vector<Case> cases = {
      {{2, 9, 10, 16}, {2, 2}, {2, 2}, Padding::valid(), false},
      {{2, 12, 11, 24}, {3, 3}, {2, 2}, Padding::same(), false},  // ResNet's stem pool, packed channels
      {{2, 9, 10, 5}, {3, 3}, {2, 2}, Padding::same(), false},
      {{2, 9, 10, 5}, {3, 3}, {1, 1}, Padding::same(), true},
      {{1, 6, 7, 3}, {2, 3}, {1, 2}, Padding::explicit_pads({{1, 0}, {2, 1}}), true},
      {{3, 11, 4}, {3}, {2}, Padding::same(), false},
      {{1, 4, 5, 6, 3}, {2, 2, 3}, {2, 1, 2}, Padding::same(), false},
      {{5, 6, 3}, {2, 2}, {2, 2}, Padding::same(), false},  // no batch dim
      // windows of 256 elements: the selection in int32 rather than one byte (kernels/cpu/pool.h)
      {{2, 20, 20, 8}, {16, 16}, {3, 3}, Padding::same(), true},
      {{2, 300, 4}, {256}, {40}, Padding::same(), false},
  };
  for (const Case& c : cases) {
    Tensor x = test_values(c.x, 7, -2, 2, DType::F32);
    if (c.ties) x = (x * 2.0).to(DType::I32).to(DType::F32) / 2.0;
    for (PoolOp op : {PoolOp::Max, PoolOp::Min, PoolOp::Avg}) {
      for (bool include : {true, false}) {
        if (op != PoolOp::Avg && !include) continue;
        std::string what = shape_str(c.x) + " " + c.padding.str() + " op " + std::to_string(int(op)) +
                           (include ? "" : " exclude");
        for (DType dt : {DType::F32, DType::BF16}) {
          double tol = dt == DType::F32 ? 1e-5 : 1e-2;
          Tensor xd = x.to(dt);
          Tensor cpu = run_pool(op, xd, c.window, c.strides, c.padding, include);
          Tensor gpu = run_pool(op, xd.to(Device::cuda()), c.window, c.strides, c.padding, include);
          EXPECT_ALLCLOSE(gpu.to(DType::F32), cpu.to(DType::F32), tol, tol) << what << " " << dtype_name(dt);
          Tensor w = test_values(cpu.shape(), 8, -1, 1, dt);
          std::vector<Tensor> grads;
          for (Device d : {Device::cpu(), Device::cuda()}) {
            Tensor leaf = autograd::make_leaf(xd.to(d), 0);
            autograd::RecordingGuard rec(true);
            Tensor out = run_pool(op, leaf, c.window, c.strides, c.padding, include);
            grads.push_back(autograd::backward(sum(out * w.to(d)), {leaf})[0].to(Device::cpu()));
          }
          EXPECT_ALLCLOSE(grads[1].to(DType::F32), grads[0].to(DType::F32), tol, tol)
              << what << " grad " << dtype_name(dt);
        }
      }
    }
  }
}

TEST(PoolGpu, F64AndEmpty) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({2, 5, 5, 3}, 9);
  EXPECT_ALLCLOSE(max_pool(x.to(Device::cuda()), {3, 3}, {2, 2}, Padding::same()),
                  max_pool(x, {3, 3}, {2, 2}, Padding::same()), 0, 0);
  EXPECT_ALLCLOSE(avg_pool(x.to(Device::cuda()), {3, 3}, {2, 2}, Padding::same(), false),
                  avg_pool(x, {3, 3}, {2, 2}, Padding::same(), false), 1e-12, 1e-12);
  EXPECT_EQ(max_pool(ones({1, 2, 2, 1}, DType::F32, Device::cuda()), {3, 3}).shape(), (Shape{1, 0, 0, 1}));
}

}  // namespace
}  // namespace loom

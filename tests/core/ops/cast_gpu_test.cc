// cast_floating / cast_like on a GPU: one kernel per dtype pair gives Tensor::to's bits, for
// more leaves than one launch takes, with the gradients of casting leaf by leaf.
#include <string>

#include "core/grad.h"
#include "core/ops/cast.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "kernels/cuda/copy.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::test_values;

TEST(CastGpu, ManyLeavesEqualTensorTo) {
  LOOM_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  Tree t;
  const int64_t leaves = cuda::kMaxCastJobs + 7;  // two launches
  for (int64_t i = 0; i < leaves; ++i) {
    const Shape shape = i % 3 == 0 ? Shape{int64_t(i % 17), 5} : Shape{int64_t(i * 13 + 1)};
    DType dt = i % 5 == 0 ? DType::F64 : DType::F32;
    std::string name = "p";
    name += std::to_string(i);
    t.insert(name, test_values(shape, uint64_t(i), -70000, 70000, dt).to(gpu));
  }
  t.insert("ids", from_vector<int32_t>({4, 5}, {2}).to(gpu));
  t.insert("strided", transpose(test_values({6, 4}, 99, -3, 3, DType::F32).to(gpu)));
  for (DType half : {DType::BF16, DType::F16}) {
    Tree h = cast_floating(t, half);
    Tree back = cast_like(h, t);
    for (const auto& [path, leaf] : t.flatten()) {
      const Tensor& x = leaf;
      const Tensor expected = x.to(is_floating(x.dtype()) ? half : x.dtype());
      EXPECT_EQ(h.at(path).tensor().dtype(), expected.dtype()) << path;
      EXPECT_ALLCLOSE(h.at(path).tensor().to(Device::cpu()), expected.to(Device::cpu()), 0, 0) << path;
      EXPECT_ALLCLOSE(back.at(path).tensor().to(Device::cpu()), expected.to(x.dtype()).to(Device::cpu()), 0, 0)
          << path;
    }
  }
}

TEST(CastGpu, GradientsFlowLeafByLeaf) {
  LOOM_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  Tree p;
  p.insert("a", test_values({300}, 1, -1, 1, DType::F32).to(gpu));
  p.insert("b", test_values({300}, 2, -1, 1, DType::F32).to(gpu));
  auto loss = [](const Tree& q) { return sum((q["a"].tensor() * q["b"].tensor()).to(DType::F32)); };
  auto [value, grads] = value_and_grad([&](const Tree& q) { return loss(cast_floating(q, DType::BF16)); })(p);
  auto [ref_value, ref] = value_and_grad([&](const Tree& q) {
    return loss(tree_map([](const Tensor& x) { return x.to(DType::BF16); }, q));
  })(p);
  EXPECT_EQ(value.item<float>(), ref_value.item<float>());
  for (const char* leaf : {"a", "b"})
    EXPECT_ALLCLOSE(grads.at(leaf).tensor().to(Device::cpu()), ref.at(leaf).tensor().to(Device::cpu()), 0, 0);
}

}  // namespace
}  // namespace loom

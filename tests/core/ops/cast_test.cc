// cast_floating / cast_like on the CPU: values, which leaves change, gradients, errors.
#include "core/grad.h"
#include "core/ops/cast.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::test_values;

Tree mixed_tree() {
  Tree t;
  t.insert("w", test_values({3, 4}, 1, -2, 2, DType::F32));
  t.insert("inner", Tree());
  t["inner"].insert("b", test_values({4}, 2, -2, 2, DType::F64));
  t["inner"].insert("ids", from_vector<int32_t>({1, 2, 3}, {3}));
  return t;
}

TEST(Cast, FloatingLeavesTakeTheDtypeAndOthersStay) {
  Tree t = mixed_tree();
  Tree h = cast_floating(t, DType::BF16);
  EXPECT_EQ(h.at("w").tensor().dtype(), DType::BF16);
  EXPECT_EQ(h.at("inner/b").tensor().dtype(), DType::BF16);
  EXPECT_EQ(h.at("inner/ids").tensor().dtype(), DType::I32);
  EXPECT_EQ(h.at("inner/ids").tensor().storage(), t.at("inner/ids").tensor().storage());
  // the same rounding as Tensor::to, leaf by leaf
  EXPECT_ALLCLOSE(h.at("w").tensor().to(DType::F32), t.at("w").tensor().to(DType::BF16).to(DType::F32), 0, 0);
  EXPECT_ALLCLOSE(h.at("inner/b").tensor().to(DType::F64), t.at("inner/b").tensor().to(DType::BF16).to(DType::F64), 0, 0);
  // and back: each leaf to the dtype of its counterpart
  Tree back = cast_like(h, t);
  EXPECT_EQ(back.at("w").tensor().dtype(), DType::F32);
  EXPECT_EQ(back.at("inner/b").tensor().dtype(), DType::F64);
  EXPECT_EQ(back.at("inner/ids").tensor().dtype(), DType::I32);
}

TEST(Cast, GradientsOfTheHalfCopyCastBackAreThoseOfCastingInside) {
  Tree p;
  p.insert("a", test_values({5}, 3, -1, 1, DType::F32));
  p.insert("b", test_values({5}, 4, -1, 1, DType::F32));
  auto loss_of = [](const Tree& q) {
    return sum(q["a"].tensor() * q["b"].tensor() * q["a"].tensor()).to(DType::F32);
  };
  auto [inside_loss, inside] = value_and_grad([&](const Tree& q) { return loss_of(cast_floating(q, DType::BF16)); })(p);
  auto [outside_loss, half_grads] = value_and_grad(loss_of)(cast_floating(p, DType::BF16));
  Tree outside = cast_like(half_grads, p);
  EXPECT_EQ(inside_loss.item<float>(), outside_loss.item<float>());
  for (const char* leaf : {"a", "b"}) {
    EXPECT_EQ(outside.at(leaf).tensor().dtype(), DType::F32);
    EXPECT_ALLCLOSE(outside.at(leaf).tensor(), inside.at(leaf).tensor(), 0, 0) << leaf;
  }
}

TEST(Cast, Errors) {
  EXPECT_THROW_WITH((void)cast_floating(mixed_tree(), DType::I32), DTypeError, "cast_floating",
                    "int32");
  Tree other;
  other.insert("w", zeros({3, 4}));
  EXPECT_THROW_WITH((void)cast_like(mixed_tree(), other), ValueError, "cast_like");
}

}  // namespace
}  // namespace loom

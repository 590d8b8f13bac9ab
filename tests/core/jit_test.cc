// loom::jit without a GPU: the function runs on every call (CPU tensors are never captured).
#include <gtest/gtest.h>

#include "core/jit.h"
#include "core/ops/elementwise.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

TEST(Jit, CpuInputsRunTheFunctionEveryTime) {
  int runs = 0;
  Jit step = jit([&](const Tree& in) {
    ++runs;
    Tree out;
    out.insert("x", in["x"].tensor() * 2.0);
    return out;
  });
  Tree in;
  in.insert("x", from_vector<float>({1, 2}, {2}));
  for (int i = 0; i < 5; ++i) {
    Tree out = step(in);
    EXPECT_EQ(out["x"].tensor().to_vector<float>(), (std::vector<float>{2, 4}));
  }
  EXPECT_EQ(runs, 5);
  EXPECT_FALSE(step.captured());
  EXPECT_FALSE(step.graph_info().has_value());
}

}  // namespace
}  // namespace loom

// The backward engine's in-place accumulation (autograd::accumulation_target): which earlier
// gradient contributions a rule is offered, and that adding into them or ignoring them gives
// the same gradients.
#include "core/autodiff.h"

#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::test_values;

struct Seen {
  bool offered = false;
  bool used = false;
};

/// y = 2x. Its backward adds 2g into the target it is offered when `use_target` (as a kernel
/// with beta = 1 would) and notes what it was offered.
Tensor twice(const Tensor& x, bool use_target, Seen& seen) {
  Tensor y;
  {
    autograd::NoGradGuard no_grad;
    y = x * 2.0;
  }
  return autograd::record("twice", y, {x}, [use_target, &seen](const Tensor& g) {
    Tensor target = autograd::accumulation_target(0);
    Tensor contribution = g * 2.0;
    seen.offered = target.defined();
    if (!use_target || !target.defined()) return std::vector<Tensor>{contribution};
    double* t = target.data<double>();
    std::vector<double> c = contribution.to_vector<double>();
    for (size_t i = 0; i < c.size(); ++i) t[i] += c[i];
    seen.used = true;
    return std::vector<Tensor>{target};
  });
}

/// d/dx of sum(twice(x) * r) + sum(x * s): twice's backward runs after the product's (reverse
/// topological order), so the product's gradient (s), held only by the engine, is offered.
Tensor gradient(const Tensor& x, const Tensor& r, const Tensor& s, bool use_target, Seen& seen) {
  Tensor leaf = autograd::make_leaf(x, 0);
  autograd::RecordingGuard recording(true);
  Tensor loss = sum(twice(leaf, use_target, seen) * r) + sum(leaf * s);
  return autograd::backward(loss, {leaf})[0];
}

TEST(Autodiff, RulesAddIntoAnEarlierContributionOrLeaveTheAddToTheEngine) {
  Tensor x = test_values({3, 4}, 1), r = test_values({3, 4}, 2), s = test_values({3, 4}, 3);
  Tensor expected = r * 2.0 + s;
  for (bool use_target : {true, false}) {
    Seen seen;
    Tensor g = gradient(x, r, s, use_target, seen);
    EXPECT_TRUE(seen.offered) << use_target;
    EXPECT_EQ(seen.used, use_target);
    EXPECT_ALLCLOSE(g, expected, 1e-15, 1e-15) << use_target;
  }
}

TEST(Autodiff, SharedGradientsAreNotOffered) {
  // add's backward hands the same tensor to both inputs: x's gathered gradient is also the
  // gradient twice's own rule reads, so writing into it would change both.
  Tensor x = test_values({5}, 4);
  Seen seen;
  Tensor leaf = autograd::make_leaf(x, 0);
  Tensor g;
  {
    autograd::RecordingGuard recording(true);
    Tensor loss = sum(twice(leaf, true, seen) + leaf);
    g = autograd::backward(loss, {leaf})[0];
  }
  EXPECT_FALSE(seen.offered);
  EXPECT_ALLCLOSE(g, full({5}, 3.0, DType::F64), 0, 0);
}

TEST(Autodiff, AWrongShapedGradientIsReportedEvenWhenATargetIsOffered) {
  // A faulty rule returning a 0-d gradient for a [3, 4] input: merged with the offered earlier
  // contribution by add, it would broadcast and pass unnoticed.
  Tensor x = test_values({3, 4}, 1), s = test_values({3, 4}, 3);
  Tensor leaf = autograd::make_leaf(x, 0);
  autograd::RecordingGuard recording(true);
  Tensor y;
  {
    autograd::NoGradGuard no_grad;
    y = x * 2.0;
  }
  y = autograd::record("faulty", y, {leaf}, [](const Tensor& g) {
    return std::vector<Tensor>{sum(g)};
  });
  Tensor loss = sum(y) + sum(leaf * s);
  EXPECT_THROW_WITH((void)autograd::backward(loss, {leaf}), ShapeError, "faulty", "[3, 4]");
}

TEST(Autodiff, DebugNansOffersNoTargets) {
  // Each contribution must be checked on its own op's account.
  DebugNansScope debug(true);
  Tensor x = test_values({3, 4}, 1), r = test_values({3, 4}, 2), s = test_values({3, 4}, 3);
  Seen seen;
  Tensor g = gradient(x, r, s, true, seen);
  EXPECT_FALSE(seen.offered);
  EXPECT_ALLCLOSE(g, r * 2.0 + s, 1e-15, 1e-15);
}

// A node that no gradient reaches (a consumer's rule returned none for it) releases what it
// saved when the walk passes it, as a node that ran does, rather than when the whole graph goes:
// a product that takes the gradient through an earlier GELU (core/ops/linalg.cc) leaves the
// GELU's node so, and its saved input would otherwise live to the end of the backward pass.
TEST(Autodiff, ANodeNoGradientReachesReleasesItsSavedTensorsInTurn) {
  Tensor x = test_values({3}, 1);
  Tensor leaf = autograd::make_leaf(x, 0);
  auto saved = std::make_shared<int>(0);
  std::weak_ptr<int> watch = saved;
  bool released_before_earlier_node = false;
  Tensor loss;
  {
    autograd::RecordingGuard recording(true);
    // earlier: y = x, whose rule runs last and looks at the later node's saved value
    Tensor earlier = autograd::record("earlier", x * 1.0, {leaf}, [&](const Tensor& g) {
      released_before_earlier_node = watch.expired();
      return std::vector<Tensor>{g};
    });
    // unreached: saves `saved`; its only consumer sends it no gradient
    Tensor unreached = autograd::record("unreached", x * 1.0, {earlier},
                                        [held = std::move(saved)](const Tensor& g) {
                                          return std::vector<Tensor>{g * double(*held)};
                                        });
    loss = autograd::record("consumer", sum(x), {earlier, unreached}, [](const Tensor& g) {
      return std::vector<Tensor>{ones({3}, DType::F64) * g, Tensor()};
    });
  }
  Tensor grad = autograd::backward(loss, {leaf})[0];
  EXPECT_TRUE(released_before_earlier_node);
  EXPECT_ALLCLOSE(grad, ones({3}, DType::F64), 0, 0);
}

// Leaves the caller does not ask about get no gradient slot (their gradients are dropped).
TEST(Autodiff, ALeafNotAskedAboutIsIgnored) {
  Tensor a = autograd::make_leaf(test_values({3}, 3), 0), b = autograd::make_leaf(test_values({3}, 4), 1);
  Tensor loss;
  {
    autograd::RecordingGuard recording(true);
    loss = sum(a * b);
  }
  std::vector<Tensor> g = autograd::backward(loss, {a});
  ASSERT_EQ(g.size(), 1u);
  EXPECT_ALLCLOSE(g[0], b.detach(), 0, 0);
}

// A node's rule runs once: a second backward pass over the same graph (a nested pass reaching
// an outer node, say) is reported with the op's name, not run with a released rule.
TEST(Autodiff, ASecondBackwardOverTheSameGraphIsReported) {
  Tensor leaf = autograd::make_leaf(test_values({3}, 2), 0);
  Tensor loss;
  {
    autograd::RecordingGuard recording(true);
    loss = sum(leaf * leaf);
  }
  EXPECT_ALLCLOSE(autograd::backward(loss, {leaf})[0], leaf.detach() * 2.0, 1e-15, 0);
  EXPECT_THROW_WITH(autograd::backward(loss, {leaf}), ValueError,
                    "already differentiated by an earlier backward pass");
}

}  // namespace
}  // namespace loom

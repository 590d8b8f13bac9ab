// Lifted transforms: nn::Scan (scan over layers, params stacked, rngs split as Flax) and
// nn::Remat (recompute the block's forward in the backward pass).
#include <gtest/gtest.h>
#include <malloc.h>

#include "core/grad.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "modules/layers/activation.h"
#include "modules/layers/linear.h"
#include "modules/layers/normalization.h"
#include "modules/layers/stochastic.h"
#include "modules/transforms/remat.h"
#include "modules/transforms/scan.h"
#include "tests/modules/flax_golden.h"

namespace loom {
namespace {

using testing::flax_case;
using testing::golden_tensor;
using testing::matches_golden;
using testing::tree_matches_golden;

// [doc:scan]
struct Block : nn::Module<Block> {
  Tensor call(const Tensor& c) const { return nn::relu(nn::Dense{.features = 4}(c)); }
};

struct Stack : nn::Module<Stack> {
  // nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3)
  Tensor call(const Tensor& x) const { return nn::Scan<Block>{.length = 3}(x); }
};
// [end]

TEST(Scan, StackedParamsEqualFlax) {
  const auto& c = flax_case("scan_stack");
  Tensor x = golden_tensor(c.at("input"));
  Tree vars = Stack{}.init(random::key(0), x);
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), 1e-6, 1e-7, &c.at("variable_paths")));
  EXPECT_EQ(vars.at("params/ScanBlock_0/Dense_0/kernel").tensor().shape(), (Shape{3, 4, 4}));
  EXPECT_TRUE(matches_golden(Stack{}.apply(vars, x), c.at("output"), 1e-5, 1e-6));
}

TEST(Scan, EqualsTheUnrolledLoopAndIsDifferentiable) {
  Tensor x = testing::flax_pattern({2, 4}, 15).to(DType::F64);
  Tree vars = Stack{}.init(random::key(0), x.to(DType::F32));
  Tree params = tree_map([](const Tensor& p) { return p.to(DType::F64); }, vars["params"]);
  // Step i by hand with slice i of the stacked params.
  Tensor h = x;
  for (int64_t i = 0; i < 3; ++i) {
    Tensor k = slice_axis(params.at("ScanBlock_0/Dense_0/kernel").tensor(), 0, i, i + 1).reshape({4, 4});
    Tensor b = slice_axis(params.at("ScanBlock_0/Dense_0/bias").tensor(), 0, i, i + 1).reshape({4});
    h = relu(matmul(h, k) + b);
  }
  EXPECT_ALLCLOSE(Stack{}.apply(nn::variables({{"params", params}}), x), h, 1e-12, 1e-12);
  EXPECT_TRUE(testing::check_gradients(
      [&](const std::vector<Tensor>& in) {
        Tree p = params.unflatten(in);
        return sum(square(Stack{}.apply(nn::variables({{"params", p}}), x)));
      },
      params.leaves()));
}

TEST(Scan, TheBlockFieldIsNotAChildOfTheCaller) {
  // In Flax nn.scan takes a class; here the block config is a value built in the body, which
  // must not use up the caller's "Block_0".
  struct Net : nn::Module<Net> {
    Tensor call(const Tensor& x) const {
      Tensor y = nn::Scan<Block>{.block = Block{}, .length = 2}(x);
      return Block{}(y);
    }
  };
  Tree vars = Net{}.init(random::key(0), ones({1, 4}));
  EXPECT_EQ(vars["params"].keys(), (std::vector<std::string>{"ScanBlock_0", "Block_0"}));
}

struct DropBlock : nn::Module<DropBlock> {
  Tensor call(const Tensor& c) const {
    return nn::Dropout{.rate = 0.5}(nn::Dense{.features = 4}(c));
  }
};
struct DropStack : nn::Module<DropStack> {
  Tensor call(const Tensor& x) const {
    return nn::Scan<DropBlock>{.length = 2, .split_rngs = {"params", "dropout"}}(x);
  }
};

TEST(Scan, SplitDropoutRngsEqualFlax) {
  const auto& c = flax_case("scan_dropout");
  Tensor x = golden_tensor(c.at("input"));
  Tree vars = DropStack{}.init(random::key(1), x);
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), 1e-6, 1e-7, &c.at("variable_paths")));
  Tensor y = DropStack{}.apply(vars, {.rngs = {{"dropout", random::key(2)}}}, x);
  EXPECT_TRUE(matches_golden(y, c.at("output"), 1e-5, 1e-6));
}

struct NormBlock : nn::Module<NormBlock> {
  Tensor call(const Tensor& c, bool train) const {
    return nn::BatchNorm{.use_running_average = !train}(nn::Dense{.features = 3}(c));
  }
};
struct NormStack : nn::Module<NormStack> {
  bool train = true;
  Tensor call(const Tensor& x) const {
    return nn::Scan<NormBlock>{.length = 2, .variable_axes = {"params", "batch_stats"}}(x, train);
  }
};

TEST(Scan, StackedBatchStatsAndBroadcastArguments) {
  Tensor x = testing::flax_pattern({4, 3}, 3);
  Tree vars = NormStack{}.init(random::key(0), x);
  EXPECT_EQ(vars.at("batch_stats/ScanNormBlock_0/BatchNorm_0/mean").tensor().shape(), (Shape{2, 3}));
  auto [y, updates] = NormStack{}.apply_mutable(vars, {"batch_stats"}, x);
  EXPECT_EQ(updates.at("batch_stats/ScanNormBlock_0/BatchNorm_0/var").tensor().shape(), (Shape{2, 3}));
  EXPECT_FALSE(tree_allclose(updates["batch_stats"], vars["batch_stats"]));
  EXPECT_THROW(NormStack{}.apply(vars, x), nn::ModifyScopeVariableError);
  EXPECT_NO_THROW(NormStack{.train = false}.apply(vars, x));
}

struct MLPBlock : nn::Module<MLPBlock> {
  Tensor call(const Tensor& x) const {
    return x + nn::Dense{.features = x.dim(-1)}(nn::gelu(nn::Dense{.features = 8}(x)));
  }
};
// [doc:remat]
struct RematStack : nn::Module<RematStack> {
  Tensor call(const Tensor& x) const {
    auto block = nn::partial(nn::Remat<MLPBlock>{});  // block = nn.remat(MLPBlock)
    return block()(block()(x));                       // CheckpointMLPBlock_0, _1
  }
};
// [end]

TEST(Remat, ParamsOutputsAndGradsEqualFlax) {
  const auto& c = flax_case("remat_stack");
  Tensor x = golden_tensor(c.at("input"));
  Tree vars = RematStack{}.init(random::key(0), x);
  EXPECT_TRUE(tree_matches_golden(vars, c.at("variables"), 1e-6, 1e-7, &c.at("variable_paths")));
  EXPECT_TRUE(matches_golden(RematStack{}.apply(vars, x), c.at("output"), 1e-5, 1e-6));
  Tree grads = grad([&](const Tree& p) {
    return sum(square(RematStack{}.apply(nn::variables({{"params", p}}), x)));
  })(vars["params"]);
  EXPECT_TRUE(tree_matches_golden(nn::variables({{"params", grads}}), c.at("grads"), 1e-4, 1e-6));

  const auto& sr = flax_case("scan_remat");
  struct ScanRemat : nn::Module<ScanRemat> {
    Tensor call(const Tensor& x) const { return nn::Scan<nn::Remat<Block>>{.length = 2}(x); }
  };
  Tree sv = ScanRemat{}.init(random::key(0), x);
  EXPECT_TRUE(tree_matches_golden(sv, sr.at("variables"), 1e-6, 1e-7, &sr.at("variable_paths")));
  EXPECT_TRUE(matches_golden(ScanRemat{}.apply(sv, x), sr.at("output"), 1e-5, 1e-6));
}

// A deep stack of blocks with a 4x wider hidden layer, with or without remat.
struct WideBlock : nn::Module<WideBlock> {
  Tensor call(const Tensor& x) const {
    return x + nn::Dense{.features = x.dim(-1)}(nn::gelu(nn::Dense{.features = 4 * x.dim(-1)}(x)));
  }
};
struct Deep : nn::Module<Deep> {
  bool remat = false;
  Tensor call(const Tensor& x) const {
    Tensor h = x;
    for (int i = 0; i < 6; ++i) h = remat ? nn::Remat<WideBlock>{}(h) : WideBlock{}(h);
    return h;
  }
};

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kMallocStatsWork = false;  // ASan replaces malloc, and mallinfo2 then reports 0
#else
constexpr bool kMallocStatsWork = true;
#endif

size_t heap_in_use() {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

TEST(Remat, SameGradientsFewerSavedActivations) {
  Tensor x = testing::test_values({128, 64}, 3).to(DType::F32);
  // The params of both variants have the same names apart from the Checkpoint prefix: build
  // remat params from the plain ones.
  Tree plain_vars = Deep{}.init(random::key(0), x);
  Tree remat_params;
  for (const auto& [name, sub] : plain_vars["params"].items())
    remat_params.insert("Checkpoint" + name, sub);

  auto measure = [&](bool remat, const Tree& params, Tree& grads) {
    // value_and_grad by hand so the heap can be read between forward and backward.
    auto [traced, leaves] = detail::make_leaves(params);
    size_t before = heap_in_use();
    autograd::RecordingGuard recording(true);
    Tensor loss = mean(square(Deep{.remat = remat}.apply(nn::variables({{"params", traced}}), x)));
    size_t after_forward = heap_in_use();
    grads = params.unflatten(autograd::backward(loss, leaves));
    return after_forward - before;
  };
  Tree g_plain, g_remat;
  size_t saved_plain = measure(false, plain_vars["params"], g_plain);
  size_t saved_remat = measure(true, remat_params, g_remat);
  // Plain keeps each block's two hidden activations (128x256 floats, 128 KiB each) for the
  // backward pass; remat keeps only each block's input (32 KiB).
  if (kMallocStatsWork) {
    EXPECT_LT(saved_remat * 3, saved_plain) << "plain " << saved_plain << " B, remat " << saved_remat;
  }
  for (const auto& [name, sub] : g_plain.items())
    EXPECT_TRUE(tree_allclose(g_remat["Checkpoint" + name], sub, 1e-5, 1e-7)) << name;
}

TEST(Remat, FiniteDifferences) {
  Tensor x = testing::flax_pattern({3, 4}, 2).to(DType::F64);
  Tree vars = RematStack{}.init(random::key(0), x.to(DType::F32));
  Tree params = tree_map([](const Tensor& p) { return p.to(DType::F64); }, vars["params"]);
  std::vector<Tensor> inputs = params.leaves();
  inputs.push_back(x);
  EXPECT_TRUE(testing::check_gradients(
      [&](const std::vector<Tensor>& in) {
        Tree p = params.unflatten(std::vector<Tensor>(in.begin(), in.end() - 1));
        return sum(square(RematStack{}.apply(nn::variables({{"params", p}}), in.back())));
      },
      inputs));
}

// A remat block's extra tensors are held as they are: one with a history of its own (here the
// output of a Dense outside the block) is reported when the gradient is taken, not differentiated
// with the enclosing graph's leaf numbers.
struct AddBlock : nn::Module<AddBlock> {
  Tensor call(const Tensor& x, const Tensor& extra) const { return nn::Dense{.features = 4}(x) + extra; }
};
struct RematWithOuterExtra : nn::Module<RematWithOuterExtra> {
  Tensor call(const Tensor& x) const {
    Tensor outer = nn::Dense{.features = 4}(x);
    return nn::Remat<AddBlock>{}(x, outer);
  }
};

TEST(Remat, AnExtraTensorWithAHistoryIsReported) {
  Tensor x = testing::flax_pattern({3, 4}, 3);
  Tree vars = RematWithOuterExtra{}.init(random::key(0), x);
  auto loss = [&](const Tree& params) {
    return sum(RematWithOuterExtra{}.apply(nn::variables({{"params", params}}), x));
  };
  EXPECT_THROW_WITH(value_and_grad(loss)(vars["params"]), ValueError,
                    "recorded before the arguments", "remat block's extra argument");
}

}  // namespace
}  // namespace loom

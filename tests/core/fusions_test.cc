// The fused routes' switches (core/fusions.h): names, parsing, scopes; and on the CPU the one
// route there besides the 1x1 convolution's (conv_test.cc): input gradients added by the product.
#include "core/fusions.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

TEST(Fusions, EveryNameParsesToItsFusion) {
  if (std::getenv("LOOM_FUSIONS_OFF")) GTEST_SKIP() << "LOOM_FUSIONS_OFF is set";
  EXPECT_EQ(fusion_name(Fusion::pointwise_conv_as_product), "pointwise_conv_as_product");
  EXPECT_EQ(fusion_name(Fusion::dgelu_epilogue), "dgelu_epilogue");
  EXPECT_EQ(fusion_name(Fusion::batch_norm_running_stats_in_kernel),
            "batch_norm_running_stats_in_kernel");
  EXPECT_EQ(fusion_name(Fusion::cross_entropy_grad_in_forward), "cross_entropy_grad_in_forward");
  for (Fusion f : all_fusions()) {
    SCOPED_TRACE(std::string(fusion_name(f)));
    EXPECT_EQ(parse_fusions(fusion_name(f)), std::vector<Fusion>{f});
    EXPECT_TRUE(fusion_enabled(f));  // all on by default
  }
  EXPECT_EQ(parse_fusions("gelu_epilogue,,residual_epilogue"),
            (std::vector<Fusion>{Fusion::gelu_epilogue, Fusion::residual_epilogue}));
  EXPECT_EQ(parse_fusions("all"), all_fusions());
  EXPECT_TRUE(parse_fusions("").empty());
  EXPECT_EQ(all_fusions().size(), 9u);
}

TEST(Fusions, AnUnknownNameIsReportedWithTheKnownOnes) {
  EXPECT_THROW_WITH((void)parse_fusions("gelu_epilogue,gelu_epilog"), ValueError,
                    "unknown fusion 'gelu_epilog'; the fusions are pointwise_conv_as_product, "
                    "gelu_epilogue, dgelu_epilogue");
}

TEST(Fusions, ScopeSetsAndRestoresEach) {
  if (std::getenv("LOOM_FUSIONS_OFF")) GTEST_SKIP() << "LOOM_FUSIONS_OFF is set";
  {
    FusionScope off({Fusion::dgelu_epilogue, Fusion::residual_epilogue}, false);
    EXPECT_FALSE(fusion_enabled(Fusion::dgelu_epilogue));
    EXPECT_FALSE(fusion_enabled(Fusion::residual_epilogue));
    EXPECT_TRUE(fusion_enabled(Fusion::gelu_epilogue));
    {
      FusionScope on({Fusion::residual_epilogue}, true);
      EXPECT_TRUE(fusion_enabled(Fusion::residual_epilogue));
    }
    EXPECT_FALSE(fusion_enabled(Fusion::residual_epilogue));
  }
  for (Fusion f : all_fusions()) EXPECT_TRUE(fusion_enabled(f)) << fusion_name(f);
  EXPECT_TRUE(set_fusion_enabled(Fusion::gelu_epilogue, false));
  EXPECT_FALSE(set_fusion_enabled(Fusion::gelu_epilogue, true));
}

TEST(Fusions, InputGradientsAddedByTheProductOrSeparatelyAgree) {
  // x feeds three products (an attention's q, k and v): x's gradient is g_q w_q^T + g_k w_k^T +
  // g_v w_v^T, the later products adding into the first's result or added after them.
  Tensor x = testing::test_values({2, 5, 6}, 1, -1, 1, DType::F64);
  std::vector<Tensor> w = {testing::test_values({6, 4}, 2, -1, 1, DType::F64),
                           testing::test_values({6, 4}, 3, -1, 1, DType::F64),
                           testing::test_values({6, 4}, 4, -1, 1, DType::F64)};
  Tensor expected = zeros({2, 5, 6}, DType::F64);
  for (size_t i = 0; i < 3; ++i) {
    Tensor g = testing::test_values({2, 5, 4}, 10 + i, -1, 1, DType::F64);
    expected = expected + matmul(g, transpose(w[i]));
  }
  for (bool fused : {true, false}) {
    FusionScope route({Fusion::input_grad_accumulate}, fused);
    Tensor lx = autograd::make_leaf(x, 0);
    autograd::RecordingGuard rec(true);
    Tensor loss;
    for (size_t i = 0; i < 3; ++i) {
      Tensor g = testing::test_values({2, 5, 4}, 10 + i, -1, 1, DType::F64);
      Tensor term = sum(matmul(lx, w[i]) * g);
      loss = loss.defined() ? loss + term : term;
    }
    EXPECT_ALLCLOSE(autograd::backward(loss, {lx})[0], expected, 1e-12, 1e-12) << fused;
  }
}

}  // namespace
}  // namespace loom

// conv_transpose on the CPU (lax.conv_transpose, computed as conv with input dilation): output
// sizes, float64 finite-difference gradients, and transpose_kernel as the gradient of conv.
// conv's own cases: conv_test.cc.
#include "core/autodiff.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::test_values;

TEST(ConvTranspose, OutputSizesFollowLax) {
  Tensor x = test_values({1, 5, 4, 2}, 1), k = test_values({3, 2, 2, 3}, 2);
  EXPECT_EQ(conv_transpose(x, k, {.strides = {2, 3}}).shape(), (Shape{1, 10, 12, 3}));
  // VALID: in * s + max(k_eff - s, 0)
  EXPECT_EQ(conv_transpose(x, k, {.strides = {2, 3}, .padding = Padding::valid()}).shape(),
            (Shape{1, 11, 12, 3}));
  EXPECT_EQ(conv_transpose(
                x, k, {.strides = {2, 1}, .padding = Padding::valid(), .kernel_dilation = {2, 2}})
                .shape(),
            (Shape{1, 13, 6, 3}));
}

TEST(ConvTranspose, GradientsByFiniteDifferences) {
  Tensor x = test_values({1, 3, 2, 2}, 3), k = test_values({3, 2, 2, 2}, 4);
  for (bool tk : {false, true})
    for (Padding p :
         {Padding::same(), Padding::valid(), Padding::explicit_pads({{1, 0}, {2, 1}})}) {
      ConvTransposeOptions opt{
          .strides = {2, 2}, .padding = p, .kernel_dilation = {1, 2}, .transpose_kernel = tk};
      Tensor r = test_values(conv_transpose(x, k, opt).shape(), 99, -1, 1);
      auto f = [&](const std::vector<Tensor>& in) {
        return sum(conv_transpose(in[0], in[1], opt) * r);
      };
      EXPECT_TRUE(check_gradients(f, {x, k})) << p.str() << " transpose_kernel " << tk;
    }
}

// With transpose_kernel, conv_transpose is the gradient of a strided VALID conv (what Keras'
// Conv2DTranspose computes) for sizes where the strided conv loses no input.
TEST(ConvTranspose, TransposeKernelIsTheGradientOfConv) {
  Tensor x = test_values({1, 7, 5, 3}, 5), k = test_values({3, 3, 3, 2}, 6);
  ConvOptions fwd{.strides = {2, 2}, .padding = Padding::valid()};
  Tensor y = conv(x, k, fwd);  // [1, 3, 2, 2]
  Tensor g = test_values(y.shape(), 7);
  Tensor lx = autograd::make_leaf(x, 0);
  Tensor dx;
  {
    autograd::RecordingGuard rec(true);
    dx = autograd::backward(sum(conv(lx, k, fwd) * g), {lx})[0];
  }
  Tensor t = conv_transpose(
      g, k, {.strides = {2, 2}, .padding = Padding::valid(), .transpose_kernel = true});
  EXPECT_ALLCLOSE(t, dx, 1e-12, 1e-12);
}

}  // namespace
}  // namespace loom

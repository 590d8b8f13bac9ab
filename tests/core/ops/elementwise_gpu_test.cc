// CUDA against the CPU reference for every elementwise op, forward and backward.
#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::test_values;

const UnaryOp kUnaryOps[] = {UnaryOp::Neg, UnaryOp::Abs, UnaryOp::Sign, UnaryOp::Exp,
                             UnaryOp::Square, UnaryOp::Reciprocal, UnaryOp::Tanh, UnaryOp::Sigmoid,
                             UnaryOp::Relu, UnaryOp::Relu6, UnaryOp::Gelu, UnaryOp::GeluExact,
                             UnaryOp::Silu, UnaryOp::Softplus, UnaryOp::Elu, UnaryOp::LeakyRelu,
                             UnaryOp::Erf, UnaryOp::LogSigmoid, UnaryOp::Sin, UnaryOp::Cos};

TEST(ElementwiseGpu, UnaryMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({3, 37}, 1, -3, 3, DType::F32);
  for (UnaryOp op : kUnaryOps) {
    Tensor cpu = unary(op, x, 0.2);
    Tensor gpu = unary(op, x.to(Device::cuda()), 0.2);
    EXPECT_ALLCLOSE(gpu, cpu, 1e-5, 1e-6) << unary_op_name(op);
    Tensor gpu16 = unary(op, x.to(DType::BF16).to(Device::cuda()), 0.2);
    EXPECT_ALLCLOSE(gpu16.to(DType::F32), cpu, 1e-2, 1e-2) << unary_op_name(op) << " bf16";
  }
  Tensor pos = test_values({5, 7}, 2, 0.1, 4, DType::F32);
  for (UnaryOp op : {UnaryOp::Log, UnaryOp::Log1p, UnaryOp::Sqrt, UnaryOp::Rsqrt})
    EXPECT_ALLCLOSE(unary(op, pos.to(Device::cuda())), unary(op, pos), 1e-5, 1e-6) << unary_op_name(op);
}

TEST(ElementwiseGpu, BinaryBroadcastMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Tensor a = test_values({4, 1, 5}, 3, 0.5, 2, DType::F32);
  Tensor b = test_values({3, 1}, 4, 0.5, 2, DType::F32);
  Tensor ga = a.to(Device::cuda()), gb = b.to(Device::cuda());
  EXPECT_ALLCLOSE(ga + gb, a + b, 1e-6, 0);
  EXPECT_ALLCLOSE(ga - gb, a - b, 1e-6, 0);
  EXPECT_ALLCLOSE(ga * gb, a * b, 1e-6, 0);
  EXPECT_ALLCLOSE(ga / gb, a / b, 1e-6, 0);
  EXPECT_ALLCLOSE(pow(ga, gb), pow(a, b), 1e-5, 0);
  EXPECT_ALLCLOSE(maximum(ga, gb), maximum(a, b), 0, 0);
  EXPECT_ALLCLOSE(less(ga, gb), less(a, b), 0, 0);
  EXPECT_ALLCLOSE(where(greater(ga, gb), ga, gb), where(greater(a, b), a, b), 0, 0);
}

TEST(ElementwiseGpu, GradientsMatchCpu) {
  LOOM_REQUIRE_GPU();
  Tensor a = test_values({4, 3}, 5, 0.5, 2, DType::F32);
  Tensor b = test_values({3}, 6, 0.5, 2, DType::F32);
  auto f = [](const Tensor& x, const Tensor& y) { return sum(gelu(x * y) / (y + 1.0) + tanh(x)); };
  std::vector<Tensor> cpu, gpu;
  for (int pass = 0; pass < 2; ++pass) {
    Device d = pass == 0 ? Device::cpu() : Device::cuda();
    Tensor la = autograd::make_leaf(a.to(d), 0), lb = autograd::make_leaf(b.to(d), 1);
    autograd::RecordingGuard rec(true);
    auto grads = autograd::backward(f(la, lb), {la, lb});
    (pass == 0 ? cpu : gpu) = grads;
  }
  EXPECT_ALLCLOSE(gpu[0], cpu[0], 1e-5, 1e-6);
  EXPECT_ALLCLOSE(gpu[1], cpu[1], 1e-5, 1e-6);
}

}  // namespace
}  // namespace loom

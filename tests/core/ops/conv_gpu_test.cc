// conv / conv_transpose / conv_bias on CUDA (cuDNN; 1x1 unit-stride ones as cuBLASLt products)
// against the CPU kernels, forward and the gradients, for every padding mode, strides, both
// dilations, groups and 1-D / 2-D / 3-D; float32 at 1e-5, bfloat16 and float16 at 1e-2.
#include "core/autodiff.h"
#include "core/autotune.h"
#include "core/determinism.h"
#include "core/fusions.h"
#include "core/ops/conv.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/precision.h"
#include "tests/support/testing.h"
#if LOOM_CUDA
#include "kernels/cuda/runtime.h"  // host_wait_count
#endif

namespace loom {
namespace {

using testing::test_values;

struct Case {
  const char* name;
  Shape x, w;
  ConvOptions opt;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {"2d_same", {2, 9, 9, 3}, {3, 3, 3, 8}, {}},
      {"2d_same_stride2_even_kernel", {2, 8, 7, 4}, {4, 2, 4, 6}, {.strides = {2, 2}}},
      {"2d_valid_kernel_dilation",
       {1, 9, 8, 2},
       {3, 3, 2, 4},
       {.padding = Padding::valid(), .kernel_dilation = {2, 2}}},
      {"2d_explicit_negative_input_dilation",
       {2, 5, 6, 2},
       {3, 2, 2, 3},
       {.padding = Padding::explicit_pads({{2, -1}, {1, 3}}), .input_dilation = {2, 1}}},
      {"2d_circular_stride2",
       {1, 7, 6, 3},
       {3, 3, 3, 4},
       {.strides = {2, 2}, .padding = Padding::circular()}},
      {"2d_reflect", {1, 6, 7, 2}, {3, 4, 2, 3}, {.padding = Padding::reflect()}},
      {"2d_groups", {1, 6, 6, 8}, {3, 3, 2, 8}, {.feature_group_count = 4}},
      {"2d_depthwise", {2, 7, 7, 4}, {3, 3, 1, 8}, {.feature_group_count = 4}},
      {"2d_1x1", {2, 5, 5, 6}, {1, 1, 6, 4}, {}},
      {"2d_wide_channels", {4, 16, 16, 32}, {3, 3, 32, 64}, {}},
      {"1d_same_stride2", {2, 11, 3}, {3, 3, 5}, {.strides = {2}}},
      {"1d_causal_dilation",
       {2, 9, 2},
       {3, 2, 4},
       {.padding = Padding::causal(), .kernel_dilation = {2}}},
      {"3d_same", {1, 4, 5, 6, 2}, {2, 3, 3, 2, 4}, {.strides = {1, 2, 1}}},
  };
  return c;
}

/// A leaf of test values in [-1, 1) of `dtype` on `device`, the index-th input of a gradient.
Tensor leaf_of(const Shape& shape, uint64_t seed, DType dtype, Device device, int index) {
  return autograd::make_leaf(test_values(shape, seed, -1, 1, DType::F32).to(dtype).to(device), index);
}

/// For every case in float32 and bfloat16: check(case, dtype, gpu, cpu) on what run(case, dtype,
/// device) returns on each device, brought to the CPU in float32.
template <typename Run, typename Check>
void on_cpu_and_gpu(Run&& run, Check&& check) {
  auto results = [&](const Case& c, DType dt, Device d) {
    std::vector<Tensor> out;
    for (const Tensor& t : run(c, dt, d)) out.push_back(t.to(Device::cpu()).to(DType::F32));
    return out;
  };
  for (DType dt : {DType::F32, DType::BF16})
    for (const Case& c : cases())
      check(c, dt, results(c, dt, Device::cuda()), results(c, dt, Device::cpu()));
}

/// y, dx and dw of sum(conv(x, w) * r) on `device`, computed in `dtype`.
std::vector<Tensor> run(const Case& c, Device device, DType dtype) {
  Tensor x = test_values(c.x, 1, -1, 1, DType::F32).to(dtype).to(device);
  Tensor w = test_values(c.w, 2, -1, 1, DType::F32).to(dtype).to(device);
  Tensor lx = autograd::make_leaf(x, 0), lw = autograd::make_leaf(w, 1);
  autograd::RecordingGuard rec(true);
  Tensor y = conv(lx, lw, c.opt);
  Tensor r = test_values(y.shape(), 3, -1, 1, DType::F32).to(dtype).to(device);
  auto g = autograd::backward(sum(y * r), {lx, lw});
  return {y.detach().to(Device::cpu()).to(DType::F32), g[0].to(Device::cpu()).to(DType::F32),
          g[1].to(Device::cpu()).to(DType::F32)};
}

TEST(ConvGpu, Float32MatchesCpu) {
  LOOM_REQUIRE_GPU();
  for (const Case& c : cases()) {
    auto cpu = run(c, Device::cpu(), DType::F32), gpu = run(c, Device::cuda(), DType::F32);
    EXPECT_ALLCLOSE(gpu[0], cpu[0], 1e-5, 1e-5) << c.name << " forward";
    EXPECT_ALLCLOSE(gpu[1], cpu[1], 1e-5, 1e-5) << c.name << " dx";
    // dw sums N*H*W products per element (1024 in 2d_wide_channels) in another order than the
    // CPU: its rounding error grows with that count (seen on an H100: 1.4e-5).
    EXPECT_ALLCLOSE(gpu[2], cpu[2], 1e-5, 1e-4) << c.name << " dw";
  }
}

TEST(ConvGpu, HalfTypesMatchCpu) {
  LOOM_REQUIRE_GPU();
  for (DType dt : {DType::BF16, DType::F16})
    for (const Case& c : cases()) {
      // the CPU rounds the same half inputs, computes in float32 and rounds the result
      auto cpu = run(c, Device::cpu(), dt), gpu = run(c, Device::cuda(), dt);
      for (size_t i = 0; i < 3; ++i)
        EXPECT_ALLCLOSE(gpu[i], cpu[i], 1e-2, 1e-2)
            << c.name << " " << dtype_name(dt) << " output " << i;
    }
}

// dx of sum(conv(x, w) * r) + sum(x * s): the product's gradient comes first and cuDNN adds the
// convolution's into it (beta = 1) instead of a separate add.
TEST(ConvGpu, InputGradientAddedIntoAnEarlierContributionMatchesCpu) {
  LOOM_REQUIRE_GPU();
  on_cpu_and_gpu(
      [](const Case& c, DType dt, Device d) {
        Tensor lx = leaf_of(c.x, 1, dt, d, 0), lw = leaf_of(c.w, 2, dt, d, 1);
        autograd::RecordingGuard rec(true);
        Tensor y = conv(lx, lw, c.opt);
        Tensor r = test_values(y.shape(), 3, -1, 1, DType::F32).to(dt).to(d);
        Tensor s = test_values(c.x, 4, -1, 1, DType::F32).to(dt).to(d);
        return autograd::backward(sum(y * r) + sum(lx * s), {lx, lw});
      },
      [](const Case& c, DType dt, const std::vector<Tensor>& gpu, const std::vector<Tensor>& cpu) {
        const double tol = dt == DType::F32 ? 1e-5 : 2e-2;
        EXPECT_ALLCLOSE(gpu[0], cpu[0], tol, tol) << c.name << " " << dtype_name(dt) << " dx";
        EXPECT_ALLCLOSE(gpu[1], cpu[1], tol, dt == DType::F32 ? 1e-4 : tol)
            << c.name << " " << dtype_name(dt) << " dw";
      });
}

// With autotuning the first call of each shape times cuDNN's candidates on its own buffers: the
// results are still the convolution's, and an input gradient added into an earlier one keeps
// that contribution (the timing writes a scratch output).
TEST(ConvGpu, AutotunedAlgorithmsMatchCpu) {
  LOOM_REQUIRE_GPU();
  ConvAutotuneScope autotune;
  for (DType dt : {DType::F32, DType::BF16})
    for (const Case& c : cases()) {
      const double tol = dt == DType::F32 ? 1e-5 : 2e-2;
      auto cpu = run(c, Device::cpu(), dt), gpu = run(c, Device::cuda(), dt);
      for (size_t i = 0; i < 3; ++i)
        EXPECT_ALLCLOSE(gpu[i], cpu[i], tol, i == 2 && dt == DType::F32 ? 1e-4 : tol)
            << c.name << " " << dtype_name(dt) << " output " << i;
    }
  const Case& c = cases()[0];
  std::vector<Tensor> dx;
  for (Device d : {Device::cpu(), Device::cuda()}) {
    Tensor lx = autograd::make_leaf(test_values(c.x, 1, -1, 1, DType::F32).to(d), 0);
    Tensor w = test_values(c.w, 2, -1, 1, DType::F32).to(d);
    autograd::RecordingGuard rec(true);
    Tensor y = conv(lx, w, {.padding = Padding::explicit_pads({{1, 1}, {1, 1}})});  // a new shape
    Tensor s = test_values(c.x, 4, -1, 1, DType::F32).to(d);
    dx.push_back(autograd::backward(sum(y) + sum(lx * s), {lx})[0].to(Device::cpu()));
  }
  EXPECT_ALLCLOSE(dx[1], dx[0], 1e-5, 1e-5) << "input gradient added into x * s's";
}

#if LOOM_CUDA
// In deterministic mode the autotuning switch is ignored (as the products' is): timings could
// pick another deterministic algorithm from run to run. A shape first run without the switch
// runs again with it and times nothing: no host wait (timing waits for the device).
TEST(ConvGpu, DeterministicModeDoesNotTimeAlgorithms) {
  LOOM_REQUIRE_GPU();
  DeterministicScope det;
  Tensor x = test_values({3, 11, 13, 5}, 1, -1, 1, DType::F32).to(Device::cuda());
  Tensor w = test_values({3, 3, 5, 7}, 2, -1, 1, DType::F32).to(Device::cuda());
  // Read back at once: its device blocks go back to the cache for the second call's use.
  Tensor first = conv(x, w, {.strides = {2, 1}}).to(Device::cpu());
  const unsigned long long waits = cuda::host_wait_count();
  const int64_t timings = conv_timings();
  Tensor second;
  {
    ConvAutotuneScope autotune;
    second = conv(x, w, {.strides = {2, 1}});
  }
  EXPECT_EQ(conv_timings(), timings);
  EXPECT_EQ(cuda::host_wait_count(), waits);
  EXPECT_ALLCLOSE(second.to(Device::cpu()), first, 0, 0);
}
#endif

// A 1x1 unit-stride convolution runs as a cuBLASLt product on the HWIO kernel (the default) or
// through cuDNN with the kernel transposed to KRSC and back: both against the CPU, and the
// cuDNN route stays checked. The second shape is a ResNet-50 stage-3 layer at batch 4.
TEST(ConvGpu, PointwiseConvolutionAsAProductMatchesCudnn) {
  LOOM_REQUIRE_GPU();
  const Case pointwise[] = {{"2d_1x1", {2, 5, 5, 6}, {1, 1, 6, 4}, {}},
                            {"resnet_1x1", {4, 14, 14, 64}, {1, 1, 64, 256}, {}}};
  for (DType dt : {DType::F32, DType::BF16})
    for (const Case& c : pointwise) {
      const double tol = dt == DType::F32 ? 1e-5 : 2e-2;
      auto cpu = run(c, Device::cpu(), dt), product = run(c, Device::cuda(), dt);
      std::vector<Tensor> cudnn;
      {
        FusionScope cudnn_route({Fusion::pointwise_conv_as_product}, false);
        cudnn = run(c, Device::cuda(), dt);
      }
      for (size_t i = 0; i < 3; ++i) {
        const double atol = i == 2 && dt == DType::F32 ? 1e-4 : tol;
        EXPECT_ALLCLOSE(product[i], cpu[i], tol, atol)
            << c.name << " " << dtype_name(dt) << " product, output " << i;
        EXPECT_ALLCLOSE(cudnn[i], cpu[i], tol, atol)
            << c.name << " " << dtype_name(dt) << " cuDNN, output " << i;
      }
    }
}

TEST(ConvGpu, Tf32SwitchStaysClose) {
  LOOM_REQUIRE_GPU();
  Tf32Guard tf32(true);
  const Case& c = cases()[9];  // wide channels: tensor-core eligible
  auto cpu = run(c, Device::cpu(), DType::F32), gpu = run(c, Device::cuda(), DType::F32);
  for (size_t i = 0; i < 3; ++i) EXPECT_ALLCLOSE(gpu[i], cpu[i], 2e-2, 2e-2) << i;
}

TEST(ConvGpu, RepeatedCallsReuseTheCachedAlgorithm) {
  LOOM_REQUIRE_GPU();
  const Case& c = cases()[1];
  auto first = run(c, Device::cuda(), DType::F32), second = run(c, Device::cuda(), DType::F32);
  for (size_t i = 0; i < 3; ++i) EXPECT_ALLCLOSE(second[i], first[i], 1e-6, 1e-6) << i;
}

TEST(ConvGpu, ConvTransposeMatchesCpu) {
  LOOM_REQUIRE_GPU();
  struct T {
    Shape x, w;
    ConvTransposeOptions opt;
  };
  const T ts[] = {
      {{2, 4, 5, 3}, {3, 3, 3, 4}, {.strides = {2, 2}}},
      {{1, 5, 4, 2},
       {3, 2, 2, 3},
       {.strides = {2, 3}, .padding = Padding::valid(), .kernel_dilation = {2, 1}}},
      {{1, 3, 4, 2}, {3, 2, 3, 2}, {.strides = {2, 2}, .transpose_kernel = true}},
      {{2, 6, 3}, {4, 3, 2}, {.strides = {3}, .padding = Padding::explicit_pads({{1, 2}})}},
  };
  for (const T& t : ts) {
    std::vector<Tensor> out[2];
    for (int pass = 0; pass < 2; ++pass) {
      Device d = pass == 0 ? Device::cpu() : Device::cuda();
      Tensor lx = autograd::make_leaf(test_values(t.x, 4, -1, 1, DType::F32).to(d), 0);
      Tensor lw = autograd::make_leaf(test_values(t.w, 5, -1, 1, DType::F32).to(d), 1);
      autograd::RecordingGuard rec(true);
      Tensor y = conv_transpose(lx, lw, t.opt);
      Tensor r = test_values(y.shape(), 6, -1, 1, DType::F32).to(d);
      auto g = autograd::backward(sum(y * r), {lx, lw});
      out[pass] = {y.detach().to(Device::cpu()), g[0].to(Device::cpu()), g[1].to(Device::cpu())};
    }
    for (size_t i = 0; i < 3; ++i)
      EXPECT_ALLCLOSE(out[1][i], out[0][i], 1e-5, 1e-5) << shape_str(t.x) << " output " << i;
  }
}

// conv_bias: the GPU adds the bias as a separate op, the CPU in its products (float32); the
// output and the three gradients agree.
TEST(ConvGpu, ConvBiasMatchesCpu) {
  LOOM_REQUIRE_GPU();
  on_cpu_and_gpu(
      [](const Case& c, DType dt, Device d) {
        Tensor lx = leaf_of(c.x, 1, dt, d, 0), lw = leaf_of(c.w, 2, dt, d, 1);
        Tensor lb = leaf_of({c.w.back()}, 5, dt, d, 2);
        autograd::RecordingGuard rec(true);
        Tensor y = conv_bias(lx, lw, lb, c.opt);
        Tensor r = test_values(y.shape(), 3, -1, 1, DType::F32).to(dt).to(d);
        std::vector<Tensor> out = autograd::backward(sum(y * r), {lx, lw, lb});
        out.insert(out.begin(), y.detach());
        return out;
      },
      [](const Case& c, DType dt, const std::vector<Tensor>& gpu, const std::vector<Tensor>& cpu) {
        const double tol = dt == DType::F32 ? 1e-5 : 2e-2;
        for (size_t i = 0; i < 4; ++i)
          EXPECT_ALLCLOSE(gpu[i], cpu[i], tol, dt == DType::F32 && (i == 2 || i == 3) ? 1e-4 : tol)
              << c.name << " " << dtype_name(dt) << " output " << i;
      });
}

TEST(ConvGpu, EmptyBatch) {
  LOOM_REQUIRE_GPU();
  Tensor x = zeros({0, 5, 5, 2}, DType::F32, Device::cuda());
  Tensor k = ones({3, 3, 2, 4}, DType::F32, Device::cuda());
  Tensor y = conv(x, k);
  EXPECT_EQ(y.shape(), (Shape{0, 5, 5, 4}));
  EXPECT_TRUE(y.is_cuda());
}

}  // namespace
}  // namespace loom

// CUDA against the CPU for the normalisations: fused layer/RMS norm (warp and block rows),
// batch norm (multi-chunk column sums finished by their last block) with and without its
// residual / relu epilogue, inference, and the composed group norm; forward and backward,
// float32 and half precision.
#include <algorithm>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/norm.h"
#include "core/ops/reduce.h"
#include "tests/support/gpu_compare.h"
#include "tests/support/testing.h"

#if LOOM_CUDA
#include "kernels/cuda/batch_norm.h"
#include "kernels/cuda/runtime.h"
#endif

namespace loom {
namespace {

using testing::expect_gpu_matches;
using testing::test_values;

TEST(NormGpu, LayerAndRmsNormMatchCpu) {
  LOOM_REQUIRE_GPU();
  // Rows a warp each up to 1024 wide held in registers where packs fit (kernels/cuda/norm.cu;
  // 768 and 1024: 6 and 8 float32 packs a lane, 3 and 4 of bfloat16; 37 and 1500 take the
  // streaming kernels); {4000, 40}: the parameter gradients' sums in 125 row chunks, 8 groups of
  // them, the last one short; {3, 131077}: more column groups than one launch's grid has columns
  // (kernels/cuda/column_sums.cuh), so several launches.
  for (Shape shape : {Shape{5, 37}, Shape{2, 3, 256}, Shape{3, 1500}, Shape{70, 8}, Shape{4000, 40},
                      Shape{3, 131077}, Shape{64, 768}, Shape{9, 1024}}) {
    int64_t n = shape.back();
    Tensor x = test_values(shape, 1, -2, 3, DType::F32);
    Tensor s = test_values({n}, 2, 0.5, 1.5, DType::F32), b = test_values({n}, 3, -1, 1, DType::F32);
    expect_gpu_matches("layer_norm " + shape_str(shape),
                       [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]); }, {x, s, b}, 1e-5);
    expect_gpu_matches("layer_norm no params " + shape_str(shape),
                       [](const std::vector<Tensor>& in) { return layer_norm(in[0], Tensor(), Tensor()); }, {x}, 1e-5);
    expect_gpu_matches("rms_norm " + shape_str(shape),
                       [](const std::vector<Tensor>& in) { return rms_norm(in[0], in[1]); }, {x, s}, 1e-5);
  }
  // dx added in place into an earlier contribution to x's gradient (x * x's), every dtype
  Tensor xr = test_values({64, 200}, 9, -2, 2, DType::F32);
  Tensor sr = test_values({200}, 10, 0.5, 1.5, DType::F32), br = test_values({200}, 11, -1, 1, DType::F32);
  expect_gpu_matches("layer_norm + x * x",
                     [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2]) + in[0] * in[0]; },
                     {xr, sr, br}, 1e-5);
  // composed paths (a middle axis) run on the GPU through the elementwise/reduce kernels
  Tensor x = test_values({4, 6, 5}, 4, -2, 2, DType::F32);
  expect_gpu_matches("layer_norm axis 1", [](const std::vector<Tensor>& in) {
    return layer_norm(in[0], Tensor(), Tensor(), 1e-6, {1});
  }, {x}, 1e-5);
  // bf16 input with float32 parameters: float32 output (the mixed kernel instantiation)
  Tensor xb = test_values({6, 300}, 5, -2, 2, DType::F32).to(DType::BF16);
  Tensor s = test_values({300}, 6, 0.5, 1.5, DType::F32), b = test_values({300}, 7, -1, 1, DType::F32);
  Tensor cpu = layer_norm(xb, s, b), gpu = layer_norm(xb.to(Device::cuda()), s.to(Device::cuda()), b.to(Device::cuda()));
  EXPECT_EQ(gpu.dtype(), DType::F32);
  EXPECT_ALLCLOSE(gpu, cpu, 1e-5, 1e-5);
  // ... and written as bf16 directly (Flax's dtype = bf16), values and gradients; 300 wide
  // streams, 768 (GPT-2's width) is held in registers
  auto direct = [](const std::vector<Tensor>& in) { return layer_norm(in[0], in[1], in[2], 1e-6, {-1}, DType::BF16); };
  for (int64_t n : {300, 768}) {
    Tensor xn = test_values({6, n}, 5, -2, 2, DType::F32).to(DType::BF16);
    Tensor sn = test_values({n}, 6, 0.5, 1.5, DType::F32), bn = test_values({n}, 7, -1, 1, DType::F32);
    Tensor wb = test_values({6, n}, 12, -1, 1, DType::F32).to(DType::BF16);
    std::vector<Tensor> in_cpu{xn, sn, bn}, in_gpu{xn.to(Device::cuda()), sn.to(Device::cuda()), bn.to(Device::cuda())};
    Tensor y_direct = direct(in_gpu);
    EXPECT_EQ(y_direct.dtype(), DType::BF16);
    EXPECT_TRUE(testing::close_in_low_precision(y_direct.to(DType::F32), direct(in_cpu).to(DType::F32), DType::BF16)) << n;
    auto g_cpu = testing::vjp(direct, in_cpu, wb), g_gpu = testing::vjp(direct, in_gpu, wb.to(Device::cuda()));
    for (size_t i = 0; i < g_cpu.size(); ++i)
      EXPECT_TRUE(testing::close_in_low_precision(g_gpu[i].to(DType::F32), g_cpu[i].to(DType::F32), DType::BF16))
          << n << " grad " << i;
  }
  // float64 on the GPU
  Tensor x64 = test_values({3, 50}, 8);
  EXPECT_ALLCLOSE(rms_norm(x64.to(Device::cuda()), Tensor()), rms_norm(x64, Tensor()), 1e-12, 1e-12);
}

TEST(NormGpu, BatchNormMatchesCpu) {
  LOOM_REQUIRE_GPU();
  // Odd channel counts take the one-channel kernels; 64 and 2304 the 16-byte ones (2304 with more
  // channel groups than a block has threads), 4000 and 4096 rows many row chunks (125 and 128, so
  // two levels of chunk sums), 524292 channels more channel groups than one launch's grid has
  // columns (kernels/cuda/column_sums.cuh).
  for (Shape shape : {Shape{4, 3, 3, 5}, Shape{40, 10, 10, 37}, Shape{3, 70}, Shape{33, 7, 64},
                      Shape{5, 2304}, Shape{4096, 16}, Shape{2, 524292}}) {
    int64_t c = shape.back();
    Tensor x = test_values(shape, 9, -1, 3, DType::F32);
    Tensor s = test_values({c}, 10, 0.5, 1.5, DType::F32), b = test_values({c}, 11, -1, 1, DType::F32);
    expect_gpu_matches("batch_norm " + shape_str(shape),
                       [](const std::vector<Tensor>& in) { return batch_norm_train(in[0], in[1], in[2]).y; }, {x, s, b}, 1e-5);
    auto cpu = batch_norm_train(x, s, b);
    auto gpu = batch_norm_train(x.to(Device::cuda()), s.to(Device::cuda()), b.to(Device::cuda()));
    EXPECT_ALLCLOSE(gpu.mean, cpu.mean, 1e-5, 1e-6) << shape_str(shape);
    EXPECT_ALLCLOSE(gpu.var, cpu.var, 1e-5, 1e-6) << shape_str(shape);
    // The sums' order is fixed whichever block finishes last: the same call, the same bits.
    auto again = batch_norm_train(x.to(Device::cuda()), s.to(Device::cuda()), b.to(Device::cuda()));
    EXPECT_EQ(again.mean.to(Device::cpu()).to_vector<float>(), gpu.mean.to(Device::cpu()).to_vector<float>()) << shape_str(shape);
    EXPECT_EQ(again.var.to(Device::cpu()).to_vector<float>(), gpu.var.to(Device::cpu()).to_vector<float>()) << shape_str(shape);
    Tensor mu = test_values({c}, 12, -1, 1, DType::F32), var = test_values({c}, 13, 0.5, 2, DType::F32);
    EXPECT_ALLCLOSE(batch_norm_inference(x.to(Device::cuda()), mu.to(Device::cuda()), var.to(Device::cuda()),
                                         s.to(Device::cuda()), b.to(Device::cuda())),
                    batch_norm_inference(x, mu, var, s, b), 1e-5, 1e-5) << shape_str(shape);
    // with the residual + relu epilogue in the same pass
    Tensor r = test_values(shape, 15, -2, 2, DType::F32);
    EXPECT_ALLCLOSE(batch_norm_inference(x.to(Device::cuda()), mu.to(Device::cuda()), var.to(Device::cuda()),
                                         s.to(Device::cuda()), b.to(Device::cuda()), 1e-5,
                                         {.residual = r.to(Device::cuda()), .relu = true}),
                    batch_norm_inference(x, mu, var, s, b, 1e-5, {.residual = r, .relu = true}), 1e-5, 1e-5)
        << shape_str(shape) << " epilogue";
  }
  {  // no channels: the grid's row chunks are sized without dividing by the channel count
    Tensor none = autograd::make_leaf(zeros({4, 0}, DType::F32, Device::cuda()), 0);
    autograd::RecordingGuard rec(true);
    auto r = batch_norm_train(none, Tensor(), Tensor());
    EXPECT_EQ(r.mean.shape(), (Shape{0}));
    EXPECT_EQ(autograd::backward(sum(r.y), {none})[0].shape(), (Shape{4, 0}));
  }
  // other reduction axes go through the composed path; a pmean hook runs between the fused
  // kernels' passes, forward and backward
  Tensor x = test_values({4, 3, 5}, 14, -1, 2, DType::F32);
  expect_gpu_matches("batch_norm axes {0, 2}", [](const std::vector<Tensor>& in) {
    return batch_norm_train(in[0], Tensor(), Tensor(), 1e-5, {0, 2}).y;
  }, {x}, 1e-5);
  expect_gpu_matches("batch_norm pmean", [](const std::vector<Tensor>& in) {
    return batch_norm_train(in[0], Tensor(), Tensor(), 1e-5, {}, [](const Tensor& t, int64_t) { return t; }).y;
  }, {x}, 1e-5);
}

// Infinite and NaN inputs as the CPU's (whose values Norms.InfiniteInputsAsFlax checks against
// Flax's): an infinite column's BatchNorm mean is infinite and its variance NaN, also when the
// infinity is the column's first value (the statistics kernel's shift); a LayerNorm row with an
// infinity is NaN. Three widths: one-element, packed and streamed LayerNorm rows.
TEST(NormGpu, NonFiniteInputsMatchCpu) {
  LOOM_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  for (Shape shape : {Shape{4, 3}, Shape{40, 64}, Shape{8, 2048}}) {
    const int64_t c = shape[1];
    std::vector<float> v = test_values(shape, 21, -1, 1, DType::F32).to_vector<float>();
    v[0] = INFINITY;                   // column 0's first value; row 0
    v[size_t(c + 1)] = -INFINITY;      // column 1, row 1
    v[size_t(4 * c - 1)] = NAN;        // the last column, row 3
    for (DType dt : {DType::F32, DType::BF16}) {
      const std::string what = shape_str(shape) + " " + std::string(dtype_name(dt));
      Tensor x = from_vector(v, shape).to(dt);
      auto on_cpu = batch_norm_train(x, Tensor(), Tensor());
      auto on_gpu = batch_norm_train(x.to(gpu), Tensor(), Tensor());
      EXPECT_TRUE(std::isinf(on_cpu.mean.to_vector<float>()[0])) << what;
      EXPECT_ALLCLOSE(on_gpu.mean, on_cpu.mean, 1e-5, 1e-6) << what;
      EXPECT_ALLCLOSE(on_gpu.var, on_cpu.var, 1e-5, 1e-6) << what;
      EXPECT_ALLCLOSE(on_gpu.y.to(DType::F32), on_cpu.y.to(DType::F32), 1e-2, 1e-2) << what;
      Tensor scale = ones({c}, dt), bias = zeros({c}, dt);
      EXPECT_ALLCLOSE(layer_norm(x.to(gpu), scale.to(gpu), bias.to(gpu)).to(DType::F32),
                      layer_norm(x, scale, bias).to(DType::F32), 1e-2, 1e-2)
          << what;
    }
  }
}

TEST(NormGpu, BatchNormEpilogueMatchesCpu) {
  LOOM_REQUIRE_GPU();
  auto to_device = [](std::vector<Tensor> v, Device d) {
    for (Tensor& t : v) t = t.to(d);
    return v;
  };
  for (Shape shape : {Shape{4, 3, 3, 5}, Shape{16, 9, 9, 40}, Shape{3, 70}, Shape{9, 2304}}) {
    int64_t c = shape.back();
    Tensor x = test_values(shape, 20, -1, 3, DType::F32), res = test_values(shape, 21, -2, 2, DType::F32);
    Tensor s = test_values({c}, 22, -1, 1.5, DType::F32), b = test_values({c}, 23, -1, 1, DType::F32);
    Tensor w = test_values(shape, 24, -1, 1, DType::F32);
    for (bool relu : {false, true}) {
      auto f = [relu](const std::vector<Tensor>& in) {
        BatchNormEpilogue epi{.residual = in.size() > 3 ? in[3] : Tensor(), .relu = relu};
        return batch_norm_train(in[0], in[1], in[2], 1e-5, {}, {}, epi).y;
      };
      for (bool with_res : {false, true}) {
        std::string what = shape_str(shape) + (with_res ? " residual" : "") + (relu ? " relu" : "");
        std::vector<Tensor> in{x, s, b};
        if (with_res) in.push_back(res);
        std::vector<Tensor> gpu_in = to_device(in, Device::cuda());
        EXPECT_ALLCLOSE(f(gpu_in), f(in), 1e-5, 1e-5) << what;
        // The relu mask could differ between devices only for a value within rounding of zero;
        // these inputs have none.
        auto cpu_g = testing::vjp(f, in, w), gpu_g = testing::vjp(f, gpu_in, w.to(Device::cuda()));
        ASSERT_EQ(cpu_g.size(), gpu_g.size()) << what;
        for (size_t i = 0; i < cpu_g.size(); ++i) EXPECT_ALLCLOSE(gpu_g[i], cpu_g[i], 1e-4, 1e-4) << what << " grad " << i;
      }
      // half precision: forward values only, since the mask of a value near zero depends on the
      // precision (the float32 comparison above covers the backward kernels)
      Tensor expect = f({x, s, b, res});
      for (DType low : {DType::BF16, DType::F16}) {
        Tensor y = f(to_device({x.to(low), s.to(low), b.to(low), res.to(low)}, Device::cuda()));
        EXPECT_EQ(y.dtype(), low) << shape_str(shape);
        EXPECT_ALLCLOSE(y.to(DType::F32), expect, 2e-2, 2e-2) << shape_str(shape) << " " << dtype_name(low);
      }
      // bf16 activations with float32 parameters: a float32 sum, as on the CPU
      std::vector<Tensor> mixed{x.to(DType::BF16), s, b, res.to(DType::BF16)};
      Tensor y_mixed = f(to_device(mixed, Device::cuda()));
      EXPECT_EQ(y_mixed.dtype(), DType::F32);
      EXPECT_ALLCLOSE(y_mixed, f(mixed), 1e-5, 1e-5) << shape_str(shape) << " bf16 in, f32 out";
      // ... cast back to bf16 before the sum (Flax's dtype = bf16): one rounding of the float
      // result on both devices, so equal up to a bf16 step; gradients as the f32 case above
      auto cast_f = [relu](const std::vector<Tensor>& in) {
        BatchNormEpilogue epi{.residual = in[3], .relu = relu, .dtype = DType::BF16};
        return batch_norm_train(in[0], in[1], in[2], 1e-5, {}, {}, epi).y;
      };
      std::vector<Tensor> mixed_gpu = to_device(mixed, Device::cuda());
      Tensor y_cast = cast_f(mixed_gpu);
      EXPECT_EQ(y_cast.dtype(), DType::BF16);
      EXPECT_ALLCLOSE(y_cast.to(DType::F32), cast_f(mixed).to(DType::F32), 1e-2, 1e-2) << shape_str(shape) << " bf16 cast";
      auto cpu_g = testing::vjp(cast_f, mixed, w.to(DType::BF16));
      auto gpu_g = testing::vjp(cast_f, mixed_gpu, w.to(DType::BF16).to(Device::cuda()));
      for (size_t i = 0; i < cpu_g.size(); ++i)
        EXPECT_TRUE(testing::close_in_low_precision(gpu_g[i].to(DType::F32), cpu_g[i].to(DType::F32), DType::BF16))
            << shape_str(shape) << " bf16 cast grad " << i;
    }
  }
}

// One kernel on the GPU, bit for bit the three float32 ops the CPU runs.
TEST(NormGpu, RunningAverageEqualsTheSeparateOps) {
  LOOM_REQUIRE_GPU();
  for (int64_t n : {1, 64, 1000, 2048})
    for (double momentum : {0.9, 0.99}) {
      Tensor average = test_values({n}, 1, -3, 3, DType::F32), value = test_values({n}, 2, 0, 5, DType::F32);
      Tensor cpu = running_average(average, value, momentum);
      Tensor gpu = running_average(average.to(Device::cuda()), value.to(Device::cuda()), momentum);
      EXPECT_EQ(gpu.to(Device::cpu()).to_vector<float>(), (average * momentum + value * (1.0 - momentum)).to_vector<float>())
          << n << " " << momentum;
      EXPECT_EQ(cpu.to_vector<float>(), gpu.to(Device::cpu()).to_vector<float>()) << n;
    }
  // Several statistics in one call (a BatchNorm's mean and var; here five of different lengths,
  // one launch): each as its own call.
  std::vector<Tensor> averages, values, averages_gpu, values_gpu;
  for (int64_t n : {1, 64, 1000, 2048, 7}) {
    averages.push_back(test_values({n}, uint64_t(n), -3, 3, DType::F32));
    values.push_back(test_values({n}, uint64_t(n) + 1, 0, 5, DType::F32));
    averages_gpu.push_back(averages.back().to(Device::cuda()));
    values_gpu.push_back(values.back().to(Device::cuda()));
  }
  std::vector<Tensor> together = running_average(averages_gpu, values_gpu, 0.9);
  ASSERT_EQ(together.size(), averages.size());
  for (size_t i = 0; i < averages.size(); ++i)
    EXPECT_EQ(together[i].to(Device::cpu()).to_vector<float>(),
              running_average(averages[i], values[i], 0.9).to_vector<float>()) << i;
}

// The statistics kernel's update of the running statistics (float32 statistics, no pmean) is
// bit for bit running_average's of the same statistics, and the CPU's; shapes that slice the
// launch (more than 1024 grid columns) and a short last chunk group included.
TEST(NormGpu, StatisticsKernelUpdatesTheRunningStatistics) {
  LOOM_REQUIRE_GPU();
  for (DType dt : {DType::F32, DType::BF16})
    for (Shape shape : {Shape{4, 3, 3, 6}, Shape{4000, 64}, Shape{3, 524292}}) {
      const int64_t c = shape.back();
      Tensor x = test_values(shape, 21, -2, 3, dt);
      Tensor am = test_values({c}, 22, -1, 1, DType::F32), av = test_values({c}, 23, 0.5, 2, DType::F32);
      BatchNormResult gpu = batch_norm_train(x.to(Device::cuda()), Tensor(), Tensor(), 1e-5, {}, {}, {},
                                             {am.to(Device::cuda()), av.to(Device::cuda()), 0.99});
      const std::string what = std::string(dtype_name(dt)) + " " + shape_str(shape);
      ASSERT_TRUE(gpu.running_mean.defined()) << what;
      EXPECT_EQ(gpu.running_mean.to(Device::cpu()).to_vector<float>(),
                running_average(am, gpu.mean.to(Device::cpu()), 0.99).to_vector<float>()) << what;
      EXPECT_EQ(gpu.running_var.to(Device::cpu()).to_vector<float>(),
                running_average(av, gpu.var.to(Device::cpu()), 0.99).to_vector<float>()) << what;
      BatchNormResult cpu = batch_norm_train(x, Tensor(), Tensor(), 1e-5, {}, {}, {}, {am, av, 0.99});
      EXPECT_ALLCLOSE(gpu.running_mean, cpu.running_mean, 1e-5, 1e-5) << what;
      EXPECT_ALLCLOSE(gpu.running_var, cpu.running_var, 1e-5, 1e-5) << what;
    }
}

#if LOOM_CUDA
// The backward passes of a BatchNorm + ReLU without a residual recompute the ReLU's mask from x
// (kernels/cuda/batch_norm.h ReluFromInput): bit for bit what reading the forward's output gives
// (sums and input gradient), so the recomputed normalisation rounds as the forward's did. The
// data put many outputs near zero; bf16 and f32 packs, an odd width (one channel a thread), and
// with and without scale and bias.
TEST(NormGpu, BatchNormReluMaskFromInputEqualsTheSavedOutputs) {
  LOOM_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  const cuda::Stream stream = cuda::current_stream(gpu.index);
  for (DType dt : {DType::BF16, DType::F32})
    for (int64_t c : {int64_t(64), int64_t(24), int64_t(7)})
      for (bool params : {true, false}) {
        const int64_t m = 3000;
        const std::string what = std::string(dtype_name(dt)) + " c=" + std::to_string(c) +
                                 (params ? " scale and bias" : " no params");
        Tensor x = test_values({m, c}, 31, -3, 3, dt).to(gpu), g = test_values({m, c}, 32, -1, 1, dt).to(gpu);
        Tensor scale = params ? test_values({c}, 33, -1.5, 1.5, DType::F32).to(gpu) : Tensor();
        Tensor bias = params ? test_values({c}, 34, -0.5, 0.5, DType::F32).to(gpu) : Tensor();
        auto raw = [](const Tensor& t) -> const void* { return t.defined() ? t.raw_data() : nullptr; };
        Tensor mean = Tensor::empty({c}, DType::F32, gpu), var = Tensor::empty({c}, DType::F32, gpu);
        Tensor work = Tensor::empty({cuda::channel_workspace_size(m, c)}, DType::F32, gpu);
        cuda::channel_stats(x.raw_data(), dt, m, c, mean.raw_data(), var.raw_data(), work.raw_data(), stream);
        const double eps = 1e-5;
        Tensor y = Tensor::empty({m, c}, dt, gpu);
        cuda::channel_normalize(x.raw_data(), dt, y.raw_data(), dt, mean.raw_data(), var.raw_data(),
                                raw(scale), raw(bias), nullptr, true, m, c, eps, stream);
        Tensor rstd = rsqrt(var + eps).contiguous();
        const cuda::ReluFromInput from_x{var.raw_data(), raw(scale), raw(bias), eps};
        std::vector<std::vector<float>> results[2];
        for (int mode = 0; mode < 2; ++mode) {
          const void* relu_out = mode == 0 ? y.raw_data() : nullptr;
          const cuda::ReluFromInput* recompute = mode == 1 ? &from_x : nullptr;
          Tensor sum_g = Tensor::empty({c}, DType::F32, gpu), sum_gx = Tensor::empty({c}, DType::F32, gpu);
          Tensor dx = Tensor::empty({m, c}, dt, gpu);
          cuda::channel_backward_sums(x.raw_data(), dt, g.raw_data(), dt, mean.raw_data(), rstd.raw_data(),
                                      relu_out, m, c, sum_g.raw_data(), sum_gx.raw_data(), nullptr,
                                      work.raw_data(), stream, recompute);
          cuda::channel_backward_dx(x.raw_data(), dt, g.raw_data(), dt, mean.raw_data(), rstd.raw_data(),
                                    raw(scale), relu_out, sum_g.raw_data(), sum_gx.raw_data(),
                                    dx.raw_data(), m, c, stream, recompute);
          results[mode] = {sum_g.to(Device::cpu()).to_vector<float>(), sum_gx.to(Device::cpu()).to_vector<float>(),
                           dx.to(DType::F32).to(Device::cpu()).to_vector<float>()};
        }
        EXPECT_EQ(results[0][0], results[1][0]) << what << " sum of g";
        EXPECT_EQ(results[0][1], results[1][1]) << what << " sum of g * xhat";
        EXPECT_EQ(results[0][2], results[1][2]) << what << " dx";
        // the mask is not trivial: the ReLU cut a good share of the elements
        std::vector<float> out = y.to(DType::F32).to(Device::cpu()).to_vector<float>();
        const auto zeros = std::count(out.begin(), out.end(), 0.0f);
        EXPECT_GT(zeros, int64_t(out.size()) / 5) << what;
        EXPECT_LT(zeros, int64_t(out.size()) * 4 / 5) << what;
      }
}
#endif

TEST(NormGpu, GroupNormMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({2, 4, 4, 8}, 15, -2, 2, DType::F32);
  Tensor s = test_values({8}, 16, 0.5, 1.5, DType::F32), b = test_values({8}, 17, -1, 1, DType::F32);
  expect_gpu_matches("group_norm", [](const std::vector<Tensor>& in) { return group_norm(in[0], 4, in[1], in[2]); }, {x, s, b}, 1e-5);
}

}  // namespace
}  // namespace loom

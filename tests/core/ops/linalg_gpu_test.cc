// cuBLASLt against the CPU (OpenBLAS) for matmul, dot_general, einsum and matmul_bias_act,
// forward and backward, in float32 (rtol 1e-5), float64, bfloat16 and float16 (rtol 1e-2), with
// the TF32 switch off and on.
#include <functional>

#include "core/autodiff.h"
#include "core/autotune.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/loss.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/precision.h"
#include "tests/support/gpu_compare.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::test_values;
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Gradients of sum(f(inputs) * w) with the inputs moved to `device`, returned on the CPU.
std::vector<Tensor> grads_on(Device device, const Fn& f, const std::vector<Tensor>& inputs,
                             const Tensor& w) {
  std::vector<Tensor> leaves;
  for (size_t i = 0; i < inputs.size(); ++i)
    leaves.push_back(autograd::make_leaf(inputs[i].to(device), int64_t(i)));
  std::vector<Tensor> grads;
  {
    autograd::RecordingGuard rec(true);
    grads = autograd::backward(sum(f(leaves) * w.to(device)), leaves);
  }
  for (Tensor& g : grads) g = g.to(Device::cpu());
  return grads;
}

// Forward and backward of f on the GPU against the CPU, in `dtype` on the GPU. Half types are
// compared with a float32 CPU run.
void expect_matches_cpu(const Fn& f, const std::vector<Shape>& shapes, DType dtype, double rtol,
                        const std::string& what) {
  std::vector<Tensor> cpu_in, gpu_in;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Tensor x = test_values(shapes[i], 100 + i, -1, 1, dtype);
    gpu_in.push_back(x.to(Device::cuda()));
    cpu_in.push_back(dtype == DType::F64 ? x : x.to(DType::F32));
  }
  // Half types: products rounded to 8 or 11 bits (partial products of broadcast batches too)
  // are compared by the norm of the error, as sums of them cancel.
  const bool half = dtype == DType::BF16 || dtype == DType::F16;
  auto expect_close = [&](const Tensor& gpu, const Tensor& cpu, const std::string& where) {
    if (half) {
      EXPECT_TRUE(testing::close_in_low_precision(gpu, cpu, dtype)) << where;
    } else {  // sums of many terms round by the terms' size
      EXPECT_ALLCLOSE(gpu.to(cpu.dtype()), cpu, rtol, rtol * testing::largest_magnitude(cpu)) << where;
    }
  };
  Tensor cpu_out = f(cpu_in), gpu_out = f(gpu_in);
  EXPECT_EQ(gpu_out.dtype(), dtype) << what;
  expect_close(gpu_out.to(Device::cpu()), cpu_out, what);
  // The cotangent in `dtype`, so that both devices see the same rounded values.
  Tensor w = test_values(cpu_out.shape(), 99, -1, 1, dtype);
  std::vector<Tensor> gc = grads_on(Device::cpu(), f, cpu_in, w.to(cpu_out.dtype()));
  std::vector<Tensor> gg = grads_on(Device::cuda(), f, gpu_in, w);
  for (size_t i = 0; i < gc.size(); ++i) expect_close(gg[i], gc[i], what + " grad " + std::to_string(i));
}

struct MatmulCase {
  Shape a, b;
};
const MatmulCase kMatmulCases[] = {
    {{3, 5}, {5, 7}},        {{2, 1, 3, 4}, {5, 4, 2}}, {{4}, {2, 4, 3}}, {{2, 3, 4}, {4}},
    {{6}, {6}},              {{64, 128}, {128, 96}},    {{1, 33}, {33, 1}},
    {{8, 1, 32, 16}, {1, 4, 16, 8}},  // broadcast batch dims: zero batch strides
};

TEST(LinalgGpu, MatmulMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Fn mm = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  for (const MatmulCase& c : kMatmulCases) {
    std::string what = shape_str(c.a) + " @ " + shape_str(c.b);
    expect_matches_cpu(mm, {c.a, c.b}, DType::F32, 1e-5, what + " f32");
    expect_matches_cpu(mm, {c.a, c.b}, DType::F64, 1e-12, what + " f64");
    expect_matches_cpu(mm, {c.a, c.b}, DType::BF16, 1e-2, what + " bf16");
    expect_matches_cpu(mm, {c.a, c.b}, DType::F16, 1e-2, what + " f16");
  }
}

// Dimensions that are not a multiple of 16 bytes (1001, 1003, 1100 are not) in products of over
// 2^30 flops run padded (kernels/cuda/gemm.cc), forward and backward: on zero-padded copies, or
// in place where the storage is padded (a pitched output, kernels/cpu/gemm.h).
TEST(LinalgGpu, MisalignedPitchesMatchCpu) {
  LOOM_REQUIRE_GPU();
  Fn mm = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  // sums of 1001 products: float32 rounding differs by more than the 1e-5 of short sums
  expect_matches_cpu(mm, {{1100, 1001}, {1001, 1003}}, DType::F32, 1e-4, "padded f32");
  expect_matches_cpu(mm, {{1100, 1001}, {1001, 1003}}, DType::BF16, 1e-2, "padded bf16");
  Fn bias = [](const std::vector<Tensor>& in) {
    return matmul_bias_act(in[0], in[1], in[2], Epilogue::BiasGelu);
  };
  expect_matches_cpu(bias, {{1100, 1001}, {1001, 1003}, {1003}}, DType::BF16, 1e-2, "padded epilogue");
  // A tied output layer and its loss (GPT-2's head): the logits' rows stored at a 16-byte pitch
  // and written in place, cross-entropy's gradient at the same pitch, read in place by the
  // embedding's gradient product (and copied, padded, by the hidden state's).
  std::vector<int32_t> label_values(512);
  for (size_t i = 0; i < label_values.size(); ++i) label_values[i] = int32_t((i * 7919) % 4101);
  const Tensor labels = from_vector(label_values, {2, 256});
  auto head = [labels](bool contiguous) -> Fn {
    return [labels, contiguous](const std::vector<Tensor>& in) {
      Tensor logits = matmul(in[0], transpose(in[1]));
      EXPECT_FALSE(logits.is_contiguous());
      if (contiguous) logits = logits.contiguous();
      return softmax_cross_entropy_with_integer_labels(logits, labels.to(in[0].device()));
    };
  };
  expect_matches_cpu(head(false), {{2, 256, 256}, {4101, 256}}, DType::F32, 1e-4, "pitched head f32");
  // In bfloat16 the loss over rounded logits and its 4101-term gradient sums drift from the
  // float32 CPU run by more than a product's tolerance (run 10: 10 of 131072 elements), so the
  // pitched path is compared with the contiguous one on the GPU.
  const std::vector<Tensor> in = {test_values({2, 256, 256}, 100, -1, 1, DType::BF16).to(Device::cuda()),
                                  test_values({4101, 256}, 101, -1, 1, DType::BF16).to(Device::cuda())};
  const Tensor w = test_values({2, 256}, 99, -1, 1, DType::BF16);
  std::vector<Tensor> pitched = grads_on(Device::cuda(), head(false), in, w);
  std::vector<Tensor> contiguous = grads_on(Device::cuda(), head(true), in, w);
  pitched.push_back(head(false)(in).to(Device::cpu()));
  contiguous.push_back(head(true)(in).to(Device::cpu()));
  for (size_t i = 0; i < pitched.size(); ++i)
    EXPECT_TRUE(testing::close_in_low_precision(pitched[i], contiguous[i], DType::BF16))
        << "pitched head bf16, " << (i < 2 ? "gradient " + std::to_string(i) : std::string("loss"));
}

TEST(LinalgGpu, StridedViewsAndEmpty) {
  LOOM_REQUIRE_GPU();
  Tensor a = test_values({5, 3}, 1, -1, 1, DType::F32), b = test_values({4, 5}, 2, -1, 1, DType::F32);
  auto t = [](const Tensor& x) {
    return Tensor(x.storage(), {x.dim(1), x.dim(0)}, {x.strides()[1], x.strides()[0]}, x.offset(), x.dtype());
  };
  Tensor ga = a.to(Device::cuda()), gb = b.to(Device::cuda());
  EXPECT_ALLCLOSE(matmul(t(ga), t(gb)), matmul(t(a), t(b)), 1e-5, 1e-5);
  EXPECT_ALLCLOSE(dot_general(ga, gb, {{0}, {1}, {}, {}}), dot_general(a, b, {{0}, {1}, {}, {}}), 1e-5, 1e-5);
  Tensor z = matmul(zeros({3, 0}, DType::F32, Device::cuda()), zeros({0, 4}, DType::F32, Device::cuda()));
  EXPECT_ALLCLOSE(z, zeros({3, 4}), 0, 0);
  EXPECT_EQ(matmul(zeros({0, 2}, DType::F32, Device::cuda()), zeros({2, 4}, DType::F32, Device::cuda())).shape(),
            (Shape{0, 4}));
}

TEST(LinalgGpu, Tf32OnlyWhenAllowed) {
  LOOM_REQUIRE_GPU();
  ASSERT_FALSE(allow_tf32());
  Tensor a = test_values({128, 512}, 3, -1, 1, DType::F32), b = test_values({512, 64}, 4, -1, 1, DType::F32);
  Tensor expect = matmul(a.to(DType::F64), b.to(DType::F64));
  Tensor ga = a.to(Device::cuda()), gb = b.to(Device::cuda());
  EXPECT_ALLCLOSE(matmul(ga, gb).to(DType::F64), expect, 1e-5, 1e-5);  // exact FP32 by default
  Tf32Guard tf32(true);
  EXPECT_ALLCLOSE(matmul(ga, gb).to(DType::F64), expect, 1e-2, 1e-2);  // TF32: ~1e-3 relative
}

TEST(LinalgGpu, DotGeneralAndEinsumMatchCpu) {
  LOOM_REQUIRE_GPU();
  struct Case {
    std::string what;
    Fn f;
    std::vector<Shape> shapes;
  };
  std::vector<Case> cases = {
      {"dense_general", [](const std::vector<Tensor>& in) { return dot_general(in[0], in[1], {{2, 3}, {0, 1}, {}, {}}); },
       {{2, 3, 4, 5}, {4, 5, 6}}},
      {"batch_not_leading", [](const std::vector<Tensor>& in) { return dot_general(in[0], in[1], {{2, 3}, {3, 0}, {1}, {2}}); },
       {{3, 2, 4, 5}, {5, 6, 2, 4}}},
      {"attention_logits", [](const std::vector<Tensor>& in) { return einsum("...qhd,...khd->...hqk", in[0], in[1]); },
       {{2, 7, 4, 16}, {2, 9, 4, 16}}},
      {"attention_values", [](const std::vector<Tensor>& in) { return einsum("...hqk,...khd->...qhd", in[0], in[1]); },
       {{2, 4, 7, 9}, {2, 9, 4, 16}}},
  };
  for (const Case& c : cases) {
    expect_matches_cpu(c.f, c.shapes, DType::F32, 1e-5, c.what + " f32");
    expect_matches_cpu(c.f, c.shapes, DType::BF16, 1e-2, c.what + " bf16");
  }
}

TEST(LinalgGpu, MatmulBiasActMatchesCpu) {
  LOOM_REQUIRE_GPU();
  for (Epilogue ep : {Epilogue::Bias, Epilogue::BiasRelu, Epilogue::BiasGelu}) {
    Fn f = [ep](const std::vector<Tensor>& in) { return matmul_bias_act(in[0], in[1], in[2], ep); };
    std::string what = "epilogue " + std::to_string(int(ep));
    // grads_on records, so this covers the fused bias with a separate ReLU, GELU's epilogue
    // keeping its input, and the backward's weight gradient with the bias gradient in its
    // epilogue ...
    expect_matches_cpu(f, {{4, 6, 32}, {32, 24}, {24}}, DType::F32, 1e-5, what + " f32");
    expect_matches_cpu(f, {{4, 6, 32}, {32, 24}, {24}}, DType::BF16, 1e-2, what + " bf16");
    expect_matches_cpu(f, {{32}, {32, 8}, {8}}, DType::F32, 1e-5, what + " 1-D f32");
    // under autodiff GELU's epilogue keeps its input for the gradient (widths a multiple of 8);
    // at 10 columns cuBLASLt cannot keep it and the bias alone is fused
    expect_matches_cpu(f, {{5, 16}, {16, 10}, {10}}, DType::F32, 1e-5, what + " 10 columns f32");
    // the weight and bias gradients from one cuBLASLt call (BGRADA), at 16-byte-aligned widths
    expect_matches_cpu(f, {{3, 40, 64}, {64, 96}, {96}}, DType::BF16, 1e-2, what + " bf16 wide");
    expect_matches_cpu(f, {{3, 40, 64}, {64, 96}, {96}}, DType::F32, 1e-5, what + " f32 wide");
    // ... and this the fully fused forward (nothing recording)
    Tensor a = test_values({16, 64}, 5, -1, 1, DType::F32), b = test_values({64, 40}, 6, -1, 1, DType::F32);
    Tensor bias = test_values({40}, 7, -1, 1, DType::F32);
    EXPECT_ALLCLOSE(matmul_bias_act(a.to(Device::cuda()), b.to(Device::cuda()), bias.to(Device::cuda()), ep),
                    matmul_bias_act(a, b, bias, ep), 1e-5, 1e-5) << what;
    Tensor gh = matmul_bias_act(a.to(DType::BF16).to(Device::cuda()), b.to(DType::BF16).to(Device::cuda()),
                                bias.to(DType::BF16).to(Device::cuda()), ep);
    EXPECT_EQ(gh.dtype(), DType::BF16);
    auto rounded = [](const Tensor& t) { return t.to(DType::BF16).to(DType::F32); };
    EXPECT_ALLCLOSE(gh.to(DType::F32), matmul_bias_act(rounded(a), rounded(b), rounded(bias), ep),
                    1e-2, 1e-2) << what << " bf16";
  }
}

// A product after a product's GELU epilogue (GPT-2's MLP): the second product's backward takes
// the gradient through the GELU in its own epilogue (cuBLASLt's DGELU), straight to the GELU's
// input. Against the CPU's separate ops: alone, with the GELU's output also taken by another op
// (whose gradient goes through the GELU's own backward and adds at its input), at a width
// (10) where the GELU's input is not kept, and with a second product layer on top.
// cuBLASLt's GELU and DGELU epilogues are within 2e-4 of the CPU's exact ops in float32, not
// 1e-5 (H200, 2026-11-29: up to 5e-4 on gradients of about 5): they approximate tanh.
constexpr double kGeluEpilogueTol = 2e-4;

TEST(LinalgGpu, ProductAfterAGeluEpilogueMatchesCpu) {
  LOOM_REQUIRE_GPU();
  auto mlp = [](bool also_elsewhere) {
    return Fn([also_elsewhere](const std::vector<Tensor>& in) {
      Tensor h = matmul_bias_act(in[0], in[1], in[2], Epilogue::BiasGelu);
      Tensor y = matmul_bias_act(h, in[3], in[4], Epilogue::Bias);
      return also_elsewhere ? y + sum(h * h, {-1}, true) : y;
    });
  };
  for (bool also_elsewhere : {false, true}) {
    const std::string what = also_elsewhere ? " (h also elsewhere)" : "";
    expect_matches_cpu(mlp(also_elsewhere), {{4, 6, 32}, {32, 64}, {64}, {64, 24}, {24}}, DType::F32,
                       kGeluEpilogueTol, "mlp f32" + what);
    expect_matches_cpu(mlp(also_elsewhere), {{4, 6, 32}, {32, 64}, {64}, {64, 24}, {24}}, DType::BF16,
                       1e-2, "mlp bf16" + what);
    expect_matches_cpu(mlp(also_elsewhere), {{5, 16}, {16, 10}, {10}, {10, 8}, {8}}, DType::F32,
                       kGeluEpilogueTol, "mlp 10 wide f32" + what);
  }
  Fn two_layers = [](const std::vector<Tensor>& in) {
    Tensor h = matmul_bias_act(in[0], in[1], in[2], Epilogue::BiasGelu);
    Tensor h2 = matmul_bias_act(h, in[3], in[4], Epilogue::BiasGelu);
    return matmul_bias_act(h2, in[5], in[6], Epilogue::Bias);
  };
  expect_matches_cpu(two_layers, {{3, 40, 64}, {64, 96}, {96}, {96, 48}, {48}, {48, 16}, {16}},
                     DType::F32, kGeluEpilogueTol, "two gelu layers f32");
  expect_matches_cpu(two_layers, {{3, 40, 64}, {64, 96}, {96}, {96, 48}, {48}, {48, 16}, {16}},
                     DType::BF16, 1e-2, "two gelu layers bf16");
}

// One input taken by three products (an attention's query, key and value projections): on the
// GPU the later products' backward adds into the earlier ones' input gradient (beta = 1).
TEST(LinalgGpu, ProductsOfOneInputAddTheirGradientsTogether) {
  LOOM_REQUIRE_GPU();
  Fn qkv = [](const std::vector<Tensor>& in) {
    Tensor q = matmul_bias_act(in[0], in[1], in[4], Epilogue::Bias);
    Tensor k = matmul_bias_act(in[0], in[2], in[4], Epilogue::Bias);
    Tensor v = matmul(in[0], in[3]);
    return q * k + v;
  };
  expect_matches_cpu(qkv, {{4, 6, 32}, {32, 24}, {32, 24}, {32, 24}, {24}}, DType::F32, 1e-5, "qkv f32");
  expect_matches_cpu(qkv, {{4, 6, 32}, {32, 24}, {32, 24}, {32, 24}, {24}}, DType::BF16, 1e-2, "qkv bf16");
}

// residual + (a @ b + bias) with the residual read in the product's epilogue (beta = 1, C the
// residual, D a new output): with and without a bias, after a GELU epilogue (GPT-2's c_proj:
// DGELU backward and the residual's gradient from one node), the residual used elsewhere too
// (its gradient adds), and a float32 residual beside a bfloat16 product (composed).
TEST(LinalgGpu, MatmulBiasAddMatchesCpu) {
  LOOM_REQUIRE_GPU();
  Fn with_bias = [](const std::vector<Tensor>& in) { return matmul_bias_add(in[0], in[1], in[2], in[3]); };
  Fn no_bias = [](const std::vector<Tensor>& in) { return matmul_bias_add(in[0], in[1], Tensor(), in[2]); };
  Fn mlp = [](const std::vector<Tensor>& in) {
    Tensor h = matmul_bias_act(in[0], in[1], in[2], Epilogue::BiasGelu);
    return matmul_bias_add(h, in[3], in[4], in[5]);
  };
  Fn residual_twice = [](const std::vector<Tensor>& in) {
    return matmul_bias_add(in[0], in[1], in[2], in[3]) * in[3];
  };
  for (DType dt : {DType::F32, DType::BF16}) {
    const double tol = dt == DType::F32 ? 1e-5 : 1e-2;
    const std::string name(dtype_name(dt));
    expect_matches_cpu(with_bias, {{4, 6, 32}, {32, 24}, {24}, {4, 6, 24}}, dt, tol, "bias " + name);
    expect_matches_cpu(no_bias, {{4, 6, 32}, {32, 24}, {4, 6, 24}}, dt, tol, "no bias " + name);
    expect_matches_cpu(mlp, {{4, 6, 32}, {32, 64}, {64}, {64, 32}, {32}, {4, 6, 32}}, dt,
                       dt == DType::F32 ? kGeluEpilogueTol : tol, "after a GELU epilogue " + name);
    expect_matches_cpu(residual_twice, {{3, 40, 64}, {64, 96}, {96}, {3, 40, 96}}, dt, tol,
                       "residual also elsewhere " + name);
  }
  // nothing recording: the fused forward alone, against the separate ops in float32
  Tensor a = test_values({16, 64}, 5, -1, 1, DType::F32), b = test_values({64, 40}, 6, -1, 1, DType::F32);
  Tensor bias = test_values({40}, 7, -1, 1, DType::F32), r = test_values({16, 40}, 8, -1, 1, DType::F32);
  auto gpu = [](const Tensor& t) { return t.to(Device::cuda()); };
  EXPECT_ALLCLOSE(matmul_bias_add(gpu(a), gpu(b), gpu(bias), gpu(r)), matmul(a, b) + bias + r, 1e-5, 1e-5);
  Tensor mixed = matmul_bias_add(gpu(a).to(DType::BF16), gpu(b).to(DType::BF16), gpu(bias).to(DType::BF16), gpu(r));
  EXPECT_EQ(mixed.dtype(), DType::F32);  // the add's promotion, as the separate ops
}

// With the products' algorithms timed (core/autotune.h), every product and epilogue above still
// gives the CPU's values: the timing runs write scratch, not C, so the products that add into
// their output (the q/k/v input gradients: k's is the first product of its kind that adds into
// C, timed so; the residual) add once. Twice over, the second time from the cache of timed
// choices.
TEST(LinalgGpu, AutotunedProductsMatchCpu) {
  LOOM_REQUIRE_GPU();
  GemmAutotuneScope autotune;
  Fn qkv = [](const std::vector<Tensor>& in) {
    Tensor q = matmul_bias_act(in[0], in[1], in[4], Epilogue::Bias);
    Tensor k = matmul_bias_act(in[0], in[2], in[4], Epilogue::Bias);
    return q * k + matmul(in[0], in[3]);
  };
  Fn mlp = [](const std::vector<Tensor>& in) {
    Tensor h = matmul_bias_act(in[0], in[1], in[2], Epilogue::BiasGelu);
    return matmul_bias_add(h, in[3], in[4], in[5]);
  };
  Fn batched = [](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); };
  for (int pass = 0; pass < 2; ++pass)
    for (DType dt : {DType::F32, DType::BF16}) {
      // (the timed algorithms sum in other orders than the heuristics' first choice)
      const double tol = dt == DType::F32 ? kGeluEpilogueTol : 1e-2;
      const std::string name = std::string(dtype_name(dt)) + " pass " + std::to_string(pass);
      expect_matches_cpu(qkv, {{8, 64, 128}, {128, 96}, {128, 96}, {128, 96}, {96}}, dt, tol,
                         "qkv " + name);
      expect_matches_cpu(mlp, {{8, 64, 64}, {64, 256}, {256}, {256, 64}, {64}, {8, 64, 64}}, dt, tol,
                         "mlp " + name);
      expect_matches_cpu(batched, {{4, 32, 48}, {4, 48, 40}}, dt, tol, "batched " + name);
    }
}

TEST(LinalgGpu, ErrorsNameShapesAndDevices) {
  LOOM_REQUIRE_GPU();
  EXPECT_THROW(matmul(zeros({2, 3}, DType::F32, Device::cuda()), zeros({3, 2})), DeviceError);
  EXPECT_THROW(matmul(zeros({2, 3}, DType::F32, Device::cuda()), zeros({4, 2}, DType::F32, Device::cuda())),
               ShapeError);
}

}  // namespace
}  // namespace loom

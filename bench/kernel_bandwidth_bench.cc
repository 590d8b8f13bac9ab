// loom_kernel_bench: achieved memory bandwidth of loom's memory-bound kernels against the
// device's own copy bandwidth, measured in the same run (issue goal: >= 80% of copy). One JSON
// line per kernel and dtype, then a summary line.
//
// Bytes counted are the minimum a kernel must move (each input read once, each output written
// once); a kernel that reads its input twice (e.g. a two-pass norm) shows up as a lower fraction.
//
//   loom_kernel_bench [--device cuda] [--elements 67108864] [--iters 50]
#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "core/ops/elementwise.h"
#include "core/ops/norm.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "optim/optimizers.h"
#include "train/train_state.h"
#if LOOM_CUDA
#include "kernels/cuda/batch_norm.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/runtime.h"
#endif

namespace {

using namespace loom;
using bench::synchronize;
using Clock = std::chrono::steady_clock;

// Seconds per call: `iters` calls queued back to back, one synchronize at the end; the median of
// five such rounds after a warm-up round.
double seconds_per_call(Device d, int iters, const std::function<void()>& f) {
  std::vector<double> rounds;
  for (int r = 0; r < 6; ++r) {
    synchronize(d);
    auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) f();
    synchronize(d);
    if (r > 0) rounds.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / iters);
  }
  return bench::median(rounds);
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "cuda";
  int64_t n = int64_t(1) << 26;
  int iters = 50;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--device") device_name = v;
    else if (k == "--elements") n = std::stoll(v);
    else if (k == "--iters") iters = std::stoi(v);
    else {
      std::cerr << "loom_kernel_bench: unknown option " << k << "\n";
      return 2;
    }
  }
  try {
    Device d = Device::parse(device_name);
    check_device_usable(d, "loom_kernel_bench --device");
    const int64_t features = 768;  // GPT-2 small's width, for the norms
    const int64_t rows = n / features;
    std::vector<nlohmann::json> lines;
    double copy_gbs = 0;
    auto report = [&](const std::string& kernel, DType dt, double bytes, double secs) {
      double gbs = bytes / secs / 1e9;
      nlohmann::json j = {{"kernel", kernel}, {"dtype", dtype_name(dt)}, {"elements", rows * features},
                          {"us", secs * 1e6}, {"GB/s", gbs}};
      if (copy_gbs > 0) j["fraction_of_copy"] = gbs / copy_gbs;
      else copy_gbs = gbs;  // the first line is the copy itself
      std::cout << j.dump() << std::endl;
      lines.push_back(j);
    };
    for (DType dt : {DType::F32, DType::BF16}) {
      const double e = double(dtype_size(dt)), m = double(rows * features);
      Tensor x = ones({rows, features}, dt, d), y = ones({rows, features}, dt, d);
      Tensor scale = ones({features}, dt, d), bias = zeros({features}, dt, d);
      if (dt == DType::F32) {
        Tensor dst = Tensor::empty({rows, features}, dt, d);
        report("device_copy", dt, 2 * m * e, seconds_per_call(d, iters, [&] {
#if LOOM_CUDA
                 if (d.is_cuda())
                   return cuda::copy_device_to_device(dst.raw_data(), x.raw_data(), dst.nbytes(), d.index);
#endif
                 std::memcpy(dst.raw_data(), x.raw_data(), dst.nbytes());
               }));
      }
      report("residual_add", dt, 3 * m * e, seconds_per_call(d, iters, [&] { (void)(x + y); }));
      report("gelu_tanh", dt, 2 * m * e, seconds_per_call(d, iters, [&] { (void)gelu(x); }));
      // A strided copy that transposes, as ResNet's conv weights between HWIO and cuDNN's KRSC.
      report("transpose_2d", dt, 2 * m * e,
             seconds_per_call(d, iters, [&] { (void)transpose(x).contiguous(); }));
      report("layer_norm", dt, 2 * m * e,
             seconds_per_call(d, iters, [&] { (void)layer_norm(x, scale, bias); }));
#if LOOM_CUDA
      if (d.is_cuda()) {
        // LayerNorm's input gradient as GPT-2's backward runs it: reads x and g, writes dx;
        // "_into" adds into an earlier gradient (the residual stream's), reading it too.
        Tensor g = ones({rows, features}, dt, d), dx = zeros({rows, features}, dt, d);
        Tensor mu = zeros({rows}, DType::F32, d), rstd = ones({rows}, DType::F32, d);
        Tensor gamma = ones({features}, DType::F32, d);
        for (bool into : {false, true})
          for (bool cached : {true, false})
            report(std::string(into ? "layer_norm_backward_into" : "layer_norm_backward") +
                       (cached ? "" : "_streaming"),
                   dt, (into ? 4 : 3) * m * e, seconds_per_call(d, iters, [&] {
                     cuda::norm_rows_backward(x.raw_data(), dt, g.raw_data(), dt, mu.raw_data(),
                                              rstd.raw_data(), gamma.raw_data(), false,
                                              dx.raw_data(), rows, features, false, into,
                                              cuda::current_stream(d.index), cached);
                   }));
        // The forward's kernels: rows held in registers (what layer_norm runs) and streamed.
        Tensor y_out = Tensor::empty({rows, features}, dt, d);
        for (bool cached : {true, false})
          report(cached ? "layer_norm_forward_cached" : "layer_norm_forward_streaming", dt, 2 * m * e,
                 seconds_per_call(d, iters, [&] {
                   cuda::norm_rows(x.raw_data(), dt, y_out.raw_data(), dt, gamma.raw_data(), nullptr,
                                   false, mu.raw_data(), rstd.raw_data(), rows, features, 1e-6,
                                   false, cuda::current_stream(d.index), cached);
                 }));
        // BatchNorm's training passes over an NHWC activation (ResNet-50 spends about 22 ms of
        // its 46 ms of kernels in them): the statistics read x; with the ReLU epilogue the
        // backward sums read x, g and the ReLU output, and the input gradient also writes dx.
        Tensor ch_mean = zeros({features}, DType::F32, d), ch_var = ones({features}, DType::F32, d);
        Tensor sum_g = zeros({features}, DType::F32, d), sum_gx = zeros({features}, DType::F32, d);
        Tensor workspace = Tensor::empty({cuda::channel_workspace_size(rows, features)}, DType::F32, d);
        const cuda::Stream stream = cuda::current_stream(d.index);
        report("batch_norm_stats", dt, m * e, seconds_per_call(d, iters, [&] {
                 cuda::channel_stats(x.raw_data(), dt, rows, features, ch_mean.raw_data(),
                                     ch_var.raw_data(), workspace.raw_data(), stream);
               }));
        report("batch_norm_backward_sums", dt, 3 * m * e, seconds_per_call(d, iters, [&] {
                 cuda::channel_backward_sums(x.raw_data(), dt, g.raw_data(), dt, ch_mean.raw_data(),
                                             ch_var.raw_data(), y.raw_data(), rows, features,
                                             sum_g.raw_data(), sum_gx.raw_data(), nullptr,
                                             workspace.raw_data(), stream);
               }));
        report("batch_norm_backward_dx", dt, 4 * m * e, seconds_per_call(d, iters, [&] {
                 cuda::channel_backward_dx(x.raw_data(), dt, g.raw_data(), dt, ch_mean.raw_data(),
                                           ch_var.raw_data(), gamma.raw_data(), y.raw_data(),
                                           sum_g.raw_data(), sum_gx.raw_data(), dx.raw_data(),
                                           rows, features, stream);
               }));
      }
#endif
      // BatchNorm apply on an NHWC activation with C = features: normalise with given statistics.
      Tensor mean = zeros({features}, dt, d), var = ones({features}, dt, d);
      report("batch_norm_apply", dt, 2 * m * e, seconds_per_call(d, iters, [&] {
               (void)batch_norm_inference(x, mean, var, scale, bias);
             }));
    }
#if LOOM_CUDA
    if (d.is_cuda()) {
      // BatchNorm's passes in the order a ResNet-50 step runs them, at three of its bf16 shapes
      // (batch 256): the statistics then the apply (ReLU), the backward sums then dx (the ReLU's
      // mask read from the output, and recomputed from x). The sums
      // sweep from the last rows to the first and the elementwise pass from the first, so the
      // second pass starts on rows still in L2; "_alone" is the same two kernels each repeated
      // on its own, where a call starts on the rows its predecessor read first. Bytes counted
      // are the minimum of the two kernels together, so reuse shows as a higher fraction.
      struct Shape {
        const char* name;
        int64_t m, c;
      };
      const DType dt = DType::BF16;
      const double e = double(dtype_size(dt));
      const cuda::Stream stream = cuda::current_stream(d.index);
      for (const Shape& s : {Shape{"56x56x256", 256 * 56 * 56, 256}, Shape{"14x14x1024", 256 * 14 * 14, 1024},
                             Shape{"7x7x512", 256 * 7 * 7, 512}}) {
        Tensor bx = ones({s.m, s.c}, dt, d), bg = ones({s.m, s.c}, dt, d), by = ones({s.m, s.c}, dt, d);
        Tensor bdx = Tensor::empty({s.m, s.c}, dt, d);
        Tensor mean = zeros({s.c}, DType::F32, d), var = ones({s.c}, DType::F32, d);
        Tensor sum_g = zeros({s.c}, DType::F32, d), sum_gx = zeros({s.c}, DType::F32, d);
        Tensor work = Tensor::empty({cuda::channel_workspace_size(s.m, s.c)}, DType::F32, d);
        auto stats = [&] {
          cuda::channel_stats(bx.raw_data(), dt, s.m, s.c, mean.raw_data(), var.raw_data(),
                              work.raw_data(), stream);
        };
        auto apply = [&] {
          cuda::channel_normalize(bx.raw_data(), dt, by.raw_data(), dt, mean.raw_data(),
                                  var.raw_data(), nullptr, nullptr, nullptr, true, s.m, s.c, 1e-5,
                                  stream);
        };
        // The ReLU's mask read from the output (by), or recomputed from x (ReluFromInput).
        const cuda::ReluFromInput from_x{var.raw_data(), nullptr, nullptr, 1e-5};
        bool mask_from_x = false;
        auto sums = [&] {
          cuda::channel_backward_sums(bx.raw_data(), dt, bg.raw_data(), dt, mean.raw_data(),
                                      var.raw_data(), mask_from_x ? nullptr : by.raw_data(), s.m,
                                      s.c, sum_g.raw_data(), sum_gx.raw_data(), nullptr,
                                      work.raw_data(), stream, mask_from_x ? &from_x : nullptr);
        };
        auto dx = [&] {
          cuda::channel_backward_dx(bx.raw_data(), dt, bg.raw_data(), dt, mean.raw_data(),
                                    var.raw_data(), nullptr, mask_from_x ? nullptr : by.raw_data(),
                                    sum_g.raw_data(), sum_gx.raw_data(), bdx.raw_data(), s.m, s.c,
                                    stream, mask_from_x ? &from_x : nullptr);
        };
        const double m = double(s.m * s.c);
        const std::string at = std::string("_") + s.name;
        report("batch_norm_forward_pair" + at, dt, 3 * m * e, seconds_per_call(d, iters, [&] {
                 stats();
                 apply();
               }));
        report("batch_norm_forward_pair_alone" + at, dt, 3 * m * e,
               seconds_per_call(d, iters, stats) + seconds_per_call(d, iters, apply));
        report("batch_norm_backward_pair" + at, dt, 7 * m * e, seconds_per_call(d, iters, [&] {
                 sums();
                 dx();
               }));
        report("batch_norm_backward_pair_alone" + at, dt, 7 * m * e,
               seconds_per_call(d, iters, sums) + seconds_per_call(d, iters, dx));
        // The same work with the mask recomputed: the bytes counted are still those of the
        // output-reading passes, so the fraction compares the two ways of getting the mask.
        mask_from_x = true;
        report("batch_norm_backward_pair_mask_from_x" + at, dt, 7 * m * e, seconds_per_call(d, iters, [&] {
                 sums();
                 dx();
               }));
        mask_from_x = false;
      }
    }
#endif
#if LOOM_CUDA
    if (d.is_cuda()) {
      // A Dense layer's weight and bias gradients at GPT-2's shapes (16,384 tokens, bf16): the
      // bias gradient in the weight gradient's cuBLASLt call (BGRADA, what Dense runs; cuBLASLt
      // runs it as a kernel of its own, 72 a GPT-2 step), against the plain product and loom's
      // column sum. Bytes counted are the bias gradient's (g read once); compare the "us".
      const DType dt = DType::BF16;
      const int64_t tokens = 16384;
      const cuda::Stream stream = cuda::current_stream(d.index);
      for (auto [k, n] : {std::pair<int64_t, int64_t>{768, 3072}, {3072, 768}, {768, 2304}, {768, 768}}) {
        Tensor x = ones({tokens, k}, dt, d), g = ones({tokens, n}, dt, d);
        Tensor dw = Tensor::empty({k, n}, dt, d), db = Tensor::empty({n}, dt, d);
        GemmProblem p;
        p.dtype = dt;
        p.m = k;
        p.n = n;
        p.k = tokens;
        p.a.data = x.raw_data(), p.a.trans = true, p.a.ld = k;  // x^T
        p.b.data = g.raw_data(), p.b.trans = false, p.b.ld = n;
        p.c = dw.raw_data();
        std::string at = "_";
        at += std::to_string(k);
        at += "x";
        at += std::to_string(n);
        const double bytes = double(tokens * n * dtype_size(dt));
        report("dense_weight_bias_grads_bgrada" + at, dt, bytes, seconds_per_call(d, iters, [&] {
                 if (!cuda::gemm_bias_grad(p, d.index, false, stream, db.raw_data()))
                   throw std::runtime_error("cuBLASLt offers no BGRADA algorithm for this product");
               }));
        report("dense_weight_grad_then_column_sum" + at, dt, bytes, seconds_per_call(d, iters, [&] {
                 cuda::gemm(p, d.index, false, stream);
                 (void)sum(g, {0});
               }));
      }
    }
#endif
#if LOOM_CUDA
    if (d.is_cuda()) {
      // GPT-2's MLP GELU at its shapes (16,384 tokens, bf16): c_fc's product with the GELU in
      // the epilogue keeping its input (GELU_AUX_BIAS, what Dense runs under autodiff) against
      // the bias epilogue and a separate GELU; c_proj's input gradient through the GELU in the
      // DGELU epilogue against the plain product and a separate GELU derivative. A fused route
      // cuBLASLt offers no algorithm for is reported as unavailable (loom then runs the separate
      // ops). Bytes counted are the GELU's: its input read and its output written.
      const DType dt = DType::BF16;
      const int64_t tokens = 16384, width = 768, hidden = 3072;
      const cuda::Stream stream = cuda::current_stream(d.index);
      Tensor x = ones({tokens, width}, dt, d), w_fc = ones({width, hidden}, dt, d);
      Tensor b_fc = zeros({hidden}, dt, d), w_proj = ones({hidden, width}, dt, d);
      Tensor out = Tensor::empty({tokens, hidden}, dt, d), pre = Tensor::empty({tokens, hidden}, dt, d);
      GemmProblem fc;  // x [tokens, width] @ w_fc [width, hidden]
      fc.dtype = dt;
      fc.m = tokens, fc.n = hidden, fc.k = width;
      fc.a.data = x.raw_data(), fc.a.ld = width;
      fc.b.data = w_fc.raw_data(), fc.b.ld = hidden;
      fc.c = out.raw_data();
      GemmProblem proj_grad = fc;  // g [tokens, width] @ w_proj^T, w_proj [hidden, width]
      proj_grad.b.data = w_proj.raw_data(), proj_grad.b.trans = true, proj_grad.b.ld = width;
      const double bytes = 2.0 * double(tokens * hidden * dtype_size(dt));
      auto unavailable = [&](const std::string& kernel) {
        nlohmann::json j = {{"kernel", kernel}, {"dtype", dtype_name(dt)}, {"available", false}};
        std::cout << j.dump() << std::endl;
      };
      if (cuda::gemm(fc, d.index, false, stream, Epilogue::BiasGelu, b_fc.raw_data(), pre.raw_data()))
        report("dense_gelu_keeping_input_epilogue", dt, bytes, seconds_per_call(d, iters, [&] {
                 cuda::gemm(fc, d.index, false, stream, Epilogue::BiasGelu, b_fc.raw_data(), pre.raw_data());
               }));
      else
        unavailable("dense_gelu_keeping_input_epilogue");
      report("dense_bias_epilogue_then_gelu", dt, bytes, seconds_per_call(d, iters, [&] {
               cuda::gemm(fc, d.index, false, stream, Epilogue::Bias, b_fc.raw_data());
               (void)gelu(out);
             }));
      if (cuda::gemm_gelu_grad(proj_grad, d.index, false, stream, pre.raw_data()))
        report("dense_input_grad_dgelu_epilogue", dt, bytes, seconds_per_call(d, iters, [&] {
                 cuda::gemm_gelu_grad(proj_grad, d.index, false, stream, pre.raw_data());
               }));
      else
        unavailable("dense_input_grad_dgelu_epilogue");
      report("dense_input_grad_then_gelu_derivative", dt, bytes, seconds_per_call(d, iters, [&] {
               cuda::gemm(proj_grad, d.index, false, stream);
               (void)unary_backward(UnaryOp::Gelu, pre, out);
             }));
    }
#endif
#if LOOM_CUDA
    if (d.is_cuda()) {
      // Softmax cross-entropy over GPT-2's logits (16,384 x 50,257 bf16, float32 loss): the
      // forward then the backward as separate passes (the logits read twice), against the
      // forward that also writes the gradient for mean(loss)'s upstream gradient and a backward
      // that finds nothing to rewrite, with the blocks capped at several counts (0: a block a
      // row). Bytes counted are the minimum, the logits read once and the gradient written once.
      const DType dt = DType::BF16;
      const int64_t rows = 16384, classes = 50257;
      const cuda::Stream stream = cuda::current_stream(d.index);
      Tensor logits = zeros({rows, classes}, dt, d), dx = Tensor::empty({rows, classes}, dt, d);
      Tensor labels = zeros({rows}, DType::I32, d);
      Tensor loss = Tensor::empty({rows}, DType::F32, d), lse = Tensor::empty({rows}, DType::F32, d);
      const float assumed = 1.0f / float(rows);
      Tensor upstream = full({rows}, double(assumed), DType::F32, d);
      const double bytes = 2.0 * double(rows * classes) * double(dtype_size(dt));
      auto backward = [&](std::optional<double> written) {
        cuda::cross_entropy_int_backward(logits.raw_data(), dt, labels.raw_data(), DType::I32,
                                         lse.raw_data(), upstream.raw_data(), DType::F32,
                                         dx.raw_data(), rows, classes, classes, stream, written);
      };
      report("cross_entropy_forward_then_backward", dt, bytes, seconds_per_call(d, iters, [&] {
               cuda::cross_entropy_int(logits.raw_data(), dt, labels.raw_data(), DType::I32,
                                       loss.raw_data(), DType::F32, lse.raw_data(), rows, classes,
                                       classes, stream);
               backward(std::nullopt);
             }));
      for (unsigned cap : {0u, 132u, 264u, 528u, 1056u})
        report("cross_entropy_forward_writing_gradient_blocks_" + std::to_string(cap), dt, bytes,
               seconds_per_call(d, iters, [&] {
                 cuda::cross_entropy_int(logits.raw_data(), dt, labels.raw_data(), DType::I32,
                                         loss.raw_data(), DType::F32, lse.raw_data(), rows,
                                         classes, classes, stream, dx.raw_data(), assumed, cap);
                 backward(double(assumed));
               }));
    }
#endif
    // Fused AdamW over one float32 leaf: reads param, grad, mu, nu; writes param, mu, nu.
    {
      Tree params;
      params.insert("w", ones({rows, features}, DType::F32, d));
      Tree grads;
      grads.insert("w", ones({rows, features}, DType::F32, d));
      train::TrainState state = train::TrainState::create(params, optim::adamw(1e-3));
      report("adamw_update", DType::F32, 7.0 * double(rows * features) * 4,
             seconds_per_call(d, iters, [&] { state = state.apply_gradients(grads); }));
    }
    double worst = 1;
    for (const auto& j : lines)
      if (j.contains("fraction_of_copy")) worst = std::min(worst, j["fraction_of_copy"].get<double>());
    std::cout << nlohmann::json{{"summary", "kernel_bandwidth"}, {"copy_GB/s", copy_gbs},
                                {"worst_fraction_of_copy", worst}}.dump()
              << std::endl;
  } catch (const std::exception& e) {
    std::cout << nlohmann::json{{"error", e.what()}}.dump() << std::endl;
    return 1;
  }
  return 0;
}

// loom_fusion_probe: can cuDNN's runtime fusion engines run ResNet-50's convolution + BatchNorm
// patterns on this GPU, in bfloat16 and float16, and what do they cost next to the plain
// convolutions and loom's own BatchNorm passes over the same tensors?
//
// The ResNet-50 goal of issue 9 (step time <= 0.85x JAX's) needs BatchNorm's passes folded into
// the convolutions: the statistics of a convolution's output computed in its epilogue
// (genstats), the previous norm's scale, bias and ReLU applied in its prologue as it loads its
// input, and the backward's ReLU mask and BatchNorm sums in the input gradient's epilogue. This
// program answers, in one short GPU call, whether those graphs build here and what each saves,
// before any of it is wired into loom's ops. Per layer and dtype it times:
//   fprop:  conv | conv + genstats | scale-bias-relu + conv + genstats
//   wgrad:  wgrad | scale-bias-relu + wgrad
//   dgrad:  dgrad | dgrad + relu backward + dbn_weight (the BatchNorm backward sums)
//   loom:   statistics of y, apply + relu of x, backward sums and input gradient of x
// A fused graph replaces its plain graph plus the loom passes it folds in; one JSON line per
// layer and dtype (times in ms, or the build error), then a summary line per dtype.
//
//   loom_fusion_probe [--batch 256] [--iters 20] [--dtypes bf16,f16]
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cudnn_frontend.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/batch_norm.h"

namespace {

namespace fe = cudnn_frontend;
using TensorPtr = std::shared_ptr<fe::graph::Tensor_attributes>;

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "loom_fusion_probe: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// One convolution of ResNet-50 (NHWC, SAME padding): c input channels, k filters, r x r kernel
// over hw x hw inputs.
struct Layer {
  const char* name;
  int64_t c, k, hw, r, stride;
  int64_t out_hw() const { return (hw + 2 * (r / 2) - r) / stride + 1; }
};

// Five of its 53 convolutions, one of each kind of stage and kernel (runtime-compiled graphs take
// seconds each to build, and the probe has to fit a short GPU call).
const Layer kLayers[] = {
    {"s1.conv2 3x3 64->64 56", 64, 64, 56, 3, 1},
    {"s1.conv3 1x1 64->256 56", 64, 256, 56, 1, 1},
    {"s2.conv2 3x3 128->128 28", 128, 128, 28, 3, 1},
    {"s3.conv1 1x1 1024->256 14", 1024, 256, 14, 1, 1},
    {"s4.conv2 3x3 512->512 7", 512, 512, 7, 3, 1},
};

int64_t elem_size(fe::DataType_t t) { return t == fe::DataType_t::FLOAT ? 4 : 2; }

// Device buffers for a graph's tensors, filled with a small positive constant (the bytes 0x3C3C:
// about 1.05 in float16, 0.0115 in bfloat16 and float32), so every ReLU passes its input.
struct Buffers {
  std::vector<void*> owned;
  ~Buffers() {
    for (void* p : owned) cudaFree(p);
  }
  void* make(int64_t bytes) {
    void* p = nullptr;
    check_cuda(cudaMalloc(&p, size_t(bytes)), "cudaMalloc");
    check_cuda(cudaMemset(p, 0x3C, size_t(bytes)), "cudaMemset");
    owned.push_back(p);
    return p;
  }
};

struct Probe {
  cudnnHandle_t handle;
  cudaStream_t stream;
  int iters;

  // Milliseconds per call: the median of three rounds of `iters` calls after one warm-up call.
  double time(const std::function<void()>& f) const {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    f();
    std::vector<float> rounds;
    for (int r = 0; r < 3; ++r) {
      cudaEventRecord(a, stream);
      for (int i = 0; i < iters; ++i) f();
      cudaEventRecord(b, stream);
      check_cuda(cudaEventSynchronize(b), "timing");
      float ms = 0;
      cudaEventElapsedTime(&ms, a, b);
      rounds.push_back(ms / float(iters));
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(rounds.begin(), rounds.end());
    return rounds[1];
  }

  // Builds `g` (heuristics mode A, then the fallback list) and times it, or returns the error.
  std::string run_graph(fe::graph::Graph& g, const std::vector<std::pair<TensorPtr, int64_t>>& io,
                        double* ms) const {
    fe::error_t st = g.build(handle, {fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK});
    if (!st.is_good()) return st.get_message().empty() ? "build failed" : st.get_message();
    int64_t ws_bytes = 0;
    st = g.get_workspace_size(ws_bytes);
    if (!st.is_good()) return st.get_message();
    Buffers buffers;
    void* ws = ws_bytes > 0 ? buffers.make(ws_bytes) : nullptr;
    std::unordered_map<TensorPtr, void*> pack;
    for (const auto& [t, bytes] : io) pack[t] = buffers.make(bytes);
    std::string error;
    *ms = time([&] {
      fe::error_t e = g.execute(handle, pack, ws);
      if (!e.is_good() && error.empty()) error = e.get_message().empty() ? "execute failed" : e.get_message();
    });
    return error;
  }
};

// The previous norm applied as a prologue (scale-bias-relu), with float32 scale and bias (loom's
// norm parameters) or in the io type; or none.
enum class Prologue { None, F32Params, IoParams };

struct GraphBuilder {
  fe::graph::Graph g;
  std::vector<std::pair<TensorPtr, int64_t>> io;  // non-virtual tensors and their bytes

  explicit GraphBuilder(fe::DataType_t io_type) {
    g.set_io_data_type(io_type)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
  }
  static std::vector<int64_t> nhwc_strides(int64_t c, int64_t h, int64_t w) {
    return {c * h * w, 1, w * c, c};
  }
  // An NHWC activation (dims in cuDNN's N, C, H, W order), a KRSC filter or a per-channel vector.
  TensorPtr input(const char* name, std::vector<int64_t> dim, fe::DataType_t t) {
    auto a = fe::graph::Tensor_attributes().set_name(name).set_dim(dim).set_data_type(t).set_stride(
        nhwc_strides(dim[1], dim[2], dim[3]));
    TensorPtr p = g.tensor(a);
    io.emplace_back(p, dim[0] * dim[1] * dim[2] * dim[3] * elem_size(t));
    return p;
  }
  void output(const TensorPtr& p, std::vector<int64_t> dim, fe::DataType_t t) {
    p->set_output(true).set_dim(dim).set_data_type(t).set_stride(nhwc_strides(dim[1], dim[2], dim[3]));
    io.emplace_back(p, dim[0] * dim[1] * dim[2] * dim[3] * elem_size(t));
  }
  // relu(x * scale + bias), per channel: the previous BatchNorm applied as a prologue.
  TensorPtr scale_bias_relu(const TensorPtr& x, int64_t c, fe::DataType_t t) {  // t: scale, bias
    using fe::graph::Pointwise_attributes;
    auto s = input("scale", {1, c, 1, 1}, t), b = input("bias", {1, c, 1, 1}, t);
    auto xs = g.pointwise(x, s, Pointwise_attributes().set_mode(fe::PointwiseMode_t::MUL));
    auto xb = g.pointwise(xs, b, Pointwise_attributes().set_mode(fe::PointwiseMode_t::ADD));
    return g.pointwise(xb, Pointwise_attributes().set_mode(fe::PointwiseMode_t::RELU_FWD));
  }
  TensorPtr prologue(const TensorPtr& x, int64_t c, Prologue p, fe::DataType_t io_type) {
    if (p == Prologue::None) return x;
    return scale_bias_relu(x, c, p == Prologue::F32Params ? fe::DataType_t::FLOAT : io_type);
  }
  void genstats(const TensorPtr& y, int64_t k) {
    auto [sum, sq_sum] = g.genstats(y, fe::graph::Genstats_attributes());
    output(sum, {1, k, 1, 1}, fe::DataType_t::FLOAT);
    output(sq_sum, {1, k, 1, 1}, fe::DataType_t::FLOAT);
  }
};

struct Shape {
  int64_t n, c, k, h, r, ho, pad, stride;
};

template <typename Attributes>
Attributes conv_attributes(const Shape& s) {
  return Attributes().set_padding({s.pad, s.pad}).set_stride({s.stride, s.stride}).set_dilation({1, 1});
}

// fprop with an optional scale-bias-relu prologue and an optional genstats epilogue.
std::string fprop(const Probe& p, const Shape& s, fe::DataType_t t, Prologue prologue, bool stats,
                  double* ms) {
  GraphBuilder b(t);
  TensorPtr x = b.input("x", {s.n, s.c, s.h, s.h}, t);
  TensorPtr w = b.input("w", {s.k, s.c, s.r, s.r}, t);
  TensorPtr y = b.g.conv_fprop(b.prologue(x, s.c, prologue, t), w,
                               conv_attributes<fe::graph::Conv_fprop_attributes>(s));
  b.output(y, {s.n, s.k, s.ho, s.ho}, t);
  if (stats) b.genstats(y, s.k);
  return p.run_graph(b.g, b.io, ms);
}

std::string wgrad(const Probe& p, const Shape& s, fe::DataType_t t, Prologue prologue, double* ms) {
  GraphBuilder b(t);
  TensorPtr x = b.input("x", {s.n, s.c, s.h, s.h}, t);
  TensorPtr dy = b.input("dy", {s.n, s.k, s.ho, s.ho}, t);
  TensorPtr dw = b.g.conv_wgrad(dy, b.prologue(x, s.c, prologue, t),
                                conv_attributes<fe::graph::Conv_wgrad_attributes>(s));
  b.output(dw, {s.k, s.c, s.r, s.r}, t);  // in the io type, as loom's convolution computes it
  return p.run_graph(b.g, b.io, ms);
}

// dgrad, then (fused) the ReLU's backward against the recomputed norm output x * scale + bias and
// the BatchNorm backward's per-channel sums (dbn_weight) over the masked gradient.
std::string dgrad(const Probe& p, const Shape& s, fe::DataType_t t, bool fused, double* ms) {
  using fe::graph::Pointwise_attributes;
  GraphBuilder b(t);
  TensorPtr dy = b.input("dy", {s.n, s.k, s.ho, s.ho}, t);
  TensorPtr w = b.input("w", {s.k, s.c, s.r, s.r}, t);
  TensorPtr dx = b.g.conv_dgrad(dy, w, conv_attributes<fe::graph::Conv_dgrad_attributes>(s));
  // cuDNN cannot infer a dgrad output's shape (strides, padding and dilation leave it open).
  dx->set_dim({s.n, s.c, s.h, s.h}).set_stride(GraphBuilder::nhwc_strides(s.c, s.h, s.h));
  if (!fused) {
    b.output(dx, {s.n, s.c, s.h, s.h}, t);
    return p.run_graph(b.g, b.io, ms);
  }
  const fe::DataType_t f32 = fe::DataType_t::FLOAT;
  TensorPtr x = b.input("x", {s.n, s.c, s.h, s.h}, t);  // the norm's input
  TensorPtr scale = b.input("scale", {1, s.c, 1, 1}, f32), bias = b.input("bias", {1, s.c, 1, 1}, f32);
  TensorPtr mean = b.input("mean", {1, s.c, 1, 1}, f32), inv_var = b.input("inv_var", {1, s.c, 1, 1}, f32);
  TensorPtr gamma = b.input("gamma", {1, s.c, 1, 1}, f32);
  auto xs = b.g.pointwise(x, scale, Pointwise_attributes().set_mode(fe::PointwiseMode_t::MUL));
  auto norm_out = b.g.pointwise(xs, bias, Pointwise_attributes().set_mode(fe::PointwiseMode_t::ADD));
  auto masked = b.g.pointwise(dx, norm_out, Pointwise_attributes().set_mode(fe::PointwiseMode_t::RELU_BWD));
  b.output(masked, {s.n, s.c, s.h, s.h}, t);
  auto [dscale, dbias, eq_scale_dy, eq_scale_x, eq_bias] =
      b.g.dbn_weight(masked, x, mean, inv_var, gamma, fe::graph::DBN_weight_attributes());
  for (const TensorPtr& o : {dscale, dbias, eq_scale_dy, eq_scale_x, eq_bias}) b.output(o, {1, s.c, 1, 1}, f32);
  return p.run_graph(b.g, b.io, ms);
}

// loom's BatchNorm passes over [m, c] (the fused graphs fold them in).
struct LoomPasses {
  double stats, apply_relu, backward_sums, backward_dx;
};
LoomPasses loom_passes(const Probe& p, int64_t m, int64_t c, loom::DType dtype) {
  Buffers b;
  const int64_t es = 2, acc = 4;
  void* x = b.make(m * c * es);
  void* g = b.make(m * c * es);
  void* y = b.make(m * c * es);
  void* dx = b.make(m * c * es);
  void* mean = b.make(c * acc);
  void* var = b.make(c * acc);
  void* scale = b.make(c * acc);
  void* bias = b.make(c * acc);
  void* sum_g = b.make(c * acc);
  void* sum_gx = b.make(c * acc);
  void* ws = b.make(loom::cuda::channel_workspace_size(m, c) * acc);
  namespace lc = loom::cuda;
  LoomPasses r{};
  r.stats = p.time([&] { lc::channel_stats(x, dtype, m, c, mean, var, ws, p.stream); });
  r.apply_relu = p.time([&] {
    lc::channel_normalize(x, dtype, y, dtype, mean, var, scale, bias, nullptr, true, m, c, 1e-5, p.stream);
  });
  r.backward_sums = p.time([&] {
    lc::channel_backward_sums(x, dtype, g, dtype, mean, var, y, m, c, sum_g, sum_gx, nullptr, ws, p.stream);
  });
  r.backward_dx = p.time([&] {
    lc::channel_backward_dx(x, dtype, g, dtype, mean, var, scale, y, sum_g, sum_gx, dx, m, c, p.stream);
  });
  return r;
}

void field(std::string& out, const char* key, const std::string& error, double ms) {
  char buf[64];
  if (error.empty()) std::snprintf(buf, sizeof buf, "%.4f", ms);
  std::string v = error.empty() ? std::string(buf) : "\"";
  if (!error.empty()) {  // cuDNN's messages hold quotes (JSON of engine configs) and line breaks
    for (char ch : error.substr(0, 240)) {
      if (ch == '"' || ch == '\\') v += '\\';
      v += static_cast<unsigned char>(ch) < 0x20 ? ' ' : ch;
    }
    v += '"';
  }
  out += ",\"" + std::string(key) + "\":" + v;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 256;
  int iters = 20;
  std::string dtypes = "bf16,f16";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--batch") batch = std::stoll(v);
    else if (k == "--iters") iters = std::stoi(v);
    else if (k == "--dtypes") dtypes = v;
    else {
      std::fprintf(stderr, "usage: loom_fusion_probe [--batch N] [--iters N] [--dtypes bf16,f16]\n");
      return 2;
    }
  }
  Probe p{};
  p.iters = iters;
  check_cuda(cudaStreamCreate(&p.stream), "cudaStreamCreate");
  if (cudnnCreate(&p.handle) != CUDNN_STATUS_SUCCESS || cudnnSetStream(p.handle, p.stream) != CUDNN_STATUS_SUCCESS) {
    std::fprintf(stderr, "loom_fusion_probe: cuDNN handle failed\n");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("{\"device\":\"%s\",\"cudnn\":%zu,\"batch\":%lld}\n", prop.name, cudnnGetVersion(),
              static_cast<long long>(batch));
  const std::pair<const char*, fe::DataType_t> types[] = {{"bf16", fe::DataType_t::BFLOAT16},
                                                          {"f16", fe::DataType_t::HALF}};
  for (const auto& [type_name, t] : types) {
    if (("," + dtypes + ",").find(std::string(",") + type_name + ",") == std::string::npos) continue;
    const loom::DType dtype = t == fe::DataType_t::HALF ? loom::DType::F16 : loom::DType::BF16;
    std::map<std::string, double> total;
    for (const Layer& l : kLayers) {
      const Shape s{batch, l.c, l.k, l.hw, l.r, l.out_hw(), l.r / 2, l.stride};
      std::string line = std::string("{\"layer\":\"") + l.name + "\",\"dtype\":\"" + type_name + "\"";
      auto record = [&](const char* key, const std::string& error, double ms) {
        field(line, key, error, ms);
        if (error.empty()) total[key] += ms;
      };
      // A prologue graph with float32 parameters, else (if that does not build) io-type ones.
      auto with_prologue = [&](const char* key, auto&& graph) {
        double ms = 0;
        std::string e = graph(Prologue::F32Params, &ms);
        if (!e.empty() && graph(Prologue::IoParams, &ms).empty()) {
          e.clear();
          line += std::string(",\"") + key + "_params\":\"" + type_name + "\"";
        }
        record(key, e, ms);
      };
      double ms = 0;
      std::string e;
      e = fprop(p, s, t, Prologue::None, false, &ms), record("conv", e, ms);
      e = fprop(p, s, t, Prologue::None, true, &ms), record("conv_genstats", e, ms);
      with_prologue("sbr_conv_genstats", [&](Prologue pr, double* out) { return fprop(p, s, t, pr, true, out); });
      e = wgrad(p, s, t, Prologue::None, &ms), record("wgrad", e, ms);
      with_prologue("sbr_wgrad", [&](Prologue pr, double* out) { return wgrad(p, s, t, pr, out); });
      e = dgrad(p, s, t, false, &ms), record("dgrad", e, ms);
      e = dgrad(p, s, t, true, &ms), record("dgrad_drelu_dbn", e, ms);
      const LoomPasses in = loom_passes(p, s.n * s.h * s.h, s.c, dtype);
      const LoomPasses out = loom_passes(p, s.n * s.ho * s.ho, s.k, dtype);
      record("loom_stats_y", "", out.stats);
      record("loom_apply_relu_x", "", in.apply_relu);
      record("loom_backward_sums_x", "", in.backward_sums);
      record("loom_backward_dx_x", "", in.backward_dx);
      std::printf("%s}\n", line.c_str());
      std::fflush(stdout);
    }
    // Each key's total over the layers where its graph built.
    std::string summary = std::string("{\"summary\":\"") + type_name + "\"";
    for (const auto& [key, ms] : total) field(summary, key.c_str(), "", ms);
    std::printf("%s}\n", summary.c_str());
  }
  return 0;
}

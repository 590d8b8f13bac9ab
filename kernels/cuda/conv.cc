#include "kernels/cuda/conv.h"

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <climits>
#include <iostream>
#include <map>
#include <mutex>
#include <vector>

#include "core/autotune.h"
#include "core/determinism.h"
#include "core/error.h"
#include "core/precision.h"
#include "kernels/cuda/cudnn_support.h"

namespace loom::cuda {
namespace {

// Workspaces above this are skipped in favour of the next algorithm the heuristics rank.
constexpr size_t kMaxWorkspace = size_t(1) << 30;

int to_int(int64_t v) {
  LOOM_CHECK(v >= 0 && v <= INT_MAX, ShapeError, "conv: size ", v,
             " exceeds what cuDNN's legacy API can describe (int)");
  return int(v);
}

cudnnDataType_t data_type(DType t) {
  switch (t) {
    case DType::F32:
      return CUDNN_DATA_FLOAT;
    case DType::F64:
      return CUDNN_DATA_DOUBLE;
    case DType::BF16:
      return CUDNN_DATA_BFLOAT16;
    case DType::F16:
      return CUDNN_DATA_HALF;
    default:
      LOOM_THROW(DTypeError, "conv: no cuDNN convolution for dtype ", dtype_name(t));
  }
}

// float32 stays exact unless TF32 is allowed (CUDNN_DEFAULT_MATH permits TF32 on Ampere+);
// half types use tensor cores with float32 accumulation.
cudnnMathType_t math_type(DType t) {
  switch (t) {
    case DType::F32:
      return allow_tf32() ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
    case DType::F64:
      return CUDNN_DEFAULT_MATH;
    default:
      return CUDNN_TENSOR_OP_MATH;
  }
}

/// Device scratch from the caching allocator, returned (stream-ordered) when it goes out of scope.
struct Descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  Descriptors() = default;
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;
  ~Descriptors() {  // destroy statuses are ignored: nothing useful to do on failure
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

void set_nhwc(cudnnTensorDescriptor_t d, cudnnDataType_t dt, int64_t n, int64_t c,
              const Shape& spatial) {
  // dims in cuDNN's N, C, spatial order; strides of the NHWC layout
  int nd = int(spatial.size()) + 2;
  std::vector<int> dims(static_cast<size_t>(nd)), strides(static_cast<size_t>(nd));
  int64_t stride = c;
  for (int i = nd - 1; i >= 2; --i) {
    dims[size_t(i)] = to_int(spatial[size_t(i - 2)]);
    strides[size_t(i)] = to_int(stride);
    stride *= spatial[size_t(i - 2)];
  }
  dims[0] = to_int(n);
  strides[0] = to_int(stride);
  dims[1] = to_int(c);
  strides[1] = 1;
  LOOM_CUDNN_CHECK(cudnnSetTensorNdDescriptor(d, dt, nd, dims.data(), strides.data()));
}

void make_descriptors(Descriptors& d, const ConvGeometry& g, DType dtype) {
  LOOM_INTERNAL_ASSERT(g.rank() >= 1 && g.rank() <= 3);
  Shape in = g.in_spatial, k = g.kernel_spatial, out = g.out_spatial;
  Shape pad = g.pad_lo, stride = g.strides, dil = g.rhs_dilation;
  for (int64_t i = 0; i < g.rank(); ++i)
    LOOM_INTERNAL_ASSERT(g.lhs_dilation[size_t(i)] == 1 &&
                         g.pad_lo[size_t(i)] == g.pad_hi[size_t(i)] && g.pad_lo[size_t(i)] >= 0);
  if (g.rank() == 1) {  // cuDNN needs two spatial dims: add a leading one of size 1
    for (Shape* s : {&in, &k, &out, &stride, &dil}) s->insert(s->begin(), 1);
    pad.insert(pad.begin(), 0);
  }
  cudnnDataType_t dt = data_type(dtype);
  LOOM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d.x));
  LOOM_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d.y));
  LOOM_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d.w));
  LOOM_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d.conv));
  set_nhwc(d.x, dt, g.batch, g.in_channels, in);
  set_nhwc(d.y, dt, g.batch, g.out_channels, out);
  int nd = int(in.size()) + 2;
  std::vector<int> wdims{to_int(g.out_channels), to_int(g.in_channels / g.groups)};
  for (int64_t v : k) wdims.push_back(to_int(v));
  LOOM_CUDNN_CHECK(cudnnSetFilterNdDescriptor(d.w, dt, CUDNN_TENSOR_NHWC, nd, wdims.data()));
  std::vector<int> p, s, dl;
  for (size_t i = 0; i < in.size(); ++i) {
    p.push_back(to_int(pad[i]));
    s.push_back(to_int(stride[i]));
    dl.push_back(to_int(dil[i]));
  }
  cudnnDataType_t compute = dtype == DType::F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  LOOM_CUDNN_CHECK(cudnnSetConvolutionNdDescriptor(d.conv, int(in.size()), p.data(), s.data(),
                                                   dl.data(), CUDNN_CROSS_CORRELATION, compute));
  LOOM_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d.conv, to_int(g.groups)));
  LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, math_type(dtype)));
  // loom and cuDNN must agree on the output size, or the descriptors describe the wrong memory
  std::vector<int> ydims(static_cast<size_t>(nd));
  LOOM_CUDNN_CHECK(cudnnGetConvolutionNdForwardOutputDim(d.conv, d.x, d.w, nd, ydims.data()));
  for (int i = 2; i < nd; ++i) LOOM_INTERNAL_ASSERT(ydims[size_t(i)] == out[size_t(i - 2)]);
}

enum class Pass { Forward, BackwardData, BackwardFilter };

struct Choice {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

std::string describe(const ConvGeometry& g, DType dtype) {
  return detail::cat("input ", shape_str(g.x_shape()), ", kernel ", shape_str(g.kernel_shape()),
                     ", strides ", shape_str(g.strides), ", padding ", shape_str(g.pad_lo),
                     ", kernel_dilation ", shape_str(g.rhs_dilation), ", groups ", g.groups,
                     ", dtype ", dtype_name(dtype));
}

// The first algorithm cuDNN's heuristics rank that is supported, fits kMaxWorkspace and (when
// float32 must stay exact) runs in the requested math mode; else the first supported one, run
// in the requested mode anyway. In deterministic mode only CUDNN_DETERMINISTIC algorithms count.
template <typename Perf>
Choice pick(const std::vector<Perf>& perf, int n, cudnnMathType_t wanted, const ConvGeometry& g,
            DType dtype, const char* pass) {
  const bool only_deterministic = deterministic();
  for (int strict = 1; strict >= 0; --strict)
    for (int i = 0; i < n; ++i) {
      const Perf& p = perf[size_t(i)];
      if (p.status != CUDNN_STATUS_SUCCESS || p.memory > kMaxWorkspace) continue;
      if (only_deterministic && p.determinism != CUDNN_DETERMINISTIC) continue;
      if (strict && p.mathType != wanted) continue;
      Choice c;
      c.algo = int(p.algo);
      c.math = wanted == CUDNN_FMA_MATH ? wanted : p.mathType;
      return c;
    }
  LOOM_CHECK(!only_deterministic, NotImplementedError, "conv: cuDNN has no deterministic ", pass,
             " algorithm for ", describe(g, dtype),
             "; deterministic mode is on: run this conv on the CPU or call set_deterministic(false)");
  LOOM_THROW(NotImplementedError, "conv: cuDNN has no ", pass, " algorithm for ",
             describe(g, dtype));
}

// A pass's operands, for timing the algorithms on them (autotuning): the two inputs and the
// output in the order of the pass's cuDNN call. An output that is also an input (an input
// gradient added into an earlier one) is not written: the timing writes a scratch copy.
struct PassOperands {
  const void* a;
  const void* b;
  void* out;
  size_t out_bytes;
  bool out_is_input;
};

/// The largest power of two up to 16 that divides every operand's address.
int64_t operands_alignment(const PassOperands& ops) {
  uintptr_t bits = 16;
  for (const void* p : {ops.a, ops.b, static_cast<const void*>(ops.out)})
    bits |= reinterpret_cast<uintptr_t>(p);
  return int64_t(bits & (~bits + 1));
}

// The workspace the candidates need, at most kMaxWorkspace: what the timing runs may use.
template <typename Perf>
size_t candidates_workspace(const std::vector<Perf>& perf, int n) {
  size_t most = 0;
  for (int i = 0; i < n; ++i) {
    const Perf& p = perf[size_t(i)];
    if (p.status == CUDNN_STATUS_SUCCESS && p.memory <= kMaxWorkspace) most = std::max(most, p.memory);
  }
  return most;
}

// Replaces the heuristics' ranking in `perf` with cuDNN's timings of the candidates on the
// operands (fastest first); keeps the heuristics' when timing fails (a warning says why). Not
// for a graph capture, where waiting for the device is not allowed. `find` is the pass's
// cudnnFind*AlgorithmEx with the buffers bound: find(output, workspace, workspace_bytes, count,
// &n, perf).
template <typename Perf, typename Find>
void time_candidates(std::vector<Perf>& perf, int& n, const PassOperands& ops, int device,
                     const ConvGeometry& g, DType dtype, const char* pass, Find&& find) {
  note_conv_timing();
  try {
    CudnnWorkspace ws(candidates_workspace(perf, n), device);
    CudnnWorkspace scratch(ops.out_is_input ? ops.out_bytes : 0, device);
    note_host_wait("conv autotuning (cudnnFind*AlgorithmEx)");
    std::vector<Perf> timed(perf.size());
    int found = 0;
    LOOM_CUDNN_CHECK(find(ops.out_is_input ? scratch.ptr : ops.out, ws.ptr, ws.bytes,
                          int(timed.size()), &found, timed.data()));
    // Timings with no algorithm pick() could take (none ran, or none within the workspace
    // limit) keep the heuristics' list, which had one.
    LOOM_CHECK(std::any_of(timed.begin(), timed.begin() + std::clamp(found, 0, int(timed.size())),
                           [](const Perf& p) {
                             return p.status == CUDNN_STATUS_SUCCESS && p.memory <= kMaxWorkspace;
                           }),
               CudaError, "cuDNN timed no usable algorithm (", found, " results)");
    perf = std::move(timed);
    n = found;
  } catch (const std::exception& e) {
    std::cerr << "loom: conv autotuning of the " << pass << " pass failed for "
              << describe(g, dtype) << " (" << e.what() << "); using cuDNN's heuristics\n";
  }
}

Choice choose(Pass pass, cudnnHandle_t h, Descriptors& d, const ConvGeometry& g, DType dtype,
              int device, Stream stream, const PassOperands& ops) {
  static std::mutex mu;
  static std::map<std::vector<int64_t>, Choice> cache;
  cudnnMathType_t wanted = math_type(dtype);
  // Not in deterministic mode: timings could pick a different deterministic algorithm from run
  // to run, which rounds differently (the products skip timing there too).
  const bool autotune = conv_autotune() && !deterministic();
  std::vector<int64_t> key{int64_t(pass), device,         int64_t(dtype), int64_t(wanted), g.batch,
                           g.in_channels, g.out_channels, g.groups,       g.rank(),
                           int64_t(deterministic()),  // the choice depends on the mode
                           int64_t(autotune),
                           // a timed choice was made on these pointers: a batch slice's view
                           // may be less aligned than the buffers it was timed on
                           autotune ? operands_alignment(ops) : 0};
  for (const Shape* s : {&g.in_spatial, &g.kernel_spatial, &g.strides, &g.pad_lo, &g.rhs_dilation})
    key.insert(key.end(), s->begin(), s->end());
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  // Inside a graph capture nothing is timed, and the heuristics' choice is for this call only:
  // the shape is timed at its next call outside one, as the products are.
  const bool capturing = autotune && stream_may_be_capturing(stream);
  const bool timed = autotune && !capturing;
  Choice c;
  int max_count = 0, n = 0;
  switch (pass) {
    case Pass::Forward: {
      LOOM_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
      LOOM_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.x, d.w, d.conv, d.y, max_count,
                                                              &n, perf.data()));
      if (timed)
        time_candidates(perf, n, ops, device, g, dtype, "forward",
                        [&](void* y, void* ws, size_t bytes, int count, int* found, auto* out) {
                          return cudnnFindConvolutionForwardAlgorithmEx(
                              h, d.x, ops.a, d.w, ops.b, d.conv, d.y, y, count, found, out, ws, bytes);
                        });
      c = pick(perf, n, wanted, g, dtype, "forward");
      LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
      LOOM_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(
          h, d.x, d.w, d.conv, d.y, cudnnConvolutionFwdAlgo_t(c.algo), &c.workspace));
      break;
    }
    case Pass::BackwardData: {
      LOOM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
      LOOM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.w, d.y, d.conv, d.x,
                                                                   max_count, &n, perf.data()));
      if (timed)
        time_candidates(perf, n, ops, device, g, dtype, "backward-data",
                        [&](void* dx, void* ws, size_t bytes, int count, int* found, auto* out) {
                          return cudnnFindConvolutionBackwardDataAlgorithmEx(
                              h, d.w, ops.a, d.y, ops.b, d.conv, d.x, dx, count, found, out, ws, bytes);
                        });
      c = pick(perf, n, wanted, g, dtype, "backward-data");
      LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
      LOOM_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
          h, d.w, d.y, d.conv, d.x, cudnnConvolutionBwdDataAlgo_t(c.algo), &c.workspace));
      break;
    }
    case Pass::BackwardFilter: {
      LOOM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_count));
      std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(size_t(std::max(max_count, 1)));
      LOOM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.x, d.y, d.conv, d.w,
                                                                     max_count, &n, perf.data()));
      if (timed)
        time_candidates(perf, n, ops, device, g, dtype, "backward-filter",
                        [&](void* dw, void* ws, size_t bytes, int count, int* found, auto* out) {
                          return cudnnFindConvolutionBackwardFilterAlgorithmEx(
                              h, d.x, ops.a, d.y, ops.b, d.conv, d.w, dw, count, found, out, ws, bytes);
                        });
      c = pick(perf, n, wanted, g, dtype, "backward-filter");
      LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
      LOOM_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
          h, d.x, d.y, d.conv, d.w, cudnnConvolutionBwdFilterAlgo_t(c.algo), &c.workspace));
      break;
    }
  }
  if (!capturing) {
    std::lock_guard<std::mutex> lock(mu);
    cache.emplace(key, c);
  }
  return c;
}

// cuDNN's alpha/beta are host scalars: double for float64 data, float for everything else.
struct Scalars {
  explicit Scalars(DType dtype) : f64(dtype == DType::F64) {}
  const void* one() const { return f64 ? static_cast<const void*>(&d1) : &f1; }
  const void* zero() const { return f64 ? static_cast<const void*>(&d0) : &f0; }
  bool f64;
  float f1 = 1, f0 = 0;
  double d1 = 1, d0 = 0;
};

}  // namespace

void conv_forward(const ConvGeometry& g, DType dtype, const void* x, const void* w_krsc, void* y,
                  int device, Stream stream) {
  ensure_cudnn_device(device);
  cudnnHandle_t h = cudnn_handle(device, stream);
  Descriptors d;
  make_descriptors(d, g, dtype);
  Choice c = choose(Pass::Forward, h, d, g, dtype, device, stream,
                    {x, w_krsc, y, 0, /*out_is_input=*/false});
  LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
  CudnnWorkspace ws(c.workspace, device);
  Scalars s(dtype);
  LOOM_CUDNN_CHECK(cudnnConvolutionForward(h, s.one(), d.x, x, d.w, w_krsc, d.conv,
                                           cudnnConvolutionFwdAlgo_t(c.algo), ws.ptr, ws.bytes,
                                           s.zero(), d.y, y));
}

void conv_backward_input(const ConvGeometry& g, DType dtype, const void* dy, const void* w_krsc,
                         void* dx, bool accumulate, int device, Stream stream) {
  ensure_cudnn_device(device);
  cudnnHandle_t h = cudnn_handle(device, stream);
  Descriptors d;
  make_descriptors(d, g, dtype);
  Choice c = choose(Pass::BackwardData, h, d, g, dtype, device, stream,
                    {w_krsc, dy, dx, size_t(shape_numel(g.x_shape())) * dtype_size(dtype), accumulate});
  LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
  CudnnWorkspace ws(c.workspace, device);
  Scalars s(dtype);
  LOOM_CUDNN_CHECK(cudnnConvolutionBackwardData(h, s.one(), d.w, w_krsc, d.y, dy, d.conv,
                                                cudnnConvolutionBwdDataAlgo_t(c.algo), ws.ptr,
                                                ws.bytes, accumulate ? s.one() : s.zero(), d.x,
                                                dx));
}

void conv_backward_kernel(const ConvGeometry& g, DType dtype, const void* x, const void* dy,
                          void* dw_krsc, int device, Stream stream) {
  ensure_cudnn_device(device);
  cudnnHandle_t h = cudnn_handle(device, stream);
  Descriptors d;
  make_descriptors(d, g, dtype);
  Choice c = choose(Pass::BackwardFilter, h, d, g, dtype, device, stream,
                    {x, dy, dw_krsc, 0, /*out_is_input=*/false});
  LOOM_CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, c.math));
  CudnnWorkspace ws(c.workspace, device);
  Scalars s(dtype);
  LOOM_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, s.one(), d.x, x, d.y, dy, d.conv,
                                                  cudnnConvolutionBwdFilterAlgo_t(c.algo), ws.ptr,
                                                  ws.bytes, s.zero(), d.w, dw_krsc));
}

}  // namespace loom::cuda

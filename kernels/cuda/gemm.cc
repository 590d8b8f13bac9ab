// cuBLASLt wrapper. cuBLASLt is column-major; loom is row-major. A row-major C = A @ B is the
// column-major C^T = B^T @ A^T, so every call swaps the operands and the m/n roles: the
// row-major buffers are passed unchanged and no data moves.
#include "kernels/cuda/gemm.h"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "core/autotune.h"
#include "core/determinism.h"
#include "core/error.h"
#include "kernels/cuda/caching_allocator.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

const char* cublas_status_string(int status) {
  return cublasLtGetStatusString(static_cast<cublasStatus_t>(status));
}

namespace {

const char* status_string(cublasStatus_t s) { return cublasLtGetStatusString(s); }
#define LOOM_CUBLASLT_CHECK(call) LOOM_CUDA_LIB_CHECK(call, "cuBLASLt", status_string)

// cuBLASLt's recommendation for Hopper is 32 MiB; one per device, as all of loom's work on a
// device is ordered on one stream.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;

// Everything the heuristic's choice depends on. Pointer alignments are part of it because an
// algorithm picked for 16-byte aligned operands must not run on less aligned ones; whether
// the choice was timed (core/autotune.h), and whether the product adds into C (what was timed).
using PlanKey = std::array<int64_t, 22>;

// How many of the heuristic's algorithms a timed choice runs.
constexpr int kAutotuneCandidates = 8;

struct DeviceContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  std::mutex mu;  // guards algos
  std::map<PlanKey, std::optional<cublasLtMatmulAlgo_t>> algos;  // nullopt: none exists
};

// Created on first use and deliberately never destroyed: tearing down cuBLASLt during static
// destruction races with the CUDA runtime's own shutdown.
DeviceContext& context(int device) {
  static std::mutex mu;
  static std::vector<DeviceContext*> contexts;
  std::lock_guard<std::mutex> lock(mu);
  if (contexts.size() <= size_t(device)) contexts.resize(size_t(device) + 1, nullptr);
  if (!contexts[size_t(device)]) {
    auto ctx = std::make_unique<DeviceContext>();
    LOOM_CUBLASLT_CHECK(cublasLtCreate(&ctx->handle));
    LOOM_CUDA_CHECK(cudaMalloc(&ctx->workspace, kWorkspaceBytes));
    contexts[size_t(device)] = ctx.release();
  }
  return *contexts[size_t(device)];
}

void ensure_device(int device) {
  int current = -1;
  LOOM_CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) LOOM_CUDA_CHECK(cudaSetDevice(device));
}

// RAII holders for the descriptor types (destroy statuses are ignored: nothing to do on failure).
struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  ~MatmulDesc() { if (d) cublasLtMatmulDescDestroy(d); }
};
struct Layout {
  cublasLtMatrixLayout_t d = nullptr;
  ~Layout() { if (d) cublasLtMatrixLayoutDestroy(d); }
};
struct Preference {
  cublasLtMatmulPreference_t d = nullptr;
  ~Preference() { if (d) cublasLtMatmulPreferenceDestroy(d); }
};

cudaDataType_t data_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F64: return CUDA_R_64F;
    case DType::BF16: return CUDA_R_16BF;
    case DType::F16: return CUDA_R_16F;
    default:
      LOOM_THROW(DTypeError, "matmul: no CUDA GEMM for dtype ", dtype_name(t),
                 " (float32, float64, bfloat16 and float16 are supported)");
  }
}

// Whether cuBLASLt reads (or, for the bias gradients, writes) the bias pointer under `e`.
bool uses_bias(cublasLtEpilogue_t e) {
  return e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_DGELU;
}

cublasLtEpilogue_t lt_epilogue(Epilogue e) {
  switch (e) {
    case Epilogue::None: return CUBLASLT_EPILOGUE_DEFAULT;
    case Epilogue::Bias: return CUBLASLT_EPILOGUE_BIAS;
    case Epilogue::BiasRelu: return CUBLASLT_EPILOGUE_RELU_BIAS;
    case Epilogue::BiasGelu: return CUBLASLT_EPILOGUE_GELU_BIAS;  // tanh form, as Flax's gelu
  }
  return CUBLASLT_EPILOGUE_DEFAULT;
}

// Largest power of two (<= 256) dividing every value: the alignment cuBLASLt may assume.
int64_t alignment_of(std::initializer_list<uint64_t> values) {
  uint64_t all = 256;
  for (uint64_t v : values) all |= v;
  return int64_t(all & (~all + 1));
}

// Batch dims after dropping size-1 dims and merging neighbours that are uniformly strided for
// A, B and C alike; the innermost survivor becomes cuBLASLt's strided batch.
struct BatchDims {
  Shape shape, a, b, c;
};
BatchDims collapse_batch(const GemmProblem& p) {
  BatchDims out;
  Shape c_strides(p.batch_shape.size());
  int64_t s = p.m * p.n;
  for (size_t d = p.batch_shape.size(); d-- > 0;) {
    c_strides[d] = s;
    s *= p.batch_shape[d];
  }
  for (size_t d = 0; d < p.batch_shape.size(); ++d) {
    int64_t n = p.batch_shape[d];
    if (n == 1) continue;
    int64_t sa = p.a.batch_strides[d], sb = p.b.batch_strides[d], sc = c_strides[d];
    if (!out.shape.empty() && out.a.back() == sa * n && out.b.back() == sb * n &&
        out.c.back() == sc * n) {
      out.shape.back() *= n;
      out.a.back() = sa;
      out.b.back() = sb;
      out.c.back() = sc;
    } else {
      out.shape.push_back(n);
      out.a.push_back(sa);
      out.b.push_back(sb);
      out.c.push_back(sc);
    }
  }
  return out;
}

void set_layout_batch(Layout& l, int32_t count, int64_t stride) {
  LOOM_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(l.d, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                       &count, sizeof(count)));
  LOOM_CUBLASLT_CHECK(cublasLtMatrixLayoutSetAttribute(
      l.d, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
}

// Device scratch from the caching allocator, given back when the product has been queued (the
// allocator's blocks are stream-ordered, so later work cannot overwrite it early).
class Scratch {
 public:
  explicit Scratch(int device) : allocator_(CachingAllocator::get(device)) {}
  ~Scratch() {
    for (void* p : blocks_) allocator_.free(p);
  }
  void* get(size_t nbytes) { return blocks_.emplace_back(allocator_.allocate(nbytes)); }

 private:
  CachingAllocator& allocator_;
  std::vector<void*> blocks_;
};

// The fastest of the heuristic's `candidates` for one product, each timed on the call's own
// operands (the median of three runs after a warm-up). D goes to `d_out` when the product does
// not read it (beta = 0, or an addend as C): the final launch rewrites it, and a scratch D for
// GPT-2's bf16 logits would add 820 MB at the warm-up's peak. With d_out null (C added into in
// place) D goes to scratch, so C keeps its values. The epilogue's other outputs (GELU's input,
// a bias gradient) are written by the timing runs too: the product reads neither, and the final
// launch rewrites both. nullopt inside a graph capture, where waiting for the
// device is not allowed (or when the stream cannot say whether it is capturing); the
// heuristic's first choice if the timing fails (kept for the process: a failure is reported
// once, not retried at every call). Runs under the device context's lock: all of loom's work
// on a device is on one stream, which the timing waits for anyway.
template <typename Launch>
std::optional<cublasLtMatmulAlgo_t> fastest(
    const std::vector<cublasLtMatmulHeuristicResult_t>& candidates, Launch&& launch,
    char* d_out, uint64_t d_bytes, int device, Stream stream) {
  if (stream_may_be_capturing(stream)) return std::nullopt;
  note_gemm_timing();
  struct Events {
    cudaEvent_t start = nullptr, stop = nullptr;
    ~Events() {
      if (start) cudaEventDestroy(start);
      if (stop) cudaEventDestroy(stop);
    }
  } ev;
  try {
    note_host_wait("GEMM autotuning");
    Scratch scratch(device);
    char* d = d_out ? d_out : static_cast<char*>(scratch.get(std::max<uint64_t>(d_bytes, 256)));
    LOOM_CUDA_CHECK(cudaEventCreate(&ev.start));
    LOOM_CUDA_CHECK(cudaEventCreate(&ev.stop));
    float best = std::numeric_limits<float>::infinity();
    size_t best_i = 0;
    for (size_t i = 0; i < candidates.size(); ++i) {
      const cublasLtMatmulAlgo_t& algo = candidates[i].algo;
      if (candidates[i].state != CUBLAS_STATUS_SUCCESS || launch(algo, d) != CUBLAS_STATUS_SUCCESS)
        continue;
      std::array<float, 3> ms{};
      for (float& t : ms) {
        LOOM_CUDA_CHECK(cudaEventRecord(ev.start, stream));
        LOOM_CUBLASLT_CHECK(launch(algo, d));
        LOOM_CUDA_CHECK(cudaEventRecord(ev.stop, stream));
        LOOM_CUDA_CHECK(cudaEventSynchronize(ev.stop));
        LOOM_CUDA_CHECK(cudaEventElapsedTime(&t, ev.start, ev.stop));
      }
      std::sort(ms.begin(), ms.end());
      if (ms[1] < best) best = ms[1], best_i = i;
    }
    return candidates[best_i].algo;
  } catch (const std::exception& e) {
    std::cerr << "loom: GEMM autotuning failed (" << e.what()
              << "); this product shape keeps cuBLASLt's heuristic choice\n";
    return candidates[0].algo;
  }
}

// One strategy for the whole problem: the innermost batch dim as cuBLASLt's strided batch when
// `lt_batch`, otherwise every batch dim looped on the host. False when cuBLASLt has no algorithm.
bool run(const GemmProblem& p, const BatchDims& bd, bool lt_batch, int device, bool allow_tf32,
         Stream stream, cublasLtEpilogue_t epilogue, const void* bias, void* gelu_input = nullptr) {
  const int64_t ldc = p.c_ld();
  const bool with_bias = uses_bias(epilogue);
  size_t esize = dtype_size(p.dtype);
  cudaDataType_t dt = data_type(p.dtype);
  bool f64 = p.dtype == DType::F64;
  cublasComputeType_t compute =
      f64 ? CUBLAS_COMPUTE_64F
          : (p.dtype == DType::F32 && allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F);
  cudaDataType_t scale_type = f64 ? CUDA_R_64F : CUDA_R_32F;

  bool batched = lt_batch && !bd.shape.empty();
  int64_t inner = batched ? bd.shape.back() : 1;
  LOOM_CHECK(inner <= INT32_MAX, ShapeError, "matmul: batch of ", inner,
             " matrices exceeds cuBLASLt's int32 batch count");
  int64_t inner_a = batched ? bd.a.back() : 0, inner_b = batched ? bd.b.back() : 0;
  int64_t inner_c = batched ? bd.c.back() : 0;
  size_t outer_dims = batched ? bd.shape.size() - 1 : bd.shape.size();

  // Column-major roles: Lt's A is our B, Lt's B is our A, Lt's D is C^T (n x m, ld n).
  cublasOperation_t op_a = p.b.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_b = p.a.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
  Layout la, lb, lc;
  LOOM_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&la.d, dt, uint64_t(p.b.trans ? p.k : p.n),
                                                 uint64_t(p.b.trans ? p.n : p.k), p.b.ld));
  LOOM_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&lb.d, dt, uint64_t(p.a.trans ? p.m : p.k),
                                                 uint64_t(p.a.trans ? p.k : p.m), p.a.ld));
  LOOM_CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&lc.d, dt, uint64_t(p.n), uint64_t(p.m), ldc));
  if (inner > 1) {
    set_layout_batch(la, int32_t(inner), inner_b);
    set_layout_batch(lb, int32_t(inner), inner_a);
    set_layout_batch(lc, int32_t(inner), inner_c);
  }

  MatmulDesc desc;
  LOOM_CUBLASLT_CHECK(cublasLtMatmulDescCreate(&desc.d, compute, scale_type));
  LOOM_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSA, &op_a,
                                                     sizeof(op_a)));
  LOOM_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_TRANSB, &op_b,
                                                     sizeof(op_b)));
  if (epilogue != CUBLASLT_EPILOGUE_DEFAULT)
    LOOM_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                       &epilogue, sizeof(epilogue)));
  if (with_bias) {
    LOOM_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                       &bias, sizeof(bias)));
    LOOM_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(
        desc.d, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &dt, sizeof(dt)));
  }
  if (gelu_input) {
    // A dense [m, n] matrix of C's type, written by GELU_AUX_BIAS and read by DGELU:
    // column-major, n rows with leading dimension n, which cuBLASLt wants a multiple of 8.
    // Unbatched only (gemm_with).
    const int64_t aux_ld = p.n;
    if (aux_ld % 8 != 0 || !bd.shape.empty()) return false;
    LOOM_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(
        desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &gelu_input, sizeof(gelu_input)));
    LOOM_CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc.d, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD,
                                                       &aux_ld, sizeof(aux_ld)));
  }

  // Alignment over every matrix the call touches (host-looped outer batches included).
  auto bytes = [esize](int64_t elements) { return uint64_t(elements) * esize; };
  uint64_t outer_a = 0, outer_b = 0, outer_c = 0;
  for (size_t d = 0; d < outer_dims; ++d) {
    outer_a |= bytes(bd.a[d]);
    outer_b |= bytes(bd.b[d]);
    outer_c |= bytes(bd.c[d]);
  }
  int64_t align_a = alignment_of({uint64_t(p.b.data), bytes(inner_b), outer_b});
  int64_t align_b = alignment_of({uint64_t(p.a.data), bytes(inner_a), outer_a});
  int64_t align_c = alignment_of({uint64_t(p.c), uint64_t(p.addend), bytes(inner_c), outer_c,
                                   bytes(ldc)});
  int64_t align_bias = with_bias ? alignment_of({uint64_t(bias)}) : 0;
  int64_t align_aux = gelu_input ? alignment_of({uint64_t(gelu_input)}) : 0;

  DeviceContext& ctx = context(device);
  float alpha32 = 1, beta32 = p.accumulate ? 1.0f : 0.0f;
  double alpha64 = 1, beta64 = p.accumulate ? 1.0 : 0.0;
  const void* alpha = f64 ? static_cast<const void*>(&alpha64) : &alpha32;
  const void* beta = f64 ? static_cast<const void*>(&beta64) : &beta32;
  int64_t outer = 1;
  for (size_t d = 0; d < outer_dims; ++d) outer *= bd.shape[d];
  const char* pa = static_cast<const char*>(p.a.data);
  const char* pb = static_cast<const char*>(p.b.data);
  char* pc = static_cast<char*>(p.c);
  const char* pc_in = p.accumulate && p.addend ? static_cast<const char*>(p.addend) : pc;
  // The product with `algo`, D written from d (C's own memory, or scratch while timing an
  // in-place accumulation).
  auto launch = [&](const cublasLtMatmulAlgo_t& algo, char* d) {
    for (int64_t o = 0; o < outer; ++o) {
      uint64_t off_a = 0, off_b = 0, off_c = 0;
      for (int64_t rest = o, dim = int64_t(outer_dims) - 1; dim >= 0; --dim) {
        int64_t i = rest % bd.shape[size_t(dim)];
        rest /= bd.shape[size_t(dim)];
        off_a += bytes(i * bd.a[size_t(dim)]);
        off_b += bytes(i * bd.b[size_t(dim)]);
        off_c += bytes(i * bd.c[size_t(dim)]);
      }
      cublasStatus_t st = cublasLtMatmul(ctx.handle, desc.d, alpha, pb + off_b, la.d, pa + off_a,
                                         lb.d, beta, pc_in + off_c, lc.d, d + off_c, lc.d, &algo,
                                         ctx.workspace, kWorkspaceBytes, stream);
      if (st != CUBLAS_STATUS_SUCCESS) return st;
    }
    return CUBLAS_STATUS_SUCCESS;
  };

  // Timed only for one matrix (not batches) and outside deterministic mode, where the
  // heuristic's choice keeps the rounding the same from run to run.
  const bool autotune = gemm_autotune() && bd.shape.empty() && !deterministic();
  PlanKey key = {int64_t(p.dtype), p.m, p.n, p.k, p.a.trans, p.b.trans, p.a.ld, p.b.ld,
                 inner, inner_a, inner_b, inner_c, int64_t(epilogue), allow_tf32,
                 align_a, align_b, align_c, align_bias, ldc, align_aux, autotune,
                 p.accumulate};
  std::optional<cublasLtMatmulAlgo_t> algo;
  {
    std::lock_guard<std::mutex> lock(ctx.mu);
    auto it = ctx.algos.find(key);
    if (it != ctx.algos.end()) {
      algo = it->second;
    } else {
      Preference pref;
      LOOM_CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&pref.d));
      uint64_t ws = kWorkspaceBytes;
      LOOM_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(
          pref.d, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
      auto set_align = [&](cublasLtMatmulPreferenceAttributes_t attr, int64_t v) {
        uint32_t a = uint32_t(v);
        LOOM_CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(pref.d, attr, &a, sizeof(a)));
      };
      set_align(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a);
      set_align(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b);
      set_align(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c);
      set_align(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c);
      std::vector<cublasLtMatmulHeuristicResult_t> results(autotune ? kAutotuneCandidates : 1);
      int found = 0;
      cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(ctx.handle, desc.d, la.d, lb.d, lc.d,
                                                         lc.d, pref.d, int(results.size()),
                                                         results.data(), &found);
      // NOT_SUPPORTED means "no algorithm for this problem": cached like an empty answer.
      if (st != CUBLAS_STATUS_NOT_SUPPORTED) LOOM_CUBLASLT_CHECK(st);
      if (st == CUBLAS_STATUS_SUCCESS && found > 0) algo = results[0].algo;
      if (algo && found > 1) {
        results.resize(size_t(found));
        // Inside a graph capture nothing is timed: the heuristic's choice runs, not cached.
        char* d_out = p.accumulate && !p.addend ? nullptr : pc;  // in place: C is D
        if (auto timed = fastest(results, launch, d_out, bytes(ldc * p.m), device, stream))
          ctx.algos.emplace(key, algo = *timed);
      } else {
        ctx.algos.emplace(key, algo);
      }
    }
  }

  if (!algo) return false;
  LOOM_CUBLASLT_CHECK(launch(*algo, pc));
  return true;
}

// cuBLASLt's fast kernels move 16 bytes at a time along each operand's contiguous dimension,
// so they need every such extent and every row pitch to be a multiple of 16 bytes; otherwise it falls
// back to element-aligned kernels (GPT-2's vocabulary of 50257: 8.6 to 12.9 ms per product of
// its output layer on an H100, docs/PERF.md). A large unbatched product with such a dimension
// (pads_extents) runs padded to the next multiple: operands are copied with zeros around (the
// zeros add nothing to the sums; the extra rows and columns of C are dropped), a pass over
// memory and a fraction of the difference, except where the storage is padded already: a C
// stored at such a pitch (output_row_pitch), an operand whose free extent may be read up to its
// pitch. False when nothing needed padding (or cuBLASLt had no algorithm for the padded problem).
bool run_padded(const GemmProblem& p, int device, bool allow_tf32, Stream stream,
                cublasLtEpilogue_t epilogue, const void* bias) {
  if (!pads_extents(p)) return false;
  const int64_t esize = int64_t(dtype_size(p.dtype)), unit = 16 / esize;
  auto up = [&](int64_t v) { return (v + unit - 1) / unit * unit; };
  // Only contiguous extents need padding: n is C's (and B's unless transposed), m is A's when
  // transposed, k is A's unless transposed and B's when transposed.
  const int64_t mp = p.a.trans ? up(p.m) : p.m, np = up(p.n);
  const int64_t kp = !p.a.trans || p.b.trans ? up(p.k) : p.k;
  // Stored [rows, cols] of A ([m, k], or [k, m] transposed) and B ([k, n], or [n, k]).
  const int64_t a_rows = p.a.trans ? p.k : p.m, a_cols = p.a.trans ? p.m : p.k;
  const int64_t b_rows = p.b.trans ? p.n : p.k, b_cols = p.b.trans ? p.k : p.n;
  const int64_t a_rows_p = p.a.trans ? kp : mp, a_cols_p = p.a.trans ? mp : kp;
  const int64_t b_rows_p = p.b.trans ? np : kp, b_cols_p = p.b.trans ? kp : np;
  // An operand is read as it is when its pitch and address are 16-byte aligned and only its
  // stored columns need padding, up to a pitch that may be read: for a free extent (A's m, B's n:
  // the columns when stored transposed, resp. not) whatever is there, since the extra values
  // reach only the dropped rows/columns of C; for the contracted extent k, zeros.
  auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  auto in_place = [&](const GemmOperand& x, int64_t rows, int64_t rows_p, int64_t cols,
                      int64_t cols_p, bool cols_free) {
    if (rows_p != rows || x.ld % unit != 0) return false;
    const bool readable = cols_free ? x.pitch_readable : x.zero_padded;
    return cols_p == cols || (readable && x.ld >= cols_p && aligned(x.data));
  };
  const bool pad_a = !in_place(p.a, a_rows, a_rows_p, a_cols, a_cols_p, p.a.trans);
  const bool pad_b = !in_place(p.b, b_rows, b_rows_p, b_cols, b_cols_p, !p.b.trans);
  // C is written in place when its rows are padded to the 16-byte multiple already (a pitched
  // output, whose columns past n are scratch).
  const int64_t ldc = p.c_ld();
  const bool pad_c = mp != p.m || (np != p.n && (ldc < np || ldc % unit != 0 || !aligned(p.c)));
  if (!pad_a && !pad_b && !pad_c && np == p.n) return false;
  if (epilogue == CUBLASLT_EPILOGUE_BGRADA && np != p.n) return false;  // an output, not padded

  Scratch scratch(device);
  // A copy of the stored [rows, cols] matrix with pitch ld into [rows_p, cols_p], zeros around.
  auto padded_copy = [&](const void* src, int64_t ld, int64_t rows, int64_t cols, int64_t rows_p,
                         int64_t cols_p) {
    char* dst = static_cast<char*>(scratch.get(size_t(rows_p * cols_p * esize)));
    const size_t pitch = size_t(cols_p * esize);
    if (cols_p > cols)
      LOOM_CUDA_CHECK(cudaMemset2DAsync(dst + cols * esize, pitch, 0, size_t((cols_p - cols) * esize),
                                        size_t(rows), stream));
    if (rows_p > rows)
      LOOM_CUDA_CHECK(cudaMemsetAsync(dst + rows * pitch, 0, size_t(rows_p - rows) * pitch, stream));
    LOOM_CUDA_CHECK(cudaMemcpy2DAsync(dst, pitch, src, size_t(ld * esize), size_t(cols * esize),
                                      size_t(rows), cudaMemcpyDeviceToDevice, stream));
    return static_cast<const void*>(dst);
  };
  GemmProblem q = p;
  q.m = mp;
  q.n = np;
  q.k = kp;
  if (pad_a) {
    q.a.data = padded_copy(p.a.data, p.a.ld, a_rows, a_cols, a_rows_p, a_cols_p);
    q.a.ld = a_cols_p;
  }
  if (pad_b) {
    q.b.data = padded_copy(p.b.data, p.b.ld, b_rows, b_cols, b_rows_p, b_cols_p);
    q.b.ld = b_cols_p;
  }
  if (pad_c) {
    q.c = scratch.get(size_t(mp * np * esize));
    q.ldc = np;
  }
  const void* q_bias = bias;
  if (bias && np != p.n) q_bias = padded_copy(bias, p.n, 1, p.n, 1, np);
  if (!run(q, BatchDims{}, /*lt_batch=*/true, device, allow_tf32, stream, epilogue, q_bias))
    return false;
  if (pad_c)
    LOOM_CUDA_CHECK(cudaMemcpy2DAsync(p.c, size_t(ldc * esize), q.c, size_t(np * esize),
                                      size_t(p.n * esize), size_t(p.m), cudaMemcpyDeviceToDevice,
                                      stream));
  return true;
}

}  // namespace

namespace {

bool gemm_with(const GemmProblem& p, int device, bool allow_tf32, Stream stream,
               cublasLtEpilogue_t epilogue, const void* bias, void* gelu_input = nullptr) {
  int64_t batch = shape_numel(p.batch_shape);
  if (p.m == 0 || p.n == 0 || batch == 0) return true;
  bool fused = epilogue != CUBLASLT_EPILOGUE_DEFAULT;
  LOOM_CHECK(!uses_bias(epilogue) || bias, ValueError, "matmul_bias_act: bias epilogue without a bias");
  ensure_device(device);
  const int64_t ldc = p.c_ld();
  LOOM_INTERNAL_ASSERT(ldc >= p.n && (ldc == p.n || p.batch_shape.empty()));
  const size_t esize = dtype_size(p.dtype);
  if (p.k == 0) {  // an empty sum; cuBLASLt rejects k = 0
    if (fused) return false;
    if (p.accumulate) {  // nothing to add: C keeps its earlier sum, or takes the addend
      if (p.addend)
        LOOM_CUDA_CHECK(cudaMemcpy2DAsync(p.c, size_t(ldc) * esize, p.addend, size_t(ldc) * esize,
                                          size_t(p.n) * esize, size_t(batch * p.m),
                                          cudaMemcpyDeviceToDevice, stream));
      return true;
    }
    LOOM_CUDA_CHECK(cudaMemset2DAsync(p.c, size_t(ldc) * esize, 0, size_t(p.n) * esize,
                                      size_t(batch * p.m), stream));
    return true;
  }
  BatchDims bd = collapse_batch(p);
  // The GELU's input is one dense matrix beside C: never padded (nor batched: run()).
  // The padded route writes C from a scratch copy: it does not add into C.
  if (batch == 1 && !gelu_input && !p.accumulate &&
      run_padded(p, device, allow_tf32, stream, epilogue, bias))
    return true;
  if (run(p, bd, /*lt_batch=*/true, device, allow_tf32, stream, epilogue, bias, gelu_input))
    return true;
  // A strided batch cuBLASLt declines (a broadcast, zero-stride operand, say): loop instead.
  if (!bd.shape.empty() &&
      run(p, bd, false, device, allow_tf32, stream, epilogue, bias, gelu_input))
    return true;
  if (fused || p.addend) return false;
  LOOM_THROW(CudaError, "matmul: cuBLASLt has no algorithm for ", dtype_name(p.dtype), " m=", p.m,
             " n=", p.n, " k=", p.k, " trans_a=", p.a.trans, " trans_b=", p.b.trans, " lda=",
             p.a.ld, " ldb=", p.b.ld, " batch=", shape_str(p.batch_shape));
}

}  // namespace

bool gemm(const GemmProblem& p, int device, bool allow_tf32, Stream stream, Epilogue epilogue,
          const void* bias, void* gelu_input) {
  LOOM_CHECK(!gelu_input || epilogue == Epilogue::BiasGelu, ValueError,
             "matmul_bias_act: only the GELU epilogue keeps its input");
  return gemm_with(p, device, allow_tf32, stream,
                   gelu_input ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : lt_epilogue(epilogue), bias,
                   gelu_input);
}

bool gemm_gelu_grad(const GemmProblem& p, int device, bool allow_tf32, Stream stream,
                    const void* gelu_input) {
  LOOM_CHECK(gelu_input, ValueError, "matmul: the GELU's gradient epilogue needs the GELU's input");
  if (!p.batch_shape.empty()) return false;
  // cuBLASLt only reads the auxiliary matrix under DGELU.
  return gemm_with(p, device, allow_tf32, stream, CUBLASLT_EPILOGUE_DGELU, nullptr,
                   const_cast<void*>(gelu_input));
}

bool gemm_bias_grad(const GemmProblem& p, int device, bool allow_tf32, Stream stream,
                    void* bias_grad) {
  if (!p.batch_shape.empty() || p.k == 0) return false;
  // Column-major roles (run): our B is cuBLASLt's A, whose sums over k BGRADA writes.
  return gemm_with(p, device, allow_tf32, stream, CUBLASLT_EPILOGUE_BGRADA, bias_grad);
}

}  // namespace loom::cuda

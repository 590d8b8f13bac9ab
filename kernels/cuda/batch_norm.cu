// Batch norm over the channels (last axis) of x [m, c], NHWC as Flax. Custom kernels rather
// than cuDNN: Flax's statistics are the fast variance E[x^2] - E[x]^2 (taken here around a shift,
// for float32 accuracy; cuDNN computes its own), a data-parallel pmean must sit between the
// statistics and the normalisation, and every dtype pair (bf16 input with f32 output) must work.
//
// Column sums in one kernel each (kernels/cuda/column_sums.cuh), deterministic. Every pass moves
// 16 bytes per access where c allows it.
#include "kernels/cuda/batch_norm.h"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include <cuda/std/limits>

#include "kernels/cuda/column_sums.cuh"
#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/multi_tensor.cuh"

namespace loom::cuda {
namespace {

constexpr int kThreads = 256;

template <typename A>
__device__ __forceinline__ bool is_finite_value(A v) {
  return v > -::cuda::std::numeric_limits<A>::infinity() &&
         v < ::cuda::std::numeric_limits<A>::infinity();
}

// The elementwise passes tile [m, c] alike: threadIdx.x (and blockIdx.x) pick a group of V
// channels, threadIdx.y (and blockIdx.y) rows. A thread keeps its channels' parameters in
// registers for all its rows: no per-element index division, and 16-byte accesses.
struct ChannelTiling {
  dim3 block;
  unsigned grid_x;
};
ChannelTiling channel_tiling(int64_t c, int V) {
  const int64_t groups = c / V;
  const int bx = int(groups < kThreads ? groups : kThreads);
  const int by = kThreads / bx;
  return {dim3(unsigned(bx), unsigned(by)), unsigned((groups + bx - 1) / bx)};
}

// The row blocks of an elementwise pass. A thread's set-up (its channels' parameters loaded, a
// division and a square root per channel) costs about as many instructions as four rows of
// bfloat16 packs, so each thread takes up to 16 rows; fewer where that would leave under ~2048
// blocks (two waves on an H100) to fill the GPU.
unsigned row_blocks(int64_t m, unsigned by, unsigned grid_x) {
  constexpr int64_t kRowsPerThread = 16, kFillBlocks = 2048;
  const int64_t rows_per_block_pass = int64_t(by);
  int64_t b = (m + kRowsPerThread * rows_per_block_pass - 1) / (kRowsPerThread * rows_per_block_pass);
  const int64_t fill = (kFillBlocks + grid_x - 1) / grid_x;
  const int64_t most = (m + rows_per_block_pass - 1) / rows_per_block_pass;  // one row per thread
  b = std::max(b, std::min(fill, most));
  return unsigned(b < 1 ? 1 : (b > 65535 ? 65535 : b));
}

// A block's rows in an elementwise pass: one contiguous range, the blocks in order. The pass then
// sweeps x from the first row to the last, starting where the column sums before it ended (they
// sweep from the last chunk to the first, kernels/cuda/column_sums.cuh), on rows still in L2.
// Before, each block's rows were strided over all of x, so every wave of blocks swept all of it.
struct RowRange {
  int64_t begin, end;
};
__device__ __forceinline__ RowRange rows_of_block(int64_t m) {
  const int64_t per_block =
      ((m + gridDim.y - 1) / gridDim.y + blockDim.y - 1) / blockDim.y * blockDim.y;
  const int64_t begin = int64_t(blockIdx.y) * per_block;
  return {begin, begin + per_block < m ? begin + per_block : m};
}

// The normalisation's multiplier and its output before any residual, in rounded operations only
// (no contraction into an FMA where the compiler chooses): the forward pass and the backward
// passes that recompute a ReLU's mask from x (ReluFromX) get the same bits.
__device__ __forceinline__ float rn_add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double rn_add(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float rn_sub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double rn_sub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float rn_div(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double rn_div(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float rn_sqrt(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double rn_sqrt(double a) { return __dsqrt_rn(a); }
__device__ __forceinline__ float rn_fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double rn_fma(double a, double b, double c) { return __fma_rn(a, b, c); }

template <typename A>
__device__ __forceinline__ A bn_multiplier(const A* scale, const A* var, int64_t j, A eps) {
  return rn_div(scale ? scale[j] : A(1), rn_sqrt(rn_add(var[j], eps)));
}
template <typename O, typename A>
__device__ __forceinline__ O bn_output(A x, A mu, A mul, A add) {
  return cvt<O>(rn_fma(rn_sub(x, mu), mul, add));
}

// The ReLU mask of a BatchNorm + ReLU without a residual, recomputed from x in the backward
// passes (the forward's output is positive exactly where bn_output is) instead of read from the
// saved output: one tensor fewer to read in each of the two passes.
template <typename A>
struct ReluFromX {
  const A* var = nullptr;  // null: not recomputed
  const A* scale = nullptr;
  const A* bias = nullptr;
  A eps = A(0);
};

// A thread's channels' forward multiplier and addend, for the mask; untouched without var.
template <typename A, int V>
__device__ __forceinline__ void relu_mask_coefficients(const ReluFromX<A>& r, int64_t j0, bool active,
                                                       A* mul, A* add) {
#pragma unroll
  for (int v = 0; v < V; ++v) {
    mul[v] = r.var && active ? bn_multiplier(r.scale, r.var, j0 + v, r.eps) : A(0);
    add[v] = r.bias && active ? r.bias[j0 + v] : A(0);
  }
}

// Whether the ReLU after the norm passed this element's gradient: the recomputed output's sign
// (kMaskFromX), the saved output's (relu_out), or always (no ReLU).
template <bool kMaskFromX, typename O, typename A>
__device__ __forceinline__ bool relu_passes(bool saved, O out, A x, A mu, A mul, A add) {
  if constexpr (kMaskFromX) return cvt<A>(bn_output<O>(x, mu, mul, add)) > A(0);
  return !saved || cvt<A>(out) > A(0);
}

// run(std::bool_constant<from_x>): the backward kernels are compiled with and without the mask's
// recomputation, so that the kernels that read the saved output keep their registers (the
// coefficients take 2 V more).
template <typename Run>
void with_mask_from_x(bool from_x, Run&& run) {
  if (from_x) run(std::true_type{});
  else run(std::false_type{});
}

// The column sums: (x - k, (x - k)^2) for the statistics, where the shift k is the column's first
// value (float32 E[x^2] - E[x]^2 loses the variance to cancellation when |mean| >> std; around k it
// does not), then mean and biased var; (g, g * xhat) for the backward pass. The backward masks g
// by the ReLU's (relu_out > 0, or recomputed from x by relu_x under kMaskFromX; neither = no
// ReLU) and, when g_masked is given, stores the masked g (the residual's gradient).
template <typename T, typename O, bool kBackward, bool kMaskFromX, int V>
__global__ void column_sums_kernel(const T* x, const O* g, const acc_t<T>* mean,
                                   const acc_t<T>* rstd, const O* relu_out,
                                   ReluFromX<acc_t<T>> relu_x, O* g_masked, int64_t m, int64_t c,
                                   int64_t col_begin, int64_t chunk_rows, acc_t<T>* part,
                                   acc_t<T>* out_a, acc_t<T>* out_b, RunningStatsUpdate running) {
  using A = acc_t<T>;
  const int64_t j0 = first_column_of_thread<V>(col_begin);
  const bool active = j0 < c;
  A mu[V], inv[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    // (a non-finite first value would make every x - k NaN; the shift is then 0, so that an
    // infinite column's mean is infinite, as the CPU's and Flax's)
    const A first = !kBackward && active && m > 0 ? cvt<A>(x[j0 + v]) : A(0);
    mu[v] = !active ? A(0) : kBackward ? mean[j0 + v] : (is_finite_value(first) ? first : A(0));
    inv[v] = kBackward && active ? rstd[j0 + v] : A(0);
  }
  A mask_mul[V] = {}, mask_add[V] = {};  // read only with kMaskFromX
  if constexpr (kMaskFromX) relu_mask_coefficients<A, V>(relu_x, j0, active, mask_mul, mask_add);
  auto add_row = [&](int64_t i, A* a, A* b) {
    const int64_t off = i * c + j0;
    const Pack<T, V> xv = load_pack<V>(x + off);
    if constexpr (kBackward) {
      const Pack<O, V> gv = load_pack<V>(g + off);
      Pack<O, V> rv{}, gm;
      if (relu_out) rv = load_pack<V>(relu_out + off);
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const bool passes = relu_passes<kMaskFromX>(relu_out != nullptr, rv.v[v], cvt<A>(xv.v[v]),
                                                    mu[v], mask_mul[v], mask_add[v]);
        const A gval = passes ? cvt<A>(gv.v[v]) : A(0);
        gm.v[v] = cvt<O>(gval);
        a[v] += gval;
        b[v] += gval * (cvt<A>(xv.v[v]) - mu[v]) * inv[v];
      }
      if (g_masked) store_pack<V>(g_masked + off, gm);
    } else {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        const A d = cvt<A>(xv.v[v]) - mu[v];
        a[v] += d;
        b[v] += d * d;
      }
    }
  };
  auto finish = [&](const A* a, const A* b) {
#pragma unroll
    for (int v = 0; v < V; ++v) {
      if constexpr (kBackward) {
        out_a[j0 + v] = a[v];
        out_b[j0 + v] = b[v];
      } else {  // the sums are around the shift mu
        const A d = a[v] / A(m), var = b[v] / A(m) - d * d;
        const A mean_v = mu[v] + d, var_v = var < A(0) ? A(0) : var;  // NaN stays NaN
        out_a[j0 + v] = mean_v;
        out_b[j0 + v] = var_v;
        if constexpr (std::is_same_v<A, float>)
          if (running.new_mean) {  // rounded as running_average_kernel's separate operations
            const int64_t j = j0 + v;
            running.new_mean[j] = __fadd_rn(__fmul_rn(running.mean[j], running.momentum),
                                            __fmul_rn(mean_v, running.one_minus_momentum));
            running.new_var[j] = __fadd_rn(__fmul_rn(running.var[j], running.momentum),
                                           __fmul_rn(var_v, running.one_minus_momentum));
          }
      }
    }
  };
  sum_columns<A, V>(m, c, j0, chunk_rows, part, add_row, finish);
}

// y = act(bn + residual): bn is rounded to O before the add, as the unfused add of the norm's
// output would see it (kernels/cpu/norm.h).
template <typename T, typename O, int V>
__global__ void normalize_kernel(const T* x, O* y, const acc_t<T>* mean, const acc_t<T>* var,
                                 const acc_t<T>* scale, const acc_t<T>* bias, const T* residual,
                                 bool relu, int64_t m, int64_t c, acc_t<T> eps) {
  using A = acc_t<T>;
  const int64_t j0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (j0 >= c) return;
  A mu[V], mul[V], add[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    mu[v] = mean[j0 + v];
    mul[v] = bn_multiplier(scale, var, j0 + v, eps);
    add[v] = bias ? bias[j0 + v] : A(0);
  }
  const RowRange rows = rows_of_block(m);
#pragma unroll 4
  for (int64_t r = rows.begin + threadIdx.y; r < rows.end; r += blockDim.y) {
    const int64_t off = r * c + j0;
    const Pack<T, V> xv = load_pack<V>(x + off);
    Pack<T, V> rv{};
    if (residual) rv = load_pack<V>(residual + off);
    Pack<O, V> out;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      O o = bn_output<O>(cvt<A>(xv.v[v]), mu[v], mul[v], add[v]);
      if (residual) o = cvt<O>(cvt<A>(o) + cvt<A>(rv.v[v]));
      out.v[v] = relu && cvt<A>(o) < A(0) ? cvt<O>(A(0)) : o;
    }
    store_pack<V>(y + off, out);
  }
}

template <typename T, typename O, bool kMaskFromX, int V>
__global__ void backward_dx_kernel(const T* x, const O* g, const acc_t<T>* mean,
                                   const acc_t<T>* rstd, const acc_t<T>* scale,
                                   const O* relu_out, ReluFromX<acc_t<T>> relu_x,
                                   const acc_t<T>* sum_g, const acc_t<T>* sum_gx, T* dx, int64_t m,
                                   int64_t c) {
  using A = acc_t<T>;
  const int64_t j0 = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V;
  if (j0 >= c) return;
  A mu[V], inv[V], mean_g[V], mean_gx[V], k[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    mu[v] = mean[j0 + v];
    inv[v] = rstd[j0 + v];
    mean_g[v] = sum_g[j0 + v] / A(m);
    mean_gx[v] = sum_gx[j0 + v] / A(m);
    k[v] = (scale ? scale[j0 + v] : A(1)) * inv[v];
  }
  A mask_mul[V] = {}, mask_add[V] = {};  // read only with kMaskFromX
  if constexpr (kMaskFromX) relu_mask_coefficients<A, V>(relu_x, j0, true, mask_mul, mask_add);
  const RowRange rows = rows_of_block(m);
#pragma unroll 4
  for (int64_t r = rows.begin + threadIdx.y; r < rows.end; r += blockDim.y) {
    const int64_t off = r * c + j0;
    const Pack<T, V> xv = load_pack<V>(x + off);
    const Pack<O, V> gv = load_pack<V>(g + off);
    Pack<O, V> rv{};
    if (relu_out) rv = load_pack<V>(relu_out + off);
    Pack<T, V> out;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const A xhat = (cvt<A>(xv.v[v]) - mu[v]) * inv[v];
      const bool passes = relu_passes<kMaskFromX>(relu_out != nullptr, rv.v[v], cvt<A>(xv.v[v]),
                                                  mu[v], mask_mul[v], mask_add[v]);
      const A gval = passes ? cvt<A>(gv.v[v]) : A(0);
      out.v[v] = cvt<T>(k[v] * (gval - mean_g[v] - xhat * mean_gx[v]));
    }
    store_pack<V>(dx + off, out);
  }
}

template <typename T, typename O, bool kBackward, bool kMaskFromX, int V>
void column_sums(const T* x, const O* g, const acc_t<T>* mean, const acc_t<T>* rstd,
                 const O* relu_out, const ReluFromX<acc_t<T>>& relu_x, O* g_masked, int64_t m,
                 int64_t c, acc_t<T>* out_a, acc_t<T>* out_b, acc_t<T>* part, Stream stream,
                 const RunningStatsUpdate& running = {}) {
  const ColumnSumsGrid sums = column_sums_grid(m, c, V);
  for_each_column_launch(sums, V, [&](dim3 grid, int64_t col_begin) {
    column_sums_kernel<T, O, kBackward, kMaskFromX, V><<<grid, sums.block, 0, stream>>>(
        x, g, mean, rstd, relu_out, relu_x, g_masked, m, c, col_begin, sums.chunk_rows, part,
        out_a, out_b, running);
    LOOM_CUDA_CHECK(cudaGetLastError());
  });
}

constexpr int kRunningAverageJobs = 16;  // per launch: a few BatchNorms' statistics

// The jobs of one launch, in the multi-tensor layout (kernels/cuda/multi_tensor.cuh).
struct RunningAverageTable {
  int count = 0;
  int64_t start[kRunningAverageJobs + 1] = {};  // prefix sums of the jobs' sizes
  const float* average[kRunningAverageJobs] = {};
  const float* value[kRunningAverageJobs] = {};
  float* out[kRunningAverageJobs] = {};
};

__global__ void running_average_kernel(const __grid_constant__ RunningAverageTable t,
                                       float momentum, float one_minus_momentum) {
  // Explicitly rounded operations: nvcc would otherwise contract them into an FMA.
  for_each_element(t, [&](int l, int64_t i) {
    t.out[l][i] = __fadd_rn(__fmul_rn(t.average[l][i], momentum),
                            __fmul_rn(t.value[l][i], one_minus_momentum));
  });
}

template <typename A>
ReluFromX<A> device_relu_from_x(const ReluFromInput* r, const void* relu_out) {
  if (!r) return {};
  LOOM_CHECK(r->var && !relu_out, ValueError,
             "batch_norm: the ReLU's mask is either read from the output or recomputed from x");
  return {static_cast<const A*>(r->var), static_cast<const A*>(r->scale),
          static_cast<const A*>(r->bias), A(r->eps)};
}

}  // namespace

int64_t channel_workspace_size(int64_t m, int64_t c) { return column_sums_workspace(m, c); }

void channel_stats(const void* x, DType dtype, int64_t m, int64_t c, void* mean, void* var,
                   void* workspace, Stream stream, const RunningStatsUpdate* running) {
  if (c == 0) return;
  visit_in_out(dtype, dtype, "batch_norm", [&](auto tz, auto) {
    using T = decltype(tz);
    using A = acc_t<T>;
    constexpr bool float_statistics = std::is_same_v<A, float>;
    LOOM_CHECK(!running || float_statistics, DTypeError,
               "batch_norm: the running statistics' update in the statistics kernel takes float32 "
               "statistics, got ", dtype_name(dtype), " x");
    auto run = [&](auto wide) {
      constexpr int V = decltype(wide)::value;
      column_sums<T, T, false, false, V>(static_cast<const T*>(x), nullptr, nullptr, nullptr,
                                         nullptr, ReluFromX<A>{}, nullptr, m, c,
                                         static_cast<A*>(mean), static_cast<A*>(var),
                                         static_cast<A*>(workspace), stream,
                                         running ? *running : RunningStatsUpdate{});
    };
    launch_packed<T>(c, {{x, sizeof(T)}}, run);
  });
}

void channel_normalize(const void* x, DType dtype, void* y, DType out_dtype, const void* mean,
                       const void* var, const void* scale, const void* bias,
                       const void* residual, bool relu, int64_t m, int64_t c, double eps,
                       Stream stream) {
  if (m * c == 0) return;
  visit_in_out(dtype, out_dtype, "batch_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    auto run = [&](auto wide) {
      constexpr int V = decltype(wide)::value;
      const ChannelTiling t = channel_tiling(c, V);
      normalize_kernel<T, O, V><<<dim3(t.grid_x, row_blocks(m, t.block.y, t.grid_x)), t.block, 0, stream>>>(
          static_cast<const T*>(x), static_cast<O*>(y), static_cast<const A*>(mean),
          static_cast<const A*>(var), static_cast<const A*>(scale), static_cast<const A*>(bias),
          static_cast<const T*>(residual), relu, m, c, A(eps));
    };
    launch_packed<T>(c, {{x, sizeof(T)}, {y, sizeof(O)}, {residual, sizeof(T)}}, run);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void channel_backward_sums(const void* x, DType dtype, const void* g, DType out_dtype,
                           const void* mean, const void* rstd, const void* relu_out, int64_t m,
                           int64_t c, void* sum_g, void* sum_gx, void* g_masked, void* workspace,
                           Stream stream, const ReluFromInput* relu_from_x) {
  if (c == 0) return;
  visit_in_out(dtype, out_dtype, "batch_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    const ReluFromX<A> relu_x = device_relu_from_x<A>(relu_from_x, relu_out);
    auto run = [&](auto wide) {
      constexpr int V = decltype(wide)::value;
      with_mask_from_x(relu_x.var != nullptr, [&](auto from_x) {
        column_sums<T, O, true, decltype(from_x)::value, V>(
            static_cast<const T*>(x), static_cast<const O*>(g), static_cast<const A*>(mean),
            static_cast<const A*>(rstd), static_cast<const O*>(relu_out), relu_x,
            static_cast<O*>(g_masked), m, c, static_cast<A*>(sum_g), static_cast<A*>(sum_gx),
            static_cast<A*>(workspace), stream);
      });
    };
    launch_packed<T>(c, {{x, sizeof(T)}, {g, sizeof(O)}, {relu_out, sizeof(O)}, {g_masked, sizeof(O)}},
                     run);
  });
}

void channel_backward_dx(const void* x, DType dtype, const void* g, DType out_dtype,
                         const void* mean, const void* rstd, const void* scale,
                         const void* relu_out, const void* sum_g, const void* sum_gx, void* dx,
                         int64_t m, int64_t c, Stream stream, const ReluFromInput* relu_from_x) {
  if (m * c == 0) return;
  visit_in_out(dtype, out_dtype, "batch_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    const ReluFromX<A> relu_x = device_relu_from_x<A>(relu_from_x, relu_out);
    auto run = [&](auto wide) {
      constexpr int V = decltype(wide)::value;
      const ChannelTiling t = channel_tiling(c, V);
      const dim3 grid(t.grid_x, row_blocks(m, t.block.y, t.grid_x));
      with_mask_from_x(relu_x.var != nullptr, [&](auto from_x) {
        backward_dx_kernel<T, O, decltype(from_x)::value, V><<<grid, t.block, 0, stream>>>(
            static_cast<const T*>(x), static_cast<const O*>(g), static_cast<const A*>(mean),
            static_cast<const A*>(rstd), static_cast<const A*>(scale),
            static_cast<const O*>(relu_out), relu_x, static_cast<const A*>(sum_g),
            static_cast<const A*>(sum_gx), static_cast<T*>(dx), m, c);
      });
    };
    launch_packed<T>(c, {{x, sizeof(T)}, {g, sizeof(O)}, {relu_out, sizeof(O)}, {dx, sizeof(T)}},
                     run);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void running_average(const std::vector<RunningAverageJob>& jobs, float momentum,
                     float one_minus_momentum, Stream stream) {
  for (size_t first = 0; first < jobs.size(); first += kRunningAverageJobs) {
    RunningAverageTable t;
    t.count = int(std::min(jobs.size() - first, size_t(kRunningAverageJobs)));
    for (int k = 0; k < t.count; ++k) {
      const RunningAverageJob& job = jobs[first + size_t(k)];
      t.start[k + 1] = t.start[k] + job.n;
      t.average[k] = job.average;
      t.value[k] = job.value;
      t.out[k] = job.out;
    }
    if (t.start[t.count] == 0) continue;
    running_average_kernel<<<multi_tensor_blocks(t.start[t.count]), kMultiTensorThreads, 0, stream>>>(
        t, momentum, one_minus_momentum);
    LOOM_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace loom::cuda

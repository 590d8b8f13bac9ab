// Batch norm over the channels (last axis) of x [m, c], NHWC as Flax. Custom kernels rather
// than cuDNN: Flax's statistics are the fast variance max(0, E[x^2] - E[x]^2) (cuDNN computes its
// own), a data-parallel pmean must sit between the statistics and the normalisation, and every
// dtype pair (bf16 input with f32 output) must work.
//
// Column sums: blocks of 32 channels x 8 row lanes each reduce one fixed chunk of rows into
// partials [chunks, 2, c]; a second kernel adds the chunks in order. No atomics, so the result
// is deterministic.
#include "kernels/cuda/batch_norm.h"
#include "kernels/cuda/device_types.cuh"

namespace loom::cuda {
namespace {

constexpr int kTileCols = 32;
constexpr int kTileRows = 8;
constexpr int64_t kMinChunkRows = 128;
constexpr int64_t kMaxChunks = 256;

int64_t row_chunks(int64_t m) {
  int64_t chunks = (m + kMinChunkRows - 1) / kMinChunkRows;
  return chunks < 1 ? 1 : (chunks > kMaxChunks ? kMaxChunks : chunks);
}

// Partial column sums over one chunk of rows: (x, x^2) for the statistics, (g, g * xhat) for the
// backward pass.
// The backward masks g by relu_out > 0 (the relu epilogue; nullptr = none) and, when g_masked is
// given, stores the masked g (the residual's gradient).
template <typename T, typename O, bool kBackward>
__global__ void column_partials_kernel(const T* x, const O* g, const acc_t<T>* mean,
                                       const acc_t<T>* rstd, const O* relu_out, O* g_masked,
                                       int64_t m, int64_t c, int64_t chunk_rows, acc_t<T>* part) {
  using A = acc_t<T>;
  __shared__ A sa[kTileRows][kTileCols + 1];
  __shared__ A sb[kTileRows][kTileCols + 1];
  const int64_t j = int64_t(blockIdx.x) * kTileCols + threadIdx.x;
  const int64_t begin = int64_t(blockIdx.y) * chunk_rows;
  const int64_t end = begin + chunk_rows < m ? begin + chunk_rows : m;
  A a = 0, b = 0;
  if (j < c) {
    A mu = kBackward ? mean[j] : A(0), inv = kBackward ? rstd[j] : A(0);
    for (int64_t i = begin + threadIdx.y; i < end; i += kTileRows) {
      A v = cvt<A>(x[i * c + j]);
      if constexpr (kBackward) {
        A gv = relu_out && !(cvt<A>(relu_out[i * c + j]) > A(0)) ? A(0) : cvt<A>(g[i * c + j]);
        if (g_masked) g_masked[i * c + j] = cvt<O>(gv);
        a += gv;
        b += gv * (v - mu) * inv;
      } else {
        a += v;
        b += v * v;
      }
    }
  }
  sa[threadIdx.y][threadIdx.x] = a;
  sb[threadIdx.y][threadIdx.x] = b;
  __syncthreads();
  if (threadIdx.y == 0 && j < c) {
    for (int k = 1; k < kTileRows; ++k) {
      a += sa[k][threadIdx.x];
      b += sb[k][threadIdx.x];
    }
    part[int64_t(blockIdx.y) * 2 * c + j] = a;
    part[int64_t(blockIdx.y) * 2 * c + c + j] = b;
  }
}

/// Adds the chunk partials in order; for the statistics turns them into mean and biased var.
template <typename A, bool kStats>
__global__ void column_finish_kernel(const A* part, int64_t chunks, int64_t m, int64_t c, A* out_a,
                                     A* out_b) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= c) return;
  A a = 0, b = 0;
  for (int64_t k = 0; k < chunks; ++k) {
    a += part[k * 2 * c + j];
    b += part[k * 2 * c + c + j];
  }
  if constexpr (kStats) {
    A mu = a / A(m), var = b / A(m) - mu * mu;
    out_a[j] = mu;
    out_b[j] = var > A(0) ? var : A(0);
  } else {
    out_a[j] = a;
    out_b[j] = b;
  }
}

#define LOOM_GRID_STRIDE_LOOP(i, n)                                                  \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

// y = act(bn + residual): bn is rounded to O before the add, as the unfused add of the norm's
// output would see it (kernels/cpu/norm.h).
template <typename T, typename O>
__global__ void normalize_kernel(const T* x, O* y, const acc_t<T>* mean, const acc_t<T>* var,
                                 const acc_t<T>* scale, const acc_t<T>* bias, const T* residual,
                                 bool relu, int64_t m, int64_t c, acc_t<T> eps) {
  using A = acc_t<T>;
  LOOM_GRID_STRIDE_LOOP(i, m * c) {
    const int64_t j = i % c;
    A mul = (scale ? scale[j] : A(1)) / sqrt(var[j] + eps);
    O v = cvt<O>((cvt<A>(x[i]) - mean[j]) * mul + (bias ? bias[j] : A(0)));
    if (residual) v = cvt<O>(cvt<A>(v) + cvt<A>(residual[i]));
    y[i] = relu && cvt<A>(v) < A(0) ? cvt<O>(A(0)) : v;
  }
}

template <typename T, typename O>
__global__ void backward_dx_kernel(const T* x, const O* g, const acc_t<T>* mean,
                                   const acc_t<T>* rstd, const acc_t<T>* scale,
                                   const O* relu_out, const acc_t<T>* sum_g,
                                   const acc_t<T>* sum_gx, T* dx, int64_t m, int64_t c) {
  using A = acc_t<T>;
  LOOM_GRID_STRIDE_LOOP(i, m * c) {
    const int64_t j = i % c;
    A inv = rstd[j];
    A xhat = (cvt<A>(x[i]) - mean[j]) * inv;
    A gv = relu_out && !(cvt<A>(relu_out[i]) > A(0)) ? A(0) : cvt<A>(g[i]);
    A v = gv - sum_g[j] / A(m) - xhat * sum_gx[j] / A(m);
    dx[i] = cvt<T>((scale ? scale[j] : A(1)) * inv * v);
  }
}

template <typename Fn>
void visit_in_out(DType in, DType out, Fn&& fn) {
  visit_float_dtype(in, "batch_norm", [&](auto t) {
    using T = decltype(t);
    if (out == in) return fn(t, t);
    if constexpr (std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>)
      if (out == DType::F32) return fn(t, float{});
    LOOM_THROW(DTypeError, "batch_norm: no CUDA kernel for input ", dtype_name(in), " with output ",
               dtype_name(out));
  });
}

template <typename T, typename O, bool kBackward>
void column_sums(const T* x, const O* g, const acc_t<T>* mean, const acc_t<T>* rstd,
                 const O* relu_out, O* g_masked, int64_t m, int64_t c, acc_t<T>* out_a,
                 acc_t<T>* out_b, acc_t<T>* part, Stream stream) {
  using A = acc_t<T>;
  const int64_t chunks = row_chunks(m), chunk_rows = (m + chunks - 1) / chunks;
  dim3 grid(unsigned((c + kTileCols - 1) / kTileCols), unsigned(chunks));
  column_partials_kernel<T, O, kBackward><<<grid, dim3(kTileCols, kTileRows), 0, stream>>>(
      x, g, mean, rstd, relu_out, g_masked, m, c, chunk_rows, part);
  LOOM_CUDA_CHECK(cudaGetLastError());
  column_finish_kernel<A, !kBackward><<<unsigned((c + 255) / 256), 256, 0, stream>>>(
      part, chunks, m, c, out_a, out_b);
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

int64_t channel_workspace_size(int64_t m, int64_t c) { return row_chunks(m) * 2 * c; }

void channel_stats(const void* x, DType dtype, int64_t m, int64_t c, void* mean, void* var,
                   void* workspace, Stream stream) {
  if (c == 0) return;
  visit_in_out(dtype, dtype, [&](auto tz, auto) {
    using T = decltype(tz);
    using A = acc_t<T>;
    column_sums<T, T, false>(static_cast<const T*>(x), nullptr, nullptr, nullptr, nullptr,
                             nullptr, m, c,
                             static_cast<A*>(mean), static_cast<A*>(var),
                             static_cast<A*>(workspace), stream);
  });
}

void channel_normalize(const void* x, DType dtype, void* y, DType out_dtype, const void* mean,
                       const void* var, const void* scale, const void* bias,
                       const void* residual, bool relu, int64_t m, int64_t c, double eps,
                       Stream stream) {
  if (m * c == 0) return;
  visit_in_out(dtype, out_dtype, [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    normalize_kernel<T, O><<<blocks_for(m * c), 256, 0, stream>>>(
        static_cast<const T*>(x), static_cast<O*>(y), static_cast<const A*>(mean),
        static_cast<const A*>(var), static_cast<const A*>(scale), static_cast<const A*>(bias),
        static_cast<const T*>(residual), relu, m, c, A(eps));
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void channel_backward_sums(const void* x, DType dtype, const void* g, DType out_dtype,
                           const void* mean, const void* rstd, const void* relu_out, int64_t m,
                           int64_t c, void* sum_g, void* sum_gx, void* g_masked, void* workspace,
                           Stream stream) {
  if (c == 0) return;
  visit_in_out(dtype, out_dtype, [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    column_sums<T, O, true>(static_cast<const T*>(x), static_cast<const O*>(g),
                            static_cast<const A*>(mean), static_cast<const A*>(rstd),
                            static_cast<const O*>(relu_out), static_cast<O*>(g_masked), m, c,
                            static_cast<A*>(sum_g), static_cast<A*>(sum_gx),
                            static_cast<A*>(workspace), stream);
  });
}

void channel_backward_dx(const void* x, DType dtype, const void* g, DType out_dtype,
                         const void* mean, const void* rstd, const void* scale,
                         const void* relu_out, const void* sum_g, const void* sum_gx, void* dx,
                         int64_t m, int64_t c, Stream stream) {
  if (m * c == 0) return;
  visit_in_out(dtype, out_dtype, [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    backward_dx_kernel<T, O><<<blocks_for(m * c), 256, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const O*>(g), static_cast<const A*>(mean),
        static_cast<const A*>(rstd), static_cast<const A*>(scale),
        static_cast<const O*>(relu_out), static_cast<const A*>(sum_g),
        static_cast<const A*>(sum_gx), static_cast<T*>(dx), m, c);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda

// Fused layer norm / RMS norm over the last axis: one kernel forward (statistics + affine) and
// one backward (dx). A row is reduced by one warp for rows of up to 1024 elements (4 rows per
// block) and by a 256-thread block beyond that. Statistics use Flax's fast variance in float (or
// double for f64): var = max(0, mean(x^2) - mean(x)^2).
#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/norm.h"

namespace loom::cuda {
namespace {

constexpr int kWarpRowsPerBlock = 4;
constexpr int kBlockThreads = 256;
constexpr int64_t kWarpRowLimit = 1024;

/// Sums v over the G threads of a row (G == 32: the warp; G == kBlockThreads: the block).
template <int G, typename A>
__device__ __forceinline__ A group_sum(A v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if constexpr (G > 32) {
    __shared__ A partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // earlier readers of `partial` are done
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < G / 32 ? partial[lane] : A(0);
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  }
  return v;
}

#define LOOM_ROW_LOOP(r, rows)                                                  \
  for (int64_t r = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; r < (rows); \
       r += int64_t(gridDim.x) * blockDim.y)

template <typename A>
__device__ __forceinline__ A param(const A* p, int64_t j, A absent) {
  return p ? p[j] : absent;
}

template <typename T, typename O, int G>
__global__ void norm_rows_kernel(const T* x, O* y, const acc_t<T>* scale, const acc_t<T>* bias,
                                 acc_t<T>* mean, acc_t<T>* rstd, int64_t rows, int64_t n,
                                 acc_t<T> eps, bool rms) {
  using A = acc_t<T>;
  LOOM_ROW_LOOP(r, rows) {
    const T* row = x + r * n;
    A s = 0, s2 = 0;
    for (int64_t j = threadIdx.x; j < n; j += G) {
      A v = cvt<A>(row[j]);
      s += v;
      s2 += v * v;
    }
    s = group_sum<G>(s);
    s2 = group_sum<G>(s2);
    const A mu = rms ? A(0) : s / A(n);
    const A m2 = s2 / A(n) - mu * mu;
    const A var = rms ? s2 / A(n) : (m2 > A(0) ? m2 : A(0));
    const A inv = A(1) / sqrt(var + eps);
    if (threadIdx.x == 0) {
      if (!rms) mean[r] = mu;
      rstd[r] = inv;
    }
    for (int64_t j = threadIdx.x; j < n; j += G) {
      A v = (cvt<A>(row[j]) - mu) * (inv * param(scale, j, A(1)));
      if (!rms) v += param(bias, j, A(0));
      y[r * n + j] = cvt<O>(v);
    }
  }
}

template <typename T, typename O, int G>
__global__ void norm_rows_backward_kernel(const T* x, const O* g, const acc_t<T>* mean,
                                          const acc_t<T>* rstd, const acc_t<T>* scale, T* dx,
                                          int64_t rows, int64_t n, bool rms) {
  using A = acc_t<T>;
  LOOM_ROW_LOOP(r, rows) {
    const A mu = rms ? A(0) : mean[r], inv = rstd[r];
    A sum_gs = 0, sum_gsx = 0;
    for (int64_t j = threadIdx.x; j < n; j += G) {
      A gs = cvt<A>(g[r * n + j]) * param(scale, j, A(1));
      sum_gs += gs;
      sum_gsx += gs * (cvt<A>(x[r * n + j]) - mu) * inv;
    }
    sum_gs = group_sum<G>(sum_gs);
    sum_gsx = group_sum<G>(sum_gsx);
    const A mean_gs = rms ? A(0) : sum_gs / A(n), mean_gsx = sum_gsx / A(n);
    for (int64_t j = threadIdx.x; j < n; j += G) {
      A gs = cvt<A>(g[r * n + j]) * param(scale, j, A(1));
      A xhat = (cvt<A>(x[r * n + j]) - mu) * inv;
      dx[r * n + j] = cvt<T>(inv * (gs - mean_gs - xhat * mean_gsx));
    }
  }
}

/// fn(T{}, O{}) for the supported pairs: O == T, or O == float for half inputs.
template <typename Fn>
void visit_in_out(DType in, DType out, const char* op, Fn&& fn) {
  visit_float_dtype(in, op, [&](auto t) {
    using T = decltype(t);
    if (out == in) return fn(t, t);
    if constexpr (std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>)
      if (out == DType::F32) return fn(t, float{});
    LOOM_THROW(DTypeError, op, ": no CUDA kernel for input ", dtype_name(in), " with output ",
               dtype_name(out));
  });
}

template <typename Launch>
void launch_rows(int64_t rows, int64_t n, Launch&& launch) {
  if (n <= kWarpRowLimit) {
    int64_t blocks = (rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
    launch(std::integral_constant<int, 32>{}, dim3(unsigned(std::min<int64_t>(blocks, 1 << 20))),
           dim3(32, kWarpRowsPerBlock));
  } else {
    launch(std::integral_constant<int, kBlockThreads>{},
           dim3(unsigned(std::min<int64_t>(rows, 1 << 20))), dim3(kBlockThreads, 1));
  }
}

}  // namespace

void norm_rows(const void* x, DType dtype, void* y, DType out_dtype, const void* scale,
               const void* bias, void* mean, void* rstd, int64_t rows, int64_t n, double eps,
               bool rms, Stream stream) {
  if (rows * n == 0) return;
  visit_in_out(dtype, out_dtype, rms ? "rms_norm" : "layer_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    launch_rows(rows, n, [&](auto g, dim3 grid, dim3 block) {
      norm_rows_kernel<T, O, decltype(g)::value><<<grid, block, 0, stream>>>(
          static_cast<const T*>(x), static_cast<O*>(y), static_cast<const A*>(scale),
          static_cast<const A*>(bias), static_cast<A*>(mean), static_cast<A*>(rstd), rows, n,
          A(eps), rms);
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void norm_rows_backward(const void* x, DType dtype, const void* g, DType out_dtype,
                        const void* mean, const void* rstd, const void* scale, void* dx,
                        int64_t rows, int64_t n, bool rms, Stream stream) {
  if (rows * n == 0) return;
  visit_in_out(dtype, out_dtype, rms ? "rms_norm" : "layer_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    launch_rows(rows, n, [&](auto gs, dim3 grid, dim3 block) {
      norm_rows_backward_kernel<T, O, decltype(gs)::value><<<grid, block, 0, stream>>>(
          static_cast<const T*>(x), static_cast<const O*>(g), static_cast<const A*>(mean),
          static_cast<const A*>(rstd), static_cast<const A*>(scale), static_cast<T*>(dx), rows, n,
          rms);
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda

// Fused layer norm / RMS norm over the last axis: one kernel forward (statistics + affine), one
// backward for dx, and one column reduction for the scale and bias gradients. Rows are reduced
// by a warp or a block (kernels/cuda/row_reduce.cuh). Statistics use Flax's fast variance in
// float (or double for f64): var = max(0, mean(x^2) - mean(x)^2).
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "kernels/cuda/column_sums.cuh"
#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/row_reduce.cuh"

namespace loom::cuda {
namespace {

// Parameters (scale, bias) are P: the statistics type, or a half x's own type.
template <typename A, typename P>
__device__ __forceinline__ A param(const P* p, int64_t j, A absent) {
  return p ? cvt<A>(p[j]) : absent;
}

// Rows are read and written in packs of V elements (16 bytes of T where the row length and the
// pointers allow): a warp then covers whole cache lines per access. The backward's scalar half
// accesses left a line half written when the next iteration read it: adding into an earlier
// gradient in place ran at 6% of copy bandwidth (99% in packs; H100, loom_kernel_bench).
template <typename T, typename O, int G, int V, typename P>
__global__ void norm_rows_kernel(const T* x, O* y, const P* scale, const P* bias,
                                 acc_t<T>* mean, acc_t<T>* rstd, int64_t rows, int64_t n,
                                 acc_t<T> eps, bool rms) {
  using A = acc_t<T>;
  LOOM_ROW_LOOP(r, rows) {
    const T* row = x + r * n;
    A s = 0, s2 = 0;
    for (int64_t j = int64_t(threadIdx.x) * V; j < n; j += G * V) {
      const Pack<T, V> xp = load_pack<V>(row + j);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A v = cvt<A>(xp.v[k]);
        s += v;
        s2 += v * v;
      }
    }
    s = group_sum<G>(s);
    s2 = group_sum<G>(s2);
    const A mu = rms ? A(0) : s / A(n);
    const A m2 = s2 / A(n) - mu * mu;
    const A var = rms ? s2 / A(n) : (m2 < A(0) ? A(0) : m2);  // NaN stays NaN, as jnp.maximum
    const A inv = A(1) / sqrt(var + eps);
    if (threadIdx.x == 0) {
      if (!rms) mean[r] = mu;
      rstd[r] = inv;
    }
    for (int64_t j = int64_t(threadIdx.x) * V; j < n; j += G * V) {
      const Pack<T, V> xp = load_pack<V>(row + j);
      Pack<O, V> out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        A v = (cvt<A>(xp.v[k]) - mu) * (inv * param(scale, j + k, A(1)));
        if (!rms) v += param(bias, j + k, A(0));
        out.v[k] = cvt<O>(v);
      }
      store_pack<V>(y + r * n + j, out);
    }
  }
}

template <typename T, typename O, int G, int V, typename P>
__global__ void norm_rows_backward_kernel(const T* x, const O* g, const acc_t<T>* mean,
                                          const acc_t<T>* rstd, const P* scale, T* dx,
                                          int64_t rows, int64_t n, bool rms, bool accumulate) {
  using A = acc_t<T>;
  LOOM_ROW_LOOP(r, rows) {
    const A mu = rms ? A(0) : mean[r], inv = rstd[r];
    A sum_gs = 0, sum_gsx = 0;
    for (int64_t j = int64_t(threadIdx.x) * V; j < n; j += G * V) {
      const Pack<O, V> gp = load_pack<V>(g + r * n + j);
      const Pack<T, V> xp = load_pack<V>(x + r * n + j);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A gs = cvt<A>(gp.v[k]) * param(scale, j + k, A(1));
        sum_gs += gs;
        sum_gsx += gs * (cvt<A>(xp.v[k]) - mu) * inv;
      }
    }
    sum_gs = group_sum<G>(sum_gs);
    sum_gsx = group_sum<G>(sum_gsx);
    const A mean_gs = rms ? A(0) : sum_gs / A(n), mean_gsx = sum_gsx / A(n);
    for (int64_t j = int64_t(threadIdx.x) * V; j < n; j += G * V) {
      const Pack<O, V> gp = load_pack<V>(g + r * n + j);
      const Pack<T, V> xp = load_pack<V>(x + r * n + j);
      Pack<T, V> out;
      if (accumulate) out = load_pack<V>(dx + r * n + j);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A gs = cvt<A>(gp.v[k]) * param(scale, j + k, A(1));
        const A xhat = (cvt<A>(xp.v[k]) - mu) * inv;
        const A d = inv * (gs - mean_gs - xhat * mean_gsx);
        out.v[k] = cvt<T>(accumulate ? cvt<A>(out.v[k]) + d : d);
      }
      store_pack<V>(dx + r * n + j, out);
    }
  }
}

// Rows of at most 8 packs a lane (a warp a row) are held in registers: every load of the row is
// issued before the first sum, the row is read from memory once, and the parameters are read in
// packs too. The same sums in the same order as the kernels above with the same V. kPacks is
// the packs a lane holds, rounded up (unused ones skipped).
template <typename T, typename O, int V, int kPacks, typename P>
__global__ void norm_rows_cached_kernel(const T* x, O* y, const P* scale, const P* bias,
                                        acc_t<T>* mean, acc_t<T>* rstd, int64_t rows, int64_t n,
                                        acc_t<T> eps, bool rms) {
  using A = acc_t<T>;
  auto column = [](int p) { return (int64_t(p) * 32 + threadIdx.x) * V; };
  LOOM_ROW_LOOP(r, rows) {
    const T* row = x + r * n;
    A v[kPacks][V];
#pragma unroll
    for (int p = 0; p < kPacks; ++p)
      if (column(p) < n) {
        const Pack<T, V> xp = load_pack<V>(row + column(p));
#pragma unroll
        for (int k = 0; k < V; ++k) v[p][k] = cvt<A>(xp.v[k]);
      }
    A s = 0, s2 = 0;
#pragma unroll
    for (int p = 0; p < kPacks; ++p)
      if (column(p) < n)
#pragma unroll
        for (int k = 0; k < V; ++k) {
          s += v[p][k];
          s2 += v[p][k] * v[p][k];
        }
    s = group_sum<32>(s);
    s2 = group_sum<32>(s2);
    const A mu = rms ? A(0) : s / A(n);
    const A m2 = s2 / A(n) - mu * mu;
    const A var = rms ? s2 / A(n) : (m2 < A(0) ? A(0) : m2);  // NaN stays NaN, as jnp.maximum
    const A inv = A(1) / sqrt(var + eps);
    if (threadIdx.x == 0) {
      if (!rms) mean[r] = mu;
      rstd[r] = inv;
    }
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const int64_t j = column(p);
      if (j >= n) continue;
      Pack<P, V> sp, bp;
      if (scale) sp = load_pack<V>(scale + j);
      if (bias && !rms) bp = load_pack<V>(bias + j);
      Pack<O, V> out;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        A val = (v[p][k] - mu) * (inv * (scale ? cvt<A>(sp.v[k]) : A(1)));
        if (!rms) val += bias ? cvt<A>(bp.v[k]) : A(0);
        out.v[k] = cvt<O>(val);
      }
      store_pack<V>(y + r * n + j, out);
    }
  }
}

template <typename T, typename O, int V, int kPacks, typename P>
__global__ void norm_rows_backward_cached_kernel(const T* x, const O* g, const acc_t<T>* mean,
                                                 const acc_t<T>* rstd, const P* scale, T* dx,
                                                 int64_t rows, int64_t n, bool rms,
                                                 bool accumulate) {
  using A = acc_t<T>;
  auto column = [](int p) { return (int64_t(p) * 32 + threadIdx.x) * V; };
  LOOM_ROW_LOOP(r, rows) {
    const A mu = rms ? A(0) : mean[r], inv = rstd[r];
    A gs[kPacks][V], xc[kPacks][V];  // g * scale and x - mu
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const int64_t j = column(p);
      if (j >= n) continue;
      const Pack<O, V> gp = load_pack<V>(g + r * n + j);
      const Pack<T, V> xp = load_pack<V>(x + r * n + j);
      Pack<P, V> sp;
      if (scale) sp = load_pack<V>(scale + j);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        gs[p][k] = cvt<A>(gp.v[k]) * (scale ? cvt<A>(sp.v[k]) : A(1));
        xc[p][k] = cvt<A>(xp.v[k]) - mu;
      }
    }
    A sum_gs = 0, sum_gsx = 0;
#pragma unroll
    for (int p = 0; p < kPacks; ++p)
      if (column(p) < n)
#pragma unroll
        for (int k = 0; k < V; ++k) {
          sum_gs += gs[p][k];
          sum_gsx += gs[p][k] * xc[p][k] * inv;
        }
    sum_gs = group_sum<32>(sum_gs);
    sum_gsx = group_sum<32>(sum_gsx);
    const A mean_gs = rms ? A(0) : sum_gs / A(n), mean_gsx = sum_gsx / A(n);
#pragma unroll
    for (int p = 0; p < kPacks; ++p) {
      const int64_t j = column(p);
      if (j >= n) continue;
      Pack<T, V> out;
      if (accumulate) out = load_pack<V>(dx + r * n + j);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A d = inv * (gs[p][k] - mean_gs - xc[p][k] * inv * mean_gsx);
        out.v[k] = cvt<T>(accumulate ? cvt<A>(out.v[k]) + d : d);
      }
      store_pack<V>(dx + r * n + j, out);
    }
  }
}

/// Rows a warp each (G == 32) whose pointers all take 16-byte packs of T, at most 8 packs a
/// lane: launch(V, kPacks) for the register-cached kernels, and true. False otherwise: the
/// streaming kernels run. Only the pack counts a warp row (kWarpRowLimit) can need are compiled.
template <typename T, int G, typename Launch>
bool launch_cached(int64_t n, std::initializer_list<std::pair<const void*, size_t>> pointers,
                   Launch&& launch) {
  bool cached = false;
  if constexpr (G == 32)
    launch_packed<T>(n, pointers, [&](auto v) {
      constexpr int V = decltype(v)::value;
      if constexpr (V > 1) {
        const int64_t packs = (n + 32 * V - 1) / (32 * V);
        cached = true;
        if (packs <= 2) launch(v, std::integral_constant<int, 2>{});
        else if (packs <= 4) launch(v, std::integral_constant<int, 4>{});
        else if constexpr (32 * 4 * V < kWarpRowLimit) {
          if (packs <= 8) launch(v, std::integral_constant<int, 8>{});
          else cached = false;
        } else {
          cached = false;
        }
      }
    });
  return cached;
}

/// Parameter gradients: dscale[j] = sum over rows of g * xhat, dbias[j] = sum of g, as column
/// sums (kernels/cuda/column_sums.cuh) with each row's own statistics.
template <typename T, typename O, typename P, int V>
__global__ void norm_param_grads_kernel(const T* x, const O* g, const acc_t<T>* mean,
                                        const acc_t<T>* rstd, int64_t rows, int64_t n,
                                        int64_t col_begin, int64_t chunk_rows, acc_t<T>* part,
                                        P* dscale, P* dbias) {
  using A = acc_t<T>;
  const int64_t j0 = first_column_of_thread<V>(col_begin);
  auto add_row = [&](int64_t r, A* s, A* b) {
    const Pack<T, V> xp = load_pack<V>(x + r * n + j0);
    const Pack<O, V> gp = load_pack<V>(g + r * n + j0);
    const A mu = mean ? mean[r] : A(0), inv = rstd[r];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const A gv = cvt<A>(gp.v[v]);
      s[v] += gv * ((cvt<A>(xp.v[v]) - mu) * inv);
      b[v] += gv;
    }
  };
  auto finish = [&](const A* s, const A* b) {
#pragma unroll
    for (int v = 0; v < V; ++v) {
      if (dscale) dscale[j0 + v] = cvt<P>(s[v]);
      if (dbias) dbias[j0 + v] = cvt<P>(b[v]);
    }
  };
  sum_columns<A, V>(rows, n, j0, chunk_rows, part, add_row, finish);
}

/// run(P{}) with the parameters' type: x's own for half parameters, else the statistics type.
template <typename T, typename Run>
void with_param_type(bool half_params, Run&& run) {
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    run(acc_t<T>{});
  } else {
    if (half_params) run(T{});
    else run(acc_t<T>{});
  }
}

}  // namespace

void norm_rows(const void* x, DType dtype, void* y, DType out_dtype, const void* scale,
               const void* bias, bool half_params, void* mean, void* rstd, int64_t rows, int64_t n,
               double eps, bool rms, Stream stream, bool cached) {
  if (rows * n == 0) return;
  visit_in_out(dtype, out_dtype, rms ? "rms_norm" : "layer_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    launch_rows(rows, n, [&](auto g, dim3 grid, dim3 block) {
      with_param_type<T>(half_params, [&](auto pz) {
        using P = decltype(pz);
        if (cached && launch_cached<T, decltype(g)::value>(
                n, {{x, sizeof(T)}, {y, sizeof(O)}, {scale, sizeof(P)}, {bias, sizeof(P)}},
                [&](auto v, auto packs) {
                  norm_rows_cached_kernel<T, O, decltype(v)::value, decltype(packs)::value, P>
                      <<<grid, block, 0, stream>>>(static_cast<const T*>(x), static_cast<O*>(y),
                                                   static_cast<const P*>(scale),
                                                   static_cast<const P*>(bias),
                                                   static_cast<A*>(mean), static_cast<A*>(rstd),
                                                   rows, n, A(eps), rms);
                }))
          return;
        auto run = [&](auto v) {
          norm_rows_kernel<T, O, decltype(g)::value, decltype(v)::value, P>
              <<<grid, block, 0, stream>>>(static_cast<const T*>(x), static_cast<O*>(y),
                                           static_cast<const P*>(scale), static_cast<const P*>(bias),
                                           static_cast<A*>(mean), static_cast<A*>(rstd), rows, n,
                                           A(eps), rms);
        };
        // Measured on an H100 (loom_kernel_bench, 768-wide rows, before the cached kernel): packs
        // help float32 (75% of copy bandwidth against 69%) and hurt bfloat16 (52% against 78%,
        // not yet understood).
        if constexpr (sizeof(T) == 4) launch_packed<T>(n, {{x, sizeof(T)}, {y, sizeof(O)}}, run);
        else run(std::integral_constant<int, 1>{});
      });
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void norm_rows_backward(const void* x, DType dtype, const void* g, DType out_dtype,
                        const void* mean, const void* rstd, const void* scale, bool half_params,
                        void* dx, int64_t rows, int64_t n, bool rms, bool accumulate,
                        Stream stream, bool cached) {
  if (rows * n == 0) return;
  visit_in_out(dtype, out_dtype, rms ? "rms_norm" : "layer_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    launch_rows(rows, n, [&](auto gs, dim3 grid, dim3 block) {
      with_param_type<T>(half_params, [&](auto pz) {
        using P = decltype(pz);
        if (cached && launch_cached<T, decltype(gs)::value>(
                n, {{x, sizeof(T)}, {g, sizeof(O)}, {dx, sizeof(T)}, {scale, sizeof(P)}},
                [&](auto v, auto packs) {
                  norm_rows_backward_cached_kernel<T, O, decltype(v)::value, decltype(packs)::value, P>
                      <<<grid, block, 0, stream>>>(static_cast<const T*>(x),
                                                   static_cast<const O*>(g),
                                                   static_cast<const A*>(mean),
                                                   static_cast<const A*>(rstd),
                                                   static_cast<const P*>(scale),
                                                   static_cast<T*>(dx), rows, n, rms, accumulate);
                }))
          return;
        launch_packed<T>(n, {{x, sizeof(T)}, {g, sizeof(O)}, {dx, sizeof(T)}}, [&](auto v) {
          norm_rows_backward_kernel<T, O, decltype(gs)::value, decltype(v)::value, P>
              <<<grid, block, 0, stream>>>(static_cast<const T*>(x), static_cast<const O*>(g),
                                           static_cast<const A*>(mean),
                                           static_cast<const A*>(rstd),
                                           static_cast<const P*>(scale), static_cast<T*>(dx),
                                           rows, n, rms, accumulate);
        });
      });
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

int64_t norm_param_workspace_size(int64_t rows, int64_t n) { return column_sums_workspace(rows, n); }

void norm_param_grads(const void* x, DType dtype, const void* g, DType out_dtype,
                      const void* mean, const void* rstd, void* dscale, void* dbias,
                      bool half_params, void* work, int64_t rows, int64_t n, Stream stream) {
  if (n == 0) return;
  visit_in_out(dtype, out_dtype, mean ? "layer_norm" : "rms_norm", [&](auto tz, auto oz) {
    using T = decltype(tz);
    using O = decltype(oz);
    using A = acc_t<T>;
    with_param_type<T>(half_params, [&](auto pz) {
      using P = decltype(pz);
      launch_packed<T>(n, {{x, sizeof(T)}, {g, sizeof(O)}}, [&](auto v) {
        constexpr int V = decltype(v)::value;
        const ColumnSumsGrid sums = column_sums_grid(rows, n, V);
        for_each_column_launch(sums, V, [&](dim3 grid, int64_t col_begin) {
          norm_param_grads_kernel<T, O, P, V><<<grid, sums.block, 0, stream>>>(
              static_cast<const T*>(x), static_cast<const O*>(g), static_cast<const A*>(mean),
              static_cast<const A*>(rstd), rows, n, col_begin, sums.chunk_rows,
              static_cast<A*>(work), static_cast<P*>(dscale), static_cast<P*>(dbias));
          LOOM_CUDA_CHECK(cudaGetLastError());
        });
      });
    });
  });
}

}  // namespace loom::cuda

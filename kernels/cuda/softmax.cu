// Fused softmax / log_softmax (forward and backward) and softmax cross-entropy with integer
// labels. Rows along the last axis are reduced by a group of threads: one warp per row for rows
// of up to 1024 elements (4 rows per block), a 256-thread block per row beyond that. Softmax over
// an inner axis (inner > 1) uses one thread per column, so reads stay coalesced across columns.
#include <cuda/std/limits>

#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/softmax.h"

namespace loom::cuda {
namespace {

constexpr int kWarpRowsPerBlock = 4;
constexpr int kBlockThreads = 256;
constexpr int64_t kWarpRowLimit = 1024;

template <typename A>
__device__ __forceinline__ A nan_max(A a, A b) {  // NaN propagates, as jnp.max
  return (a != a || b != b) ? (a != a ? a : b) : (a > b ? a : b);
}
struct SumOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const { return a + b; }
};
struct MaxOp {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const { return nan_max(a, b); }
};

template <typename A>
__device__ __forceinline__ A neg_inf() { return -::cuda::std::numeric_limits<A>::infinity(); }

/// Reduces v over the G threads of a row (G == 32: the warp; G == kBlockThreads: the block).
template <int G, typename A, typename Op>
__device__ __forceinline__ A group_reduce(A v, Op op, A identity) {
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  if constexpr (G > 32) {
    __shared__ A partial[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // earlier readers of `partial` are done
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < G / 32 ? partial[lane] : identity;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  }
  return v;
}

// Grid-stride over rows; every thread of a row's group runs the same iterations.
#define LOOM_ROW_LOOP(r, rows)                                                               \
  for (int64_t r = int64_t(blockIdx.x) * blockDim.y + threadIdx.y; r < (rows);              \
       r += int64_t(gridDim.x) * blockDim.y)

template <typename T, int G>
__global__ void softmax_rows_kernel(const T* x, T* out, int64_t rows, int64_t n, bool log,
                                    DeviceRowMask mask, double masked_fill) {
  using A = acc_t<T>;
  const A fill = A(masked_fill);
  LOOM_ROW_LOOP(r, rows) {
    const T* row = x + r * n;
    T* orow = out + r * n;
    const bool* mrow = mask.row(r);
    auto at = [&](int64_t j) { return mrow && !mrow[j * mask.col_stride] ? fill : cvt<A>(row[j]); };
    A m = neg_inf<A>();
    for (int64_t j = threadIdx.x; j < n; j += G) m = nan_max(m, at(j));
    m = group_reduce<G>(m, MaxOp{}, neg_inf<A>());
    A s = 0;
    for (int64_t j = threadIdx.x; j < n; j += G) s += exp(at(j) - m);
    s = group_reduce<G>(s, SumOp{}, A(0));
    if (log) {
      A ls = ::log(s);
      for (int64_t j = threadIdx.x; j < n; j += G) orow[j] = cvt<T>(at(j) - m - ls);
    } else {
      for (int64_t j = threadIdx.x; j < n; j += G) orow[j] = cvt<T>(exp(at(j) - m) / s);
    }
  }
}

template <typename T, int G>
__global__ void softmax_backward_rows_kernel(const T* y, const T* g, T* dx, int64_t rows,
                                             int64_t n, bool log, DeviceRowMask mask) {
  using A = acc_t<T>;
  LOOM_ROW_LOOP(r, rows) {
    const T* yr = y + r * n;
    const T* gr = g + r * n;
    T* dr = dx + r * n;
    const bool* mrow = mask.row(r);
    A s = 0;
    for (int64_t j = threadIdx.x; j < n; j += G) s += log ? cvt<A>(gr[j]) : cvt<A>(gr[j]) * cvt<A>(yr[j]);
    s = group_reduce<G>(s, SumOp{}, A(0));
    for (int64_t j = threadIdx.x; j < n; j += G) {
      A gv = cvt<A>(gr[j]), yv = cvt<A>(yr[j]);
      const bool dropped = mrow && !mrow[j * mask.col_stride];  // where's gradient there is 0
      dr[j] = dropped ? cvt<T>(A(0)) : cvt<T>(log ? gv - exp(yv) * s : yv * (gv - s));
    }
  }
}

// Rows of up to 32 lanes x C chunks x W elements kept in registers, one warp per row: x is
// read once with 16-byte loads (the kernels above read it three times, element by element).
// W is 16 bytes of T; n must be a multiple of W (then every row is 16-byte aligned), and a mask
// must have unit column stride and W-aligned rows: a lane reads its W mask bytes as one word.
template <int W>
using MaskWord = std::conditional_t<W == 8, uint64_t, std::conditional_t<W == 4, uint32_t, uint16_t>>;

template <int W>
__device__ __forceinline__ MaskWord<W> mask_word(const bool* mrow, int64_t j) {
  return mrow ? *reinterpret_cast<const MaskWord<W>*>(mrow + j) : ~MaskWord<W>(0);
}
template <int W>
__device__ __forceinline__ bool kept(MaskWord<W> word, int w) {
  return (word >> (8 * w)) & 0xff;
}

template <typename T, int C>
__global__ void __launch_bounds__(32 * kWarpRowsPerBlock)
    softmax_rows_regs_kernel(const T* x, T* out, int64_t rows, int64_t n, bool log,
                             DeviceRowMask mask, double masked_fill) {
  using A = acc_t<T>;
  constexpr int W = 16 / int(sizeof(T));
  const A fill = A(masked_fill);
  LOOM_ROW_LOOP(r, rows) {
    const bool* mrow = mask.row(r);
    A v[C][W];
    A m = neg_inf<A>();
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t j = (int64_t(c) * 32 + threadIdx.x) * W;
      if (j >= n) continue;
      const Pack<T, W> p = *reinterpret_cast<const Pack<T, W>*>(x + r * n + j);
      const MaskWord<W> word = mask_word<W>(mrow, j);
#pragma unroll
      for (int w = 0; w < W; ++w) {
        v[c][w] = kept<W>(word, w) ? cvt<A>(p.v[w]) : fill;
        m = nan_max(m, v[c][w]);
      }
    }
    m = group_reduce<32>(m, MaxOp{}, neg_inf<A>());
    A s = 0;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      if ((int64_t(c) * 32 + threadIdx.x) * W >= n) continue;
#pragma unroll
      for (int w = 0; w < W; ++w) {
        const A e = exp(v[c][w] - m);
        s += e;
        if (!log) v[c][w] = e;
      }
    }
    s = group_reduce<32>(s, SumOp{}, A(0));
    const A ls = log ? ::log(s) : A(0);
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t j = (int64_t(c) * 32 + threadIdx.x) * W;
      if (j >= n) continue;
      Pack<T, W> o;
#pragma unroll
      for (int w = 0; w < W; ++w) o.v[w] = cvt<T>(log ? v[c][w] - m - ls : v[c][w] / s);
      *reinterpret_cast<Pack<T, W>*>(out + r * n + j) = o;
    }
  }
}

template <typename T, int C>
__global__ void __launch_bounds__(32 * kWarpRowsPerBlock)
    softmax_backward_rows_regs_kernel(const T* y, const T* g, T* dx, int64_t rows, int64_t n,
                                      bool log, DeviceRowMask mask) {
  using A = acc_t<T>;
  constexpr int W = 16 / int(sizeof(T));
  LOOM_ROW_LOOP(r, rows) {
    const bool* mrow = mask.row(r);
    Pack<T, W> yv[C], gv[C];  // kept in T: half the registers of float copies
    A s = 0;
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t j = (int64_t(c) * 32 + threadIdx.x) * W;
      if (j >= n) continue;
      yv[c] = *reinterpret_cast<const Pack<T, W>*>(y + r * n + j);
      gv[c] = *reinterpret_cast<const Pack<T, W>*>(g + r * n + j);
#pragma unroll
      for (int w = 0; w < W; ++w)
        s += log ? cvt<A>(gv[c].v[w]) : cvt<A>(gv[c].v[w]) * cvt<A>(yv[c].v[w]);
    }
    s = group_reduce<32>(s, SumOp{}, A(0));
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t j = (int64_t(c) * 32 + threadIdx.x) * W;
      if (j >= n) continue;
      const MaskWord<W> word = mask_word<W>(mrow, j);
      Pack<T, W> o;
#pragma unroll
      for (int w = 0; w < W; ++w) {
        const A gw = cvt<A>(gv[c].v[w]), yw = cvt<A>(yv[c].v[w]);
        // where's gradient is 0 where the mask is false
        o.v[w] = !kept<W>(word, w) ? cvt<T>(A(0)) : cvt<T>(log ? gw - exp(yw) * s : yw * (gw - s));
      }
      *reinterpret_cast<Pack<T, W>*>(dx + r * n + j) = o;
    }
  }
}

/// Calls launch(std::integral_constant<int, C>, grid, block) for the register kernels when rows
/// of n elements of T fit them (at most 32 values per lane, n a multiple of 16 bytes, 16-byte
/// aligned pointers); false otherwise.
template <typename T, typename Launch>
bool launch_register_rows(int64_t rows, int64_t n, std::initializer_list<const void*> pointers,
                          const RowMask* mask, Launch&& launch) {
  constexpr int64_t W = 16 / int64_t(sizeof(T));
  if constexpr (sizeof(T) > 4) {
    return false;
  } else {
    if (n % W != 0 || n > 32 * 32) return false;
    for (const void* p : pointers)
      if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
    if (mask) {  // one aligned word of W mask bytes per lane and chunk
      if (mask->col_stride != 1 || reinterpret_cast<uintptr_t>(mask->data) % W != 0) return false;
      for (int64_t st : mask->row_strides)
        if (st % W != 0) return false;
    }
    const int64_t chunks = (n + 32 * W - 1) / (32 * W);
    const int64_t blocks = (rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
    const dim3 grid(unsigned(std::min<int64_t>(blocks, 1 << 20))), block(32, kWarpRowsPerBlock);
    if (chunks == 1) launch(std::integral_constant<int, 1>{}, grid, block);
    else if (chunks == 2) launch(std::integral_constant<int, 2>{}, grid, block);
    else if (chunks <= 4) launch(std::integral_constant<int, 4>{}, grid, block);
    else if constexpr (32 / W >= 8) launch(std::integral_constant<int, 32 / W>{}, grid, block);
    else return false;
    return true;
  }
}

#define LOOM_GRID_STRIDE_LOOP(i, n)                                                  \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

template <typename T>
__global__ void softmax_cols_kernel(const T* x, T* out, int64_t outer, int64_t n, int64_t inner,
                                    bool log) {
  using A = acc_t<T>;
  LOOM_GRID_STRIDE_LOOP(c, outer * inner) {
    const int64_t base = (c / inner) * n * inner + c % inner;
    A m = neg_inf<A>();
    for (int64_t j = 0; j < n; ++j) m = nan_max(m, cvt<A>(x[base + j * inner]));
    A s = 0;
    for (int64_t j = 0; j < n; ++j) s += exp(cvt<A>(x[base + j * inner]) - m);
    A ls = ::log(s);
    for (int64_t j = 0; j < n; ++j) {
      A v = cvt<A>(x[base + j * inner]);
      out[base + j * inner] = cvt<T>(log ? v - m - ls : exp(v - m) / s);
    }
  }
}

template <typename T>
__global__ void softmax_backward_cols_kernel(const T* y, const T* g, T* dx, int64_t outer,
                                             int64_t n, int64_t inner, bool log) {
  using A = acc_t<T>;
  LOOM_GRID_STRIDE_LOOP(c, outer * inner) {
    const int64_t base = (c / inner) * n * inner + c % inner;
    A s = 0;
    for (int64_t j = 0; j < n; ++j) {
      int64_t k = base + j * inner;
      s += log ? cvt<A>(g[k]) : cvt<A>(g[k]) * cvt<A>(y[k]);
    }
    for (int64_t j = 0; j < n; ++j) {
      int64_t k = base + j * inner;
      A gv = cvt<A>(g[k]), yv = cvt<A>(y[k]);
      dx[k] = cvt<T>(log ? gv - exp(yv) * s : yv * (gv - s));
    }
  }
}

/// The label as a column index, or -1 when out of range (negative labels count from the end).
template <typename L>
__device__ __forceinline__ int64_t column_of(L label, int64_t n) {
  int64_t l = int64_t(label);
  if (l < 0) l += n;
  return l >= 0 && l < n ? l : -1;
}

template <typename T, typename L, int G>
__global__ void cross_entropy_kernel(const T* logits, const L* labels, T* loss, acc_t<T>* lse,
                                     int64_t rows, int64_t n) {
  using A = acc_t<T>;
  LOOM_ROW_LOOP(r, rows) {
    const T* row = logits + r * n;
    A m = neg_inf<A>();
    for (int64_t j = threadIdx.x; j < n; j += G) m = nan_max(m, cvt<A>(row[j]));
    m = group_reduce<G>(m, MaxOp{}, neg_inf<A>());
    A s = 0;
    for (int64_t j = threadIdx.x; j < n; j += G) s += exp(cvt<A>(row[j]) - m);
    s = group_reduce<G>(s, SumOp{}, A(0));
    if (threadIdx.x == 0) {
      A l = m + ::log(s);
      int64_t c = column_of(labels[r], n);
      lse[r] = l;
      loss[r] = cvt<T>(c < 0 ? ::cuda::std::numeric_limits<A>::quiet_NaN() : l - cvt<A>(row[c]));
    }
  }
}

template <typename T, typename L>
__global__ void cross_entropy_backward_kernel(const T* logits, const L* labels,
                                              const acc_t<T>* lse, const T* g, T* dx,
                                              int64_t rows, int64_t n) {
  using A = acc_t<T>;
  LOOM_GRID_STRIDE_LOOP(i, rows * n) {
    const int64_t r = i / n, j = i % n;
    A gr = cvt<A>(g[r]);
    A p = exp(cvt<A>(logits[i]) - lse[r]);
    dx[i] = cvt<T>(gr * p - (j == column_of(labels[r], n) ? gr : A(0)));
  }
}

/// Launches kernel<G> over `rows` rows with the group size that fits `n`.
template <typename Launch>
void launch_rows(int64_t rows, int64_t n, Stream stream, Launch&& launch) {
  if (n <= kWarpRowLimit) {
    int64_t blocks = (rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock;
    launch(std::integral_constant<int, 32>{}, dim3(unsigned(std::min<int64_t>(blocks, 1 << 20))),
           dim3(32, kWarpRowsPerBlock), stream);
  } else {
    launch(std::integral_constant<int, kBlockThreads>{},
           dim3(unsigned(std::min<int64_t>(rows, 1 << 20))), dim3(kBlockThreads, 1), stream);
  }
}

template <typename Fn>
void visit_label_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::I32: return fn(int32_t{});
    case DType::I64: return fn(int64_t{});
    case DType::U8: return fn(uint8_t{});
    case DType::U32: return fn(uint32_t{});
    default:
      LOOM_THROW(DTypeError, "softmax_cross_entropy_with_integer_labels: labels must be integers, got ",
                 dtype_name(t));
  }
}

}  // namespace

void softmax(const void* x, void* out, int64_t outer, int64_t n, int64_t inner, DType dtype,
             bool log, Stream stream) {
  if (outer * n * inner == 0) return;
  visit_float_dtype(dtype, log ? "log_softmax" : "softmax", [&](auto z) {
    using T = decltype(z);
    auto* px = static_cast<const T*>(x);
    auto* po = static_cast<T*>(out);
    if (inner == 1) {
      if (launch_register_rows<T>(outer, n, {px, po}, nullptr, [&](auto c, dim3 grid, dim3 block) {
            softmax_rows_regs_kernel<T, decltype(c)::value><<<grid, block, 0, stream>>>(
                px, po, outer, n, log, DeviceRowMask{}, 0.0);
          }))
        return;
      launch_rows(outer, n, stream, [&](auto g, dim3 grid, dim3 block, Stream s) {
        softmax_rows_kernel<T, decltype(g)::value><<<grid, block, 0, s>>>(px, po, outer, n, log,
                                                                           DeviceRowMask{}, 0.0);
      });
    } else {
      softmax_cols_kernel<T><<<blocks_for(outer * inner), 256, 0, stream>>>(px, po, outer, n, inner, log);
    }
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void softmax_backward(const void* y, const void* grad, void* dx, int64_t outer, int64_t n,
                      int64_t inner, DType dtype, bool log, Stream stream) {
  if (outer * n * inner == 0) return;
  visit_float_dtype(dtype, log ? "log_softmax" : "softmax", [&](auto z) {
    using T = decltype(z);
    auto* py = static_cast<const T*>(y);
    auto* pg = static_cast<const T*>(grad);
    auto* pd = static_cast<T*>(dx);
    if (inner == 1) {
      if (launch_register_rows<T>(outer, n, {py, pg, pd}, nullptr, [&](auto c, dim3 grid, dim3 block) {
            softmax_backward_rows_regs_kernel<T, decltype(c)::value><<<grid, block, 0, stream>>>(
                py, pg, pd, outer, n, log, DeviceRowMask{});
          }))
        return;
      launch_rows(outer, n, stream, [&](auto g, dim3 grid, dim3 block, Stream s) {
        softmax_backward_rows_kernel<T, decltype(g)::value><<<grid, block, 0, s>>>(
            py, pg, pd, outer, n, log, DeviceRowMask{});
      });
    } else {
      softmax_backward_cols_kernel<T><<<blocks_for(outer * inner), 256, 0, stream>>>(
          py, pg, pd, outer, n, inner, log);
    }
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void masked_softmax(const void* x, const RowMask& mask, double fill, void* out, int64_t rows,
                    int64_t n, DType dtype, Stream stream) {
  if (rows * n == 0) return;
  LOOM_INTERNAL_ASSERT(mask.data != nullptr);
  const DeviceRowMask dm = device_row_mask(mask, "masked_softmax");
  visit_float_dtype(dtype, "masked_softmax", [&](auto z) {
    using T = decltype(z);
    auto* px = static_cast<const T*>(x);
    auto* po = static_cast<T*>(out);
    if (launch_register_rows<T>(rows, n, {px, po}, &mask, [&](auto c, dim3 grid, dim3 block) {
          softmax_rows_regs_kernel<T, decltype(c)::value><<<grid, block, 0, stream>>>(
              px, po, rows, n, false, dm, fill);
        }))
      return;
    launch_rows(rows, n, stream, [&](auto g, dim3 grid, dim3 block, Stream s) {
      softmax_rows_kernel<T, decltype(g)::value><<<grid, block, 0, s>>>(px, po, rows, n, false, dm,
                                                                         fill);
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void masked_softmax_backward(const void* y, const void* grad, const RowMask& mask, void* dx,
                             int64_t rows, int64_t n, DType dtype, Stream stream) {
  if (rows * n == 0) return;
  LOOM_INTERNAL_ASSERT(mask.data != nullptr);
  const DeviceRowMask dm = device_row_mask(mask, "masked_softmax");
  visit_float_dtype(dtype, "masked_softmax", [&](auto z) {
    using T = decltype(z);
    auto* py = static_cast<const T*>(y);
    auto* pg = static_cast<const T*>(grad);
    auto* pd = static_cast<T*>(dx);
    if (launch_register_rows<T>(rows, n, {py, pg, pd}, &mask, [&](auto c, dim3 grid, dim3 block) {
          softmax_backward_rows_regs_kernel<T, decltype(c)::value><<<grid, block, 0, stream>>>(
              py, pg, pd, rows, n, false, dm);
        }))
      return;
    launch_rows(rows, n, stream, [&](auto g, dim3 grid, dim3 block, Stream s) {
      softmax_backward_rows_kernel<T, decltype(g)::value><<<grid, block, 0, s>>>(py, pg, pd, rows,
                                                                                  n, false, dm);
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_int(const void* logits, DType dtype, const void* labels, DType label_dtype,
                       void* loss, void* lse, int64_t rows, int64_t n, Stream stream) {
  if (rows == 0) return;
  visit_float_dtype(dtype, "softmax_cross_entropy_with_integer_labels", [&](auto z) {
    using T = decltype(z);
    visit_label_dtype(label_dtype, [&](auto lz) {
      using L = decltype(lz);
      launch_rows(rows, n, stream, [&](auto g, dim3 grid, dim3 block, Stream s) {
        cross_entropy_kernel<T, L, decltype(g)::value><<<grid, block, 0, s>>>(
            static_cast<const T*>(logits), static_cast<const L*>(labels), static_cast<T*>(loss),
            static_cast<acc_t<T>*>(lse), rows, n);
      });
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_int_backward(const void* logits, DType dtype, const void* labels,
                                DType label_dtype, const void* lse, const void* grad, void* dx,
                                int64_t rows, int64_t n, Stream stream) {
  if (rows * n == 0) return;
  visit_float_dtype(dtype, "softmax_cross_entropy_with_integer_labels", [&](auto z) {
    using T = decltype(z);
    visit_label_dtype(label_dtype, [&](auto lz) {
      using L = decltype(lz);
      cross_entropy_backward_kernel<T, L><<<blocks_for(rows * n), 256, 0, stream>>>(
          static_cast<const T*>(logits), static_cast<const L*>(labels),
          static_cast<const acc_t<T>*>(lse), static_cast<const T*>(grad), static_cast<T*>(dx),
          rows, n);
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda

// Fused softmax / log_softmax (forward and backward), plain and masked. Rows along the last axis
// are reduced by a group of threads (kernels/cuda/row_reduce.cuh). Softmax over an inner axis
// (inner > 1) uses one thread per column, so reads stay coalesced across columns.
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/row_reduce.cuh"
#include "kernels/cuda/softmax.h"

namespace loom::cuda {
namespace {

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
      launch_rows(outer, n, [&](auto g, dim3 grid, dim3 block) {
        softmax_rows_kernel<T, decltype(g)::value><<<grid, block, 0, stream>>>(px, po, outer, n, log,
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
      launch_rows(outer, n, [&](auto g, dim3 grid, dim3 block) {
        softmax_backward_rows_kernel<T, decltype(g)::value><<<grid, block, 0, stream>>>(
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
    launch_rows(rows, n, [&](auto g, dim3 grid, dim3 block) {
      softmax_rows_kernel<T, decltype(g)::value><<<grid, block, 0, stream>>>(px, po, rows, n, false, dm,
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
    launch_rows(rows, n, [&](auto g, dim3 grid, dim3 block) {
      softmax_backward_rows_kernel<T, decltype(g)::value><<<grid, block, 0, stream>>>(py, pg, pd, rows,
                                                                                  n, false, dm);
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda

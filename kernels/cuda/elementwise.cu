#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/elementwise.h"

namespace loom::cuda {
namespace {

bool is_dense(const Shape& shape, const Shape& strides) { return strides == contiguous_strides(shape); }

template <typename T, bool kDense>
__global__ void unary_kernel(UnaryOp op, const T* x, StridedIndex xi, T* out, int64_t n,
                             acc_t<T> alpha) {
  using C = acc_t<T>;
  LOOM_GRID_STRIDE_LOOP(i, n) {
    int64_t xo = kDense ? i : xi.offset(i);
    out[i] = cvt<T>(unary_apply<C>(op, cvt<C>(x[xo]), alpha));
  }
}

template <typename T>
__global__ void unary_backward_kernel(UnaryOp op, const T* x, const T* g, T* out, int64_t n,
                                      acc_t<T> alpha) {
  using C = acc_t<T>;
  LOOM_GRID_STRIDE_LOOP(i, n) {
    out[i] = cvt<T>(cvt<C>(g[i]) * unary_derivative<C>(op, cvt<C>(x[i]), alpha));
  }
}

template <typename T>
using binary_compute_t = std::conditional_t<
    std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>, float,
    std::conditional_t<std::is_same_v<T, bool>, int32_t, T>>;  // bools as 0/1

template <typename T, typename O, bool kDense>
__global__ void binary_kernel(BinaryOp op, const T* a, StridedIndex ai, const T* b,
                              StridedIndex bi, O* out, int64_t n) {
  using C = binary_compute_t<T>;
  LOOM_GRID_STRIDE_LOOP(i, n) {
    int64_t ao = kDense ? i : ai.offset(i);
    int64_t bo = kDense ? i : bi.offset(i);
    out[i] = cvt<O>(binary_apply<C>(op, cvt<C>(a[ao]), cvt<C>(b[bo])));
  }
}

// Dense operands, 16 bytes per access: every thread takes packs of V elements (pack(first)),
// then the tail of n % V elements one at a time (element(i)). The host launches the kernels
// below only for 16-byte aligned pointers.
template <int V, typename PackFn, typename ElementFn>
__device__ __forceinline__ void packs_then_tail(int64_t n, PackFn&& pack, ElementFn&& element) {
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x, packs = n / V;
  for (int64_t p = tid; p < packs; p += stride) pack(p * V);
  for (int64_t i = packs * V + tid; i < n; i += stride) element(i);
}

template <typename T>
__global__ void unary_packed_kernel(UnaryOp op, const T* x, T* out, int64_t n, acc_t<T> alpha) {
  using C = acc_t<T>;
  constexpr int V = 16 / int(sizeof(T));
  auto f = [&](T v) { return cvt<T>(unary_apply<C>(op, cvt<C>(v), alpha)); };
  packs_then_tail<V>(n, [&](int64_t i) {
    const Pack<T, V> xv = load_pack<V>(x + i);
    Pack<T, V> o;
#pragma unroll
    for (int v = 0; v < V; ++v) o.v[v] = f(xv.v[v]);
    store_pack<V>(out + i, o);
  }, [&](int64_t i) { out[i] = f(x[i]); });
}

// out[i] = f(a[i], b[i]) on dense operands (a binary op; a unary op's backward from x and g).
template <typename T, typename O, typename Fn>
__global__ void packed_map2_kernel(const T* a, const T* b, O* out, int64_t n, Fn f) {
  constexpr int V = 16 / int(sizeof(T));
  packs_then_tail<V>(n, [&](int64_t i) {
    const Pack<T, V> av = load_pack<V>(a + i), bv = load_pack<V>(b + i);
    Pack<O, V> o;
#pragma unroll
    for (int v = 0; v < V; ++v) o.v[v] = f(av.v[v], bv.v[v]);
    store_pack<V>(out + i, o);
  }, [&](int64_t i) { out[i] = f(a[i], b[i]); });
}

template <typename T>
struct UnaryBackwardOf {  // g * op'(x)
  UnaryOp op;
  acc_t<T> alpha;
  __device__ __forceinline__ T operator()(T x, T g) const {
    using C = acc_t<T>;
    return cvt<T>(cvt<C>(g) * unary_derivative<C>(op, cvt<C>(x), alpha));
  }
};

template <typename T, typename O>
struct BinaryOf {
  BinaryOp op;
  __device__ __forceinline__ O operator()(T a, T b) const {
    using C = binary_compute_t<T>;
    return cvt<O>(binary_apply<C>(op, cvt<C>(a), cvt<C>(b)));
  }
};

template <typename T>
__global__ void where_kernel(const bool* c, StridedIndex ci, const T* a, StridedIndex ai,
                             const T* b, StridedIndex bi, T* out, int64_t n) {
  LOOM_GRID_STRIDE_LOOP(i, n) { out[i] = c[ci.offset(i)] ? a[ai.offset(i)] : b[bi.offset(i)]; }
}

}  // namespace

void unary(UnaryOp op, const void* x, const Shape& x_strides, void* out, const Shape& out_shape,
           DType dtype, double alpha, Stream stream) {
  int64_t n = shape_numel(out_shape);
  if (n == 0) return;
  StridedIndex xi = make_strided_index(out_shape, x_strides, unary_op_name(op));
  bool dense = is_dense(out_shape, x_strides);
  visit_float_dtype(dtype, unary_op_name(op), [&](auto z) {
    using T = decltype(z);
    auto* px = static_cast<const T*>(x);
    auto* po = static_cast<T*>(out);
    constexpr int V = 16 / int(sizeof(T));
    if (dense && pack_aligned<T, V>(px) && pack_aligned<T, V>(po))
      unary_packed_kernel<T><<<blocks_for((n + V - 1) / V), 256, 0, stream>>>(op, px, po, n, acc_t<T>(alpha));
    else if (dense) unary_kernel<T, true><<<blocks_for(n), 256, 0, stream>>>(op, px, xi, po, n, acc_t<T>(alpha));
    else unary_kernel<T, false><<<blocks_for(n), 256, 0, stream>>>(op, px, xi, po, n, acc_t<T>(alpha));
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void unary_backward(UnaryOp op, const void* x, const void* grad, void* out, int64_t n, DType dtype,
                    double alpha, Stream stream) {
  if (n == 0) return;
  visit_float_dtype(dtype, unary_op_name(op), [&](auto z) {
    using T = decltype(z);
    constexpr int V = 16 / int(sizeof(T));
    auto* px = static_cast<const T*>(x);
    auto* pg = static_cast<const T*>(grad);
    auto* po = static_cast<T*>(out);
    if (pack_aligned<T, V>(px) && pack_aligned<T, V>(pg) && pack_aligned<T, V>(po))
      packed_map2_kernel<T, T><<<blocks_for((n + V - 1) / V), 256, 0, stream>>>(
          px, pg, po, n, UnaryBackwardOf<T>{op, acc_t<T>(alpha)});
    else
      unary_backward_kernel<T><<<blocks_for(n), 256, 0, stream>>>(op, px, pg, po, n, acc_t<T>(alpha));
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void binary(BinaryOp op, const void* a, const Shape& a_strides, const void* b,
            const Shape& b_strides, DType in_dtype, void* out, const Shape& out_shape,
            Stream stream) {
  int64_t n = shape_numel(out_shape);
  if (n == 0) return;
  StridedIndex ai = make_strided_index(out_shape, a_strides, binary_op_name(op));
  StridedIndex bi = make_strided_index(out_shape, b_strides, binary_op_name(op));
  bool dense = is_dense(out_shape, a_strides) && is_dense(out_shape, b_strides);
  visit_device_dtype(in_dtype, [&](auto z) {
    using T = decltype(z);
    auto launch = [&](auto* po) {
      using O = std::remove_pointer_t<decltype(po)>;
      auto* pa = static_cast<const T*>(a);
      auto* pb = static_cast<const T*>(b);
      constexpr int V = 16 / int(sizeof(T));
      if (dense && pack_aligned<T, V>(pa) && pack_aligned<T, V>(pb) && pack_aligned<O, V>(po))
        packed_map2_kernel<T, O><<<blocks_for((n + V - 1) / V), 256, 0, stream>>>(
            pa, pb, po, n, BinaryOf<T, O>{op});
      else if (dense) binary_kernel<T, O, true><<<blocks_for(n), 256, 0, stream>>>(op, pa, ai, pb, bi, po, n);
      else binary_kernel<T, O, false><<<blocks_for(n), 256, 0, stream>>>(op, pa, ai, pb, bi, po, n);
    };
    if (is_comparison(op)) launch(static_cast<bool*>(out));
    else launch(static_cast<T*>(out));
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void where(const void* cond, const Shape& cond_strides, const void* a, const Shape& a_strides,
           const void* b, const Shape& b_strides, DType dtype, void* out, const Shape& out_shape,
           Stream stream) {
  int64_t n = shape_numel(out_shape);
  if (n == 0) return;
  StridedIndex ci = make_strided_index(out_shape, cond_strides, "where");
  StridedIndex ai = make_strided_index(out_shape, a_strides, "where");
  StridedIndex bi = make_strided_index(out_shape, b_strides, "where");
  visit_device_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    where_kernel<T><<<blocks_for(n), 256, 0, stream>>>(static_cast<const bool*>(cond), ci,
                                                        static_cast<const T*>(a), ai,
                                                        static_cast<const T*>(b), bi,
                                                        static_cast<T*>(out), n);
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda

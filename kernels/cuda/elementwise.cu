#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/elementwise.h"

namespace loom::cuda {
namespace {

bool is_dense(const Shape& shape, const Shape& strides) { return strides == contiguous_strides(shape); }

#define LOOM_GRID_STRIDE_LOOP(i, n)                                                  \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

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
    if (dense) unary_kernel<T, true><<<blocks_for(n), 256, 0, stream>>>(op, px, xi, po, n, acc_t<T>(alpha));
    else unary_kernel<T, false><<<blocks_for(n), 256, 0, stream>>>(op, px, xi, po, n, acc_t<T>(alpha));
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void unary_backward(UnaryOp op, const void* x, const void* grad, void* out, int64_t n, DType dtype,
                    double alpha, Stream stream) {
  if (n == 0) return;
  visit_float_dtype(dtype, unary_op_name(op), [&](auto z) {
    using T = decltype(z);
    unary_backward_kernel<T><<<blocks_for(n), 256, 0, stream>>>(
        op, static_cast<const T*>(x), static_cast<const T*>(grad), static_cast<T*>(out), n,
        acc_t<T>(alpha));
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
      if (dense) binary_kernel<T, O, true><<<blocks_for(n), 256, 0, stream>>>(op, pa, ai, pb, bi, po, n);
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

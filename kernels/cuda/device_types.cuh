// Device-side element types and conversions shared by the .cu kernels. Only included by .cu files.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <utility>
#include <initializer_list>
#include <type_traits>

#include "core/dtype.h"
#include "core/shape.h"
#include "kernels/row_mask.h"
#include "core/error.h"

namespace loom::cuda {

/// Calls fn(T{}) with the device type of `t` (__nv_bfloat16 / __half for the half types).
template <typename Fn>
void visit_device_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::F32: return fn(float{});
    case DType::F64: return fn(double{});
    case DType::BF16: return fn(__nv_bfloat16{});
    case DType::F16: return fn(__half{});
    case DType::I32: return fn(int32_t{});
    case DType::I64: return fn(int64_t{});
    case DType::U8: return fn(uint8_t{});
    case DType::U32: return fn(uint32_t{});
    case DType::Bool: return fn(bool{});
  }
}

/// Floating device types only (f32, f64, bf16, f16); other dtypes throw DTypeError naming `op`.
template <typename Fn>
void visit_float_dtype(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::F32: return fn(float{});
    case DType::F64: return fn(double{});
    case DType::BF16: return fn(__nv_bfloat16{});
    case DType::F16: return fn(__half{});
    default: LOOM_THROW(DTypeError, op, ": no CUDA kernel for dtype ", dtype_name(t));
  }
}

/// fn(T{}, O{}) for an input dtype and the dtype of a result computed from it: O == T, or
/// O == float for half inputs (a half tensor's float result); other pairs throw naming `op`.
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

template <typename T>
__device__ __forceinline__ float to_float(T v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(v);
  else if constexpr (std::is_same_v<T, __half>) return __half2float(v);
  else return static_cast<float>(v);
}

/// Compute type: double for double, float for everything else.
template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

/// double -> float rounded to odd, as core/half.h's round_to_odd_float: the half types then get
/// one correct rounding of the double instead of two.
__device__ __forceinline__ float round_to_odd_float(double d) {
  float f = __double2float_rz(d);  // toward zero; inexact results get their last bit set
  if (static_cast<double>(f) == d || d != d) return __double2float_rn(d);
  return __uint_as_float(__float_as_uint(f) | 1u);
}

/// Device code only: nvcc accepts a call from host code to this template without a word, and
/// the program then fails at run time (convert<> in core/dtype.h is the host's).
template <typename To, typename From>
__device__ __forceinline__ To cvt(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<From, __nv_bfloat16> || std::is_same_v<From, __half>) {
    return cvt<To>(to_float(v));
  } else if constexpr ((std::is_same_v<To, __nv_bfloat16> || std::is_same_v<To, __half>) &&
                       (std::is_same_v<From, double> || std::is_same_v<From, int32_t> ||
                        std::is_same_v<From, uint32_t>)) {
    return cvt<To>(round_to_odd_float(static_cast<double>(v)));
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

/// Up to 8-D strided indexing passed to kernels by value: the element offset of a row-major
/// linear index. `narrow` when every linear index and offset fits in 31 bits: 32-bit division is
/// several times cheaper on the GPU than 64-bit.
struct StridedIndex {
  static constexpr int kMaxDims = 8;
  int ndim = 0;
  bool narrow = false;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
  __device__ __forceinline__ int64_t offset(int64_t linear) const {
    if (ndim == 1) return linear * strides[0];
    if (narrow) {
      uint32_t l = uint32_t(linear), off = 0;
      for (int d = ndim - 1; d >= 0; --d) {
        const uint32_t n = uint32_t(shape[d]);
        off += (l % n) * uint32_t(strides[d]);
        l /= n;
      }
      return off;
    }
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      int64_t i = linear % shape[d];
      linear /= shape[d];
      off += i * strides[d];
    }
    return off;
  }
};

/// Drops size-1 dims of a [shape] view with `strides` and merges neighbours that are contiguous
/// with each other, so common layouts become one or two dims.
inline void merge_dims(const Shape& shape, const Shape& strides, Shape& out_shape, Shape& out_strides) {
  out_shape.clear();
  out_strides.clear();
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!out_shape.empty() && out_strides.back() == strides[d] * shape[d]) {
      out_shape.back() *= shape[d];
      out_strides.back() = strides[d];
    } else {
      out_shape.push_back(shape[d]);
      out_strides.push_back(strides[d]);
    }
  }
}

/// The index of a [shape] view with `strides`, its dims merged (an offset then costs one
/// division per remaining dim).
inline StridedIndex make_strided_index(const Shape& shape, const Shape& strides, const char* op) {
  Shape ms, mst;
  merge_dims(shape, strides, ms, mst);
  LOOM_CHECK(ms.size() <= size_t(StridedIndex::kMaxDims), ShapeError, op, ": rank ", shape.size(),
             " has more than 8 dimensions that are not contiguous with each other (the CUDA "
             "limit); make the tensor contiguous first");
  StridedIndex idx;
  idx.ndim = int(ms.size());
  int64_t numel = 1, max_offset = 0;
  bool nonnegative = true;
  for (size_t d = 0; d < ms.size(); ++d) {
    idx.shape[d] = ms[d];
    idx.strides[d] = mst[d];
    numel *= ms[d];
    max_offset += (ms[d] - 1) * mst[d];
    nonnegative = nonnegative && mst[d] >= 0;
  }
  constexpr int64_t kNarrow = int64_t(1) << 31;
  idx.narrow = nonnegative && numel < kNarrow && max_offset < kNarrow;
  return idx;
}

/// A RowMask (kernels/row_mask.h) as kernels read it.
struct DeviceRowMask {
  const bool* data = nullptr;
  StridedIndex rows;
  int64_t col_stride = 0;
  /// The mask of row r, or nullptr when there is no mask.
  __device__ __forceinline__ const bool* row(int64_t r) const {
    return data ? data + rows.offset(r) : nullptr;
  }
};
inline DeviceRowMask device_row_mask(const RowMask& m, const char* op) {
  DeviceRowMask d;
  if (!m.data) return d;
  d.data = m.data;
  d.rows = make_strided_index(m.row_shape, m.row_strides, op);
  d.col_stride = m.col_stride;
  return d;
}

/// V consecutive elements moved as one access (16 bytes of T where V = 16 / sizeof(T)).
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
template <int V, typename T>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}
template <int V, typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, V>& v) {
  *reinterpret_cast<Pack<T, V>*>(p) = v;
}
/// True when p (null counts) may be read as Pack<T, V>.
template <typename T, int V>
inline bool pack_aligned(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % (sizeof(T) * V) == 0;
}

/// Elements of T in 16 bytes: the widest pack.
template <typename T>
constexpr int kPack16 = 16 / int(sizeof(T));

/// launch(V) as an integral_constant: V = kPack16<T> when `extent` (the contiguous run the packs
/// tile, channels say) divides into packs of V and every pointer (null passes) is aligned to V
/// elements of its own size; else launch(1).
template <typename T, typename Launch>
void launch_packed(int64_t extent, std::initializer_list<std::pair<const void*, size_t>> pointers,
                   Launch&& launch) {
  constexpr int V = kPack16<T>;
  bool packed = V > 1 && extent % V == 0;
  for (auto [ptr, elem] : pointers) packed = packed && reinterpret_cast<uintptr_t>(ptr) % (elem * V) == 0;
  if (packed) launch(std::integral_constant<int, V>{});
  else launch(std::integral_constant<int, 1>{});
}

// A grid-stride loop over [0, n) with 64-bit indices.
#define LOOM_GRID_STRIDE_LOOP(i, n)                                         \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); \
       i += int64_t(gridDim.x) * blockDim.x)

inline int blocks_for(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads;
  return int(b < 65535 * 32 ? (b < 1 ? 1 : b) : 65535 * 32);
}

}  // namespace loom::cuda

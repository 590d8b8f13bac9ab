#include "kernels/cpu/gather.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "kernels/cpu/strided_loop.h"

namespace loom::cpu {
namespace {

template <typename T>
T fill_value() {
  if constexpr (std::is_same_v<T, bool>) return true;
  else if constexpr (is_floating(dtype_v<T>)) return convert<T>(std::numeric_limits<float>::quiet_NaN());
  else if constexpr (std::is_signed_v<T>) return std::numeric_limits<T>::lowest();
  else return std::numeric_limits<T>::max();
}

/// The index to use, or -1 to fill / drop.
inline int64_t resolve(int64_t i, int64_t n, GatherMode mode) {
  if (mode == GatherMode::Clip) return i < 0 ? 0 : (i >= n ? n - 1 : i);
  if (i < 0) i += n;
  return i >= 0 && i < n ? i : -1;
}

}  // namespace

void strided_assign(const void* src, const Shape& src_strides, void* dst, const Shape& dst_strides,
                    const Shape& shape, DType dtype) {
  if (shape_numel(shape) == 0) return;
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    const T* s = static_cast<const T*>(src);
    T* d = static_cast<T*>(dst);
    StridedLoop<2> loop(shape, {src_strides, dst_strides});
    loop.run([&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
      for (int64_t i = 0; i < n; ++i) d[off[1] + i * st[1]] = s[off[0] + i * st[0]];
    });
  });
}

void gather(const void* x, const Shape& x_strides, int64_t axis_stride, int64_t axis_len,
            const int64_t* idx, const Shape& idx_strides, void* out, const Shape& shape,
            DType dtype, GatherMode mode) {
  if (shape_numel(shape) == 0) return;
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    const T* px = static_cast<const T*>(x);
    T* po = static_cast<T*>(out);
    const T fill = fill_value<T>();
    StridedLoop<3> loop(shape, {x_strides, idx_strides, contiguous_strides(shape)});
    loop.run([&](std::array<int64_t, 3> off, int64_t n, std::array<int64_t, 3> st) {
      for (int64_t i = 0; i < n; ++i) {
        int64_t j = resolve(idx[off[1] + i * st[1]], axis_len, mode);
        po[off[2] + i] = j < 0 ? fill : px[off[0] + i * st[0] + j * axis_stride];
      }
    });
  });
}

void scatter_add(const void* src, const int64_t* idx, const Shape& idx_strides, void* dst,
                 const Shape& dst_strides, int64_t axis_stride, int64_t axis_len,
                 const Shape& shape, DType dtype, GatherMode mode) {
  if (shape_numel(shape) == 0) return;
  auto run = [&](auto z) {
    using T = decltype(z);
    const T* ps = static_cast<const T*>(src);
    T* pd = static_cast<T*>(dst);
    StridedLoop<3> loop(shape, {dst_strides, idx_strides, contiguous_strides(shape)});
    // Serial on purpose: rows may hit the same destination, and a fixed order keeps the sums
    // reproducible.
    for (int64_t r = 0; r < loop.rows; ++r) {
      std::array<int64_t, 3> off = loop.row_offsets(r);
      const auto& st = loop.inner_stride;
      for (int64_t i = 0; i < loop.inner; ++i) {
        int64_t j = resolve(idx[off[1] + i * st[1]], axis_len, mode);
        if (j >= 0) pd[off[0] + i * st[0] + j * axis_stride] += ps[off[2] + i];
      }
    }
  };
  if (dtype == DType::F32) run(float{});
  else if (dtype == DType::F64) run(double{});
  else LOOM_THROW(DTypeError, "scatter_add: accumulates in float32 or float64, got ", dtype_name(dtype));
}

void one_hot(const int64_t* idx, int64_t n, int64_t classes, void* out, DType dtype) {
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    T* po = static_cast<T*>(out);
    const T one = convert<T>(1.0), zero = convert<T>(0.0);
#pragma omp parallel for if (n * classes > 32768)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t c = 0; c < classes; ++c) po[i * classes + c] = idx[i] == c ? one : zero;
  });
}

void triangle(const void* x, void* out, int64_t batch, int64_t rows, int64_t cols, int64_t k,
              bool lower, DType dtype) {
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    const T* px = static_cast<const T*>(x);
    T* po = static_cast<T*>(out);
    const T zero = convert<T>(0.0);
#pragma omp parallel for if (batch * rows * cols > 32768)
    for (int64_t br = 0; br < batch * rows; ++br) {
      const int64_t r = br % rows;
      for (int64_t c = 0; c < cols; ++c) {
        bool keep = lower ? c - r <= k : c - r >= k;
        po[br * cols + c] = keep ? px[br * cols + c] : zero;
      }
    }
  });
}

}  // namespace loom::cpu

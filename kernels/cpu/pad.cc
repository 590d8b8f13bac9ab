#include "kernels/cpu/pad.h"

#include <vector>

#include "core/error.h"

namespace loom::cpu {
namespace {

// Offset into x of the start of output row r (the innermost output dimension), or -1 when
// the row lies in a constant pad; `src_strides` are x's strides.
int64_t row_source(int64_t r, const Shape& x_shape, const Shape& src_strides,
                   const Shape& out_shape, const Shape& lo, PadMode mode) {
  int64_t off = 0;
  for (size_t d = out_shape.size() - 1; d-- > 0;) {
    int64_t p = r % out_shape[d];
    r /= out_shape[d];
    int64_t j = pad_source_index(p - lo[d], x_shape[d], mode);
    if (j < 0) return -1;
    off += j * src_strides[d];
  }
  return off;
}

}  // namespace

void pad(const void* x, const Shape& x_shape, const Shape& x_strides, void* out,
         const Shape& out_shape, const Shape& lo, PadMode mode, double value, DType dtype) {
  if (shape_numel(out_shape) == 0) return;
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    const T* px = static_cast<const T*>(x);
    T* po = static_cast<T*>(out);
    const T fill = convert<T>(value);
    const size_t nd = out_shape.size();
    if (nd == 0) {
      po[0] = px[0];
      return;
    }
    const int64_t inner = out_shape[nd - 1], n = x_shape[nd - 1], st = x_strides[nd - 1];
    const int64_t lo_in = lo[nd - 1];
    const int64_t rows = shape_numel(out_shape) / inner;
#pragma omp parallel for if (rows * inner > 32768 && rows > 1)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t off = row_source(r, x_shape, x_strides, out_shape, lo, mode);
      T* row = po + r * inner;
      for (int64_t p = 0; p < inner; ++p) {
        int64_t j = off < 0 ? -1 : pad_source_index(p - lo_in, n, mode);
        row[p] = j < 0 ? fill : px[off + j * st];
      }
    }
  });
}

void pad_backward(const void* g, const Shape& out_shape, void* dx, const Shape& x_shape,
                  const Shape& lo, PadMode mode, DType dtype) {
  if (shape_numel(out_shape) == 0 || shape_numel(x_shape) == 0) return;
  auto run = [&](auto z) {
    using T = decltype(z);
    const T* pg = static_cast<const T*>(g);
    T* pd = static_cast<T*>(dx);
    const size_t nd = out_shape.size();
    if (nd == 0) {
      pd[0] += pg[0];
      return;
    }
    const Shape xs = contiguous_strides(x_shape);
    const int64_t inner = out_shape[nd - 1], n = x_shape[nd - 1];
    const int64_t lo_in = lo[nd - 1];
    const int64_t rows = shape_numel(out_shape) / inner;
    for (int64_t r = 0; r < rows; ++r) {  // serial: several rows may add into the same place
      const int64_t off = row_source(r, x_shape, xs, out_shape, lo, mode);
      if (off < 0) continue;
      const T* row = pg + r * inner;
      for (int64_t p = 0; p < inner; ++p) {
        int64_t j = pad_source_index(p - lo_in, n, mode);
        if (j >= 0) pd[off + j] += row[p];
      }
    }
  };
  if (dtype == DType::F32) run(float{});
  else if (dtype == DType::F64) run(double{});
  else LOOM_THROW(DTypeError, "pad backward: accumulates in float32 or float64, got ", dtype_name(dtype));
}

}  // namespace loom::cpu

#include "kernels/cpu/copy.h"

#include <cstring>

namespace loom::cpu {

void strided_copy(const void* src, DType src_dtype, const Shape& shape, const Shape& src_strides,
                  void* dst, DType dst_dtype) {
  int64_t n = shape_numel(shape);
  if (n == 0) return;
  bool contiguous = src_strides == contiguous_strides(shape);
  if (contiguous && src_dtype == dst_dtype) {
    std::memcpy(dst, src, size_t(n) * dtype_size(src_dtype));
    return;
  }
  visit_dtype(src_dtype, [&](auto s) {
    using S = decltype(s);
    visit_dtype(dst_dtype, [&](auto d) {
      using D = decltype(d);
      const S* in = static_cast<const S*>(src);
      D* out = static_cast<D*>(dst);
      if (contiguous) {
        for (int64_t i = 0; i < n; ++i) out[i] = convert<D>(in[i]);
        return;
      }
      // Odometer over the index; the innermost dimension runs as a tight loop.
      const int64_t nd = int64_t(shape.size());
      std::vector<int64_t> idx(size_t(nd), 0);
      const int64_t inner = shape[size_t(nd - 1)], inner_stride = src_strides[size_t(nd - 1)];
      int64_t src_off = 0;
      for (int64_t o = 0; o < n; o += inner) {
        for (int64_t j = 0; j < inner; ++j) out[o + j] = convert<D>(in[src_off + j * inner_stride]);
        for (int64_t dim = nd - 2; dim >= 0; --dim) {
          if (++idx[size_t(dim)] < shape[size_t(dim)]) {
            src_off += src_strides[size_t(dim)];
            break;
          }
          src_off -= (shape[size_t(dim)] - 1) * src_strides[size_t(dim)];
          idx[size_t(dim)] = 0;
        }
      }
    });
  });
}

void fill(void* dst, DType dtype, int64_t n, double value) {
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    T v = convert<T>(value);
    T* out = static_cast<T*>(dst);
    for (int64_t i = 0; i < n; ++i) out[i] = v;
  });
}

// start + i * step rounded twice, without an FMA (the x86-64-v3 build would contract it), as
// numpy's arange, which jnp.arange takes for concrete bounds, and the GPU's kernel compute it.
__attribute__((optimize("fp-contract=off")))
void fill_range(void* dst, DType dtype, int64_t n, double start, double step) {
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    T* out = static_cast<T*>(dst);
    for (int64_t i = 0; i < n; ++i) out[i] = convert<T>(start + double(i) * step);
  });
}

}  // namespace loom::cpu

#include "kernels/cpu/reduce.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/strided_loop.h"

namespace loom::cpu {
namespace {

template <typename A>
A identity(ReduceOp op) {
  if (op == ReduceOp::Sum) return A(0);
  if constexpr (std::numeric_limits<A>::has_infinity)
    return op == ReduceOp::Max ? -std::numeric_limits<A>::infinity() : std::numeric_limits<A>::infinity();
  else
    return op == ReduceOp::Max ? std::numeric_limits<A>::lowest() : std::numeric_limits<A>::max();
}

template <typename A>
inline A combine(ReduceOp op, A acc, A v) {
  switch (op) {
    case ReduceOp::Sum: return acc + v;
    case ReduceOp::Max: return (acc != acc || v != v) ? (acc != acc ? acc : v) : (v > acc ? v : acc);
    case ReduceOp::Min: return (acc != acc || v != v) ? (acc != acc ? acc : v) : (v < acc ? v : acc);
  }
  return acc;
}

// True when x is a contiguous [k, m] matrix whose k leading rows are reduced: reduced_shape
// row-major with stride m per step, kept_shape row-major and innermost (bias gradients: sum over
// [N*H*W, C] to [C]).
bool leading_rows(const Shape& kept_shape, const Shape& kept_strides, const Shape& reduced_shape,
                  const Shape& reduced_strides) {
  int64_t step = 1;
  for (size_t d = kept_shape.size(); d-- > 0;) {
    if (kept_shape[d] != 1 && kept_strides[d] != step) return false;
    step *= kept_shape[d];
  }
  for (size_t d = reduced_shape.size(); d-- > 0;) {
    if (reduced_shape[d] != 1 && reduced_strides[d] != step) return false;
    step *= reduced_shape[d];
  }
  return true;
}

// Column sums of a contiguous [k, m] matrix: each thread adds a contiguous block of rows into
// its own accumulator row (a loop over m that vectorises), then the partial rows are added in
// thread order. One parallel region instead of one per reduced row.
template <typename T, typename A>
void sum_leading_rows(const T* in, int64_t k, int64_t m, A* acc) {
  int nt = k * m > 32768 ? std::max(1, omp_get_max_threads()) : 1;
  nt = int(std::min<int64_t>(nt, k));
  std::vector<A> part(size_t(nt) * size_t(m), A(0));
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    int64_t t = omp_get_thread_num(), used = omp_get_num_threads();
    int64_t lo = k * t / used, hi = k * (t + 1) / used;
    A* __restrict p = part.data() + t * m;
    for (int64_t r = lo; r < hi; ++r) {
      const T* __restrict row = in + r * m;
      for (int64_t i = 0; i < m; ++i) p[i] += A(convert<double>(row[i]));
    }
  }
  for (int t = 0; t < nt; ++t)
    for (int64_t i = 0; i < m; ++i) acc[i] += part[size_t(t) * size_t(m) + size_t(i)];
}

}  // namespace

void reduce(ReduceOp op, const void* x, DType dtype, const Shape& kept_shape,
            const Shape& kept_strides, const Shape& reduced_shape, const Shape& reduced_strides,
            void* out) {
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    // Accumulate floats in double, integers in int64 (bool sums count).
    using A = std::conditional_t<is_floating(dtype_v<T>), double, int64_t>;
    const T* in = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const int64_t m = shape_numel(kept_shape), k = shape_numel(reduced_shape);
    std::vector<A> acc(size_t(m), identity<A>(op));
    if (m == 0) return;
    if (k > 0 && op == ReduceOp::Sum && m > 1 &&
        leading_rows(kept_shape, kept_strides, reduced_shape, reduced_strides)) {
      sum_leading_rows(in, k, m, acc.data());
    } else if (k > 0) {
      // Walk the input in the order of its memory: loop over the reduced dims outermost when
      // the innermost kept dim is contiguous, else reduce each output's elements in turn.
      StridedLoop<1> kept(kept_shape, {kept_strides});
      StridedLoop<1> red(reduced_shape, {reduced_strides});
      bool inner_kept = !kept_strides.empty() && kept.inner_stride[0] == 1 && kept.inner > 1;
      if (inner_kept) {
        for (int64_t r = 0; r < red.rows; ++r) {
          int64_t rbase = red.row_offsets(r)[0];
          for (int64_t j = 0; j < red.inner; ++j) {
            const T* base = in + rbase + j * red.inner_stride[0];
#pragma omp parallel for if (m > 16384)
            for (int64_t kr = 0; kr < kept.rows; ++kr) {
              int64_t off = kept.row_offsets(kr)[0];
              A* a = acc.data() + kr * kept.inner;
              for (int64_t i = 0; i < kept.inner; ++i) a[i] = combine<A>(op, a[i], A(convert<double>(base[off + i])));
            }
          }
        }
      } else {
#pragma omp parallel for if (m * k > 32768 && m > 1)
        for (int64_t idx = 0; idx < m; ++idx) {
          // offset of output element idx
          int64_t rem = idx, off = 0;
          for (size_t d = kept_shape.size(); d-- > 0;) {
            off += (rem % kept_shape[d]) * kept_strides[d];
            rem /= kept_shape[d];
          }
          A a = identity<A>(op);
          for (int64_t r = 0; r < red.rows; ++r) {
            const T* base = in + off + red.row_offsets(r)[0];
            for (int64_t j = 0; j < red.inner; ++j)
              a = combine<A>(op, a, A(convert<double>(base[j * red.inner_stride[0]])));
          }
          acc[size_t(idx)] = a;
        }
      }
    }
    for (int64_t i = 0; i < m; ++i) o[i] = convert<T>(acc[size_t(i)]);
  });
}

void arg_reduce(bool is_max, const void* x, DType dtype, const Shape& kept_shape,
                const Shape& kept_strides, int64_t n, int64_t axis_stride, int32_t* out) {
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    using A = std::conditional_t<is_floating(dtype_v<T>), double, int64_t>;
    const T* in = static_cast<const T*>(x);
    const int64_t m = shape_numel(kept_shape);
#pragma omp parallel for if (m * n > 32768 && m > 1)
    for (int64_t idx = 0; idx < m; ++idx) {
      int64_t rem = idx, off = 0;
      for (size_t d = kept_shape.size(); d-- > 0;) {
        off += (rem % kept_shape[d]) * kept_strides[d];
        rem /= kept_shape[d];
      }
      const T* row = in + off;
      A best = A(convert<double>(row[0]));
      int64_t best_i = 0;
      for (int64_t j = 1; j < n && best == best; ++j) {  // stops at the first NaN
        A v = A(convert<double>(row[j * axis_stride]));
        if (v != v || (is_max ? v > best : v < best)) {
          best = v;
          best_i = j;
        }
      }
      out[idx] = int32_t(best_i);
    }
  });
}

}  // namespace loom::cpu

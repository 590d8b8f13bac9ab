// Iteration over an output shape with several strided operands (strides in elements; 0 on
// broadcast dimensions). Adjacent dimensions that are contiguous for every operand are merged,
// so the common same-shape case becomes one flat loop; rows (or pieces of one long row) run in
// parallel with OpenMP.
#pragma once
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "core/shape.h"

namespace loom::cpu {

template <size_t N>
struct StridedLoop {
  Shape shape;                          // merged shape
  std::array<Shape, N> strides;         // merged strides per operand
  int64_t inner = 1;                    // length of the innermost dimension
  std::array<int64_t, N> inner_stride{};
  int64_t rows = 0;

  StridedLoop(const Shape& out_shape, const std::array<Shape, N>& operand_strides) {
    for (size_t d = 0; d < out_shape.size(); ++d) {
      if (out_shape[d] == 1) continue;  // size-1 dims contribute nothing
      bool merge = !shape.empty();
      for (size_t k = 0; k < N && merge; ++k)
        merge = strides[k].back() == operand_strides[k][d] * out_shape[d];
      if (merge) {
        shape.back() *= out_shape[d];
        for (size_t k = 0; k < N; ++k) strides[k].back() = operand_strides[k][d];
      } else {
        shape.push_back(out_shape[d]);
        for (size_t k = 0; k < N; ++k) strides[k].push_back(operand_strides[k][d]);
      }
    }
    if (shape.empty()) {
      shape.push_back(1);
      for (size_t k = 0; k < N; ++k) strides[k].push_back(0);
    }
    inner = shape.back();
    for (size_t k = 0; k < N; ++k) inner_stride[k] = strides[k].back();
    rows = shape_numel(shape) / (inner == 0 ? 1 : inner);
    if (inner == 0) rows = 0;
  }

  /// Element offsets of row `r` for each operand.
  std::array<int64_t, N> row_offsets(int64_t r) const {
    std::array<int64_t, N> off{};
    for (size_t d = shape.size() - 1; d-- > 0;) {
      int64_t i = r % shape[d];
      r /= shape[d];
      for (size_t k = 0; k < N; ++k) off[k] += i * strides[k][d];
    }
    return off;
  }

  /// fn(offsets, n, inner_strides) over every row, a row in one call or in pieces of n
  /// elements, in parallel when the work is large. A dense tensor merges into one row, so rows
  /// alone would leave it to one thread: a row is cut into pieces when there are fewer rows
  /// than threads.
  template <typename Fn>
  void run(Fn&& fn) const {
    const int64_t total = rows * inner;
    if (total <= kParallelWork) {
      run_rows(0, rows, fn);
      return;
    }
    const int64_t threads = omp_get_max_threads();
    const int64_t pieces = rows >= threads ? 1 : std::min((threads + rows - 1) / rows,
                                                           std::max<int64_t>(1, inner / kMinPiece));
    if (pieces == 1) {
#pragma omp parallel
      {
        const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
        run_rows(rows * t / n, rows * (t + 1) / n, fn);
      }
      return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < rows * pieces; ++t) {
      const int64_t r = t / pieces, piece = t % pieces;
      const int64_t lo = inner * piece / pieces, hi = inner * (piece + 1) / pieces;
      std::array<int64_t, N> off = row_offsets(r);
      for (size_t k = 0; k < N; ++k) off[k] += lo * inner_stride[k];
      fn(off, hi - lo, inner_stride);
    }
  }

 private:
  /// fn over rows [r0, r1), whole. Along the outer dim next to the rows each row's offsets are
  /// the previous row's plus that dim's strides; only a row that starts a new run along it gets
  /// them from row_offsets, whose divisions for every row cost more than a short row's work (a
  /// bias added to 100,352 rows of 32 channels).
  template <typename Fn>
  void run_rows(int64_t r0, int64_t r1, Fn& fn) const {
    if (r0 >= r1) return;
    std::array<int64_t, N> off = row_offsets(r0);
    if (shape.size() == 1) return fn(off, inner, inner_stride);  // the one row
    const size_t d = shape.size() - 2;
    for (int64_t r = r0, left = shape[d] - r0 % shape[d];;) {  // left: rows to the run's end
      fn(off, inner, inner_stride);
      if (++r == r1) return;
      if (--left == 0) {
        off = row_offsets(r);
        left = shape[d];
      } else {
        for (size_t k = 0; k < N; ++k) off[k] += strides[k][d];
      }
    }
  }

  static constexpr int64_t kParallelWork = 32768;  // elements below which one thread does all
  static constexpr int64_t kMinPiece = 4096;       // elements of the smallest piece of a row
};

/// Strides of `operand` (shape, strides) broadcast against `out_shape` (right-aligned; 0 where
/// the operand has size 1 or is missing).
inline Shape broadcast_strides(const Shape& operand_shape, const Shape& operand_strides,
                               const Shape& out_shape) {
  Shape s(out_shape.size(), 0);
  size_t lead = out_shape.size() - operand_shape.size();
  for (size_t d = 0; d < operand_shape.size(); ++d)
    s[lead + d] = operand_shape[d] == 1 ? 0 : operand_strides[d];
  return s;
}

}  // namespace loom::cpu

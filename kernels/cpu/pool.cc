#include "kernels/cpu/pool.h"

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace loom::cpu {
namespace {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Row-major decode of a flat spatial index.
void unflatten(int64_t flat, const Shape& shape, int64_t* idx) {
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
}

// Number of window positions of output `o` (per-dim start) that fall inside the input.
int64_t inside_count(const PoolGeometry& g, const int64_t* start) {
  int64_t count = 1;
  for (size_t d = 0; d < g.in.size(); ++d) {
    int64_t lo = std::max<int64_t>(start[d], 0);
    int64_t hi = std::min<int64_t>(start[d] + g.window[d], g.in[d]);
    count *= std::max<int64_t>(hi - lo, 0);
  }
  return count;
}

template <typename T, typename S>
void forward(PoolOp op, const PoolGeometry& g, const T* x, T* out, S* selection) {
  using A = acc_t<T>;
  const size_t D = g.in.size();
  const int64_t C = g.channels, in_sp = shape_numel(g.in), out_sp = shape_numel(g.out);
  const int64_t wn = shape_numel(g.window), rows = g.batch * out_sp;
  const A pad = op == PoolOp::Max ? -std::numeric_limits<A>::infinity()
                                  : std::numeric_limits<A>::infinity();
#pragma omp parallel if (rows * C * wn > 32768)
  {
    std::vector<A> best(size_t(C), A(0));
    std::vector<int32_t> sel(size_t(C), -1);
    std::vector<char> nan(size_t(C), 0);
    std::vector<int64_t> opos(D), start(D), w(D);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t n = r / out_sp;
      unflatten(r % out_sp, g.out, opos.data());
      for (size_t d = 0; d < D; ++d) start[d] = opos[d] * g.strides[d] - g.pad_lo[d];
      const T* xs = x + n * in_sp * C;
      std::fill(w.begin(), w.end(), 0);
      std::fill(nan.begin(), nan.end(), 0);
      if (op == PoolOp::Avg) std::fill(best.begin(), best.end(), A(0));
      for (int64_t k = 0; k < wn; ++k) {
        bool inside = true;
        int64_t flat = 0;
        for (size_t d = 0; d < D; ++d) {
          int64_t p = start[d] + w[d];
          inside = inside && p >= 0 && p < g.in[d];
          flat = flat * g.in[d] + p;
        }
        const T* xp = inside ? xs + flat * C : nullptr;
        if (op == PoolOp::Avg) {
          if (inside)
            for (int64_t c = 0; c < C; ++c) best[size_t(c)] += convert<A>(xp[c]);
        } else {
          for (int64_t c = 0; c < C; ++c) {
            A v = inside ? convert<A>(xp[c]) : pad;
            bool take = k == 0 || (op == PoolOp::Max ? !(best[size_t(c)] >= v)
                                                     : !(best[size_t(c)] <= v));
            if (take) {
              best[size_t(c)] = v;
              sel[size_t(c)] = inside ? int32_t(k) : -1;
            }
            nan[size_t(c)] |= char(std::isnan(v));
          }
        }
        for (size_t d = D; d-- > 0;) {  // odometer over the window
          if (++w[d] < g.window[d]) break;
          w[d] = 0;
        }
      }
      T* o = out + r * C;
      if (op == PoolOp::Avg) {
        A div = A(g.count_include_pad ? wn : inside_count(g, start.data()));
        for (int64_t c = 0; c < C; ++c) o[c] = convert<T>(best[size_t(c)] / div);
      } else {
        for (int64_t c = 0; c < C; ++c)
          o[c] = convert<T>(nan[size_t(c)] ? std::numeric_limits<A>::quiet_NaN() : best[size_t(c)]);
        if (selection)
          for (int64_t c = 0; c < C; ++c) selection[r * C + c] = S(sel[size_t(c)]);
      }
    }
  }
}

// Windows that tile the input (strides equal to the window, no padding before it): each input
// element lies in at most one window, found by division instead of a search of the covering box
// (the seed CNN's 2x2 average pool: 4.7% of its CPU step went to that search's bookkeeping).
bool windows_tile(const PoolGeometry& g) {
  for (size_t d = 0; d < g.in.size(); ++d)
    if (g.strides[d] != g.window[d] || g.pad_lo[d] != 0) return false;
  return true;
}

// backward() for tiling windows, to the bit: the one term is added to zero as there (-0 -> +0).
template <typename T, typename S>
void backward_tiled(PoolOp op, const PoolGeometry& g, const T* gout, const S* selection, T* gin) {
  using A = acc_t<T>;
  const size_t D = g.in.size();
  const int64_t C = g.channels, in_sp = shape_numel(g.in), out_sp = shape_numel(g.out);
  const int64_t wn = shape_numel(g.window), rows = g.batch * in_sp;
#pragma omp parallel if (rows * C > 32768)
  {
    std::vector<int64_t> ip(D), start(D);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t n = r / in_sp;
      unflatten(r % in_sp, g.in, ip.data());
      int64_t flat = 0, k = 0;
      bool covered = true;
      for (size_t d = 0; d < D; ++d) {
        const int64_t o = ip[d] / g.window[d];
        covered = covered && o < g.out[d];
        flat = flat * g.out[d] + o;
        k = k * g.window[d] + ip[d] % g.window[d];
        start[d] = o * g.window[d];
      }
      T* gi = gin + r * C;
      if (!covered) {
        for (int64_t c = 0; c < C; ++c) gi[c] = convert<T>(A(0));
        continue;
      }
      const T* go = gout + (n * out_sp + flat) * C;
      if (op == PoolOp::Avg) {
        const A div = A(g.count_include_pad ? wn : inside_count(g, start.data()));
        for (int64_t c = 0; c < C; ++c) gi[c] = convert<T>(A(0) + convert<A>(go[c]) / div);
      } else {
        const S* sel = selection + (n * out_sp + flat) * C;
        for (int64_t c = 0; c < C; ++c) {
          const A v = convert<A>(go[c]);  // loaded unconditionally: the select vectorises
          gi[c] = convert<T>(A(0) + (sel[c] == S(k) ? v : A(0)));
        }
      }
    }
  }
}

template <typename T, typename S>
void backward(PoolOp op, const PoolGeometry& g, const T* gout, const S* selection, T* gin) {
  if (windows_tile(g)) return backward_tiled(op, g, gout, selection, gin);
  using A = acc_t<T>;
  const size_t D = g.in.size();
  const int64_t C = g.channels, in_sp = shape_numel(g.in), out_sp = shape_numel(g.out);
  const int64_t wn = shape_numel(g.window), rows = g.batch * in_sp;
  // Each input element gathers from the outputs whose windows cover it, a box of at most
  // ceil(k/s) outputs per dim.
  int64_t box = 1;
  for (size_t d = 0; d < D; ++d) box *= (g.window[d] + g.strides[d] - 1) / g.strides[d];
#pragma omp parallel if (rows * C * box > 32768)
  {
    std::vector<A> acc(static_cast<size_t>(C), A(0));
    std::vector<int64_t> ip(D), olo(D), ohi(D), o(D), start(D);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      int64_t n = r / in_sp, i = r % in_sp;
      unflatten(i, g.in, ip.data());
      std::fill(acc.begin(), acc.end(), A(0));
      bool any = true;
      for (size_t d = 0; d < D; ++d) {
        // o*s - lo <= ip <= o*s - lo + k - 1
        int64_t num = ip[d] + g.pad_lo[d] - g.window[d] + 1;
        olo[d] = num <= 0 ? 0 : (num + g.strides[d] - 1) / g.strides[d];
        ohi[d] = std::min<int64_t>(g.out[d] - 1, (ip[d] + g.pad_lo[d]) / g.strides[d]);
        any = any && olo[d] <= ohi[d];
        o[d] = olo[d];
      }
      while (any) {
        int64_t flat = 0;
        for (size_t d = 0; d < D; ++d) flat = flat * g.out[d] + o[d];
        const T* go = gout + (n * out_sp + flat) * C;
        if (op == PoolOp::Avg) {
          A div = A(wn);
          if (!g.count_include_pad) {
            for (size_t d = 0; d < D; ++d) start[d] = o[d] * g.strides[d] - g.pad_lo[d];
            div = A(inside_count(g, start.data()));
          }
          for (int64_t c = 0; c < C; ++c) acc[size_t(c)] += convert<A>(go[c]) / div;
        } else {
          // this input's position in the window of output o
          int64_t k = 0;
          for (size_t d = 0; d < D; ++d)
            k = k * g.window[d] + ip[d] - (o[d] * g.strides[d] - g.pad_lo[d]);
          const S* sel = selection + (n * out_sp + flat) * C;
          for (int64_t c = 0; c < C; ++c)
            if (sel[c] == S(k)) acc[size_t(c)] += convert<A>(go[c]);
        }
        size_t d = D;
        while (d-- > 0) {  // odometer over the covering box
          if (++o[d] <= ohi[d]) break;
          o[d] = olo[d];
        }
        if (d == size_t(-1)) break;
      }
      T* gi = gin + r * C;
      for (int64_t c = 0; c < C; ++c) gi[c] = convert<T>(acc[size_t(c)]);
    }
  }
}

}  // namespace

void pool_forward(PoolOp op, const PoolGeometry& g, DType dtype, const void* x, void* out,
                  void* selection) {
  if (g.batch * shape_numel(g.out) * g.channels == 0) return;
  visit_floating(dtype, "pool", [&](auto z) {
    using T = decltype(z);
    with_selection_type(g, [&](auto s) {
      using S = decltype(s);
      forward<T>(op, g, static_cast<const T*>(x), static_cast<T*>(out), static_cast<S*>(selection));
    });
  });
}

void pool_backward(PoolOp op, const PoolGeometry& g, DType dtype, const void* grad_out,
                   const void* selection, void* grad_in) {
  if (g.batch * shape_numel(g.in) * g.channels == 0) return;
  visit_floating(dtype, "pool", [&](auto z) {
    using T = decltype(z);
    with_selection_type(g, [&](auto s) {
      using S = decltype(s);
      backward<T>(op, g, static_cast<const T*>(grad_out), static_cast<const S*>(selection),
                  static_cast<T*>(grad_in));
    });
  });
}

}  // namespace loom::cpu

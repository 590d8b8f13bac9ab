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

// Walks the outputs a line at a time (all of the last spatial dim): a line's windows share their
// input lines, found once, and each window reads them as runs along the last dim. Decoding every
// window position of every output instead took 0.77 ms for the seed CNN's first 2x2 average
// pool (0.47 ms so) and 2.7 ms for ResNet-50's 3x3 max pool at batch 8 (1.95 ms).
// (The spatial rank is at least 1: core/ops/pool.cc checks it.)
template <typename T, typename S>
void forward(PoolOp op, const PoolGeometry& g, const T* x, T* out, S* selection) {
  using A = acc_t<T>;
  const size_t D = g.in.size(), last = D - 1;
  const int64_t C = g.channels, in_sp = shape_numel(g.in), out_sp = shape_numel(g.out);
  const int64_t wn = shape_numel(g.window), width = g.window[last];
  const int64_t in_len = g.in[last], out_len = g.out[last], out_lines = out_sp / out_len;
  const A pad = op == PoolOp::Max ? -std::numeric_limits<A>::infinity()
                                  : std::numeric_limits<A>::infinity();
#pragma omp parallel if (g.batch * out_sp * C * wn > 32768)
  {
    std::vector<A> best(size_t(C), A(0));
    std::vector<int32_t> sel(size_t(C), -1);
    std::vector<char> nan(size_t(C), 0);
    std::vector<int64_t> opos(D), start(D), w(D);
    std::vector<const T*> rows(size_t(wn / width));  // the window's input lines; null outside
#pragma omp for schedule(static)
    for (int64_t line = 0; line < g.batch * out_lines; ++line) {
      const int64_t n = line / out_lines;
      unflatten((line % out_lines) * out_len, g.out, opos.data());
      for (size_t d = 0; d < last; ++d) start[d] = opos[d] * g.strides[d] - g.pad_lo[d];
      std::fill(w.begin(), w.end(), 0);
      for (const T*& row : rows) {
        bool inside = true;
        int64_t flat = 0;
        for (size_t d = 0; d < last; ++d) {
          const int64_t p = start[d] + w[d];
          inside = inside && p >= 0 && p < g.in[d];
          flat = flat * g.in[d] + p;
        }
        row = inside ? x + (n * in_sp + flat * in_len) * C : nullptr;
        for (size_t d = last; d-- > 0;) {  // odometer over the window's leading dims
          if (++w[d] < g.window[d]) break;
          w[d] = 0;
        }
      }
      for (int64_t ow = 0; ow < out_len; ++ow) {
        start[last] = ow * g.strides[last] - g.pad_lo[last];
        std::fill(nan.begin(), nan.end(), 0);
        if (op == PoolOp::Avg) std::fill(best.begin(), best.end(), A(0));
        for (size_t li = 0; li < rows.size(); ++li)
          for (int64_t j = 0; j < width; ++j) {
            const int64_t p = start[last] + j;
            const bool inside = rows[li] && p >= 0 && p < in_len;
            const T* xp = inside ? rows[li] + p * C : nullptr;
            if (op == PoolOp::Avg) {
              if (inside)
                for (int64_t c = 0; c < C; ++c) best[size_t(c)] += convert<A>(xp[c]);
              continue;
            }
            const int64_t k = int64_t(li) * width + j;  // row-major over the window
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
        const int64_t r = line * out_len + ow;
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
// Walks the input a line at a time (all of its last spatial dim): a line's elements come from
// one line of outputs, so the line's position is decoded once, and an average's quotient is
// taken once per output on the line rather than once per input element (1.22 -> 0.50 ms for the
// seed CNN's first pool).
template <typename T, typename S>
void backward_tiled(PoolOp op, const PoolGeometry& g, const T* gout, const S* selection, T* gin) {
  using A = acc_t<T>;
  const size_t D = g.in.size(), last = D - 1;
  const int64_t C = g.channels, in_sp = shape_numel(g.in), out_sp = shape_numel(g.out);
  const int64_t wn = shape_numel(g.window), width = g.window[last];
  const int64_t in_len = g.in[last], out_len = g.out[last], covered_len = out_len * width;
  const int64_t in_lines = in_sp / in_len, lines = g.batch * in_lines;
#pragma omp parallel if (lines * in_len * C > 32768)
  {
    std::vector<int64_t> ip(D), start(D);
    std::vector<A> quotient(static_cast<size_t>(C));
#pragma omp for schedule(static)
    for (int64_t line = 0; line < lines; ++line) {
      T* gi = gin + line * in_len * C;
      const int64_t n = line / in_lines;
      unflatten((line % in_lines) * in_len, g.in, ip.data());
      int64_t out_line = 0, k_lead = 0;
      bool covered = true;
      for (size_t d = 0; d < last; ++d) {
        const int64_t o = ip[d] / g.window[d];
        covered = covered && o < g.out[d];
        out_line = out_line * g.out[d] + o;
        k_lead = k_lead * g.window[d] + ip[d] % g.window[d];
        start[d] = o * g.window[d];
      }
      const int64_t written = covered ? std::min(covered_len, in_len) : 0;
      for (int64_t p = written * C; p < in_len * C; ++p) gi[p] = convert<T>(A(0));
      if (!covered) continue;
      const int64_t out_first = n * out_sp + out_line * out_len;
      for (int64_t ow = 0; ow < out_len; ++ow) {
        const T* go = gout + (out_first + ow) * C;
        const int64_t cols = std::min(width, in_len - ow * width);
        if (op == PoolOp::Avg) {
          start[last] = ow * width;
          const A div = A(g.count_include_pad ? wn : inside_count(g, start.data()));
          for (int64_t c = 0; c < C; ++c) quotient[size_t(c)] = A(0) + convert<A>(go[c]) / div;
          for (int64_t j = 0; j < cols; ++j) {
            T* dst = gi + (ow * width + j) * C;
            for (int64_t c = 0; c < C; ++c) dst[c] = convert<T>(quotient[size_t(c)]);
          }
        } else {
          const S* sel = selection + (out_first + ow) * C;
          for (int64_t j = 0; j < cols; ++j) {
            const S k = S(k_lead * width + j);
            T* dst = gi + (ow * width + j) * C;
            for (int64_t c = 0; c < C; ++c) {
              const A v = convert<A>(go[c]);  // loaded unconditionally: the select vectorises
              dst[c] = convert<T>(A(0) + (sel[c] == k ? v : A(0)));
            }
          }
        }
      }
    }
  }
}

template <typename T, typename S>
void backward(PoolOp op, const PoolGeometry& g, const T* gout, const S* selection, T* gin) {
  if (windows_tile(g)) return backward_tiled(op, g, gout, selection, gin);
  using A = acc_t<T>;
  const size_t D = g.in.size(), last = D - 1;
  const int64_t C = g.channels, in_sp = shape_numel(g.in), out_sp = shape_numel(g.out);
  const int64_t wn = shape_numel(g.window), width = g.window[last], stride = g.strides[last];
  const int64_t in_len = g.in[last], out_len = g.out[last], in_lines = in_sp / in_len;
  // Each input element gathers from the outputs whose windows cover it, a box of at most
  // ceil(k/s) outputs per dim. Walked a line of inputs at a time (all of the last spatial dim):
  // the box's leading dims are the same along a line, so they are found once per line. With the
  // selection's test as a select, ResNet-50's 3x3 max pool at batch 8 went from 8.9 to 1.7 ms.
  int64_t box = 1;
  for (size_t d = 0; d < D; ++d) box *= (g.window[d] + g.strides[d] - 1) / g.strides[d];
  struct Cover {
    int64_t out_line;  // flat over the output's leading dims
    int64_t k_lead;    // the input's position in that window, row-major over the leading dims
    int64_t inside;    // the window's in-bounds extent over the leading dims
  };
  // The covering range [lo, hi] of outputs along dim d for input position p (empty if lo > hi).
  auto covering = [&g](size_t d, int64_t p, int64_t& lo, int64_t& hi) {
    const int64_t num = p + g.pad_lo[d] - g.window[d] + 1;  // o*s - pad <= p <= o*s - pad + k - 1
    lo = num <= 0 ? 0 : (num + g.strides[d] - 1) / g.strides[d];
    hi = std::min<int64_t>(g.out[d] - 1, (p + g.pad_lo[d]) / g.strides[d]);
  };
  auto extent = [&g](size_t d, int64_t start) {
    return std::max<int64_t>(std::min(start + g.window[d], g.in[d]) - std::max<int64_t>(start, 0), 0);
  };
#pragma omp parallel if (g.batch * in_sp * C * box > 32768)
  {
    std::vector<A> acc(static_cast<size_t>(C), A(0));
    std::vector<int64_t> ip(D), olo(D), ohi(D), o(D);
    std::vector<Cover> covers;
#pragma omp for schedule(static)
    for (int64_t line = 0; line < g.batch * in_lines; ++line) {
      const int64_t n = line / in_lines;
      unflatten((line % in_lines) * in_len, g.in, ip.data());
      covers.clear();
      bool any = true;
      for (size_t d = 0; d < last; ++d) {
        covering(d, ip[d], olo[d], ohi[d]);
        any = any && olo[d] <= ohi[d];
        o[d] = olo[d];
      }
      while (any) {  // odometer over the box's leading dims
        Cover c{0, 0, 1};
        for (size_t d = 0; d < last; ++d) {
          const int64_t start = o[d] * g.strides[d] - g.pad_lo[d];
          c.out_line = c.out_line * g.out[d] + o[d];
          c.k_lead = c.k_lead * g.window[d] + ip[d] - start;
          c.inside *= extent(d, start);
        }
        covers.push_back(c);
        size_t d = last;
        while (d-- > 0) {
          if (++o[d] <= ohi[d]) break;
          o[d] = olo[d];
        }
        if (d == size_t(-1)) break;
      }
      for (int64_t p = 0; p < in_len; ++p) {
        int64_t lo = 0, hi = -1;
        if (!covers.empty()) covering(last, p, lo, hi);
        std::fill(acc.begin(), acc.end(), A(0));
        for (const Cover& cover : covers)
          for (int64_t ol = lo; ol <= hi; ++ol) {
            const int64_t out_row = n * out_sp + cover.out_line * out_len + ol;
            const T* go = gout + out_row * C;
            const int64_t start = ol * stride - g.pad_lo[last];
            if (op == PoolOp::Avg) {
              const A div = A(g.count_include_pad ? wn : cover.inside * extent(last, start));
              for (int64_t c = 0; c < C; ++c) acc[size_t(c)] += convert<A>(go[c]) / div;
            } else {
              const S k = S(cover.k_lead * width + p - start);  // this input's place in the window
              const S* sel = selection + out_row * C;
              for (int64_t c = 0; c < C; ++c) {
                const A v = convert<A>(go[c]);  // loaded unconditionally: the select vectorises
                acc[size_t(c)] += sel[c] == k ? v : A(0);
              }
            }
          }
        T* gi = gin + (line * in_len + p) * C;
        for (int64_t c = 0; c < C; ++c) gi[c] = convert<T>(acc[size_t(c)]);
      }
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

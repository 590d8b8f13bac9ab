// Padding of windowed ops (pooling, convolution) with Flax/JAX semantics.
//
// Flax accepts 'SAME', 'VALID', an int p (= (p, p) on every spatial dim), a sequence of (lo, hi)
// pairs, 'CIRCULAR', 'REFLECT' and 'CAUSAL'. resolve_padding turns any of them into explicit
// (lo, hi) pairs per spatial dim with JAX's exact rules (lax.padtype_to_pads and Flax's
// canonicalize_padding), so every windowed op shares one implementation of the SAME rule.
//
// Example:
//   auto pads = resolve_padding(Padding::same(), {28, 28}, {3, 3}, {2, 2}, {});
//   // out = ceil(28/2) = 14, total = (14-1)*2 + 3 - 28 = 1 -> {(0, 1), (0, 1)}
#pragma once
#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/shape.h"

namespace loom {

using PadPairs = std::vector<std::pair<int64_t, int64_t>>;

struct Padding {
  enum Kind { Same, Valid, Explicit, Circular, Reflect, Causal };
  Kind kind = Valid;
  /// Explicit only: one (lo, hi) pair per spatial dim, or a single pair for every dim.
  PadPairs pairs;

  static Padding same() { return {Same, {}}; }
  static Padding valid() { return {Valid, {}}; }
  static Padding explicit_pads(PadPairs pairs) { return {Explicit, std::move(pairs)}; }
  /// Flax's integer padding: (p, p) on every spatial dim.
  static Padding uniform(int64_t p) { return {Explicit, {{p, p}}}; }
  /// Circular/Reflect: pad by ((k_eff-1)/2, k_eff/2) with wrap/reflect values, then VALID.
  static Padding circular() { return {Circular, {}}; }
  static Padding reflect() { return {Reflect, {}}; }
  /// 1-D only: pad dilation*(k-1) on the left, nothing on the right.
  static Padding causal() { return {Causal, {}}; }

  /// "SAME", "VALID", "CIRCULAR", "REFLECT", "CAUSAL" or "[(lo, hi), ...]" for messages.
  std::string str() const {
    switch (kind) {
      case Same: return "SAME";
      case Valid: return "VALID";
      case Circular: return "CIRCULAR";
      case Reflect: return "REFLECT";
      case Causal: return "CAUSAL";
      case Explicit: break;
    }
    std::string s = "[";
    for (size_t i = 0; i < pairs.size(); ++i)
      s += detail::cat(i ? ", " : "", "(", pairs[i].first, ", ", pairs[i].second, ")");
    return s + "]";
  }
};

/// Explicit (lo, hi) pairs per spatial dim. `strides` and `dilation` (kernel dilation) may be
/// empty, meaning all ones. SAME: out = ceil(in/s), total = max((out-1)*s + k_eff - in, 0),
/// lo = total/2, hi = total - lo, with k_eff = (k-1)*d + 1 (the extra element goes high, as JAX).
/// For Circular/Reflect the pairs are the amounts the caller must fill by wrapping/reflecting.
/// Throws naming `op` and every shape when ranks disagree or sizes are not positive.
inline PadPairs resolve_padding(const Padding& padding, const Shape& in_spatial,
                                const Shape& window, const Shape& strides, const Shape& dilation,
                                const char* op = "resolve_padding") {
  size_t n = in_spatial.size();
  auto ones_if_empty = [n](const Shape& s) { return s.empty() ? Shape(n, 1) : s; };
  Shape st = ones_if_empty(strides), dil = ones_if_empty(dilation);
  LOOM_CHECK(window.size() == n && st.size() == n && dil.size() == n, ShapeError, op,
             ": spatial shape ", shape_str(in_spatial), ", window ", shape_str(window),
             ", strides ", shape_str(st), " and dilation ", shape_str(dil),
             " must all have the same length");
  for (size_t i = 0; i < n; ++i)
    LOOM_CHECK(window[i] > 0 && st[i] > 0 && dil[i] > 0, ValueError, op, ": window ",
               shape_str(window), ", strides ", shape_str(st), " and dilation ", shape_str(dil),
               " must be positive");
  PadPairs out(n, {0, 0});
  for (size_t i = 0; i < n; ++i) {
    int64_t k_eff = (window[i] - 1) * dil[i] + 1;
    switch (padding.kind) {
      case Padding::Valid: break;
      case Padding::Same: {
        int64_t o = (in_spatial[i] + st[i] - 1) / st[i];
        int64_t total = std::max<int64_t>((o - 1) * st[i] + k_eff - in_spatial[i], 0);
        out[i] = {total / 2, total - total / 2};
        break;
      }
      case Padding::Explicit:
        LOOM_CHECK(padding.pairs.size() == 1 || padding.pairs.size() == n, ShapeError, op,
                   ": padding ", padding.str(), " needs one (lo, hi) pair per spatial dim of ",
                   shape_str(in_spatial));
        out[i] = padding.pairs.size() == 1 ? padding.pairs[0] : padding.pairs[i];
        break;
      case Padding::Circular:
      case Padding::Reflect: out[i] = {(k_eff - 1) / 2, k_eff / 2}; break;
      case Padding::Causal:
        LOOM_CHECK(n == 1, ShapeError, op, ": CAUSAL padding is 1-D only, got spatial shape ",
                   shape_str(in_spatial));
        out[i] = {k_eff - 1, 0};
        break;
    }
  }
  return out;
}

/// Output length of a window of effective size k_eff sliding with `stride` over `in` padded by
/// (lo, hi): floor((in + lo + hi - k_eff) / stride) + 1, or 0 when the window does not fit
/// (as lax.reduce_window).
inline int64_t window_output_size(int64_t in, int64_t k_eff, int64_t stride, int64_t lo,
                                  int64_t hi) {
  int64_t span = in + lo + hi - k_eff;
  return span < 0 ? 0 : span / stride + 1;
}

}  // namespace loom

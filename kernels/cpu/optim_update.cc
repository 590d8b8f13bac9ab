#include "kernels/cpu/optim_update.h"

// The fused loops must round after every operation, as the composed transforms do: no FMA
// contraction even when the target has FMA instructions.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <climits>
#include <cmath>
#include <type_traits>
#include <utility>

#include "core/error.h"

namespace loom::cpu {
namespace {

// Each inner loop is `omp simd`: its iterations are independent (an output may be its own input,
// element for element, when the state is updated in place), and vector division and square root
// round as the scalar ones do, so the results do not change. GCC would not vectorize them alone
// (seven pointers that may alias), nor with a branch left inside or a std::sqrt that may set
// errno (CMakeLists.txt builds this file with -fno-math-errno).

// Splits all leaves into chunks of at most kChunk elements and runs fn(leaf, begin, end) on them
// in parallel, so small and large leaves share one parallel loop.
template <typename Fn>
void for_each_chunk(const std::vector<OptimLeaf>& leaves, Fn&& fn) {
  constexpr int64_t kChunk = int64_t(1) << 14;
  std::vector<std::pair<size_t, int64_t>> chunks;
  int64_t total = 0;
  for (size_t l = 0; l < leaves.size(); ++l) {
    for (int64_t b = 0; b < leaves[l].n; b += kChunk) chunks.emplace_back(l, b);
    total += leaves[l].n;
  }
  int64_t count = int64_t(chunks.size());
#pragma omp parallel for schedule(static) if (total > 32768 && count > 1)
  for (int64_t c = 0; c < count; ++c) {
    const OptimLeaf& leaf = leaves[chunks[size_t(c)].first];
    int64_t begin = chunks[size_t(c)].second;
    fn(leaf, begin, std::min(begin + kChunk, leaf.n));
  }
}

int32_t incremented(int32_t c) { return c < INT32_MAX ? c + 1 : c; }

// fn(std::bool_constant<a>, std::bool_constant<b>, std::bool_constant<c>).
template <typename Fn>
void with_flags(bool a, bool b, bool c, Fn&& fn) {
  auto one = [](bool v, auto&& next) {
    if (v) next(std::true_type{});
    else next(std::false_type{});
  };
  one(a, [&](auto x) { one(b, [&](auto y) { one(c, [&](auto z) { fn(x, y, z); }); }); });
}

}  // namespace

void fused_adam(const std::vector<OptimLeaf>& leaves, const AdamConfig& c,
                const OptimScalars& s) {
  LOOM_INTERNAL_ASSERT(s.count && s.new_count);
  int32_t t = incremented(*s.count);
  // 1 - b^t in float32 (optax.tree.bias_correction); nesterov also needs t + 1.
  const float bc1 = 1.0f - std::pow(c.b1, float(t));
  const float bc2 = 1.0f - std::pow(c.b2, float(t));
  const float bc1_next = 1.0f - std::pow(c.b1, float(incremented(t)));
  const float neg_lr = -(s.lr ? *s.lr : s.lr_value);
  for_each_chunk(leaves, [&](const OptimLeaf& leaf, int64_t begin, int64_t end) {
    const bool decay = c.weight_decay && leaf.weight_decay != 0.0f;
    // The options as template flags: a branch left in the loop keeps it from vectorizing.
    with_flags(c.nesterov, decay, c.apply, [&](auto nesterov, auto decayed, auto apply) {
#pragma omp simd
      for (int64_t i = begin; i < end; ++i) {
        const float g = leaf.grad[i];
        const float m = g * c.one_minus_b1 + leaf.mu[i] * c.b1;
        const float v = (g * g) * c.one_minus_b2 + leaf.nu[i] * c.b2;
        float m_hat;
        if constexpr (nesterov) m_hat = c.b1 * (m / bc1_next) + c.one_minus_b1 * (g / bc1);
        else m_hat = m / bc1;
        float u = m_hat / (std::sqrt(v / bc2 + c.eps_root) + c.eps);
        if constexpr (decayed) u = u + leaf.weight_decay * leaf.param[i];
        u = u * neg_lr;
        if constexpr (apply) leaf.out[i] = leaf.param[i] + u;
        else leaf.out[i] = u;
        leaf.new_mu[i] = m;
        leaf.new_nu[i] = v;
      }
    });
  });
  *s.new_count = t;
}

void fused_sgd(const std::vector<OptimLeaf>& leaves, const SgdConfig& c, const OptimScalars& s) {
  const float neg_lr = -(s.lr ? *s.lr : s.lr_value);
  for_each_chunk(leaves, [&](const OptimLeaf& leaf, int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float g = leaf.grad[i];
      float u = g;
      if (c.has_momentum) {
        const float trace = g + leaf.mu[i] * c.momentum;
        leaf.new_mu[i] = trace;
        u = c.nesterov ? g + trace * c.momentum : trace;
      }
      u = u * neg_lr;
      leaf.out[i] = c.apply ? leaf.param[i] + u : u;
    }
  });
}


}  // namespace loom::cpu

#include "kernels/cpu/random.h"

#include <type_traits>

#include "core/error.h"

namespace loom::cpu {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelThreshold = 1 << 14;

/// out[i] = fn(i) for i in [0, n), in parallel for large n (each element is independent).
template <typename T, typename Fn>
void fill_elements(T* out, int64_t n, Fn fn) {
#pragma omp parallel for schedule(static) if (n >= kParallelThreshold)
  for (int64_t i = 0; i < n; ++i) out[i] = fn(uint64_t(i));
}

/// Calls fn(std::integral_constant<DType, D>) for the floating dtypes; throws otherwise.
template <typename Fn>
void visit_real(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::F32: return fn(std::integral_constant<DType, DType::F32>{});
    case DType::F64: return fn(std::integral_constant<DType, DType::F64>{});
    case DType::BF16: return fn(std::integral_constant<DType, DType::BF16>{});
    case DType::F16: return fn(std::integral_constant<DType, DType::F16>{});
    default: LOOM_THROW(DTypeError, op, ": dtype must be floating, got ", dtype_name(dtype));
  }
}

}  // namespace

void random_bits(uint32_t k0, uint32_t k1, uint32_t* out, int64_t n) {
  fill_elements(out, n, [=](uint64_t i) {
    rng::Pair p = rng::counter_pair(k0, k1, i);
    return p.a ^ p.b;
  });
}

void random_uniform(uint32_t k0, uint32_t k1, void* out, DType dtype, double minval,
                    double maxval, int64_t n) {
  visit_real(dtype, "random_uniform", [&](auto d) {
    constexpr DType D = decltype(d)::value;
    using R = rng::Real<D>;
    using T = typename R::T;
    T lo = T(minval), hi = T(maxval);
    fill_elements(static_cast<typename R::Storage*>(out), n,
                  [=](uint64_t i) { return rng::uniform_at<D>(k0, k1, i, lo, hi); });
  });
}

void random_normal(uint32_t k0, uint32_t k1, void* out, DType dtype, int64_t n) {
  visit_real(dtype, "random_normal", [&](auto d) {
    constexpr DType D = decltype(d)::value;
    using R = rng::Real<D>;
    fill_elements(static_cast<typename R::Storage*>(out), n,
                  [=](uint64_t i) { return rng::normal_at<D>(k0, k1, i); });
  });
}

void random_truncated_normal(uint32_t k0, uint32_t k1, void* out, DType dtype, double a,
                             double b, double clip_lo, double clip_hi, int64_t n) {
  visit_real(dtype, "random_truncated_normal", [&](auto d) {
    constexpr DType D = decltype(d)::value;
    using R = rng::Real<D>;
    using T = typename R::T;
    T ta = T(a), tb = T(b), lo = T(clip_lo), hi = T(clip_hi);
    fill_elements(static_cast<typename R::Storage*>(out), n, [=](uint64_t i) {
      return rng::truncated_normal_at<D>(k0, k1, i, ta, tb, lo, hi);
    });
  });
}

void random_bernoulli(uint32_t k0, uint32_t k1, bool* out, float p, int64_t n) {
  fill_elements(out, n, [=](uint64_t i) { return rng::bernoulli_at(k0, k1, i, p); });
}

void random_bernoulli_bits(uint32_t k0, uint32_t k1, uint32_t* words, float p, int64_t n) {
  fill_elements(words, (n + 31) / 32, [=](uint64_t w) {
    // The 32 draws in a loop of their own (it vectorises), then packed.
    const uint64_t first = 32 * w, len = uint64_t(n) - first < 32 ? uint64_t(n) - first : 32;
    bool draws[32] = {};
    for (uint64_t b = 0; b < len; ++b) draws[b] = rng::bernoulli_at(k0, k1, first + b, p);
    uint32_t word = 0;
    for (uint32_t b = 0; b < 32; ++b) word |= uint32_t(draws[b]) << b;
    return word;
  });
}

}  // namespace loom::cpu

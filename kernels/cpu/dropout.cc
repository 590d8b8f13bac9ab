#include "kernels/cpu/dropout.h"

#include <cstring>
#include <type_traits>

namespace loom::cpu {
namespace {

// Below this many elements a parallel region costs more than it saves.
constexpr int64_t kParallelThreshold = 1 << 14;

// Byte b of kByteBits[v] is bit b of v: a mask word becomes 32 flags with four lookups, and the
// element loop over flags vectorises (x86-64's baseline has no per-lane variable shift).
struct ByteBits {
  uint64_t of[256];
  constexpr ByteBits() : of() {
    for (int v = 0; v < 256; ++v)
      for (int b = 0; b < 8; ++b) of[v] |= uint64_t((v >> b) & 1) << (8 * b);
  }
};
constexpr ByteBits kByteBits;

}  // namespace

void dropout_scale(const void* in, void* out, DType dtype, const uint32_t* words, int64_t n,
                   int64_t period, double scale, bool multiply) {
  visit_floating(dtype, "dropout", [&](auto z) {
    using T = decltype(z);
    using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const T* x = static_cast<const T*>(in);
    T* y = static_cast<T*>(out);
    const C s = C(scale), zero = C(0);
    // Rows of `period` elements (the mask's extent), each in runs of 32 sharing a mask word.
    const int64_t rows = period == 0 ? 0 : n / period, n_words = (period + 31) / 32;
#pragma omp parallel for collapse(2) schedule(static) if (n >= kParallelThreshold)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t w = 0; w < n_words; ++w) {
        uint8_t kept[32];
        for (int q = 0; q < 4; ++q) {
          const uint64_t flags = kByteBits.of[(words[w] >> (8 * q)) & 255u];
          std::memcpy(kept + 8 * q, &flags, 8);
        }
        const int64_t first = r * period + 32 * w;
        const int64_t len = period - 32 * w < 32 ? period - 32 * w : 32;
        const T* xs = x + first;
        T* ys = y + first;
        if (multiply) {
          for (int64_t b = 0; b < len; ++b) {
            const C v = convert<C>(xs[b]);
            ys[b] = convert<T>(kept[b] ? v * s : v * zero);
          }
        } else {
          for (int64_t b = 0; b < len; ++b) {
            const C q = convert<C>(xs[b]) / s;
            ys[b] = convert<T>(kept[b] ? q : zero);
          }
        }
      }
  });
}

}  // namespace loom::cpu

// CUDA launchers for JAX-exact random numbers (launched on `stream`). Same semantics and bits as
// the CPU versions in kernels/cpu/random.h, whose per-element functions the kernels share.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

/// A threefry key as the kernels take it: host words, or (when `words` is set) two uint32 words
/// in device memory read by the kernel itself, so a captured CUDA graph reads the key of each
/// replay.
struct KeyArg {
  uint32_t k0 = 0, k1 = 0;
  const uint32_t* words = nullptr;
};

void random_bits(KeyArg key, uint32_t* out, int64_t n, Stream stream);
void random_uniform(KeyArg key, void* out, DType dtype, double minval, double maxval, int64_t n,
                    Stream stream);
void random_normal(KeyArg key, void* out, DType dtype, int64_t n, Stream stream);
void random_truncated_normal(KeyArg key, void* out, DType dtype, double a, double b,
                             double clip_lo, double clip_hi, int64_t n, Stream stream);
void random_bernoulli(KeyArg key, bool* out, float p, int64_t n, Stream stream);
/// random_bernoulli's n draws packed 32 per word: bit j % 32 of words[j / 32].
void random_bernoulli_bits(KeyArg key, uint32_t* words, float p, int64_t n, Stream stream);
/// out[2j], out[2j + 1] = the words of split(key, n)[j] (n = 1 with `fold_in`: fold_in(key, data)).
void random_split(KeyArg key, int64_t n, uint32_t* out, Stream stream);
void random_fold_in(KeyArg key, uint32_t data, uint32_t* out, Stream stream);

}  // namespace loom::cuda

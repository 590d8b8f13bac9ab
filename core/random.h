// JAX-compatible random numbers: raw threefry keys and samplers whose bits equal jax.random's.
//
// A Key is JAX's raw key (the uint32[2] of jax.random.PRNGKey / key_data) under the default
// configuration: the threefry2x32 implementation with jax_threefry_partitionable=True (the
// default since JAX 0.5). Samplers are counter based: element i of any sampler uses
// threefry(key; (hi32(i), lo32(i))), so CPU and CUDA produce identical values.
//
// Parity with JAX (tests/golden/random.json, from scripts/golden/gen_random.py, jax 0.10.2):
//   - key, fold_in, split, bits, bernoulli, permutation: bit-exact (integer math).
//   - uniform (f32, f64, bf16, f16): bit-exact; like XLA, f * (maxval - minval) + minval is one
//     FMA in f32/f64.
//   - normal, truncated_normal: bit-exact in f32, bf16 and f16 against XLA's CPU backend on an
//     x86-64 host with FMA (loom evaluates the same log1p/erf_inv operation sequence); float64
//     within a few float64 ulps. JAX on other backends (GPU, CPUs without FMA) differs from
//     itself by an ulp or two here, which is why the tests allow 2 float32 ulps.
//
// Example:
//   std::vector<random::Key> keys = random::split(random::key(0));   // 2 keys
//   Tensor w = random::normal(keys[0], {784, 128});                    // float32 on the CPU
//   Tensor mask = random::bernoulli(keys[1], 0.9, {32, 128}, Device::cuda());
//   // inside a loom::jit step, from a key passed in as in["rng"] = key_data(k).to(Device::cuda()):
//   Tensor drop = random::bernoulli(random::wrap_key_data(in["rng"].tensor()), 0.9, {32, 128},
//                                   Device::cuda());
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace loom::random {

/// A raw threefry2x32 key: JAX's uint32[2] key data (k0 = key_data[0], k1 = key_data[1]).
///
/// A key can also live on a GPU, as a traced key does in jax.jit: wrap_key_data of a CUDA tensor
/// gives one, and fold_in / split of it run there too. Draws on that GPU read its words in
/// place, so a key passed into a loom::jit step as a tensor gives fresh numbers at every replay
/// (a host key would be frozen at capture). Its k0 and k1 are then unused.
struct Key {
  Key() = default;
  Key(uint32_t word0, uint32_t word1) : k0(word0), k1(word1) {}

  uint32_t k0 = 0;
  uint32_t k1 = 0;
  Tensor device_words;  // defined for a key on a GPU: uint32 [2], contiguous

  bool on_device() const { return device_words.defined(); }
  /// Host keys: equal words. A key on a GPU equals only a key reading the same words.
  bool operator==(const Key& other) const;
  std::string str() const;  // "Key(0, 42)", or "Key(on cuda:0)"
};
std::ostream& operator<<(std::ostream& os, const Key& key);

/// jax.random.PRNGKey(seed) in JAX's default x32 mode: [0, uint32(seed)]. Only the low 32 bits
/// of the seed count, so negative seeds wrap (-1 -> [0, 4294967295]) and 2^32 + 5 equals 5.
/// (With jax_enable_x64 JAX would put the high word in k0; use Key{hi, lo} for that.)
Key key(int64_t seed);
/// jax.random.fold_in(key, data) = threefry(key; (0, data)).
Key fold_in(Key key, uint32_t data);
/// jax.random.split(key, n): key j = threefry(key; (hi32(j), lo32(j))) = fold_in(key, j).
std::vector<Key> split(Key key, int64_t n = 2);
/// The key as a uint32 tensor of shape [2] (jax.random.key_data): on the CPU for a host key,
/// the key's own words for a key on a GPU.
Tensor key_data(Key key);
/// The inverse of key_data: a uint32 tensor of shape [2] (jax.random.wrap_key_data). A CUDA
/// tensor gives a key on that GPU, read there without waiting for it (inside a loom::jit step:
/// the step's key input).
Key wrap_key_data(const Tensor& data);

/// jax.random.bits(key, shape): uint32 random bits (DType::U32).
Tensor bits(Key key, const Shape& shape, Device device = Device::cpu());
/// jax.random.uniform: values in [minval, maxval) of a floating dtype. minval/maxval are rounded
/// to `dtype` first, as JAX does.
Tensor uniform(Key key, const Shape& shape, DType dtype = DType::F32, double minval = 0.0,
               double maxval = 1.0, Device device = Device::cpu());
/// jax.random.normal: standard normal values, sqrt(2) * erf_inv(uniform(-1, 1)).
Tensor normal(Key key, const Shape& shape, DType dtype = DType::F32,
              Device device = Device::cpu());
/// jax.random.truncated_normal: standard normal values restricted to (lower, upper); infinite
/// bounds are allowed. Throws ValueError unless lower < upper (JAX would return NaNs/clipped
/// values instead).
Tensor truncated_normal(Key key, double lower, double upper, const Shape& shape,
                        DType dtype = DType::F32, Device device = Device::cpu());
/// jax.random.bernoulli(key, p, shape) with a Python-float p (float32): a Bool tensor,
/// uniform_f32 < p. Throws ValueError unless 0 <= p <= 1.
Tensor bernoulli(Key key, double p, const Shape& shape, Device device = Device::cpu());
/// bernoulli(key, p, {n}) packed 32 draws per word, bit j % 32 of word j / 32: a uint32 tensor of
/// ceil(n / 32) words (dropout keeps its mask this way: a bit per element instead of a byte).
Tensor bernoulli_bits(Key key, double p, int64_t n, Device device = Device::cpu());
/// jax.random.permutation(key, n): a random ordering of 0..n-1 as int32, computed like JAX's
/// _shuffle (ceil(3 ln n / ln(2^32 - 1)) rounds of a stable sort by fresh uint32 keys). Runs on
/// the host from a host key; a CUDA result is copied to the device.
Tensor permutation(Key key, int64_t n, Device device = Device::cpu());

}  // namespace loom::random

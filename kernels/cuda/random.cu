#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/random.h"
// The per-element functions are shared with the CPU so both produce the same bits.
#include "kernels/cpu/random.h"

namespace loom::cuda {
namespace {

namespace rng = ::loom::cpu::rng;

/// out[i] = fn(i) over a grid-stride loop (each element is independent).
template <typename T, typename Fn>
__global__ void fill_kernel(T* out, int64_t n, Fn fn) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = fn(uint64_t(i));
}

template <typename T, typename Fn>
void launch(T* out, int64_t n, Stream stream, Fn fn) {
  if (n == 0) return;
  fill_kernel<<<blocks_for(n), 256, 0, stream>>>(out, n, fn);
  LOOM_CUDA_CHECK(cudaGetLastError());
}

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

// The key's words, from device memory when the key lives there.
struct DeviceKey {
  uint32_t k0, k1;
  const uint32_t* words;
  explicit DeviceKey(KeyArg k) : k0(k.k0), k1(k.k1), words(k.words) {}
  __device__ __forceinline__ uint32_t a() const { return words ? __ldg(words) : k0; }
  __device__ __forceinline__ uint32_t b() const { return words ? __ldg(words + 1) : k1; }
};

// Functors rather than extended lambdas: their types are nameable in host-side templates.
struct BitsFn {
  DeviceKey key;
  __device__ uint32_t operator()(uint64_t i) const {
    rng::Pair p = rng::counter_pair(key.a(), key.b(), i);
    return p.a ^ p.b;
  }
};

template <DType D>
struct UniformFn {
  DeviceKey key;
  typename rng::Real<D>::T lo, hi;
  __device__ typename rng::Real<D>::Storage operator()(uint64_t i) const {
    return rng::uniform_at<D>(key.a(), key.b(), i, lo, hi);
  }
};

template <DType D>
struct NormalFn {
  DeviceKey key;
  __device__ typename rng::Real<D>::Storage operator()(uint64_t i) const {
    return rng::normal_at<D>(key.a(), key.b(), i);
  }
};

template <DType D>
struct TruncatedNormalFn {
  DeviceKey key;
  typename rng::Real<D>::T a, b, lo, hi;
  __device__ typename rng::Real<D>::Storage operator()(uint64_t i) const {
    return rng::truncated_normal_at<D>(key.a(), key.b(), i, a, b, lo, hi);
  }
};

struct BernoulliFn {
  DeviceKey key;
  float p;
  __device__ bool operator()(uint64_t i) const { return rng::bernoulli_at(key.a(), key.b(), i, p); }
};

// Each warp draws 32 consecutive elements per step and its first lane stores their vote.
__global__ void bernoulli_bits_kernel(DeviceKey key, float p, uint32_t* words, int64_t n) {
  const int lane = int(threadIdx.x & 31);
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  const uint32_t k0 = key.a(), k1 = key.b();
  for (int64_t w = warp; w * 32 < n; w += warps) {  // the same trip count for the whole warp
    const int64_t j = w * 32 + lane;
    const uint32_t word = __ballot_sync(0xffffffffu, j < n && rng::bernoulli_at(k0, k1, uint64_t(j), p));
    if (lane == 0) words[w] = word;
  }
}

// Word i of the keys split(key, n) (pair j = i / 2): threefry(key; (hi32(j), lo32(j))).
struct SplitFn {
  DeviceKey key;
  __device__ uint32_t operator()(uint64_t i) const {
    rng::Pair p = rng::counter_pair(key.a(), key.b(), i / 2);
    return i % 2 == 0 ? p.a : p.b;
  }
};

// Word i of fold_in(key, data) = threefry(key; (0, data)).
struct FoldInFn {
  DeviceKey key;
  uint32_t data;
  __device__ uint32_t operator()(uint64_t i) const {
    rng::Pair p = rng::threefry2x32(key.a(), key.b(), 0u, data);
    return i == 0 ? p.a : p.b;
  }
};

}  // namespace

void random_bits(KeyArg key, uint32_t* out, int64_t n, Stream stream) {
  launch(out, n, stream, BitsFn{DeviceKey(key)});
}

void random_uniform(KeyArg key, void* out, DType dtype, double minval, double maxval, int64_t n,
                    Stream stream) {
  visit_real(dtype, "random_uniform", [&](auto d) {
    constexpr DType D = decltype(d)::value;
    using R = rng::Real<D>;
    using T = typename R::T;
    launch(static_cast<typename R::Storage*>(out), n, stream,
           UniformFn<D>{DeviceKey(key), T(minval), T(maxval)});
  });
}

void random_normal(KeyArg key, void* out, DType dtype, int64_t n, Stream stream) {
  visit_real(dtype, "random_normal", [&](auto d) {
    constexpr DType D = decltype(d)::value;
    launch(static_cast<typename rng::Real<D>::Storage*>(out), n, stream, NormalFn<D>{DeviceKey(key)});
  });
}

void random_truncated_normal(KeyArg key, void* out, DType dtype, double a, double b,
                             double clip_lo, double clip_hi, int64_t n, Stream stream) {
  visit_real(dtype, "random_truncated_normal", [&](auto d) {
    constexpr DType D = decltype(d)::value;
    using R = rng::Real<D>;
    using T = typename R::T;
    launch(static_cast<typename R::Storage*>(out), n, stream,
           TruncatedNormalFn<D>{DeviceKey(key), T(a), T(b), T(clip_lo), T(clip_hi)});
  });
}

void random_bernoulli(KeyArg key, bool* out, float p, int64_t n, Stream stream) {
  launch(out, n, stream, BernoulliFn{DeviceKey(key), p});
}

void random_bernoulli_bits(KeyArg key, uint32_t* words, float p, int64_t n, Stream stream) {
  if (n == 0) return;
  bernoulli_bits_kernel<<<blocks_for(n), 256, 0, stream>>>(DeviceKey(key), p, words, n);
  LOOM_CUDA_CHECK(cudaGetLastError());
}

void random_split(KeyArg key, int64_t n, uint32_t* out, Stream stream) {
  launch(out, 2 * n, stream, SplitFn{DeviceKey(key)});
}

void random_fold_in(KeyArg key, uint32_t data, uint32_t* out, Stream stream) {
  launch(out, 2, stream, FoldInFn{DeviceKey(key), data});
}

}  // namespace loom::cuda

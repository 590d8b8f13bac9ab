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

// Functors rather than extended lambdas: their types are nameable in host-side templates.
struct BitsFn {
  uint32_t k0, k1;
  __device__ uint32_t operator()(uint64_t i) const {
    rng::Pair p = rng::counter_pair(k0, k1, i);
    return p.a ^ p.b;
  }
};

template <DType D>
struct UniformFn {
  uint32_t k0, k1;
  typename rng::Real<D>::T lo, hi;
  __device__ typename rng::Real<D>::Storage operator()(uint64_t i) const {
    return rng::uniform_at<D>(k0, k1, i, lo, hi);
  }
};

template <DType D>
struct NormalFn {
  uint32_t k0, k1;
  __device__ typename rng::Real<D>::Storage operator()(uint64_t i) const {
    return rng::normal_at<D>(k0, k1, i);
  }
};

template <DType D>
struct TruncatedNormalFn {
  uint32_t k0, k1;
  typename rng::Real<D>::T a, b, lo, hi;
  __device__ typename rng::Real<D>::Storage operator()(uint64_t i) const {
    return rng::truncated_normal_at<D>(k0, k1, i, a, b, lo, hi);
  }
};

struct BernoulliFn {
  uint32_t k0, k1;
  float p;
  __device__ bool operator()(uint64_t i) const { return rng::bernoulli_at(k0, k1, i, p); }
};

}  // namespace

void random_bits(uint32_t k0, uint32_t k1, uint32_t* out, int64_t n, Stream stream) {
  launch(out, n, stream, BitsFn{k0, k1});
}

void random_uniform(uint32_t k0, uint32_t k1, void* out, DType dtype, double minval,
                    double maxval, int64_t n, Stream stream) {
  visit_real(dtype, "random_uniform", [&](auto d) {
    constexpr DType D = decltype(d)::value;
    using R = rng::Real<D>;
    using T = typename R::T;
    launch(static_cast<typename R::Storage*>(out), n, stream,
           UniformFn<D>{k0, k1, T(minval), T(maxval)});
  });
}

void random_normal(uint32_t k0, uint32_t k1, void* out, DType dtype, int64_t n, Stream stream) {
  visit_real(dtype, "random_normal", [&](auto d) {
    constexpr DType D = decltype(d)::value;
    launch(static_cast<typename rng::Real<D>::Storage*>(out), n, stream, NormalFn<D>{k0, k1});
  });
}

void random_truncated_normal(uint32_t k0, uint32_t k1, void* out, DType dtype, double a,
                             double b, double clip_lo, double clip_hi, int64_t n,
                             Stream stream) {
  visit_real(dtype, "random_truncated_normal", [&](auto d) {
    constexpr DType D = decltype(d)::value;
    using R = rng::Real<D>;
    using T = typename R::T;
    launch(static_cast<typename R::Storage*>(out), n, stream,
           TruncatedNormalFn<D>{k0, k1, T(a), T(b), T(clip_lo), T(clip_hi)});
  });
}

void random_bernoulli(uint32_t k0, uint32_t k1, bool* out, float p, int64_t n, Stream stream) {
  launch(out, n, stream, BernoulliFn{k0, k1, p});
}

}  // namespace loom::cuda

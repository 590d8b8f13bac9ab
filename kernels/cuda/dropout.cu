// Dropout's scaling pass: 16-byte packs where the mask period and the pointers allow, one
// mask-word read per pack.
#include "kernels/cuda/device_types.cuh"
#include "kernels/cuda/dropout.h"

namespace loom::cuda {
namespace {

// V elements per step starting at a multiple of V: with period % V == 0 their mask bits are V
// consecutive bits of one word (V <= 8 divides 32), found with one division per pack.
template <typename T, int V>
__global__ void scale_kernel(const T* in, T* out, const uint32_t* words, int64_t n,
                             int64_t period, acc_t<T> scale, bool multiply) {
  using C = acc_t<T>;
  const int64_t packs = n / V;
  LOOM_GRID_STRIDE_LOOP(p, packs) {
    const int64_t i = p * V, j = period == n ? i : i % period;
    const uint32_t bits = __ldg(words + (j >> 5)) >> (j & 31);
    const Pack<T, V> x = load_pack<V>(in + i);
    Pack<T, V> y;
#pragma unroll
    for (int v = 0; v < V; ++v) {
      const bool kept = (bits >> v) & 1u;
      const C xv = cvt<C>(x.v[v]);
      y.v[v] = cvt<T>(multiply ? xv * (kept ? scale : C(0)) : (kept ? xv / scale : C(0)));
    }
    store_pack<V>(out + i, y);
  }
}

}  // namespace

void dropout_scale(const void* in, void* out, DType dtype, const uint32_t* words, int64_t n,
                   int64_t period, double scale, bool multiply, Stream stream) {
  if (n == 0) return;
  visit_float_dtype(dtype, "dropout", [&](auto z) {
    using T = decltype(z);
    launch_packed<T>(period, {{in, sizeof(T)}, {out, sizeof(T)}}, [&](auto wide) {
      constexpr int V = decltype(wide)::value;
      scale_kernel<T, V><<<blocks_for(n / V), 256, 0, stream>>>(
          static_cast<const T*>(in), static_cast<T*>(out), words, n, period, acc_t<T>(scale),
          multiply);
    });
  });
  LOOM_CUDA_CHECK(cudaGetLastError());
}

}  // namespace loom::cuda

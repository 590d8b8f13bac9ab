// Fused scaled dot-product attention (forward and backward) on CUDA: the logits and weights
// never reach device memory. Flash-attention's online softmax, on the CUDA cores in float32
// (a tensor-core version is the next step), deterministic (no atomics: dQ and dK/dV are two
// passes). Same semantics as the composed path of core/ops/attention.h: masked logits become
// `fill` (so a fully masked row attends uniformly, as Flax's where-then-softmax does), and the
// gradient of a masked logit is zero.
//
// Layout: q, out, dq [batch, q_len, heads, head_dim]; k, v, dk, dv [batch, kv_len, heads,
// head_dim], all contiguous, one dtype (float32, bfloat16 or float16); head_dim 32, 64 or 128.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/row_mask.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

struct AttentionShape {
  int64_t batch = 0, heads = 0, q_len = 0, kv_len = 0, head_dim = 0;
};

struct AttentionParams {
  AttentionShape shape;
  DType dtype = DType::F32;
  double scale = 1;      // applied to q . k
  RowMask mask;          // rows [batch, heads, q_len], columns the keys
  bool causal = false;   // also masks key j > query i
  double fill = 0;       // the masked logits' value (finfo(dtype).min)
};

bool fused_attention_supported(DType dtype, int64_t head_dim);

/// out = softmax(mask(scale * q k^T)) v, and stats [batch, heads, q_len, 2] (float32: each
/// row's max logit and 1 / sum of exp(logit - max)) for the backward.
void attention_forward(const AttentionParams& p, const void* q, const void* k, const void* v,
                       void* out, float* stats, Stream stream);
/// dq, dk, dv from dout; `delta` is scratch of batch * heads * q_len floats.
void attention_backward(const AttentionParams& p, const void* q, const void* k, const void* v,
                        const void* out, const void* dout, const float* stats, float* delta,
                        void* dq, void* dk, void* dv, Stream stream);

}  // namespace loom::cuda

// Scaled dot-product attention through cuDNN's fused flash-attention graphs: cudnn_frontend's
// sdpa / sdpa_backward, the kernels jax.nn.dot_product_attention(implementation='cudnn') runs.
// Operands keep loom's [batch, len, heads, head_dim] layout (cuDNN reads it through strides,
// so no head transposes); a graph is built once per shape and cached. Compiled when CMake finds
// the cudnn_frontend headers (pip install nvidia-cudnn-frontend); otherwise
// cudnn_attention_unsupported says so.
#pragma once
#include <cstdint>
#include <string>

#include "core/dtype.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/runtime.h"

namespace loom::cuda {

struct CudnnAttention {
  AttentionShape shape;
  DType dtype = DType::BF16;
  double scale = 1;     // applied to q . k
  bool causal = false;  // masks key j > query i
  int device = 0;
};

/// Why cuDNN attention cannot take these operands, or "" when it can as far as loom checks
/// (cuDNN may still reject a shape when its graph is built: that throws, naming the shape).
std::string cudnn_attention_unsupported(DType dtype, int64_t head_dim);

/// out = softmax(scale * q k^T, causally masked) v; lse [batch, heads, q_len] (float32, each
/// row's log-sum-exp) for the backward. q, out [batch, q_len, heads, head_dim]; k, v
/// [batch, kv_len, heads, head_dim]; all contiguous, of a.dtype.
void cudnn_attention_forward(const CudnnAttention& a, const void* q, const void* k,
                             const void* v, void* out, float* lse, Stream stream);
/// dq, dk, dv (layouts of q, k, v) from dout and the forward's out and lse. Deterministic when
/// loom's deterministic mode is on (cuDNN's slower deterministic backward), else cuDNN's
/// default, which accumulates dq with atomics.
void cudnn_attention_backward(const CudnnAttention& a, const void* q, const void* k,
                              const void* v, const void* out, const void* dout, const float* lse,
                              void* dq, void* dk, void* dv, Stream stream);

}  // namespace loom::cuda

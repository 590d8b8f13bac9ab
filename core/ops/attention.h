// Scaled dot-product attention as flax.linen.dot_product_attention. Three implementations, as
// jax.nn.dot_product_attention's `implementation`:
//  - Composed (the default): einsum, masked softmax, einsum; gradients from those ops; any
//    device, dtype, bias and dropout.
//  - Fused (CUDA): loom's own kernels, one forward and two backward (kernels/cuda/attention.h):
//    the [heads, q_len, kv_len] logits and weights never reach device memory. float32, bfloat16
//    or float16, head_dim 32, 64 or 128, no bias, no dropout. On the CUDA cores.
//  - CuDnn (CUDA): cuDNN's fused flash attention (kernels/cuda/cudnn_attention.h), what JAX's
//    implementation='cudnn' runs, on the tensor cores. bfloat16 or float16, head_dim a multiple
//    of 8 up to 128, optionally causal; no mask, bias or dropout.
// Asking for Fused or CuDnn where they cannot run is an error that says why. Neither has been
// measured on a GPU yet, so neither is the default.
//
// Layout (Flax): q [..., q_len, heads, head_dim], k [..., kv_len, heads, head_dim],
// v [..., kv_len, heads, v_dim]; the output is [..., q_len, heads, v_dim]. Batch dims must be
// equal. q is scaled by 1/sqrt(head_dim) before the product; bias is added to the logits
// [..., heads, q_len, kv_len]; where the mask is false the logit becomes finfo(dtype).min; the
// softmax runs in float32 for half inputs; dropout (when dropout_rate > 0) multiplies the
// weights by bernoulli(keep) / keep with a mask of shape [1, ..., 1, q_len, kv_len] when
// broadcast_dropout (shared over batch and heads, as Flax) or the weights' full shape otherwise.
//
// Example:
//   AttentionOptions opt;
//   opt.causal = true;
//   Tensor out = dot_product_attention(q, k, v, opt);
#pragma once
#include <optional>
#include <string>

#include "core/random.h"
#include "core/tensor.h"

namespace loom {

enum class AttentionImplementation { Composed, Fused, CuDnn };

struct AttentionOptions {
  Tensor bias;          // added to the logits; broadcastable to [..., heads, q_len, kv_len]
  Tensor mask;          // bool, broadcastable to [..., heads, q_len, kv_len]; false = masked
  bool causal = false;  // also mask kv position j > q position i (jnp.tril of [q_len, kv_len])
  double dropout_rate = 0;
  std::optional<random::Key> dropout_key;  // required when dropout_rate > 0
  bool broadcast_dropout = true;
  /// Named: that implementation or an error saying why it cannot take the call. Unset: the
  /// process default (set_attention_implementation; Composed unless changed).
  std::optional<AttentionImplementation> implementation;
};

/// The implementation dot_product_attention prefers when the options name none (for a whole
/// program, as loom_bench --attention fused|cudnn does). A preference: calls it cannot take
/// (cuDNN's attention on float32, as a model's init runs it) use Composed.
void set_attention_implementation(AttentionImplementation implementation);
AttentionImplementation attention_implementation();
/// The implementation named by "composed", "fused" or "cudnn" (ValueError naming `what` else).
AttentionImplementation parse_attention_implementation(const std::string& name, const char* what);

/// Sets the preferred implementation for a scope and restores the previous one on exit.
class AttentionImplementationGuard {
 public:
  explicit AttentionImplementationGuard(AttentionImplementation implementation)
      : previous_(attention_implementation()) {
    set_attention_implementation(implementation);
  }
  ~AttentionImplementationGuard() { set_attention_implementation(previous_); }
  AttentionImplementationGuard(const AttentionImplementationGuard&) = delete;
  AttentionImplementationGuard& operator=(const AttentionImplementationGuard&) = delete;

 private:
  AttentionImplementation previous_;
};

/// flax.linen.dot_product_attention_weights: softmax weights [..., heads, q_len, kv_len].
Tensor dot_product_attention_weights(const Tensor& q, const Tensor& k,
                                     const AttentionOptions& opt = {});
/// flax.linen.dot_product_attention.
Tensor dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                             const AttentionOptions& opt = {});

}  // namespace loom

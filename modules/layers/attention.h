// flax.linen.MultiHeadDotProductAttention (and its SelfAttention / MultiHeadAttention names):
// query/key/value DenseGeneral(features=(heads, head_dim)) children named "query", "key",
// "value" (kernels [in, heads, head_dim]), dot-product attention with masks and dropout, and an
// "out" DenseGeneral over the last two axes (kernel [heads, head_dim, out]). With decode = true
// the keys and values are cached in the "cache" collection (cached_key, cached_value,
// cache_index) for autoregressive sampling, as Flax.
//
// Masks are bool tensors broadcastable to [batch..., heads, q_len, kv_len] (numeric masks count
// non-zero as true); make_causal_mask / make_attention_mask / combine_masks build them.
// AttentionArgs::causal gives the causal mask without a tensor.
//
// Example:
//   nn::MultiHeadDotProductAttention mha{.num_heads = 8, .qkv_features = 512};
//   Tensor y = mha(x, nn::AttentionArgs{.mask = nn::make_causal_mask(tokens)});   // self
//   Tensor z = mha(x, memory);                                                     // cross
#pragma once
#include <optional>

#include "core/random.h"
#include "modules/initializers.h"
#include "modules/module.h"

namespace loom::nn {

/// Per-call arguments of attention (Flax's keyword arguments).
struct AttentionArgs {
  Tensor mask = {};
  /// Also mask key j > query i, as jax.nn.dot_product_attention's is_causal: the causal mask
  /// without a mask tensor, which lets the Fused and CuDnn attention implementations run
  /// (core/ops/attention.h). Not with decode's cache, whose own mask covers causality.
  bool causal = false;
  /// Overrides the module's `deterministic` (dropout off) when set.
  std::optional<bool> deterministic = {};
  /// Dropout key instead of make_rng("dropout").
  std::optional<random::Key> dropout_rng = {};
  /// Sow the attention weights into "intermediates" as "attention_weights".
  bool sow_weights = false;
  /// When set, the module returns residual + its output (a residual connection, x + attn(x)),
  /// added in the output projection's product on the GPU (DenseGeneral's residual call): no
  /// separate pass over the output to add it.
  Tensor residual = {};
};

// The settings are spelled out once and shared by the three module names.
#define LOOM_NN_ATTENTION_FIELDS                                                         \
  int64_t num_heads = 0;                                                                 \
  std::optional<DType> dtype = {};                                                       \
  DType param_dtype = DType::F32;                                                        \
  std::optional<int64_t> qkv_features = {}; /* default: the input features */           \
  std::optional<int64_t> out_features = {}; /* default: the input features */           \
  bool broadcast_dropout = true;                                                         \
  double dropout_rate = 0.0;                                                             \
  bool deterministic = false;                                                            \
  Initializer kernel_init = initializers::lecun_normal();                                \
  std::optional<Initializer> out_kernel_init = {};                                       \
  Initializer bias_init = initializers::zeros();                                         \
  std::optional<Initializer> out_bias_init = {};                                         \
  bool use_bias = true;                                                                  \
  bool decode = false;                                                                   \
  bool normalize_qk = false;                                                             \
                                                                                         \
  Tensor call(const Tensor& inputs_q, const AttentionArgs& args = {}) const {            \
    return call(inputs_q, Tensor(), Tensor(), args);                                     \
  }                                                                                      \
  Tensor call(const Tensor& inputs_q, const Tensor& inputs_k,                            \
              const AttentionArgs& args = {}) const {                                    \
    return call(inputs_q, inputs_k, Tensor(), args);                                     \
  }                                                                                      \
  /* inputs_k defaults to inputs_q and inputs_v to inputs_k, as Flax */                  \
  Tensor call(const Tensor& inputs_q, const Tensor& inputs_k, const Tensor& inputs_v,    \
              const AttentionArgs& args = {}) const;

struct MultiHeadDotProductAttention : Module<MultiHeadDotProductAttention> {
  LOOM_NN_ATTENTION_FIELDS
};
struct MultiHeadAttention : Module<MultiHeadAttention> {
  LOOM_NN_ATTENTION_FIELDS
};
/// Self-attention (Flax's deprecated SelfAttention): call(x) attends x to itself.
struct SelfAttention : Module<SelfAttention> {
  LOOM_NN_ATTENTION_FIELDS
};

#undef LOOM_NN_ATTENTION_FIELDS

/// nn.make_attention_mask: [batch..., 1, q_len, kv_len], true where query_input[q] *
/// key_input[k] != 0 (Flax's default pairwise_fn, multiply).
Tensor make_attention_mask(const Tensor& query_input, const Tensor& key_input);
/// nn.make_causal_mask(x): [batch..., 1, len, len], true where key position <= query position.
Tensor make_causal_mask(const Tensor& x);
/// Logical and of the defined masks (undefined ones are skipped; all undefined: undefined).
Tensor combine_masks(const std::vector<Tensor>& masks);

}  // namespace loom::nn

// A decoder-only language model of the GPT-2 kind, written as the Flax module in
// scripts/golden/gen_flax_models.py: token embedding "wte" + learned positions "wpe", dropout,
// num_layers pre-LayerNorm blocks (ln_1, causal self-attention "attn" (the causal flag, not a
// mask tensor, so the fused attention implementations apply), dropout, residual; ln_2,
// MLP c_fc -> gelu (tanh) -> c_proj, dropout, residual), final LayerNorm "ln_f", and logits
// tied to the token embedding (wte.attend). Flax's default initialisers throughout.
//
// Blocks are "h_0", "h_1", ... (each an nn::Remat when remat), or with scan_layers one
// nn::Scan named "h" whose params are stacked on a leading axis of length num_layers (Flax's
// nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True})).
// GPT-2 small (gpt2_small()) has 124,439,808 params.
//
// Example:
//   nn::models::TransformerLM lm{.vocab_size = 256, .max_len = 128, .num_layers = 4,
//                                .num_heads = 4, .d_model = 128};
//   Tree vars = lm.init(random::key(0), tokens);                    // tokens [B, T] int32
//   Tensor logits = lm.apply(vars, tokens);                         // [B, T, vocab]
//   auto train = lm; train.deterministic = false; train.dropout_rate = 0.1;
//   Tensor l = train.apply(vars, {.rngs = {{"dropout", key}}}, tokens);
#pragma once
#include <cstdint>
#include <optional>

#include "modules/module.h"

namespace loom::nn::models {

/// One pre-LayerNorm decoder block: call(x [B, T, d], mask [B, 1, T, T] or undefined) -> [B, T, d].
struct TransformerBlock : Module<TransformerBlock> {
  int64_t num_heads = 0;
  int64_t mlp_dim = 0;
  double dropout_rate = 0.0;
  bool deterministic = true;
  std::optional<DType> dtype = {};
  /// Causal self-attention without a mask tensor (AttentionArgs::causal), with `mask` if given.
  bool causal = false;

  Tensor call(const Tensor& x, const Tensor& mask) const;
};

struct TransformerLM : Module<TransformerLM> {
  int64_t vocab_size = 0;
  int64_t max_len = 0;  // context length (rows of wpe)
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t d_model = 0;
  std::optional<int64_t> mlp_dim = {};  // default 4 * d_model
  double dropout_rate = 0.0;
  /// false in training: dropout on (needs a "dropout" rng).
  bool deterministic = true;
  bool scan_layers = false;
  bool remat = false;
  std::optional<DType> dtype = {};

  /// tokens [B, T] (integer, T <= max_len) -> logits [B, T, vocab_size].
  Tensor call(const Tensor& tokens) const;
};

/// GPT-2 small: vocabulary 50257, context 1024, 12 layers, 12 heads, d_model 768.
TransformerLM gpt2_small();
/// GPT-2 medium: 24 layers of 1024 channels and 16 heads (354,823,168 params).
TransformerLM gpt2_medium();

}  // namespace loom::nn::models

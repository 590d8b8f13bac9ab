#include "modules/models/transformer.h"

#include "core/ops/shape.h"
#include "modules/layers/activation.h"
#include "modules/layers/attention.h"
#include "modules/layers/embedding.h"
#include "modules/layers/linear.h"
#include "modules/layers/normalization.h"
#include "modules/layers/stochastic.h"
#include "modules/transforms/remat.h"
#include "modules/transforms/scan.h"

namespace loom::nn::models {

Tensor TransformerBlock::call(const Tensor& x, const Tensor& mask) const {
  int64_t d = x.dim(-1);
  // With dropout off, the residual adds go into the output projections' products (x + attn(y)
  // and h + c_proj(y) in one call each on the GPU), unless something observes the submodules'
  // outputs (tabulate, capture_intermediates), which then are Flax's, as below.
  const bool fuse = (dropout_rate == 0.0 || deterministic) && !outputs_observed();
  Tensor y = LayerNorm{.dtype = dtype}.named("ln_1")(x);
  y = MultiHeadDotProductAttention{.num_heads = num_heads,
                                   .dtype = dtype,
                                   .dropout_rate = dropout_rate,
                                   .deterministic = deterministic}
          .named("attn")(y, AttentionArgs{.mask = mask,
                                          .causal = causal,
                                          .residual = fuse ? x : Tensor()});
  Tensor h = fuse ? y : x + Dropout{.rate = dropout_rate}(y, deterministic);
  y = LayerNorm{.dtype = dtype}.named("ln_2")(h);
  // nn.gelu(nn.Dense(...)(y)) in Flax; here the product's epilogue applies it (Dense::activation).
  y = Dense{.features = mlp_dim, .dtype = dtype, .activation = DenseActivation::Gelu}
          .named("c_fc")(y);
  Dense c_proj{.features = d, .dtype = dtype};
  if (fuse) return c_proj.named("c_proj")(y, h);
  return h + Dropout{.rate = dropout_rate}(c_proj.named("c_proj")(y), deterministic);
}

Tensor TransformerLM::call(const Tensor& tokens) const {
  LOOM_CHECK(tokens.ndim() == 2, ShapeError, "TransformerLM: tokens must be [batch, length], got ",
             shape_str(tokens.shape()));
  int64_t len = tokens.dim(1);
  LOOM_CHECK(len <= max_len, ShapeError, "TransformerLM: tokens ", shape_str(tokens.shape()),
             " are longer than max_len ", max_len);
  LOOM_CHECK(num_heads > 0 && d_model % num_heads == 0, ValueError, "TransformerLM: d_model ",
             d_model, " is not a multiple of num_heads ", num_heads);
  Embed wte = Embed{.num_embeddings = vocab_size, .features = d_model, .dtype = dtype}.named("wte");
  Embed wpe = Embed{.num_embeddings = max_len, .features = d_model, .dtype = dtype}.named("wpe");
  Tensor positions = arange(len, DType::I32, tokens.device()).reshape({1, len});
  // Sequenced: Flax creates wte's table before wpe's (param order and rng counts).
  Tensor x = wte(tokens);
  x = x + wpe(positions);
  x = Dropout{.rate = dropout_rate}(x, deterministic);
  // Causal attention as a flag rather than make_causal_mask's tensor (the same weights): the
  // fused attention implementations take the flag, not an arbitrary mask.
  const Tensor mask;
  TransformerBlock block{.num_heads = num_heads,
                         .mlp_dim = mlp_dim.value_or(4 * d_model),
                         .dropout_rate = dropout_rate,
                         .deterministic = deterministic,
                         .dtype = dtype,
                         .causal = true};
  if (scan_layers) {
    if (remat)
      x = Scan<Remat<TransformerBlock>>{.block = Remat<TransformerBlock>{.block = block},
                                         .length = num_layers,
                                         .split_rngs = {"params", "dropout"}}
              .named("h")(x, mask);
    else
      x = Scan<TransformerBlock>{.block = block,
                                 .length = num_layers,
                                 .split_rngs = {"params", "dropout"}}
              .named("h")(x, mask);
  } else {
    for (int64_t i = 0; i < num_layers; ++i) {
      std::string name = "h_" + std::to_string(i);
      if (remat) x = Remat<TransformerBlock>{.block = block}.named(name)(x, mask);
      else x = block.named(name)(x, mask);
    }
  }
  x = LayerNorm{.dtype = dtype}.named("ln_f")(x);
  return wte.invoke(&Embed::attend, x);
}

TransformerLM gpt2_small() {
  return TransformerLM{.vocab_size = 50257,
                       .max_len = 1024,
                       .num_layers = 12,
                       .num_heads = 12,
                       .d_model = 768};
}

TransformerLM gpt2_medium() {
  return TransformerLM{.vocab_size = 50257,
                       .max_len = 1024,
                       .num_layers = 24,
                       .num_heads = 16,
                       .d_model = 1024};
}

}  // namespace loom::nn::models

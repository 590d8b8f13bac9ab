// The encoder-decoder Transformer of Flax's WMT example (flax/examples/wmt/models.py), with the
// same module names, initialisers and masks: token embeddings (normal(1.0)), fixed sinusoidal
// position embeddings (or learned "pos_embedding" with posemb_init), pre-LayerNorm encoder blocks
// (self-attention without biases, ReLU MLP) and decoder blocks (causal self-attention,
// encoder-decoder attention, MLP), final norms "encoder_norm" / "encoderdecoder_norm", logits
// from "logitdense" or the (shared) embedding divided by sqrt(emb_dim). Padding is token id 0.
// Autoregressive decoding (decode = true, the attention cache) is not part of this port.
//
// Example:
//   nn::models::wmt::TransformerConfig cfg{.vocab_size = 32000, .output_vocab_size = 32000,
//                                          .share_embeddings = true, .deterministic = true};
//   nn::models::wmt::Transformer model{.config = cfg};
//   Tree vars = model.init(random::key(0), inputs, targets);   // [B, S], [B, T] int32
//   Tensor logits = model.apply(vars, inputs, targets);         // [B, T, output_vocab_size]
#pragma once
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/ops/shape.h"
#include "modules/layers/activation.h"
#include "modules/layers/attention.h"
#include "modules/layers/embedding.h"
#include "modules/layers/linear.h"
#include "modules/layers/normalization.h"
#include "modules/layers/stochastic.h"

namespace loom::nn::models::wmt {

/// Flax's TransformerConfig (its defaults are the WMT "base" model).
struct TransformerConfig {
  int64_t vocab_size = 0;
  std::optional<int64_t> output_vocab_size = {};  // default vocab_size
  bool share_embeddings = false;
  bool logits_via_embedding = false;
  DType dtype = DType::F32;
  int64_t emb_dim = 512;
  int64_t num_heads = 8;
  int64_t num_layers = 6;
  int64_t qkv_dim = 512;
  int64_t mlp_dim = 2048;
  int64_t max_len = 2048;
  double dropout_rate = 0.1;
  double attention_dropout_rate = 0.1;
  bool deterministic = false;
  Initializer kernel_init = initializers::xavier_uniform();
  Initializer bias_init = initializers::normal(1e-6);
  /// Unset: fixed sinusoidal position embeddings (no params), as Flax's posemb_init=None.
  std::optional<Initializer> posemb_init = {};

  int64_t out_vocab() const { return output_vocab_size.value_or(vocab_size); }
};

namespace detail {
/// Flax's sinusoidal_init(max_len)(None, [1, max_len, d]): sin on the first d/2 features, cos on
/// the next d/2, computed in float64 and stored as float32.
inline Tensor sinusoidal_table(int64_t max_len, int64_t d, double min_scale = 1.0,
                               double max_scale = 10000.0) {
  std::vector<float> pe(size_t(max_len * d), 0.f);
  int64_t half = d / 2;
  double scale_factor = -std::log(max_scale / min_scale) / double(half - 1);
  for (int64_t pos = 0; pos < max_len; ++pos)
    for (int64_t i = 0; i < half; ++i) {
      double angle = double(pos) * (min_scale * std::exp(double(i) * scale_factor));
      pe[size_t(pos * d + i)] = float(std::sin(angle));
      pe[size_t(pos * d + half + i)] = float(std::cos(angle));
    }
  return from_vector(pe, {1, max_len, d});
}

/// shift_right over axis 1: a zero column in front, the last one dropped.
inline Tensor shift_right(const Tensor& x) {
  Tensor padded = pad(x, {{0, 0}, {1, 0}});
  return slice_axis(padded, 1, 0, x.dim(1));
}

/// Flax's attention settings of the WMT blocks.
inline MultiHeadDotProductAttention attention(const TransformerConfig& c) {
  return MultiHeadDotProductAttention{.num_heads = c.num_heads,
                                      .dtype = c.dtype,
                                      .qkv_features = c.qkv_dim,
                                      .broadcast_dropout = false,
                                      .dropout_rate = c.attention_dropout_rate,
                                      .deterministic = c.deterministic,
                                      .kernel_init = c.kernel_init,
                                      .bias_init = c.bias_init,
                                      .use_bias = false};
}
}  // namespace detail

struct AddPositionEmbs : Module<AddPositionEmbs> {
  TransformerConfig config = {};

  Tensor call(const Tensor& inputs) const {
    LOOM_CHECK(inputs.ndim() == 3, ShapeError, "AddPositionEmbs: inputs must be [B, L, D], got ",
               shape_str(inputs.shape()));
    int64_t length = inputs.dim(1), d = inputs.dim(2);
    LOOM_CHECK(length <= config.max_len, ShapeError, "AddPositionEmbs: length ", length,
               " of ", shape_str(inputs.shape()), " exceeds max_len ", config.max_len);
    Tensor table = config.posemb_init
                       ? param("pos_embedding", *config.posemb_init, {1, config.max_len, d})
                       : detail::sinusoidal_table(config.max_len, d).to(inputs.device());
    return inputs + slice_axis(table, 1, 0, length);
  }
};

struct MlpBlock : Module<MlpBlock> {
  TransformerConfig config = {};
  std::optional<int64_t> out_dim = {};

  Tensor call(const Tensor& inputs) const {
    const auto& c = config;
    Tensor x = Dense{.features = c.mlp_dim, .dtype = c.dtype, .kernel_init = c.kernel_init,
                     .bias_init = c.bias_init}(inputs);
    x = nn::relu(x);
    x = Dropout{.rate = c.dropout_rate}(x, c.deterministic);
    Tensor out = Dense{.features = out_dim.value_or(inputs.dim(-1)), .dtype = c.dtype,
                       .kernel_init = c.kernel_init, .bias_init = c.bias_init}(x);
    return Dropout{.rate = c.dropout_rate}(out, c.deterministic);
  }
};

struct Encoder1DBlock : Module<Encoder1DBlock> {
  TransformerConfig config = {};

  Tensor call(const Tensor& inputs, const Tensor& encoder_mask) const {
    const auto& c = config;
    Tensor x = LayerNorm{.dtype = c.dtype}(inputs);
    x = detail::attention(c)(x, AttentionArgs{.mask = encoder_mask});
    x = Dropout{.rate = c.dropout_rate}(x, c.deterministic);
    x = x + inputs;
    Tensor z = LayerNorm{.dtype = c.dtype}(x);
    z = MlpBlock{.config = c}(z);
    return x + z;
  }
};

struct EncoderDecoder1DBlock : Module<EncoderDecoder1DBlock> {
  TransformerConfig config = {};

  Tensor call(const Tensor& targets, const Tensor& encoded, const Tensor& decoder_mask,
              const Tensor& encoder_decoder_mask) const {
    const auto& c = config;
    Tensor x = LayerNorm{.dtype = c.dtype}(targets);
    x = detail::attention(c)(x, AttentionArgs{.mask = decoder_mask});
    x = Dropout{.rate = c.dropout_rate}(x, c.deterministic);
    x = x + targets;
    Tensor y = LayerNorm{.dtype = c.dtype}(x);
    y = detail::attention(c)(y, encoded, AttentionArgs{.mask = encoder_decoder_mask});
    y = Dropout{.rate = c.dropout_rate}(y, c.deterministic);
    y = y + x;
    Tensor z = LayerNorm{.dtype = c.dtype}(y);
    z = MlpBlock{.config = c}(z);
    return y + z;
  }
};

inline Embed token_embed(int64_t vocab, int64_t dim) {
  return Embed{.num_embeddings = vocab, .features = dim,
               .embedding_init = initializers::normal(1.0)};
}

struct Encoder : Module<Encoder> {
  TransformerConfig config = {};
  std::optional<Embed> shared_embedding = {};

  Tensor call(const Tensor& inputs, const Tensor& encoder_mask) const {
    const auto& c = config;
    LOOM_CHECK(inputs.ndim() == 2, ShapeError, "wmt::Encoder: inputs must be [batch, length], got ",
               shape_str(inputs.shape()));
    Embed embed = shared_embedding ? *shared_embedding : token_embed(c.vocab_size, c.emb_dim);
    Tensor x = embed(inputs.to(DType::I32));
    x = AddPositionEmbs{.config = c}.named("posembed_input")(x);
    x = Dropout{.rate = c.dropout_rate}(x, c.deterministic).to(c.dtype);
    for (int64_t i = 0; i < c.num_layers; ++i)
      x = Encoder1DBlock{.config = c}.named("encoderblock_" + std::to_string(i))(x, encoder_mask);
    return LayerNorm{.dtype = c.dtype}.named("encoder_norm")(x);
  }
};

struct Decoder : Module<Decoder> {
  TransformerConfig config = {};
  std::optional<Embed> shared_embedding = {};

  Tensor call(const Tensor& encoded, const Tensor& targets, const Tensor& decoder_mask,
              const Tensor& encoder_decoder_mask) const {
    const auto& c = config;
    LOOM_CHECK(encoded.ndim() == 3 && targets.ndim() == 2, ShapeError,
               "wmt::Decoder: encoded must be [B, S, D] and targets [B, T], got ",
               shape_str(encoded.shape()), " and ", shape_str(targets.shape()));
    Embed embed = shared_embedding ? *shared_embedding : token_embed(c.out_vocab(), c.emb_dim);
    Tensor y = embed(detail::shift_right(targets.to(DType::I32)));
    y = AddPositionEmbs{.config = c}.named("posembed_output")(y);
    y = Dropout{.rate = c.dropout_rate}(y, c.deterministic).to(c.dtype);
    for (int64_t i = 0; i < c.num_layers; ++i)
      y = EncoderDecoder1DBlock{.config = c}.named("encoderdecoderblock_" + std::to_string(i))(
          y, encoded, decoder_mask, encoder_decoder_mask);
    y = LayerNorm{.dtype = c.dtype}.named("encoderdecoder_norm")(y);
    if (c.logits_via_embedding)
      return embed.invoke(&Embed::attend, y.to(DType::F32)) / std::sqrt(double(y.dim(-1)));
    return Dense{.features = c.out_vocab(), .dtype = c.dtype, .kernel_init = c.kernel_init,
                 .bias_init = c.bias_init}
        .named("logitdense")(y);
  }
};

/// Flax's Transformer (a setup module: "shared_embedding", "encoder", "decoder").
struct Transformer : Module<Transformer> {
  TransformerConfig config = {};

  std::optional<Embed> shared() const {
    if (!config.share_embeddings) return std::nullopt;
    LOOM_CHECK(config.out_vocab() == config.vocab_size, ValueError,
               "wmt::Transformer: share_embeddings needs output_vocab_size ", config.out_vocab(),
               " == vocab_size ", config.vocab_size);
    return token_embed(config.vocab_size, config.emb_dim).named("shared_embedding");
  }

  /// inputs [B, S] -> encoded [B, S, emb_dim]; padding (id 0) masked out.
  Tensor encode(const Tensor& inputs) const {
    Tensor valid = greater(inputs, scalar_like(0, inputs));
    Tensor mask = make_attention_mask(valid, valid);
    return Encoder{.config = config, .shared_embedding = shared()}.named("encoder")(inputs, mask);
  }

  /// Teacher-forced decoding: logits [B, T, output_vocab_size] for the targets.
  Tensor decode(const Tensor& encoded, const Tensor& inputs, const Tensor& targets) const {
    Tensor tvalid = greater(targets, scalar_like(0, targets));
    Tensor ivalid = greater(inputs, scalar_like(0, inputs));
    Tensor decoder_mask =
        combine_masks({make_attention_mask(tvalid, tvalid), make_causal_mask(targets)});
    Tensor enc_dec_mask = make_attention_mask(tvalid, ivalid);
    Tensor logits = Decoder{.config = config, .shared_embedding = shared()}.named("decoder")(
        encoded, targets, decoder_mask, enc_dec_mask);
    return logits.to(config.dtype);
  }

  Tensor call(const Tensor& inputs, const Tensor& targets) const {
    return decode(encode(inputs), inputs, targets);
  }
};

}  // namespace loom::nn::models::wmt

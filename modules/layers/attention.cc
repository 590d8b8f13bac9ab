#include "modules/layers/attention.h"

#include "core/ops/attention.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/shape.h"
#include "modules/layers/linear.h"
#include "modules/layers/normalization.h"

namespace loom::nn {
namespace {

Tensor as_bool(const Tensor& m) {
  if (!m.defined() || m.dtype() == DType::Bool) return m;
  return not_equal(m, scalar_like(0.0, m));
}

template <class M>
Tensor attention_call(const M& m, Tensor q_in, Tensor k_in, Tensor v_in,
                      const AttentionArgs& args) {
  const std::string ctx = M::type_name() + " at " + m.path_text();
  LOOM_CHECK(!(args.causal && m.decode), ValueError, ctx,
             ": causal with decode = true: the cache's mask already hides the later positions");
  if (!k_in.defined()) {
    LOOM_CHECK(!v_in.defined(), ValueError, ctx,
               ": inputs_k cannot be undefined if inputs_v is given; to use one tensor for both "
               "pass it as inputs_k");
    k_in = q_in;
  }
  if (!v_in.defined()) v_in = k_in;
  int64_t features = m.out_features.value_or(q_in.dim(-1));
  int64_t qkv_features = m.qkv_features.value_or(q_in.dim(-1));
  LOOM_CHECK(m.num_heads > 0 && qkv_features % m.num_heads == 0, ValueError, ctx,
             ": memory dimension (", qkv_features, ") must be divisible by number of heads (",
             m.num_heads, ")");
  int64_t head_dim = qkv_features / m.num_heads;
  auto dense = [&](const char* name) {
    return DenseGeneral{.features = {m.num_heads, head_dim}, .axis = {-1},
                        .use_bias = m.use_bias, .dtype = m.dtype, .param_dtype = m.param_dtype,
                        .kernel_init = m.kernel_init, .bias_init = m.bias_init}
        .named(name);
  };
  Tensor query = dense("query")(q_in);
  Tensor key = dense("key")(k_in);
  Tensor value = dense("value")(v_in);
  if (m.normalize_qk) {
    query = LayerNorm{.dtype = m.dtype, .param_dtype = m.param_dtype, .use_bias = false}
                .named("query_ln")(query);
    key = LayerNorm{.dtype = m.dtype, .param_dtype = m.param_dtype, .use_bias = false}
              .named("key_ln")(key);
  }
  Tensor mask = as_bool(args.mask);
  if (m.decode) {
    bool initialized = m.has_variable("cache", "cached_key");
    Variable cached_key = m.variable("cache", "cached_key", [&] { return zeros_like(key); });
    Variable cached_value = m.variable("cache", "cached_value", [&] { return zeros_like(value); });
    Variable cache_index = m.variable("cache", "cache_index",
                                      [] { return zeros({}, DType::I32); });
    if (initialized) {
      Tensor ck = cached_key.value(), cv = cached_value.value();
      Shape expected(ck.shape().begin(), ck.shape().end() - 3);
      int64_t max_length = ck.dim(-3);
      expected.insert(expected.end(), {1, ck.dim(-2), ck.dim(-1)});
      LOOM_CHECK(query.shape() == expected, ValueError, ctx,
                 ": autoregressive cache shape error, expected query shape ",
                 shape_str(expected), " instead got ", shape_str(query.shape()));
      // One position written at cache_index, without reading the index on the host.
      Tensor idx = cache_index.value();
      Tensor positions = arange(0, double(max_length), 1, DType::I32, ck.device());
      Tensor at = equal(positions, idx).reshape({max_length, 1, 1});
      key = where(at, broadcast_to(key.to(ck.dtype()), ck.shape()), ck);
      value = where(at, broadcast_to(value.to(cv.dtype()), cv.shape()), cv);
      cached_key.set_value(key);
      cached_value.set_value(value);
      cache_index.set_value(idx + scalar_like(1.0, idx));
      Shape mask_shape(ck.shape().begin(), ck.shape().end() - 3);
      mask_shape.insert(mask_shape.end(), {1, 1, max_length});
      Tensor visible = broadcast_to(less_equal(positions, idx), mask_shape);
      mask = combine_masks({mask, visible});
    }
  }
  AttentionOptions opt;
  opt.mask = mask;
  opt.causal = args.causal;
  bool det = args.deterministic.value_or(m.deterministic);
  if (m.dropout_rate > 0.0 && !det) {
    opt.dropout_rate = m.dropout_rate;
    opt.dropout_key = args.dropout_rng ? *args.dropout_rng : m.make_rng("dropout");
    opt.broadcast_dropout = m.broadcast_dropout;
  }
  if (m.dtype) {
    query = query.to(*m.dtype);
    key = key.to(*m.dtype);
    value = value.to(*m.dtype);
  }
  Tensor x;
  if (args.sow_weights) {
    Tensor w = dot_product_attention_weights(query, key, opt);
    m.sow("intermediates", "attention_weights", w);
    x = einsum("...hqk,...khd->...qhd", w, value);
  } else {
    x = dot_product_attention(query, key, value, opt);
  }
  DenseGeneral out{.features = {features}, .axis = {-2, -1}, .use_bias = m.use_bias,
                   .dtype = m.dtype, .param_dtype = m.param_dtype,
                   .kernel_init = m.out_kernel_init.value_or(m.kernel_init),
                   .bias_init = m.out_bias_init.value_or(m.bias_init)};
  if (args.residual.defined()) return out.named("out")(x, args.residual);
  return out.named("out")(x);
}

}  // namespace

Tensor MultiHeadDotProductAttention::call(const Tensor& q, const Tensor& k, const Tensor& v,
                                          const AttentionArgs& args) const {
  return attention_call(*this, q, k, v, args);
}
Tensor MultiHeadAttention::call(const Tensor& q, const Tensor& k, const Tensor& v,
                                const AttentionArgs& args) const {
  return attention_call(*this, q, k, v, args);
}
Tensor SelfAttention::call(const Tensor& q, const Tensor& k, const Tensor& v,
                           const AttentionArgs& args) const {
  return attention_call(*this, q, k, v, args);
}

Tensor make_attention_mask(const Tensor& query_input, const Tensor& key_input) {
  Tensor m = mul(expand_dims(query_input, -1), expand_dims(key_input, -2));
  return expand_dims(as_bool(m), -3);
}

Tensor make_causal_mask(const Tensor& x) {
  int64_t n = x.dim(-1);
  Shape out(x.shape().begin(), x.shape().end() - 1);
  out.insert(out.end(), {1, n, n});
  return broadcast_to(causal_mask(n, x.device()), out);
}

Tensor combine_masks(const std::vector<Tensor>& masks) {
  Tensor out;
  for (const Tensor& m : masks) {
    if (!m.defined()) continue;
    Tensor b = as_bool(m);
    out = out.defined() ? logical_and(out, b) : b;
  }
  return out;
}

}  // namespace loom::nn

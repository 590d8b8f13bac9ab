#include "core/ops/attention.h"

#include <cmath>
#include <limits>

#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/shape.h"
#include "core/ops/softmax.h"

namespace loom {
namespace {

std::string describe(const Tensor& t) {
  return detail::cat(shape_str(t.shape()), " (", dtype_name(t.dtype()), ")");
}

/// The most negative finite value of `dtype` (jnp.finfo(dtype).min), the masked-logit fill.
double finfo_min(DType dtype) {
  switch (dtype) {
    case DType::F64: return std::numeric_limits<double>::lowest();
    case DType::BF16: return -3.3895313892515355e+38;
    case DType::F16: return -65504.0;
    default: return double(std::numeric_limits<float>::lowest());
  }
}

void check_qkv(const Tensor& q, const Tensor& k, const Tensor* v, const char* op) {
  auto all = [&] {
    return detail::cat("query ", describe(q), ", key ", describe(k),
                       v ? detail::cat(", value ", describe(*v)) : std::string());
  };
  for (const Tensor* t : {&q, &k, v}) {
    if (!t) continue;
    LOOM_CHECK(t->defined(), ValueError, op, ": undefined operand");
    LOOM_CHECK(is_floating(t->dtype()), DTypeError, op, ": operands must be floating: ", all());
    LOOM_CHECK(t->ndim() >= 3, ShapeError, op, ": operands must be [..., length, heads, depth]: ", all());
    LOOM_CHECK(t->device() == q.device(), DeviceError, op, ": operands are on different devices: ", all());
  }
  auto batch = [](const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 3); };
  LOOM_CHECK(q.ndim() == k.ndim() && batch(q) == batch(k) && q.dim(-2) == k.dim(-2) &&
                 q.dim(-1) == k.dim(-1),
             ShapeError, op, ": query and key must have equal rank, batch dims, heads and depth: ", all());
  if (v)
    LOOM_CHECK(v->ndim() == k.ndim() && batch(*v) == batch(k) && v->dim(-2) == k.dim(-2) &&
                   v->dim(-3) == k.dim(-3),
               ShapeError, op, ": value must match key in rank, batch dims, heads and length: ", all());
}

Tensor weights_impl(Tensor q, Tensor k, const AttentionOptions& opt, const char* op) {
  DType dtype = promote_types(q.dtype(), k.dtype());
  q = q.to(dtype);
  k = k.to(dtype);
  const int64_t q_len = q.dim(-3), kv_len = k.dim(-3), depth = q.dim(-1);
  Tensor logits = einsum("...qhd,...khd->...hqk", q / std::sqrt(double(depth)), k);
  if (opt.bias.defined()) {
    LOOM_CHECK(opt.bias.device() == q.device(), DeviceError, op, ": bias is on ",
               opt.bias.device().str(), ", query on ", q.device().str());
    Shape s = broadcast_shapes(logits.shape(), opt.bias.shape(), op);
    LOOM_CHECK(s == logits.shape(), ShapeError, op, ": bias ", describe(opt.bias),
               " does not broadcast to the logits shape ", shape_str(logits.shape()));
    logits = logits + opt.bias;
  }
  Tensor mask = opt.mask;
  if (mask.defined()) {
    LOOM_CHECK(mask.dtype() == DType::Bool, DTypeError, op, ": mask must be bool, got ",
               describe(mask));
    LOOM_CHECK(mask.device() == q.device(), DeviceError, op, ": mask is on ", mask.device().str(),
               ", query on ", q.device().str());
    Shape s = broadcast_shapes(logits.shape(), mask.shape(), op);
    LOOM_CHECK(s == logits.shape(), ShapeError, op, ": mask ", describe(mask),
               " does not broadcast to the logits shape ", shape_str(logits.shape()));
  }
  if (opt.causal) {
    // jnp.tril(ones((q_len, kv_len))): built on the device (no host copy, no synchronisation)
    Tensor causal = tril(ones({q_len, kv_len}, DType::Bool, q.device()));
    mask = mask.defined() ? logical_and(mask, causal) : causal;
  }
  // The softmax kernel computes in float32 for half dtypes; a float32 bias may have promoted
  // the logits, and Flax casts the weights back to the operands' dtype. The mask fills the
  // logits with dtype's lowest value (Flax's where) inside the softmax's kernel.
  Tensor weights =
      (mask.defined() ? masked_softmax(logits, mask, finfo_min(dtype)) : softmax(logits, -1)).to(dtype);
  if (opt.dropout_rate > 0) {
    LOOM_CHECK(opt.dropout_rate <= 1, ValueError, op, ": dropout_rate must be in [0, 1], got ",
               opt.dropout_rate);
    LOOM_CHECK(opt.dropout_key.has_value(), ValueError, op, ": dropout_rate ", opt.dropout_rate,
               " needs a dropout_key");
    double keep = 1.0 - opt.dropout_rate;
    Shape shape = weights.shape();
    if (opt.broadcast_dropout)
      for (size_t d = 0; d + 2 < shape.size(); ++d) shape[d] = 1;
    Tensor kept = random::bernoulli(*opt.dropout_key, keep, shape, q.device());
    // Flax: weights * (keep_mask.astype(dtype) / keep), the division rounded in dtype.
    Tensor multiplier = kept.to(weights.dtype()) / keep;
    weights = weights * multiplier;
  }
  return weights;
}

}  // namespace

Tensor dot_product_attention_weights(const Tensor& q, const Tensor& k, const AttentionOptions& opt) {
  check_qkv(q, k, nullptr, "dot_product_attention_weights");
  return weights_impl(q, k, opt, "dot_product_attention_weights");
}

Tensor dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                             const AttentionOptions& opt) {
  const char* op = "dot_product_attention";
  check_qkv(q, k, &v, op);
  DType dtype = promote_types(promote_types(q.dtype(), k.dtype()), v.dtype());
  Tensor weights = weights_impl(q.to(dtype), k.to(dtype), opt, op);
  return einsum("...hqk,...khd->...qhd", weights, v.to(dtype));
}

}  // namespace loom

#include "core/ops/attention.h"

#include <atomic>
#include <cmath>
#include <functional>
#include <limits>
#include <string>

#include "core/autodiff.h"
#include "core/ops/dispatch.h"
#include "core/ops/dropout.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/shape.h"
#include "core/ops/softmax.h"
#if LOOM_CUDA
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cudnn_attention.h"
#endif

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

// The logits' shape [..., heads, q_len, kv_len].
Shape logits_shape(const Tensor& q, const Tensor& k) {
  Shape s(q.shape().begin(), q.shape().end() - 3);
  s.insert(s.end(), {q.dim(-2), q.dim(-3), k.dim(-3)});
  return s;
}

void check_mask(const Tensor& mask, const Shape& logits, const Tensor& q, const char* op) {
  LOOM_CHECK(mask.dtype() == DType::Bool, DTypeError, op, ": mask must be bool, got ",
             describe(mask));
  LOOM_CHECK(mask.device() == q.device(), DeviceError, op, ": mask is on ", mask.device().str(),
             ", query on ", q.device().str());
  Shape s = broadcast_shapes(logits, mask.shape(), op);
  LOOM_CHECK(s == logits, ShapeError, op, ": mask ", describe(mask),
             " does not broadcast to the logits shape ", shape_str(logits));
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
  if (mask.defined()) check_mask(mask, logits_shape(q, k), q, op);
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
    Shape shape = weights.shape();
    if (opt.broadcast_dropout)
      for (size_t d = 0; d + 2 < shape.size(); ++d) shape[d] = 1;
    weights = attention_dropout(weights, opt.dropout_rate, *opt.dropout_key, shape);
  }
  return weights;
}

std::atomic<AttentionImplementation>& default_implementation() {
  static std::atomic<AttentionImplementation> impl{AttentionImplementation::Composed};
  return impl;
}

// Why the fused kernel cannot take this call, or "" when it can.
std::string fused_unsupported(const Tensor& q, const Tensor& k, const Tensor& v,
                              const AttentionOptions& opt) {
  if (!q.is_cuda()) return "it runs on CUDA only (the operands are on " + q.device().str() + ")";
  if (opt.bias.defined()) return "it takes no bias";
  if (opt.dropout_rate > 0) return "it has no dropout";
  if (q.dtype() != k.dtype() || q.dtype() != v.dtype())
    return "query, key and value must have one dtype";
  if (v.dim(-1) != q.dim(-1)) return "value's head dim must equal the query's";
#if LOOM_CUDA
  if (!cuda::fused_attention_supported(q.dtype(), q.dim(-1)))
    return detail::cat("it takes float32, bfloat16 or float16 with head_dim 32, 64 or 128, got ",
                       dtype_name(q.dtype()), " with head_dim ", q.dim(-1));
#endif
  return "";
}

// Why cuDNN's attention cannot take this call, or "" when it can.
std::string cudnn_unsupported(const Tensor& q, const Tensor& k, const Tensor& v,
                              const AttentionOptions& opt) {
  if (opt.mask.defined()) return "it takes no mask (causal only)";
  if (opt.bias.defined()) return "it takes no bias";
  if (opt.dropout_rate > 0) return "it has no dropout";
  if (q.numel() == 0 || k.numel() == 0) return "its graphs take no empty operands";
  if (q.dim(-3) == 1 && k.dim(-3) == 1)
    return "its backward graph takes no query and key lengths of 1 together";
  if (!q.is_cuda()) return "it runs on CUDA only (the operands are on " + q.device().str() + ")";
  if (q.dtype() != k.dtype() || q.dtype() != v.dtype())
    return "query, key and value must have one dtype";
  if (v.dim(-1) != q.dim(-1)) return "value's head dim must equal the query's";
#if LOOM_CUDA
  return cuda::cudnn_attention_unsupported(q.dtype(), q.dim(-1));
#else
  return "";
#endif
}

#if LOOM_CUDA
// The kernels' view of [batch..., len, heads, dim] operands: the batch dims flattened.
cuda::AttentionShape attention_shape(const Tensor& q, const Tensor& k) {
  cuda::AttentionShape s;
  s.batch = shape_numel(Shape(q.shape().begin(), q.shape().end() - 3));
  s.q_len = q.dim(-3);
  s.kv_len = k.dim(-3);
  s.heads = q.dim(-2);
  s.head_dim = q.dim(-1);
  return s;
}

// Fills dq, dk, dv (allocated like q, k, v) from the output gradient and the saved output.
using AttentionBackward =
    std::function<void(const Tensor& dout, const Tensor& out, Tensor& dq, Tensor& dk, Tensor& dv)>;

// A fused implementation's output `out` of the contiguous q, k, v (from q_in, k_in, v_in),
// recorded for autodiff with `backward`.
Tensor record_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                        const Tensor& q, const Tensor& k, const Tensor& v, Tensor out,
                        AttentionBackward backward) {
  const char* op = "dot_product_attention";
  if (!autograd::needs_grad({&q_in, &k_in, &v_in}))
    return autograd::checked(op, std::move(out), {&q_in, &k_in, &v_in});
  Tensor so = autograd::saved(out);
  return autograd::record(op, out, {q_in, k_in, v_in}, [=](const Tensor& g_in) {
    Tensor g = g_in.to(q.dtype()).contiguous();
    Tensor dq = Tensor::empty(q.shape(), q.dtype(), q.device());
    Tensor dk = Tensor::empty(k.shape(), k.dtype(), k.device());
    Tensor dv = Tensor::empty(v.shape(), v.dtype(), v.device());
    backward(g, so, dq, dk, dv);
    return std::vector<Tensor>{dq, dk, dv};
  });
}

// cuDNN's flash attention on [batch..., len, heads, dim] operands.
Tensor cudnn_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                       const AttentionOptions& opt) {
  Tensor q = q_in.detach().contiguous(), k = k_in.detach().contiguous(), v = v_in.detach().contiguous();
  cuda::CudnnAttention a;
  a.shape = attention_shape(q, k);
  a.dtype = q.dtype();
  a.scale = 1.0 / std::sqrt(double(a.shape.head_dim));
  a.causal = opt.causal;
  a.device = q.device().index;
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty({a.shape.batch, a.shape.heads, a.shape.q_len}, DType::F32, q.device());
  cuda::cudnn_attention_forward(a, q.raw_data(), k.raw_data(), v.raw_data(), out.raw_data(),
                                lse.data<float>(), stream_of(q));
  return record_attention(q_in, k_in, v_in, q, k, v, std::move(out),
                          [=](const Tensor& g, const Tensor& o, Tensor& dq, Tensor& dk, Tensor& dv) {
    cuda::cudnn_attention_backward(a, q.raw_data(), k.raw_data(), v.raw_data(), o.raw_data(),
                                   g.raw_data(), lse.data<float>(), dq.raw_data(), dk.raw_data(),
                                   dv.raw_data(), stream_of(q));
  });
}

// The fused kernels on [batch..., len, heads, dim] operands.
Tensor fused_attention(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in,
                       const AttentionOptions& opt) {
  const char* op = "dot_product_attention";
  Tensor q = q_in.detach().contiguous(), k = k_in.detach().contiguous(), v = v_in.detach().contiguous();
  cuda::AttentionParams p;
  p.shape = attention_shape(q, k);
  p.dtype = q.dtype();
  p.scale = 1.0 / std::sqrt(double(p.shape.head_dim));
  p.causal = opt.causal;
  p.fill = finfo_min(q.dtype());
  Tensor mask;  // read through p.mask: the backward closure keeps it alive
  if (opt.mask.defined()) {
    const Shape logits = logits_shape(q, k);
    check_mask(opt.mask, logits, q, op);
    mask = opt.mask.detach();
    p.mask = row_mask(mask, logits);
  }
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor stats = Tensor::empty({p.shape.batch, p.shape.heads, p.shape.q_len, 2}, DType::F32, q.device());
  cuda::attention_forward(p, q.raw_data(), k.raw_data(), v.raw_data(), out.raw_data(),
                          stats.data<float>(), stream_of(q));
  return record_attention(q_in, k_in, v_in, q, k, v, std::move(out),
                          [=](const Tensor& g, const Tensor& o, Tensor& dq, Tensor& dk, Tensor& dv) {
    Tensor delta = Tensor::empty({p.shape.batch, p.shape.heads, p.shape.q_len}, DType::F32, q.device());
    cuda::attention_backward(p, q.raw_data(), k.raw_data(), v.raw_data(), o.raw_data(),
                             g.raw_data(), stats.data<float>(), delta.data<float>(), dq.raw_data(),
                             dk.raw_data(), dv.raw_data(), stream_of(q));
    (void)mask;  // kept alive for p.mask
  });
}
#endif

}  // namespace

void set_attention_implementation(AttentionImplementation implementation) {
  default_implementation().store(implementation);
}
AttentionImplementation attention_implementation() { return default_implementation().load(); }

AttentionImplementation parse_attention_implementation(const std::string& name, const char* what) {
  if (name == "composed") return AttentionImplementation::Composed;
  if (name == "fused") return AttentionImplementation::Fused;
  if (name == "cudnn") return AttentionImplementation::CuDnn;
  LOOM_THROW(ValueError, what, " '", name, "' is not one of: composed, fused, cudnn");
}

Tensor dot_product_attention_weights(const Tensor& q, const Tensor& k, const AttentionOptions& opt) {
  check_qkv(q, k, nullptr, "dot_product_attention_weights");
  return weights_impl(q, k, opt, "dot_product_attention_weights");
}

Tensor dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                             const AttentionOptions& opt) {
  const char* op = "dot_product_attention";
  check_qkv(q, k, &v, op);
  DType dtype = promote_types(promote_types(q.dtype(), k.dtype()), v.dtype());
  const AttentionImplementation impl = opt.implementation.value_or(attention_implementation());
  if (impl != AttentionImplementation::Composed) {
    const bool fused = impl == AttentionImplementation::Fused;
    Tensor qd = q.to(dtype), kd = k.to(dtype), vd = v.to(dtype);
    const std::string why = fused ? fused_unsupported(qd, kd, vd, opt) : cudnn_unsupported(qd, kd, vd, opt);
    // Only a named implementation is a requirement; the process default is a preference.
    LOOM_CHECK(why.empty() || !opt.implementation, NotImplementedError, op, ": the ",
               fused ? "fused" : "cuDNN", " implementation cannot take query ", describe(q),
               ", key ", describe(k), ", value ", describe(v), ": ", why,
               "; use AttentionImplementation::Composed");
    if (why.empty()) {
      LOOM_CUDA_ONLY(return fused ? fused_attention(qd, kd, vd, opt) : cudnn_attention(qd, kd, vd, opt));
    }
  }
  Tensor weights = weights_impl(q.to(dtype), k.to(dtype), opt, op);
  return einsum("...hqk,...khd->...qhd", weights, v.to(dtype));
}

}  // namespace loom

#include "core/ops/elementwise.h"

#include "core/autodiff.h"
#include "core/ops/dispatch.h"
#include "core/ops/reduce.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/strided_loop.h"
#if LOOM_CUDA
#include "kernels/cuda/elementwise.h"
#endif

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

void check_same_device(const Tensor& a, const Tensor& b, const char* op) {
  LOOM_CHECK(a.defined() && b.defined(), ValueError, op, ": undefined operand");
  LOOM_CHECK(a.device() == b.device(), DeviceError, op, ": operands are on different devices (",
             a.device().str(), " with shape ", shape_str(a.shape()), " and ", b.device().str(),
             " with shape ", shape_str(b.shape()), "); move one with .to(device)");
}

void check_floating(const Tensor& x, const char* op) {
  LOOM_CHECK(is_floating(x.dtype()), DTypeError, op, ": expected a floating dtype, got ",
             dtype_name(x.dtype()), " (shape ", shape_str(x.shape()), "); cast with .to(DType::F32)");
}

Tensor binary_forward(BinaryOp op, Tensor a, Tensor b) {
  const char* name = binary_op_name(op);
  check_same_device(a, b, name);
  DType dtype = promote_types(a.dtype(), b.dtype());
  if ((op == BinaryOp::Div || op == BinaryOp::Pow) && !is_floating(dtype)) dtype = DType::F32;
  if (op == BinaryOp::LogicalAnd || op == BinaryOp::LogicalOr) dtype = DType::Bool;
  if (a.dtype() != dtype) a = a.to(dtype).detach();
  if (b.dtype() != dtype) b = b.to(dtype).detach();
  Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(out_shape, is_comparison(op) ? DType::Bool : dtype, a.device());
  Shape as = cpu::broadcast_strides(a.shape(), a.strides(), out_shape);
  Shape bs = cpu::broadcast_strides(b.shape(), b.strides(), out_shape);
  if (a.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::binary(op, a.raw_data(), as, b.raw_data(), bs, dtype, out.raw_data(),
                                out_shape, stream_of(a)));
  } else {
    cpu::binary(op, a.raw_data(), as, b.raw_data(), bs, dtype, out.raw_data(), out_shape);
  }
  return out;
}

Tensor unary_forward(UnaryOp op, const Tensor& x, double alpha) {
  check_floating(x, unary_op_name(op));
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::unary(op, x.raw_data(), x.strides(), out.raw_data(), x.shape(), x.dtype(),
                               alpha, stream_of(x)));
  } else {
    cpu::unary(op, x.raw_data(), x.strides(), out.raw_data(), x.shape(), x.dtype(), alpha);
  }
  return out;
}


Tensor binary_op(BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(op, a, b);
  if (is_comparison(op) || op == BinaryOp::LogicalAnd || op == BinaryOp::LogicalOr ||
      !is_floating(out.dtype()) || !autograd::needs_grad({&a, &b}))
    return autograd::checked(binary_op_name(op), std::move(out), {&a, &b});
  Tensor sa = autograd::saved(a), sb = autograd::saved(b);
  Shape ash = a.shape(), bsh = b.shape();
  DType adt = a.dtype(), bdt = b.dtype();
  auto finish = [=](Tensor ga, Tensor gb) {
    Grads g(2);
    if (ga.defined()) g[0] = sum_to(ga, ash).to(adt);
    if (gb.defined()) g[1] = sum_to(gb, bsh).to(bdt);
    return g;
  };
  autograd::BackwardFn fn;
  switch (op) {
    case BinaryOp::Add: fn = [=](const Tensor& g) { return finish(g, g); }; break;
    case BinaryOp::Sub: fn = [=](const Tensor& g) { return finish(g, neg(g)); }; break;
    case BinaryOp::Mul: fn = [=](const Tensor& g) { return finish(g * sb, g * sa); }; break;
    case BinaryOp::Div:
      fn = [=](const Tensor& g) {
        Tensor ga = g / sb;
        return finish(ga, neg(ga * sa / sb));
      };
      break;
    case BinaryOp::Pow: {
      Tensor sout = autograd::saved(out);
      fn = [=](const Tensor& g) {
        Tensor ga = g * sb * pow(sa, sb - 1.0);
        // d/db a^b = a^b log a, defined as 0 where a == 0 (as JAX)
        Tensor log_a = where(equal(sa, scalar_like(0, sa)), scalar_like(0, sa), log(sa));
        return finish(ga, g * sout * log_a);
      };
      break;
    }
    case BinaryOp::Maximum:
    case BinaryOp::Minimum: {
      bool is_max = op == BinaryOp::Maximum;
      fn = [=](const Tensor& g) {
        // JAX's balanced rule: the winner takes g, a tie halves it, and neither side of a NaN
        // (which compares false) gets any.
        Tensor ties = equal(sa, sb);
        auto share = [&](const Tensor& wins) { return where(wins, 1.0, where(ties, 0.5, zeros_like(g))); };
        Tensor wa = share(is_max ? greater(sa, sb) : less(sa, sb));
        Tensor wb = share(is_max ? greater(sb, sa) : less(sb, sa));
        return finish(g * wa, g * wb);
      };
      break;
    }
    default: return out;
  }
  return autograd::record(binary_op_name(op), out, {a, b}, std::move(fn));
}

Tensor unary_op(UnaryOp op, const Tensor& x, double alpha = 0.0) {
  return unary_with_value(op, x, unary_forward(op, x, alpha), alpha);
}

}  // namespace

Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& grad, double alpha) {
  Tensor xc = x.contiguous(), gc = grad.to(x.dtype()).contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::unary_backward(op, xc.raw_data(), gc.raw_data(), out.raw_data(),
                                        x.numel(), x.dtype(), alpha, stream_of(x)));
  } else {
    cpu::unary_backward(op, xc.raw_data(), gc.raw_data(), out.raw_data(), x.numel(), x.dtype(),
                        alpha);
  }
  return out;
}

Tensor unary_with_value(UnaryOp op, const Tensor& x, Tensor out, double alpha) {
  if (!autograd::needs_grad({&x})) return autograd::checked(unary_op_name(op), std::move(out), {&x});
  Tensor sx = autograd::saved(x);
  return autograd::record(unary_op_name(op), out, {x}, [=](const Tensor& g) {
    return Grads{unary_backward(op, sx, g, alpha)};
  });
}

Tensor scalar_like(double value, const Tensor& like) {
  return scalar(value, like.dtype(), like.device());
}

Tensor add(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Div, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Pow, a, b); }
Tensor pow(const Tensor& a, double e) { return binary_op(BinaryOp::Pow, a, scalar_like(e, a)); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary_op(BinaryOp::Minimum, a, b); }
Tensor equal(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Eq, a, b); }
Tensor not_equal(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Ne, a, b); }
Tensor less(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Lt, a, b); }
Tensor less_equal(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Le, a, b); }
Tensor greater(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Gt, a, b); }
Tensor greater_equal(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Ge, a, b); }
Tensor logical_and(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::LogicalAnd, a, b); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::LogicalOr, a, b); }
Tensor logical_not(const Tensor& a) { return equal(a.to(DType::Bool), scalar(0, DType::Bool, a.device())); }

Tensor where(const Tensor& cond, const Tensor& a_in, const Tensor& b_in) {
  check_same_device(cond, a_in, "where");
  check_same_device(a_in, b_in, "where");
  LOOM_CHECK(cond.dtype() == DType::Bool, DTypeError, "where: condition must be bool, got ",
             dtype_name(cond.dtype()), " (shape ", shape_str(cond.shape()), ")");
  DType dtype = promote_types(a_in.dtype(), b_in.dtype());
  Tensor a = a_in.to(dtype), b = b_in.to(dtype);
  Shape out_shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor out = Tensor::empty(out_shape, dtype, a.device());
  Shape cs = cpu::broadcast_strides(cond.shape(), cond.strides(), out_shape);
  Shape as = cpu::broadcast_strides(a.shape(), a.strides(), out_shape);
  Shape bs = cpu::broadcast_strides(b.shape(), b.strides(), out_shape);
  if (out.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::where(cond.raw_data(), cs, a.raw_data(), as, b.raw_data(), bs, dtype,
                               out.raw_data(), out_shape, stream_of(out)));
  } else {
    cpu::where(cond.raw_data(), cs, a.raw_data(), as, b.raw_data(), bs, dtype, out.raw_data(),
               out_shape);
  }
  if (!is_floating(dtype) || !autograd::needs_grad({&a, &b}))
    return autograd::checked("where", std::move(out), {&cond, &a, &b});
  Tensor sc = autograd::saved(cond);
  Shape ash = a.shape(), bsh = b.shape();
  return autograd::record("where", out, {a, b}, [=](const Tensor& g) {
    Tensor zero = zeros_like(g);
    return Grads{sum_to(where(sc, g, zero), ash), sum_to(where(sc, zero, g), bsh)};
  });
}
Tensor where(const Tensor& cond, const Tensor& a, double b) { return where(cond, a, scalar_like(b, a)); }
Tensor where(const Tensor& cond, double a, const Tensor& b) { return where(cond, scalar_like(a, b), b); }

Tensor neg(const Tensor& x) { return unary_op(UnaryOp::Neg, x); }
Tensor abs(const Tensor& x) { return unary_op(UnaryOp::Abs, x); }
Tensor sign(const Tensor& x) { return unary_op(UnaryOp::Sign, x); }
Tensor exp(const Tensor& x) { return unary_op(UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary_op(UnaryOp::Log, x); }
Tensor log1p(const Tensor& x) { return unary_op(UnaryOp::Log1p, x); }
Tensor sqrt(const Tensor& x) { return unary_op(UnaryOp::Sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary_op(UnaryOp::Rsqrt, x); }
Tensor square(const Tensor& x) { return unary_op(UnaryOp::Square, x); }
Tensor reciprocal(const Tensor& x) { return unary_op(UnaryOp::Reciprocal, x); }
Tensor tanh(const Tensor& x) { return unary_op(UnaryOp::Tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary_op(UnaryOp::Sigmoid, x); }
Tensor erf(const Tensor& x) { return unary_op(UnaryOp::Erf, x); }
Tensor relu(const Tensor& x) { return unary_op(UnaryOp::Relu, x); }
Tensor relu6(const Tensor& x) { return unary_op(UnaryOp::Relu6, x); }
Tensor gelu(const Tensor& x, bool approximate) {
  return unary_op(approximate ? UnaryOp::Gelu : UnaryOp::GeluExact, x);
}
Tensor silu(const Tensor& x) { return unary_op(UnaryOp::Silu, x); }
Tensor softplus(const Tensor& x) { return unary_op(UnaryOp::Softplus, x); }
Tensor log_sigmoid(const Tensor& x) { return unary_op(UnaryOp::LogSigmoid, x); }
Tensor sin(const Tensor& x) { return unary_op(UnaryOp::Sin, x); }
Tensor cos(const Tensor& x) { return unary_op(UnaryOp::Cos, x); }
Tensor elu(const Tensor& x, double alpha) { return unary_op(UnaryOp::Elu, x, alpha); }
Tensor leaky_relu(const Tensor& x, double slope) { return unary_op(UnaryOp::LeakyRelu, x, slope); }
Tensor unary(UnaryOp op, const Tensor& x, double alpha) { return unary_op(op, x, alpha); }

Tensor clip(const Tensor& x, double lo, double hi) {
  LOOM_CHECK(lo <= hi, ValueError, "clip: lower bound ", lo, " exceeds upper bound ", hi);
  Tensor out;
  {
    autograd::NoGradGuard no_grad;
    out = minimum(maximum(x, scalar_like(lo, x)), scalar_like(hi, x));
  }
  if (!autograd::needs_grad({&x})) return autograd::checked("clip", std::move(out), {&x});
  Tensor sx = autograd::saved(x);
  // jnp.clip's gradient, minimum(maximum(x, lo), hi)'s by the balanced rule of each: g inside,
  // half of it at a bound (a quarter where lo == hi == x), none outside or at NaN.
  return autograd::record("clip", out, {x}, [=](const Tensor& g) {
    auto share = [&](const Tensor& wins, const Tensor& ties) {
      return where(wins, 1.0, where(ties, 0.5, zeros_like(g)));
    };
    Tensor low = scalar_like(lo, sx), high = scalar_like(hi, sx), raised = maximum(sx, low);
    return Grads{g * share(greater(sx, low), equal(sx, low)) *
                 share(less(raised, high), equal(raised, high))};
  });
}

Tensor cast(const Tensor& x, DType dtype) { return x.to(dtype); }

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  size_t lead = g.shape().size() - shape.size();
  std::vector<int64_t> axes;
  for (size_t d = 0; d < g.shape().size(); ++d)
    if (d < lead || (shape[d - lead] == 1 && g.shape()[d] != 1)) axes.push_back(int64_t(d));
  return sum(g, axes, /*keepdims=*/true).reshape(shape);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(a, b), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(a, b), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(a, b), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_like(a, b), b); }

}  // namespace loom

// Elementwise ops with numpy broadcasting, forward and backward. Python-scalar operands take the
// tensor's dtype (JAX's weak typing): `x * 2.0` keeps x's dtype. Comparisons return bool.
#pragma once
#include "core/tensor.h"
#include "kernels/elementwise_math.h"

namespace loom {

// --- binary arithmetic (differentiable for floating dtypes) ---
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);  // true division: integer inputs give float32
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);  // ties split the gradient evenly, as JAX
Tensor minimum(const Tensor& a, const Tensor& b);

// --- comparisons and logic (bool results, not differentiable) ---
Tensor equal(const Tensor& a, const Tensor& b);
Tensor not_equal(const Tensor& a, const Tensor& b);
Tensor less(const Tensor& a, const Tensor& b);
Tensor less_equal(const Tensor& a, const Tensor& b);
Tensor greater(const Tensor& a, const Tensor& b);
Tensor greater_equal(const Tensor& a, const Tensor& b);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& a);
/// cond ? a : b with broadcasting of all three; cond must be bool.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, double b);
Tensor where(const Tensor& cond, double a, const Tensor& b);

// --- unary math (floating dtypes) ---
Tensor neg(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor erf(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor relu6(const Tensor& x);
/// approximate=true (default, as Flax/jax.nn.gelu): the tanh form; false: the exact erf form.
Tensor gelu(const Tensor& x, bool approximate = true);
Tensor silu(const Tensor& x);
Tensor softplus(const Tensor& x);
Tensor log_sigmoid(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor elu(const Tensor& x, double alpha = 1.0);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
/// min(max(x, lo), hi); the gradient passes where lo <= x <= hi.
Tensor clip(const Tensor& x, double lo, double hi);
/// Cast (differentiable between floating dtypes): same as x.to(dtype).
Tensor cast(const Tensor& x, DType dtype);
/// The unary op by enum (used by tests and fused paths).
Tensor unary(UnaryOp op, const Tensor& x, double alpha = 0.0);
/// op(x) whose value `out` was computed elsewhere (a product's fused epilogue): under autodiff
/// records op's gradient with respect to x, as unary(op, x) would.
Tensor unary_with_value(UnaryOp op, const Tensor& x, Tensor out, double alpha = 0.0);
/// grad * op'(x) in one kernel, recording nothing: unary(op, x)'s backward, for fused paths
/// whose own rules apply an op's derivative.
Tensor unary_backward(UnaryOp op, const Tensor& x, const Tensor& grad, double alpha = 0.0);

/// Sums `g` down to `shape` (the reverse of broadcasting); used by backward rules.
Tensor sum_to(const Tensor& g, const Shape& shape);

// --- operators ---
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

/// A 0-d tensor of `like`'s dtype and device holding `value` (a weakly typed scalar).
Tensor scalar_like(double value, const Tensor& like);

}  // namespace loom

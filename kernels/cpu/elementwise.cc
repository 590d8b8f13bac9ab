#include "kernels/cpu/elementwise.h"

#include <omp.h>

#include "core/error.h"
#include "kernels/cpu/strided_loop.h"

namespace loom {

const char* unary_op_name(UnaryOp op) {
  static const char* names[] = {"neg", "abs", "sign", "exp", "log", "log1p", "sqrt", "rsqrt",
                                "square", "reciprocal", "tanh", "sigmoid", "relu", "relu6", "gelu",
                                "gelu_exact", "silu", "softplus", "elu", "leaky_relu", "erf",
                                "log_sigmoid", "sin", "cos"};
  return names[int(op)];
}

const char* binary_op_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum", "equal",
                                "not_equal", "less", "less_equal", "greater", "greater_equal",
                                "logical_and", "logical_or"};
  return names[int(op)];
}

namespace cpu {
namespace {

template <typename T>
using compute_t = std::conditional_t<
    std::is_same_v<T, double>, double,
    std::conditional_t<is_floating(dtype_v<T>), float,
                       std::conditional_t<std::is_same_v<T, bool>, int32_t, T>>>;  // bools as 0/1

/// Calls fn(std::integral_constant<UnaryOp, op>{}) so the op is a compile-time constant inside
/// the element loop: the switch in unary_apply folds away and the loop can vectorise.
template <typename Fn>
void with_unary_op(UnaryOp op, Fn&& fn) {
#define LOOM_CASE(name) \
  case UnaryOp::name: return fn(std::integral_constant<UnaryOp, UnaryOp::name>{});
  switch (op) {
    LOOM_CASE(Neg) LOOM_CASE(Abs) LOOM_CASE(Sign) LOOM_CASE(Exp) LOOM_CASE(Log) LOOM_CASE(Log1p)
    LOOM_CASE(Sqrt) LOOM_CASE(Rsqrt) LOOM_CASE(Square) LOOM_CASE(Reciprocal) LOOM_CASE(Tanh)
    LOOM_CASE(Sigmoid) LOOM_CASE(Relu) LOOM_CASE(Relu6) LOOM_CASE(Gelu) LOOM_CASE(GeluExact)
    LOOM_CASE(Silu) LOOM_CASE(Softplus) LOOM_CASE(Elu) LOOM_CASE(LeakyRelu) LOOM_CASE(Erf)
    LOOM_CASE(LogSigmoid) LOOM_CASE(Sin) LOOM_CASE(Cos)
  }
#undef LOOM_CASE
}

template <typename Fn>
void with_binary_op(BinaryOp op, Fn&& fn) {
#define LOOM_CASE(name) \
  case BinaryOp::name: return fn(std::integral_constant<BinaryOp, BinaryOp::name>{});
  switch (op) {
    LOOM_CASE(Add) LOOM_CASE(Sub) LOOM_CASE(Mul) LOOM_CASE(Div) LOOM_CASE(Pow) LOOM_CASE(Maximum)
    LOOM_CASE(Minimum) LOOM_CASE(Eq) LOOM_CASE(Ne) LOOM_CASE(Lt) LOOM_CASE(Le) LOOM_CASE(Gt)
    LOOM_CASE(Ge) LOOM_CASE(LogicalAnd) LOOM_CASE(LogicalOr)
  }
#undef LOOM_CASE
}

/// out = g * f'(x) over one contiguous slice (restrict: the buffers never overlap).
template <typename T, typename C, typename K>
void backward_slice(K k, const T* __restrict in, const T* __restrict g, T* __restrict o, int64_t n,
                    C a) {
  if constexpr (K::value == UnaryOp::Relu) {
    // The multiplier is selected, then multiplied, so g = inf/NaN at x <= 0 still gives NaN
    // (as JAX); written this way GCC emits a compare + blend instead of a branch.
    for (int64_t i = 0; i < n; ++i) {
      C m = convert<C>(in[i]) > C(0) ? C(1) : C(0);
      o[i] = convert<T>(convert<C>(g[i]) * m);
    }
  } else {
    for (int64_t i = 0; i < n; ++i)
      o[i] = convert<T>(convert<C>(g[i]) * unary_derivative<C>(k(), convert<C>(in[i]), a));
  }
}

}  // namespace

void unary(UnaryOp op, const void* x, const Shape& x_strides, void* out, const Shape& out_shape,
           DType dtype, double alpha) {
  visit_floating(dtype, unary_op_name(op), [&](auto z) {
    using T = decltype(z);
    using C = compute_t<T>;
    const T* in = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    StridedLoop<2> loop(out_shape, {x_strides, contiguous_strides(out_shape)});
    C a = C(alpha);
    with_unary_op(op, [&](auto k) {
      loop.run([&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
        const T* src = in + off[0];
        T* dst = o + off[1];
        if (st[0] == 1) {  // the common dense case, as a loop the compiler can vectorise
          for (int64_t i = 0; i < n; ++i) dst[i] = convert<T>(unary_apply<C>(k(), convert<C>(src[i]), a));
        } else {
          for (int64_t i = 0; i < n; ++i)
            dst[i] = convert<T>(unary_apply<C>(k(), convert<C>(src[i * st[0]]), a));
        }
      });
    });
  });
}

void unary_backward(UnaryOp op, const void* x, const void* grad, void* out, int64_t n, DType dtype,
                    double alpha) {
  visit_floating(dtype, unary_op_name(op), [&](auto z) {
    using T = decltype(z);
    using C = compute_t<T>;
    const T* in = static_cast<const T*>(x);
    const T* g = static_cast<const T*>(grad);
    T* o = static_cast<T*>(out);
    C a = C(alpha);
    with_unary_op(op, [&](auto k) {
      // One region, each thread a contiguous slice through a plain function: loops inside the
      // outlined OpenMP body were left scalar by GCC (with a mispredicted branch for ReLU).
#pragma omp parallel if (n > 32768)
      {
        int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t lo = n * t / nt, hi = n * (t + 1) / nt;
        backward_slice<T, C>(k, in + lo, g + lo, o + lo, hi - lo, a);
      }
    });
  });
}

void binary(BinaryOp op, const void* a, const Shape& a_strides, const void* b,
            const Shape& b_strides, DType in_dtype, void* out, const Shape& out_shape) {
  visit_dtype(in_dtype, [&](auto z) {
    using T = decltype(z);
    using C = compute_t<T>;
    const T* pa = static_cast<const T*>(a);
    const T* pb = static_cast<const T*>(b);
    StridedLoop<3> loop(out_shape, {a_strides, b_strides, contiguous_strides(out_shape)});
    auto run = [&](auto* o) {
      using O = std::remove_pointer_t<decltype(o)>;
      with_binary_op(op, [&](auto k) {
        loop.run([&](std::array<int64_t, 3> off, int64_t n, std::array<int64_t, 3> st) {
          const T* ra = pa + off[0];
          const T* rb = pb + off[1];
          O* ro = o + off[2];
          auto f = [&](C x, C y) { return convert<O>(binary_apply<C>(k(), x, y)); };
          // Dense and scalar-broadcast rows get loops the compiler can vectorise.
          if (st[0] == 1 && st[1] == 1) {
            for (int64_t i = 0; i < n; ++i) ro[i] = f(convert<C>(ra[i]), convert<C>(rb[i]));
          } else if (st[0] == 1 && st[1] == 0) {
            C y = convert<C>(rb[0]);
            for (int64_t i = 0; i < n; ++i) ro[i] = f(convert<C>(ra[i]), y);
          } else if (st[0] == 0 && st[1] == 1) {
            C x = convert<C>(ra[0]);
            for (int64_t i = 0; i < n; ++i) ro[i] = f(x, convert<C>(rb[i]));
          } else {
            for (int64_t i = 0; i < n; ++i)
              ro[i] = f(convert<C>(ra[i * st[0]]), convert<C>(rb[i * st[1]]));
          }
        });
      });
    };
    if (is_comparison(op)) run(static_cast<bool*>(out));
    else run(static_cast<T*>(out));
  });
}

void where(const void* cond, const Shape& cond_strides, const void* a, const Shape& a_strides,
           const void* b, const Shape& b_strides, DType dtype, void* out, const Shape& out_shape) {
  visit_dtype(dtype, [&](auto z) {
    using T = decltype(z);
    const bool* pc = static_cast<const bool*>(cond);
    const T* pa = static_cast<const T*>(a);
    const T* pb = static_cast<const T*>(b);
    T* o = static_cast<T*>(out);
    StridedLoop<4> loop(out_shape, {cond_strides, a_strides, b_strides, contiguous_strides(out_shape)});
    loop.run([&](std::array<int64_t, 4> off, int64_t n, std::array<int64_t, 4> st) {
      for (int64_t i = 0; i < n; ++i)
        o[off[3] + i] = pc[off[0] + i * st[0]] ? pa[off[1] + i * st[1]] : pb[off[2] + i * st[2]];
    });
  });
}

}  // namespace cpu
}  // namespace loom

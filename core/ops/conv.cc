#include "core/ops/conv.h"

#include <algorithm>
#include <numeric>
#include <tuple>

#include "core/autodiff.h"
#include "core/fusions.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "kernels/cpu/conv.h"
#if LOOM_CUDA
#include "kernels/cuda/conv.h"
#endif

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

std::string describe(const Tensor& t) {
  return detail::cat(shape_str(t.shape()), " (", dtype_name(t.dtype()), ", ", t.device().str(),
                     ")");
}

// Options given per spatial dim, or empty for all ones.
Shape per_dim(const Shape& v, size_t rank, const char* op, const char* what, const Tensor& x,
              const Tensor& k) {
  if (v.empty()) return Shape(rank, 1);
  LOOM_CHECK(v.size() == rank, ShapeError, op, ": ", what, " ", shape_str(v), " needs ", rank,
             " entries (one per spatial dim) for input ", describe(x), " and kernel ", describe(k));
  for (int64_t e : v)
    LOOM_CHECK(e >= 1, ValueError, op, ": ", what, " ", shape_str(v), " must be positive (input ",
               describe(x), ", kernel ", describe(k), ")");
  return v;
}

void check_operands(const Tensor& x, const Tensor& k, const char* op) {
  LOOM_CHECK(x.defined() && k.defined(), ValueError, op, ": undefined input or kernel");
  LOOM_CHECK(x.ndim() >= 3 && x.ndim() <= 5 && k.ndim() == x.ndim(), ShapeError, op,
             ": expected input [N, *spatial, C] and kernel [*k, C_in, C_out] with the same rank "
             "and 1 to 3 spatial dims, got input ",
             describe(x), " and kernel ", describe(k));
  LOOM_CHECK(x.dtype() == k.dtype() && is_floating(x.dtype()), DTypeError, op,
             ": input and kernel need the same floating dtype, got input ", describe(x),
             " and kernel ", describe(k));
  LOOM_CHECK(x.device() == k.device(), DeviceError, op, ": input ", describe(x), " and kernel ",
             describe(k), " are on different devices; move one with .to(device)");
}

// --- device dispatch (nothing recorded: the callers record) ------------------------------

// The CPU kernels take float32/float64; bfloat16/float16 are computed in float32 there.
DType compute_dtype(const Tensor& t) {
  bool half = t.dtype() == DType::BF16 || t.dtype() == DType::F16;
  return half && !t.is_cuda() ? DType::F32 : t.dtype();
}

Tensor prepared(const Tensor& t, DType dtype) { return t.to(dtype).contiguous(); }

// cuDNN's NHWC filters are KRSC ([C_out, *k, C_in / groups]); loom's kernels are HWIO.
Axes hwio_to_krsc(size_t rank) {
  Axes perm{int64_t(rank) + 1};
  for (size_t d = 0; d <= rank; ++d) perm.push_back(int64_t(d));
  return perm;
}
Axes krsc_to_hwio(size_t rank) {
  Axes perm;
  for (size_t d = 1; d <= rank + 1; ++d) perm.push_back(int64_t(d));
  perm.push_back(0);
  return perm;
}

/// The kernel as the device's convolution reads it: cuDNN's KRSC on CUDA, HWIO in the compute
/// dtype on the CPU. The forward's copy is kept for the backward's input gradient.
Tensor device_kernel(const ConvGeometry& g, const Tensor& w_in) {
  autograd::NoGradGuard no_grad;
  if (w_in.is_cuda()) return transpose(w_in, hwio_to_krsc(size_t(g.rank()))).contiguous();
  return prepared(w_in, compute_dtype(w_in));
}

/// y = conv(x, w) (+ bias: CPU only, in x's dtype, which is the compute dtype). Given `columns`,
/// on the CPU a column matrix small enough to be built in one piece is kept in *columns for
/// run_backward_kernel (otherwise *columns stays undefined).
Tensor run_forward(const ConvGeometry& g, const Tensor& x_in, const Tensor& w,
                   Tensor* columns = nullptr, const Tensor& bias = Tensor()) {
  autograd::NoGradGuard no_grad;
  DType out_dtype = x_in.dtype(), dt = compute_dtype(x_in);
  Shape shape = g.y_shape();
  if (shape_numel(shape) == 0 || x_in.numel() == 0 || w.numel() == 0)
    return zeros(shape, out_dtype, x_in.device());
  Tensor x = prepared(x_in, dt);
  Tensor y = Tensor::empty(shape, dt, x.device());
  if (x.is_cuda()) {
    LOOM_INTERNAL_ASSERT(!bias.defined());  // added by a separate op there (fuses_bias)
    LOOM_CUDA_ONLY(cuda::conv_forward(g, dt, x.raw_data(), w.raw_data(), y.raw_data(),
                                      x.device().index, stream_of(x)));
  } else {
    const int64_t n = columns ? cpu::conv_columns_size(g) : 0;
    if (n > 0 && size_t(n) * dtype_size(dt) <= cpu::kConvColumnsChunkBytes)
      *columns = Tensor::empty({n}, dt, x.device());
    Tensor b = bias.defined() ? prepared(bias, dt) : Tensor();
    cpu::conv_forward(g, dt, x.raw_data(), w.raw_data(), y.raw_data(),
                      columns && columns->defined() ? columns->raw_data() : nullptr,
                      b.defined() ? b.raw_data() : nullptr);
  }
  return y.to(out_dtype);
}

/// The input gradient, in `out_dtype`. When `into` (an accumulation target) is a dense tensor
/// of the result's shape and the compute dtype, the gradient is added into it and `into` is
/// returned.
Tensor run_backward_input(const ConvGeometry& g, const Tensor& dy_in, const Tensor& w,
                          DType out_dtype, const Tensor& into) {
  autograd::NoGradGuard no_grad;
  DType dt = w.dtype();
  Shape shape = g.x_shape();
  if (shape_numel(shape) == 0 || dy_in.numel() == 0 || w.numel() == 0)
    return zeros(shape, out_dtype, w.device());
  Tensor dy = prepared(dy_in, dt);
  const bool accumulate = into.defined() && into.dtype() == dt && out_dtype == dt &&
                          into.device() == dy.device() && into.shape() == shape &&
                          into.is_contiguous();
  Tensor dx = accumulate ? into : Tensor::empty(shape, dt, dy.device());
  if (dy.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::conv_backward_input(g, dt, dy.raw_data(), w.raw_data(), dx.raw_data(),
                                             accumulate, dy.device().index, stream_of(dy)));
  } else {
    cpu::conv_backward_input(g, dt, dy.raw_data(), w.raw_data(), dx.raw_data(), accumulate);
  }
  return dx.to(out_dtype);
}

/// dw, reusing the `columns` run_forward kept for x_in (when defined).
Tensor run_backward_kernel(const ConvGeometry& g, const Tensor& x_in, const Tensor& dy_in,
                           const Tensor& columns = Tensor()) {
  autograd::NoGradGuard no_grad;
  DType out_dtype = x_in.dtype(), dt = compute_dtype(x_in);
  Shape shape = g.kernel_shape();
  if (shape_numel(shape) == 0 || dy_in.numel() == 0 || x_in.numel() == 0)
    return zeros(shape, out_dtype, x_in.device());
  Tensor dy = prepared(dy_in, dt);
  if (dy.is_cuda()) {
    Tensor x = prepared(x_in, dt);
    Shape krsc = shape;  // [*k, I, O] -> [O, *k, I]
    krsc.pop_back();
    krsc.insert(krsc.begin(), shape.back());
    Tensor dw = Tensor::empty(krsc, dt, x.device());
    LOOM_CUDA_ONLY(cuda::conv_backward_kernel(g, dt, x.raw_data(), dy.raw_data(), dw.raw_data(),
                                              x.device().index, stream_of(x)));
    return transpose(dw, krsc_to_hwio(size_t(g.rank()))).contiguous();
  }
  Tensor dw = Tensor::empty(shape, dt, dy.device());
  // With the forward's columns the product does not read x (nor upcast a half x again).
  if (columns.defined())
    cpu::conv_backward_kernel(g, dt, nullptr, dy.raw_data(), dw.raw_data(), columns.raw_data());
  else
    cpu::conv_backward_kernel(g, dt, prepared(x_in, dt).raw_data(), dy.raw_data(), dw.raw_data());
  return dw.to(out_dtype);
}

// --- differentiable pieces ---------------------------------------------------------------

/// The convolution proper, every option resolved into `g`, over x zero-padded by `extra`
/// (spatial (lo, hi) pairs cuDNN cannot take: the asymmetric part of SAME padding; empty:
/// none). The padded copy is made again for the kernel gradient rather than kept: x is
/// usually kept anyway (a ReLU's output, for its own gradient), and ResNet-50's three stride-2
/// SAME convolutions held 364 MiB of padded copies at its step's peak (batch 256).
/// `bias` (undefined: none; see fuses_bias) is added by the CPU kernel's products.
Tensor conv_core(const Tensor& x, const Tensor& w, const ConvGeometry& g,
                 const PadPairs& extra = {}, const Tensor& bias = Tensor()) {
  Tensor wd = device_kernel(g, w);
  const bool record = autograd::needs_grad({&x, &w, &bias});
  // keep only what the requested gradients read
  bool want_x = x.grad_node() != nullptr, want_w = record && w.grad_node() != nullptr;
  bool want_b = bias.grad_node() != nullptr;
  auto padded = [extra](const Tensor& t) {
    if (extra.empty()) return t;
    autograd::NoGradGuard no_grad;
    return pad(t, extra);
  };
  // On the CPU the kernel gradient reuses the forward's im2col columns (a tenth of the seed
  // CNN's step went to building them twice); run_forward keeps them only when small.
  Tensor columns;
  Tensor out = run_forward(g, padded(x.detach()), wd, want_w && !x.is_cuda() ? &columns : nullptr,
                           bias.detach());
  std::vector<Tensor> inputs = {x, w};
  if (bias.defined()) inputs.push_back(bias);
  if (!record) return autograd::checked("conv", std::move(out), inputs);
  Tensor sx = want_w ? autograd::saved(x) : Tensor();
  Tensor sw = want_x ? wd : Tensor();
  DType x_dtype = x.dtype();
  Shape x_shape = x.shape();
  return autograd::record("conv", out, inputs, [=](const Tensor& grad) {
    Grads r(inputs.size());
    if (want_x && extra.empty()) {
      r[0] = run_backward_input(g, grad, sw, x_dtype, autograd::accumulation_target(0));
    } else if (want_x) {  // the padded input's gradient, cropped back to x
      Shape start(x_shape.size(), 0), limit = x_shape;
      for (size_t d = 0; d < extra.size(); ++d) {
        start[d] = extra[d].first;
        limit[d] += extra[d].first;
      }
      autograd::NoGradGuard no_grad;
      r[0] = slice(run_backward_input(g, grad, sw, x_dtype, Tensor()), start, limit).contiguous();
    }
    if (want_w) r[1] = run_backward_kernel(g, columns.defined() ? sx : padded(sx), grad, columns);
    if (want_b) {
      autograd::NoGradGuard no_grad;
      Axes leading(size_t(grad.ndim() - 1));
      std::iota(leading.begin(), leading.end(), int64_t(0));
      r[2] = sum(grad, leading);
    }
    return r;
  });
}

bool symmetric_form(const ConvGeometry& g) {
  for (int64_t d = 0; d < g.rank(); ++d)
    if (g.lhs_dilation[size_t(d)] != 1 || g.pad_lo[size_t(d)] != g.pad_hi[size_t(d)] ||
        g.pad_lo[size_t(d)] < 0)
      return false;
  return true;
}

/// A 1x1 convolution with unit strides, no padding and one group: a product of x's rows
/// [N * spatial, C_in] with the kernel's [C_in, C_out] matrix. Run as one, it reads Flax's HWIO
/// kernel as it is stored, where cuDNN needs a KRSC copy and its kernel gradient transposed back
/// (two kernels and graph nodes a convolution: 66 of ResNet-50's step).
bool pointwise(const ConvGeometry& g) {
  if (g.groups != 1) return false;
  for (size_t d = 0; d < size_t(g.rank()); ++d)
    if (g.kernel_spatial[d] != 1 || g.strides[d] != 1 || g.lhs_dilation[d] != 1 ||
        g.pad_lo[d] != 0 || g.pad_hi[d] != 0)
      return false;
  return true;
}

/// A convolution that cuDNN's legacy API can express, on x zero-padded by `extra` first.
struct SymmetricForm {
  Tensor x;
  ConvGeometry g;
  PadPairs extra;  // conv_core's: empty, or one (lo, hi) pair per axis of x
};

/// Rewrites a convolution that cuDNN's legacy API cannot express (input dilation; asymmetric or
/// negative padding) as one it can, with differentiable loom ops on x: zeros are interleaved
/// for the dilation and negative padding crops; the asymmetric part of positive padding is left
/// to conv_core (`extra`), and the symmetric part p = max(0, min(lo, hi)) to the convolution.
SymmetricForm to_symmetric_form(Tensor x, ConvGeometry g) {
  for (size_t d = 0; d < size_t(g.rank()); ++d) {
    int64_t axis = int64_t(d) + 1, s = g.lhs_dilation[d], n = g.in_spatial[d];
    if (s == 1) continue;
    // [.., n, ..] -> [.., n, 1, ..] -> pad to [.., n, s, ..] -> [.., n*s, ..] -> first (n-1)*s+1
    Shape shape = x.shape(), split = shape;
    split.insert(split.begin() + axis + 1, 1);
    PadPairs pads(split.size(), {0, 0});
    pads[size_t(axis) + 1] = {0, s - 1};
    shape[size_t(axis)] = n * s;
    x = slice_axis(pad(x.reshape(split), pads).reshape(shape), axis, 0, (n - 1) * s + 1);
    g.in_spatial[d] = (n - 1) * s + 1;
    g.lhs_dilation[d] = 1;
  }
  PadPairs extra(size_t(x.ndim()), {0, 0});
  Shape start(size_t(x.ndim()), 0), limit = x.shape();
  bool empty = false;
  for (size_t d = 0; d < size_t(g.rank()); ++d) {
    int64_t lo = g.pad_lo[d], hi = g.pad_hi[d], n = g.in_spatial[d];
    int64_t p = std::max<int64_t>(0, std::min(lo, hi)), a_lo = lo - p, a_hi = hi - p;
    start[d + 1] = std::max<int64_t>(0, -a_lo);  // negative padding crops
    limit[d + 1] = std::min(n, n + a_hi);
    empty = empty || limit[d + 1] <= start[d + 1];
    extra[d + 1] = {std::max<int64_t>(0, a_lo), std::max<int64_t>(0, a_hi)};
    g.in_spatial[d] = std::max<int64_t>(0, n + a_lo + a_hi);
    g.pad_lo[d] = g.pad_hi[d] = p;
  }
  if (empty) {  // every input element is cropped away
    return {zeros(g.x_shape(), x.dtype(), x.device()), g, {}};
  }
  if (start != Shape(start.size(), 0) || limit != x.shape()) x = slice(x, start, limit);
  if (extra == PadPairs(extra.size(), {0, 0})) extra.clear();
  return {x, g, extra};
}

/// Kernel [*k, a, b] -> [*reversed k, b, a] (lax.conv_transpose's transpose_kernel).
Tensor flip_swap(const Tensor& w) {
  Tensor t = w;
  for (int64_t d = 0; d + 2 < w.ndim(); ++d) {
    int64_t n = w.shape()[size_t(d)];
    std::vector<int64_t> reversed(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) reversed[size_t(i)] = n - 1 - i;
    t = take(t, from_vector(reversed, {n}, w.device()), d);
  }
  return swapaxes(t, -1, -2);
}

/// Whether conv_core adds `bias` in the CPU kernel's products: the kernel computes in x's own
/// dtype (float32/float64, where a half x would be rounded before the add as Flax rounds it),
/// the bias has that dtype, and the convolution is not empty (its output would be the bias).
bool fuses_bias(const Tensor& x, const Tensor& kernel, const Tensor& bias, bool nonempty) {
  return bias.defined() && nonempty && !x.is_cuda() && compute_dtype(x) == x.dtype() &&
         bias.dtype() == x.dtype() && bias.device() == x.device() && kernel.dtype() == x.dtype();
}

/// conv (+ bias when defined, [C_out]).
Tensor conv_impl(const Tensor& x, const Tensor& kernel, const ConvOptions& opt, const char* op,
                 bool force_symmetric, const Tensor& bias = Tensor()) {
  check_operands(x, kernel, op);
  if (bias.defined())
    LOOM_CHECK(bias.ndim() == 1 && bias.dim(0) == kernel.shape().back(), ShapeError, op,
               ": bias ", describe(bias), " must be [C_out] = [", kernel.shape().back(),
               "] for kernel ", describe(kernel));
  size_t rank = size_t(x.ndim() - 2);
  Shape strides = per_dim(opt.strides, rank, op, "strides", x, kernel);
  Shape lhs_dil = per_dim(opt.input_dilation, rank, op, "input_dilation", x, kernel);
  Shape rhs_dil = per_dim(opt.kernel_dilation, rank, op, "kernel_dilation", x, kernel);
  int64_t groups = opt.feature_group_count;
  int64_t c_in = x.shape().back(), c_out = kernel.shape().back();
  int64_t k_in = kernel.shape()[rank];
  LOOM_CHECK(groups >= 1 && c_in % groups == 0 && c_out % groups == 0 && k_in * groups == c_in,
             ShapeError, op, ": input ", describe(x), " with feature_group_count ", groups,
             " needs a kernel [*k, ", groups >= 1 && c_in % groups == 0 ? c_in / groups : c_in,
             ", C_out] with C_out divisible by ", groups, ", got kernel ", describe(kernel));
  Shape in_spatial(x.shape().begin() + 1, x.shape().end() - 1);
  Shape k_spatial(kernel.shape().begin(), kernel.shape().begin() + int64_t(rank));
  bool dilated_input =
      std::any_of(lhs_dil.begin(), lhs_dil.end(), [](int64_t d) { return d != 1; });
  LOOM_CHECK(!(opt.padding.kind == Padding::Same && dilated_input), ValueError, op,
             ": SAME padding with input_dilation ", shape_str(lhs_dil),
             " is ambiguous (JAX rejects it too); pass explicit (lo, hi) pairs or use "
             "conv_transpose (input ",
             describe(x), ", kernel ", describe(kernel), ")");
  PadPairs pads = resolve_padding(opt.padding, in_spatial, k_spatial, strides, rhs_dil, op);

  Tensor xin = x;
  if (opt.padding.kind == Padding::Circular || opt.padding.kind == Padding::Reflect) {
    for (int64_t s : in_spatial)
      LOOM_CHECK(s > 0, ValueError, op, ": ", opt.padding.str(),
                 " padding needs non-empty spatial dims, got input ", describe(x));
    PadPairs all(size_t(x.ndim()), {0, 0});
    std::copy(pads.begin(), pads.end(), all.begin() + 1);
    xin = pad(x, all, opt.padding.kind == Padding::Circular ? PadMode::Wrap : PadMode::Reflect);
    in_spatial.assign(xin.shape().begin() + 1, xin.shape().end() - 1);
    pads.assign(rank, {0, 0});
  }

  ConvGeometry g;
  g.batch = x.shape()[0];
  g.in_channels = c_in;
  g.out_channels = c_out;
  g.groups = groups;
  g.in_spatial = in_spatial;
  g.kernel_spatial = k_spatial;
  g.strides = strides;
  g.lhs_dilation = lhs_dil;
  g.rhs_dilation = rhs_dil;
  for (size_t d = 0; d < rank; ++d) {
    g.pad_lo.push_back(pads[d].first);
    g.pad_hi.push_back(pads[d].second);
    int64_t dilated = in_spatial[d] == 0 ? 0 : (in_spatial[d] - 1) * lhs_dil[d] + 1;
    int64_t k_eff = (k_spatial[d] - 1) * rhs_dil[d] + 1;
    g.out_spatial.push_back(
        window_output_size(dilated, k_eff, strides[d], pads[d].first, pads[d].second));
  }
  bool nonempty = shape_numel(g.y_shape()) > 0 && xin.numel() > 0 && kernel.numel() > 0;
  auto plus_bias = [&bias](const Tensor& y) { return bias.defined() ? y + bias : y; };
  if (nonempty && pointwise(g) && fusion_enabled(Fusion::pointwise_conv_as_product))
    return plus_bias(detail::dot_general_as(xin, kernel.reshape({c_in, c_out}),
                                            {{x.ndim() - 1}, {0}, {}, {}}, op));
  // cuDNN takes only symmetric, non-negative padding and no input dilation; the CPU kernel
  // takes everything directly (force_symmetric lets the tests check the rewrite on the CPU).
  if ((xin.is_cuda() || force_symmetric) && nonempty && !symmetric_form(g)) {
    SymmetricForm f = to_symmetric_form(xin, g);
    return plus_bias(conv_core(f.x, kernel, f.g, f.extra));
  }
  if (fuses_bias(xin, kernel, bias, nonempty)) return conv_core(xin, kernel, g, {}, bias);
  return plus_bias(conv_core(xin, kernel, g));
}

/// lax's _conv_transpose_padding for one spatial dim (k is the dilated kernel size).
std::pair<int64_t, int64_t> transpose_padding(int64_t k, int64_t s, bool same) {
  int64_t pad_len, pad_a;
  if (same) {
    pad_len = k + s - 2;
    pad_a = s > k - 1 ? k - 1 : (pad_len + 1) / 2;
  } else {
    pad_len = k + s - 2 + std::max<int64_t>(k - s, 0);
    pad_a = k - 1;
  }
  return {pad_a, pad_len - pad_a};
}

}  // namespace

Tensor conv(const Tensor& x, const Tensor& kernel, const ConvOptions& opt) {
  return conv_impl(x, kernel, opt, "conv", false);
}

Tensor conv_bias(const Tensor& x, const Tensor& kernel, const Tensor& bias, const ConvOptions& opt) {
  LOOM_CHECK(bias.defined(), ValueError, "conv_bias: undefined bias (use conv for none)");
  return conv_impl(x, kernel, opt, "conv", false, bias);
}

namespace detail {
Tensor conv_symmetric_padding_form(const Tensor& x, const Tensor& kernel, const ConvOptions& opt) {
  return conv_impl(x, kernel, opt, "conv", true);
}
}  // namespace detail

Tensor conv_transpose(const Tensor& x, const Tensor& kernel, const ConvTransposeOptions& opt) {
  const char* op = "conv_transpose";
  check_operands(x, kernel, op);
  size_t rank = size_t(x.ndim() - 2);
  Shape strides = per_dim(opt.strides, rank, op, "strides", x, kernel);
  Shape rhs_dil = per_dim(opt.kernel_dilation, rank, op, "kernel_dilation", x, kernel);
  ConvOptions c;
  c.input_dilation = strides;
  c.kernel_dilation = rhs_dil;
  switch (opt.padding.kind) {
    case Padding::Same:
    case Padding::Valid: {
      PadPairs pads;
      for (size_t d = 0; d < rank; ++d) {
        int64_t k = kernel.shape()[d];
        LOOM_CHECK(k >= 1, ShapeError, op, ": kernel ", describe(kernel),
                   " has an empty spatial dim");
        pads.push_back(transpose_padding((k - 1) * rhs_dil[d] + 1, strides[d],
                                         opt.padding.kind == Padding::Same));
      }
      c.padding = Padding::explicit_pads(pads);
      break;
    }
    case Padding::Explicit:
      c.padding = opt.padding;
      break;
    default:
      LOOM_THROW(ValueError, op, ": padding ", opt.padding.str(),
                 " is not a lax.conv_transpose mode (SAME, VALID or explicit pairs); Flax's "
                 "CIRCULAR transposed conv is VALID followed by a periodic wrap-sum (input ",
                 describe(x), ", kernel ", describe(kernel), ")");
  }
  Tensor k = opt.transpose_kernel ? flip_swap(kernel) : kernel;
  return conv_impl(x, k, c, op, false);
}

}  // namespace loom

#include "core/ops/linalg.h"

#include <algorithm>
#include <numeric>
#include <tuple>

#include "core/autodiff.h"
#include "core/fusions.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/product_operands.h"
#include "core/ops/shape.h"
#include "core/precision.h"
#if LOOM_CUDA
#include "kernels/cuda/gemm.h"
#endif

namespace loom {
namespace {

using Grads = std::vector<Tensor>;

Axes iota_axes(size_t begin, size_t end) {
  Axes a(end - begin);
  std::iota(a.begin(), a.end(), int64_t(begin));
  return a;
}

Axes concat(std::initializer_list<const Axes*> parts) {
  Axes out;
  for (const Axes* p : parts) out.insert(out.end(), p->begin(), p->end());
  return out;
}

int64_t prod_of(const Shape& shape, const Axes& axes) {
  int64_t n = 1;
  for (int64_t a : axes) n *= shape[size_t(a)];
  return n;
}


// ---------------------------------------------------------------------------------------------
// dot_general

struct DotPlan {
  Axes lb, rb, lc, rc;  // normalised batch and contracting axes, paired by position
  Axes lf, rf;          // free axes, ascending
  Shape out_shape;
};

DotPlan plan_dot(const Tensor& a, const Tensor& b, const DotDims& dims, const char* op) {
  auto shapes = [&] {
    return detail::cat(" (lhs shape ", shape_str(a.shape()), ", rhs shape ", shape_str(b.shape()), ")");
  };
  LOOM_CHECK(dims.lhs_contracting.size() == dims.rhs_contracting.size() &&
                 dims.lhs_batch.size() == dims.rhs_batch.size(),
             ShapeError, op, ": lhs and rhs need as many contracting axes and as many batch axes",
             " as each other", shapes());
  DotPlan p;
  auto norm = [&](const Axes& axes, int64_t ndim) {
    Axes out;
    for (int64_t ax : axes) out.push_back(normalize_axis(ax, ndim, op));
    return out;
  };
  p.lb = norm(dims.lhs_batch, a.ndim());
  p.rb = norm(dims.rhs_batch, b.ndim());
  p.lc = norm(dims.lhs_contracting, a.ndim());
  p.rc = norm(dims.rhs_contracting, b.ndim());
  auto free_axes = [&](const Axes& batch, const Axes& contract, int64_t ndim, const char* side) {
    std::vector<int> used(size_t(ndim), 0);
    for (int64_t ax : batch) used[size_t(ax)]++;
    for (int64_t ax : contract) used[size_t(ax)]++;
    Axes free;
    for (int64_t d = 0; d < ndim; ++d) {
      LOOM_CHECK(used[size_t(d)] <= 1, ShapeError, op, ": ", side, " axis ", d,
                 " is listed twice among the batch and contracting axes", shapes());
      if (!used[size_t(d)]) free.push_back(d);
    }
    return free;
  };
  p.lf = free_axes(p.lb, p.lc, a.ndim(), "lhs");
  p.rf = free_axes(p.rb, p.rc, b.ndim(), "rhs");
  for (size_t i = 0; i < p.lc.size(); ++i)
    LOOM_CHECK(a.shape()[size_t(p.lc[i])] == b.shape()[size_t(p.rc[i])], ShapeError, op,
               ": contracting lhs axis ", p.lc[i], " (size ", a.shape()[size_t(p.lc[i])],
               ") and rhs axis ", p.rc[i], " (size ", b.shape()[size_t(p.rc[i])], ") differ",
               shapes());
  for (size_t i = 0; i < p.lb.size(); ++i)
    LOOM_CHECK(a.shape()[size_t(p.lb[i])] == b.shape()[size_t(p.rb[i])], ShapeError, op,
               ": batch lhs axis ", p.lb[i], " (size ", a.shape()[size_t(p.lb[i])],
               ") and rhs axis ", p.rb[i], " (size ", b.shape()[size_t(p.rb[i])], ") differ",
               shapes());
  for (int64_t ax : p.lb) p.out_shape.push_back(a.shape()[size_t(ax)]);
  for (int64_t ax : p.lf) p.out_shape.push_back(a.shape()[size_t(ax)]);
  for (int64_t ax : p.rf) p.out_shape.push_back(b.shape()[size_t(ax)]);
  return p;
}

// Runs the product on c's device (CUDA: cuBLASLt on its stream; CPU: BLAS).
void run_gemm(const GemmProblem& p, const Tensor& c) {
  if (c.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::gemm(p, c.device().index, allow_tf32(), stream_of(c)));
  } else {
    cpu::gemm(p);
  }
}

// x viewed as [batch (nb dims)..., rows (dims nb..split)..., cols (split..)...] as a GEMM
// operand. Transposed and sliced views become a transpose flag and a leading dimension; only
// views that no leading dimension describes are copied (x then holds the copy).
GemmOperand matrix_operand(Tensor& x, size_t nb, size_t split) {
  int64_t rows, sr, cols, sc;
  GemmOperand op;
  op.batch_strides.assign(x.strides().begin(), x.strides().begin() + int64_t(nb));
  // Whether the storage holds the stored rows' full pitches from the view's first element, and
  // whether those rows are whole rows of zero-padded storage (Storage::has_zero_row_padding).
  auto set_padding = [&](int64_t stored_rows, int64_t stored_cols) {
    op.pitch_readable = nb == 0 && op.ld > 0 &&
                        (x.offset() + stored_rows * op.ld) * int64_t(dtype_size(x.dtype())) <=
                            int64_t(x.storage()->nbytes());
    op.zero_padded = op.pitch_readable && x.offset() % op.ld == 0 &&
                     x.storage()->has_zero_row_padding(op.ld, stored_cols);
  };
  if (merge_dims(x.shape(), x.strides(), nb, split, rows, sr) &&
      merge_dims(x.shape(), x.strides(), split, size_t(x.ndim()), cols, sc)) {
    op.data = x.raw_data();
    if (cols == 1 || sc == 1) {
      op.trans = false;
      op.ld = rows == 1 ? std::max<int64_t>(cols, 1) : sr;
      set_padding(rows, cols);
      if (op.ld >= std::max<int64_t>(cols, 1)) return op;
    }
    if (rows == 1 || sr == 1) {
      op.trans = true;
      op.ld = cols == 1 ? std::max<int64_t>(rows, 1) : sc;
      set_padding(cols, rows);
      if (op.ld >= std::max<int64_t>(rows, 1)) return op;
    }
  }
  op.pitch_readable = op.zero_padded = false;
  x = x.contiguous();
  op.data = x.raw_data();
  op.trans = false;
  op.ld = std::max<int64_t>(shape_numel(Shape(x.shape().begin() + int64_t(split), x.shape().end())), 1);
  op.batch_strides.assign(x.strides().begin(), x.strides().begin() + int64_t(nb));
  return op;
}

// The product itself, on detached operands of one dtype.
Tensor dot_forward(const Tensor& a, const Tensor& b, const DotPlan& p) {
  DType dt = a.dtype();
  if (!a.is_cuda() && (dt == DType::BF16 || dt == DType::F16))  // OpenBLAS has no half GEMM
    return dot_forward(a.to(DType::F32), b.to(DType::F32), p).to(dt);
  size_t nb = p.lb.size();
  Tensor av = transpose(a, concat({&p.lb, &p.lf, &p.lc}));
  Tensor bv = transpose(b, concat({&p.rb, &p.rc, &p.rf}));
  GemmProblem g;
  g.dtype = dt;
  g.m = prod_of(a.shape(), p.lf);
  g.k = prod_of(a.shape(), p.lc);
  g.n = prod_of(b.shape(), p.rf);
  for (int64_t ax : p.lb) g.batch_shape.push_back(a.shape()[size_t(ax)]);
  g.a = matrix_operand(av, nb, nb + p.lf.size());
  g.b = matrix_operand(bv, nb, nb + p.rc.size());
  // A large product's rows padded to 16 bytes (kernels/cpu/gemm.h) when n is b's one free axis.
  const int64_t pitch = p.rf.size() == 1 ? output_row_pitch(g) : g.n;
  Tensor out = pitch == g.n ? Tensor::empty(p.out_shape, dt, a.device())
                            : Tensor::empty_padded_rows(p.out_shape, pitch, dt, a.device());
  g.c = out.raw_data();
  g.ldc = pitch;
  run_gemm(g, out);
  return out;
}

// Gradients of dot_general: each is a dot_general of the output gradient g with the other
// operand, then a transpose back to the operand's axis order. Of the two operand orders of that
// product, the one is taken whose result is laid out as the operand is stored: for the usual
// layouts (x [batch, free, contracting], kernel [contracting, free]) the transpose is the identity
// and the gradient comes out contiguous; for an operand that is a transposed view (a tied output
// layer's transpose(embedding)) the gradient is contiguous in the storage's order, so that the
// view's own gradient (the transpose back) is contiguous too and adds to the parameter's other
// gradients without a strided pass.

// Whether `outer`'s axes all have larger strides than `inner`'s (size-1 axes aside): x is stored
// with the `outer` axes outside. False when either set has no axis of size > 1.
bool stored_outside(const Tensor& x, const Axes& outer, const Axes& inner) {
  int64_t min_outer = -1, max_inner = -1;
  for (int64_t ax : outer)
    if (x.shape()[size_t(ax)] > 1) {
      const int64_t s = x.strides()[size_t(ax)];
      min_outer = min_outer < 0 ? s : std::min(min_outer, s);
    }
  for (int64_t ax : inner)
    if (x.shape()[size_t(ax)] > 1) max_inner = std::max(max_inner, x.strides()[size_t(ax)]);
  return min_outer >= 0 && max_inner >= 0 && min_outer > max_inner;
}

// The positions of `axes` sorted by the axis numbers in `by` (the order in which a product
// returns another operand's contracting dims).
std::vector<size_t> order_by(const Axes& by) {
  std::vector<size_t> order(by.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t i, size_t j) { return by[i] < by[j]; });
  return order;
}

// a's gradient. contracting_outside: a is stored with its contracting axes outside its free ones.
Tensor lhs_grad(const Tensor& g, const Tensor& b, const DotPlan& p, bool contracting_outside) {
  size_t nb = p.lb.size(), nfa = p.lf.size(), nfb = p.rf.size();
  Axes perm(nb + nfa + p.lc.size());
  int64_t rd = 0;
  for (int64_t ax : p.lb) perm[size_t(ax)] = rd++;
  Tensor r;
  if (contracting_outside) {
    // r: [batch, b's contracting dims in ascending b-axis order, a's free dims]
    r = dot_general(b, g, {p.rf, iota_axes(nb + nfa, nb + nfa + nfb), p.rb, iota_axes(0, nb)});
    for (size_t j : order_by(p.rc)) perm[size_t(p.lc[j])] = rd++;
    for (int64_t ax : p.lf) perm[size_t(ax)] = rd++;
  } else {
    // r: [batch, a's free dims, b's contracting dims in ascending b-axis order]
    r = dot_general(g, b, {iota_axes(nb + nfa, nb + nfa + nfb), p.rf, iota_axes(0, nb), p.rb});
    for (int64_t ax : p.lf) perm[size_t(ax)] = rd++;
    for (size_t j : order_by(p.rc)) perm[size_t(p.lc[j])] = rd++;
  }
  return transpose(r, perm);
}

// The product g [..., N] @ w^T for w [K, N] (a product's input gradient), without its output.
// g2 and wt receive the operands as the problem reads them, and must outlive it.
GemmProblem input_grad_problem(const Tensor& g, const Tensor& w, Tensor& g2, Tensor& wt) {
  g2 = g.reshape({shape_numel(Shape(g.shape().begin(), g.shape().end() - 1)), w.dim(1)});
  wt = transpose(w);
  GemmProblem p;
  p.dtype = g.dtype();
  p.m = g2.dim(0);
  p.n = w.dim(0);
  p.k = w.dim(1);
  p.a = matrix_operand(g2, 0, 1);
  p.b = matrix_operand(wt, 0, 1);
  return p;
}

// a's gradient g @ w^T for w [K, N] and g [..., N], added into `into` (an earlier contribution
// to a's gradient that the backward walk offers, autograd::accumulation_target) by the product
// itself (beta = 1) where `into` is a dense tensor of a's shape and g's dtype on a device whose
// GEMM takes that dtype; undefined otherwise. One pass less over a's gradient than the product
// and a separate add: the three projections of an attention's input each add into one gradient.
Tensor input_grad_into(const Tensor& g, const Tensor& w, const Tensor& into) {
  if (!fusion_enabled(Fusion::input_grad_accumulate) || !into.defined() ||
      !into.is_contiguous() || into.dtype() != g.dtype() ||
      into.device() != g.device() || into.ndim() != g.ndim() || into.shape().back() != w.dim(0))
    return Tensor();
  for (int64_t d = 0; d + 1 < g.ndim(); ++d)
    if (into.dim(d) != g.dim(d)) return Tensor();
  if (!g.is_cuda() && g.dtype() != DType::F32 && g.dtype() != DType::F64) return Tensor();
  if (g.numel() == 0 || w.numel() == 0) return Tensor();  // nothing to add: the plain product
  if (!g.is_contiguous()) return Tensor();  // pitched rows: lhs_grad reads them in place
  Tensor g2, wt;
  GemmProblem p = input_grad_problem(g, w.to(g.dtype()), g2, wt);
  // A large product with an extent that is not a 16-byte multiple runs on padded copies on the
  // GPU (kernels/cuda/gemm.cc), which write the output from scratch: a separate add costs less
  // there than cuBLASLt's element-aligned kernels.
  const int64_t e = int64_t(dtype_size(p.dtype));
  if (g.is_cuda() && pads_extents(p) && ((p.k * e) % 16 || (p.n * e) % 16 || (p.m * e) % 16))
    return Tensor();
  p.c = into.raw_data();
  p.accumulate = true;
  run_gemm(p, into);
  return into;
}

// b's gradient. free_outside: b is stored with its free axes outside its contracting ones.
Tensor rhs_grad(const Tensor& a, const Tensor& g, const DotPlan& p, bool free_outside) {
  size_t nb = p.lb.size(), nfa = p.lf.size(), nfb = p.rf.size();
  Axes perm(nb + nfb + p.rc.size());
  int64_t rd = 0;
  for (int64_t ax : p.rb) perm[size_t(ax)] = rd++;
  Tensor r;
  if (free_outside) {
    // r: [batch, b's free dims, a's contracting dims in ascending a-axis order]
    r = dot_general(g, a, {iota_axes(nb, nb + nfa), p.lf, iota_axes(0, nb), p.lb});
    for (int64_t ax : p.rf) perm[size_t(ax)] = rd++;
    for (size_t j : order_by(p.lc)) perm[size_t(p.rc[j])] = rd++;
  } else {
    // r: [batch, a's contracting dims in ascending a-axis order, b's free dims]
    r = dot_general(a, g, {p.lf, iota_axes(nb, nb + nfa), p.lb, iota_axes(0, nb)});
    for (size_t j : order_by(p.lc)) perm[size_t(p.rc[j])] = rd++;
    for (int64_t ax : p.rf) perm[size_t(ax)] = rd++;
  }
  return transpose(r, perm);
}

}  // namespace

Tensor dot_general(const Tensor& a, const Tensor& b, const DotDims& dims) {
  return detail::dot_general_as(a, b, dims, "dot_general");
}

Tensor detail::dot_general_as(const Tensor& a_in, const Tensor& b_in, const DotDims& dims,
                              const char* op) {
  check_product_operands(a_in, b_in, op);
  DotPlan p = plan_dot(a_in, b_in, dims, op);
  DType dt = promote_types(a_in.dtype(), b_in.dtype());
  Tensor a = a_in.to(dt), b = b_in.to(dt);  // differentiable casts carry mixed-dtype gradients
  Tensor out = dot_forward(a.detach(), b.detach(), p);
  if (!autograd::needs_grad({&a, &b})) return autograd::checked(op, std::move(out), {&a, &b});
  bool need_a = a.grad_node() != nullptr, need_b = b.grad_node() != nullptr;
  Tensor sa = autograd::saved(a), sb = autograd::saved(b);
  const bool a_contracting_outside = stored_outside(a, p.lc, p.lf);
  const bool b_free_outside = stored_outside(b, p.rf, p.rc);
  // a [..., K] @ b [K, N] (a matmul): a's gradient may add into an earlier contribution.
  const bool plain_product = p.lb.empty() && p.lc.size() == 1 && p.lc[0] == a.ndim() - 1 &&
                             b.ndim() == 2 && p.rc.size() == 1 && p.rc[0] == 0 &&
                             !a_contracting_outside;
  return autograd::record(op, out, {a, b}, [=](const Tensor& g) {
    Grads grads(2);
    if (need_a && plain_product) grads[0] = input_grad_into(g, sb, autograd::accumulation_target(0));
    if (need_a && !grads[0].defined()) grads[0] = lhs_grad(g, sb, p, a_contracting_outside);
    if (need_b) grads[1] = rhs_grad(sa, g, p, b_free_outside);
    return grads;
  });
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_product_operands(a, b, "matmul");
  auto shapes = [&] {
    return detail::cat("matmul: a has shape ", shape_str(a.shape()), " and b has shape ",
                       shape_str(b.shape()));
  };
  LOOM_CHECK(a.ndim() >= 1 && b.ndim() >= 1, ShapeError, shapes(),
             "; operands must be at least 1-D (use mul for scalars)");
  Tensor a2 = a.ndim() == 1 ? a.reshape({1, a.dim(0)}) : a;
  Tensor b2 = b.ndim() == 1 ? b.reshape({b.dim(0), 1}) : b;
  LOOM_CHECK(a2.dim(-1) == b2.dim(-2), ShapeError, shapes(), "; contracting sizes ", a2.dim(-1),
             " and ", b2.dim(-2), " differ");
  Shape ab(a2.shape().begin(), a2.shape().end() - 2), bb(b2.shape().begin(), b2.shape().end() - 2);
  size_t nb = std::max(ab.size(), bb.size());
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i) {  // right-aligned numpy broadcasting of the batch dims
    int64_t x = i + ab.size() >= nb ? ab[i + ab.size() - nb] : 1;
    int64_t y = i + bb.size() >= nb ? bb[i + bb.size() - nb] : 1;
    LOOM_CHECK(x == y || x == 1 || y == 1, ShapeError, shapes(), "; batch dims ", shape_str(ab),
               " and ", shape_str(bb), " do not broadcast");
    batch[i] = x == 1 ? y : x;
  }
  Tensor out;
  if (shape_numel(bb) == 1 && batch == ab) {
    // x [..., M, K] @ w [K, N] (Dense): x's batch dims fold into M, one GEMM with no broadcast.
    // A 2-D w is taken as it is: a transposed view (a tied output layer's) stays a view.
    Tensor w = b2.ndim() == 2 ? b2 : b2.reshape({b2.dim(-2), b2.dim(-1)});
    out = dot_general(a2, w, {{a2.ndim() - 1}, {0}, {}, {}});
  } else {
    Shape as = batch, bs = batch;
    as.insert(as.end(), a2.shape().end() - 2, a2.shape().end());
    bs.insert(bs.end(), b2.shape().end() - 2, b2.shape().end());
    Axes bdims = iota_axes(0, nb);
    out = dot_general(broadcast_to(a2, as), broadcast_to(b2, bs),
                      {{int64_t(nb) + 1}, {int64_t(nb)}, bdims, bdims});
  }
  if (a.ndim() == 1 || b.ndim() == 1) {  // drop the dims added to 1-D operands
    Shape s = batch;
    if (a.ndim() > 1) s.push_back(a2.dim(-2));
    if (b.ndim() > 1) s.push_back(b2.dim(-1));
    out = out.reshape(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// matmul_bias_act

namespace {

// One cuBLASLt call; undefined when cuBLASLt offers no fused algorithm for this problem. Given
// `gelu_input` (with Epilogue::BiasGelu), the call also stores a @ b + bias there; given an
// `addend` (a dense tensor of the output's shape), the call adds it to a @ b + bias (beta = 1).
Tensor fused_forward([[maybe_unused]] const Tensor& a, [[maybe_unused]] const Tensor& b,
                     [[maybe_unused]] const Tensor& bias, [[maybe_unused]] Epilogue ep,
                     [[maybe_unused]] Tensor* gelu_input = nullptr,
                     [[maybe_unused]] const Tensor& addend = Tensor()) {
#if LOOM_CUDA
  Tensor av = a, bv = b, biasc = bias.defined() ? bias.contiguous() : Tensor();
  GemmProblem g;
  g.dtype = a.dtype();
  g.k = a.dim(-1);
  g.n = b.dim(1);
  g.m = shape_numel(Shape(a.shape().begin(), a.shape().end() - 1));
  g.a = matrix_operand(av, 0, size_t(a.ndim()) - 1);
  g.b = matrix_operand(bv, 0, 1);
  Shape out_shape(a.shape().begin(), a.shape().end() - 1);
  out_shape.push_back(g.n);
  Tensor out = Tensor::empty(out_shape, g.dtype, a.device());
  g.c = out.raw_data();
  if (addend.defined()) {
    g.accumulate = true;
    g.addend = addend.raw_data();
  }
  if (gelu_input) *gelu_input = Tensor::empty(out_shape, g.dtype, a.device());
  if (!cuda::gemm(g, a.device().index, allow_tf32(), stream_of(a), ep,
                  biasc.defined() ? biasc.raw_data() : nullptr,
                  gelu_input ? gelu_input->raw_data() : nullptr))
    return Tensor();
  return out;
#else
  return Tensor();
#endif
}

// The weight gradient a^T @ g of a [..., K] x [K, N] product and its bias gradient (g's column
// sums) from one cuBLASLt call; undefined tensors when cuBLASLt offers no such algorithm.
std::pair<Tensor, Tensor> weight_and_bias_grads([[maybe_unused]] const Tensor& a,
                                                [[maybe_unused]] const Tensor& g) {
#if LOOM_CUDA
  if (a.numel() == 0 || g.numel() == 0) return {};  // the separate ops handle empty products
  const int64_t k = a.dim(-1), n = g.dim(-1);
  Tensor at = transpose(a.reshape({-1, k})), g2 = g.reshape({-1, n});
  GemmProblem p;
  p.dtype = g.dtype();
  p.m = k;
  p.n = n;
  p.k = g2.dim(0);
  p.a = matrix_operand(at, 0, 1);
  p.b = matrix_operand(g2, 0, 1);
  Tensor dw = Tensor::empty({k, n}, p.dtype, g.device()), db = Tensor::empty({n}, p.dtype, g.device());
  p.c = dw.raw_data();
  if (cuda::gemm_bias_grad(p, g.device().index, allow_tf32(), stream_of(g), db.raw_data()))
    return {dw, db};
#endif
  return {};
}

// The gradient of a product's left operand GELU(pre) taken through the GELU, for w [K, N] and
// g [..., N]: gelu'(pre) * (g @ w^T) in one cuBLASLt call (the DGELU epilogue reads pre as the
// forward's GELU_AUX_BIAS epilogue wrote it); undefined when cuBLASLt offers no algorithm.
Tensor gelu_input_grad([[maybe_unused]] const Tensor& g, [[maybe_unused]] const Tensor& w,
                       [[maybe_unused]] const Tensor& pre) {
#if LOOM_CUDA
  if (g.numel() == 0 || w.numel() == 0) return Tensor();
  Tensor g2, wt;
  GemmProblem p = input_grad_problem(g.to(pre.dtype()), w, g2, wt);
  Tensor out = Tensor::empty(pre.shape(), p.dtype, g.device());
  p.c = out.raw_data();
  if (cuda::gemm_gelu_grad(p, g.device().index, allow_tf32(), stream_of(g), pre.raw_data()))
    return out;
#endif
  return Tensor();
}

// Records value = a2 @ b2 + bias2 (+ addend), computed by the caller in a2's dtype, for
// autodiff: the products' gradients (a's through an earlier product's GELU epilogue where a is
// its output, the bias's in the weight gradient's epilogue) and the addend's, the upstream one.
// bias2 and addend may be undefined.
Tensor record_product(const char* op, const Tensor& a2, const Tensor& b2, const Tensor& bias2,
                      const Tensor& addend, const Tensor& value) {
  const DType dt = a2.dtype();
  bool need_a = a2.grad_node() != nullptr, need_b = b2.grad_node() != nullptr;
  bool need_bias = bias2.defined() && bias2.grad_node() != nullptr;
  Tensor sa = autograd::saved(a2), sb = autograd::saved(b2);
  // a's node is a GELU that an earlier product applied in its epilogue (Dense{.activation =
  // Gelu} before this one: GPT-2's MLP). a's gradient then goes through the GELU in this
  // product's own epilogue, straight to the GELU's input, where the separate GELU backward
  // would read and write the gradient once more. The GELU's node stays an input (with no
  // gradient from here) so that the backward walk releases it in its turn, or runs it if
  // anything else takes a.
  std::vector<Tensor> inputs = {a2, b2, bias2};
  Tensor a_gelu_input;  // the GELU's input, when a's gradient goes through it here
  if (const auto& node = a2.grad_node();
      node && fusion_enabled(Fusion::dgelu_epilogue) && node->epilogue_gelu_input.defined() &&
      node->inputs.size() == 1 && node->inputs[0] &&
      node->epilogue_gelu_input.shape() == a2.shape() && node->epilogue_gelu_input.dtype() == dt) {
    a_gelu_input = node->epilogue_gelu_input;
    Tensor rooted = a_gelu_input.detach();
    rooted.set_grad_node(node->inputs[0]);
    inputs = {rooted, b2, bias2, a2};
  }
  const bool need_addend = addend.defined() && addend.grad_node() != nullptr;
  if (addend.defined()) inputs.push_back(addend);
  const size_t n_inputs = inputs.size();
  return autograd::record(op, value, inputs, [=](const Tensor& g) {
    Grads grads(n_inputs);
    Axes lead = iota_axes(0, size_t(g.ndim()) - 1);
    if (need_a && a_gelu_input.defined()) {
      grads[0] = gelu_input_grad(g, sb, a_gelu_input);
      if (!grads[0].defined())  // no such algorithm: the product, then the GELU's derivative
        grads[0] = unary_backward(UnaryOp::Gelu, a_gelu_input, dot_general(g, sb, {{g.ndim() - 1}, {1}, {}, {}}));
    } else if (need_a) {
      grads[0] = input_grad_into(g, sb, autograd::accumulation_target(0));
      if (!grads[0].defined()) grads[0] = dot_general(g, sb, {{g.ndim() - 1}, {1}, {}, {}});
    }
    // The bias gradient in the weight gradient's epilogue: no separate pass over g.
    if (need_b && need_bias && !lead.empty()) std::tie(grads[1], grads[2]) = weight_and_bias_grads(sa, g);
    if (need_b && !grads[1].defined()) grads[1] = dot_general(sa, g, {lead, lead, {}, {}});
    if (need_bias && !grads[2].defined()) grads[2] = lead.empty() ? g : sum(g, lead);
    if (need_addend) grads[n_inputs - 1] = g;
    return grads;
  });
}

Tensor activate(const Tensor& z, Epilogue ep) {
  switch (ep) {
    case Epilogue::BiasRelu: return relu(z);
    case Epilogue::BiasGelu: return gelu(z, /*approximate=*/true);
    default: return z;
  }
}

}  // namespace

Tensor matmul_bias_act(const Tensor& a, const Tensor& b, const Tensor& bias, Epilogue ep) {
  if (ep == Epilogue::None) return matmul(a, b);
  check_product_operands(a, b, "matmul_bias_act");
  check_product_operands(a, bias, "matmul_bias_act");
  LOOM_CHECK(a.ndim() >= 1 && b.ndim() == 2 && bias.ndim() == 1 && a.dim(-1) == b.dim(0) &&
                 bias.dim(0) == b.dim(1),
             ShapeError, "matmul_bias_act: expected a [..., K], b [K, N] and bias [N], got a ",
             shape_str(a.shape()), ", b ", shape_str(b.shape()), " and bias ", shape_str(bias.shape()));
  if (!a.is_cuda()) return activate(matmul(a, b) + bias, ep);
  DType dt = promote_types(promote_types(a.dtype(), b.dtype()), bias.dtype());
  Tensor a2 = a.to(dt), b2 = b.to(dt), bias2 = bias.to(dt);
  bool grad = autograd::needs_grad({&a2, &b2, &bias2});
  // Under autodiff the activation's backward needs its input: GELU's epilogue stores it beside
  // the output (one pass less over memory than a separate GELU); for ReLU only the bias is fused.
  // Not for float64 (a dtype for checking, not speed), whose aux epilogues cuBLASLt may refuse
  // with an error rather than with "not supported".
  const bool keep_gelu_input = grad && ep == Epilogue::BiasGelu && dt != DType::F64 &&
                               fusion_enabled(Fusion::gelu_epilogue);
  Tensor pre;  // the product + bias that the epilogue's GELU took, when kept
  Tensor out = fused_forward(a2.detach(), b2.detach(), bias2.detach(),
                             grad && !keep_gelu_input ? Epilogue::Bias : ep,
                             keep_gelu_input ? &pre : nullptr);
  if (!out.defined() && keep_gelu_input) {  // no algorithm keeps it: the bias alone
    pre = Tensor();
    out = fused_forward(a2.detach(), b2.detach(), bias2.detach(), Epilogue::Bias);
  }
  if (!out.defined()) return activate(matmul(a2, b2) + bias2, ep);
  if (!grad) return autograd::checked("matmul_bias_act", std::move(out), {&a2, &b2, &bias2});
  Tensor z = record_product("matmul_bias", a2, b2, bias2, Tensor(), pre.defined() ? pre : out);
  if (pre.defined()) {
    Tensor y = unary_with_value(UnaryOp::Gelu, z, out);
    if (y.grad_node()) y.grad_node()->epilogue_gelu_input = autograd::saved(pre);
    return y;
  }
  return activate(z, ep);
}

Tensor matmul_bias_add(const Tensor& a, const Tensor& b, const Tensor& bias,
                       const Tensor& residual) {
  const char* op = "matmul_bias_add";
  check_product_operands(a, b, op);
  if (bias.defined()) check_product_operands(a, bias, op);
  LOOM_CHECK(residual.defined(), ValueError, op, ": undefined residual");
  check_product_operands(a, residual, op);
  auto shapes = [&] {
    return detail::cat(op, ": expected a [..., K], b [K, N], bias [N] and a residual that broadcasts "
                       "against [..., N], got a ",
                       shape_str(a.shape()), ", b ", shape_str(b.shape()), ", bias ",
                       bias.defined() ? shape_str(bias.shape()) : std::string("none"),
                       " and residual ", shape_str(residual.shape()));
  };
  LOOM_CHECK(a.ndim() >= 1 && b.ndim() == 2 && a.dim(-1) == b.dim(0), ShapeError, shapes());
  LOOM_CHECK(!bias.defined() || (bias.ndim() == 1 && bias.dim(0) == b.dim(1)), ShapeError, shapes());
  Shape out_shape(a.shape().begin(), a.shape().end() - 1);
  out_shape.push_back(b.dim(1));
  const Shape& rs = residual.shape();
  for (size_t i = 1; i <= std::min(rs.size(), out_shape.size()); ++i) {  // numpy broadcasting
    const int64_t r = rs[rs.size() - i], o = out_shape[out_shape.size() - i];
    LOOM_CHECK(r == o || r == 1 || o == 1, ShapeError, shapes());
  }
  auto composed = [&] {
    return residual + (bias.defined() ? matmul_bias_act(a, b, bias, Epilogue::Bias) : matmul(a, b));
  };
  DType dt = promote_types(a.dtype(), b.dtype());
  if (bias.defined()) dt = promote_types(dt, bias.dtype());
  // One call where the residual is the output's own shape and dtype (the product in its own
  // dtype, then the add's promotion, agree); otherwise the add broadcasts and promotes.
  if (!a.is_cuda() || rs != out_shape || residual.dtype() != dt || !residual.is_contiguous() ||
      !fusion_enabled(Fusion::residual_epilogue))
    return composed();
  Tensor a2 = a.to(dt), b2 = b.to(dt), r2 = residual;
  Tensor bias2 = bias.defined() ? bias.to(dt) : Tensor();
  Tensor out = fused_forward(a2.detach(), b2.detach(), bias2.defined() ? bias2.detach() : Tensor(),
                             bias2.defined() ? Epilogue::Bias : Epilogue::None, nullptr, r2.detach());
  if (!out.defined()) return composed();
  if (!autograd::needs_grad({&a2, &b2, &bias2, &r2}))
    return autograd::checked(op, std::move(out), {&a2, &b2, &bias2, &r2});
  return record_product(op, a2, b2, bias2, r2, out);
}

}  // namespace loom

#include "core/ops/loss.h"

#include <algorithm>

#include "core/autodiff.h"
#include "core/fusions.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "core/ops/softmax.h"
#include "kernels/cpu/cross_entropy.h"
#if LOOM_CUDA
#include "kernels/cuda/cross_entropy.h"
#endif

namespace loom {
namespace {

std::string describe(const Tensor& t) {
  return detail::cat(shape_str(t.shape()), " (", dtype_name(t.dtype()), ", ", t.device().str(), ")");
}

void check_defined(const Tensor& t, const char* op, const char* what) {
  LOOM_CHECK(t.defined(), ValueError, op, ": ", what, " is undefined");
}

void check_floating(const Tensor& t, const char* op, const char* what) {
  LOOM_CHECK(is_floating(t.dtype()), DTypeError, op, ": ", what, " must have a floating dtype, got ",
             describe(t));
}

/// Two operands on one device, with a message naming both.
void check_pair(const Tensor& a, const char* a_name, const Tensor& b, const char* b_name,
                const char* op) {
  LOOM_CHECK(a.device() == b.device(), DeviceError, op, ": ", a_name, " ", describe(a), " and ",
             b_name, " ", describe(b), " are on different devices");
}

/// Broadcast check that names the loss (rather than the elementwise op used inside it).
void check_broadcast(const Tensor& a, const char* a_name, const Tensor& b, const char* b_name,
                     const char* op) {
  try {
    (void)broadcast_shapes(a.shape(), b.shape(), op);
  } catch (const ShapeError&) {
    LOOM_THROW(ShapeError, op, ": ", a_name, " ", describe(a), " and ", b_name, " ", describe(b),
               " do not broadcast");
  }
}

Tensor difference(const Tensor& predictions, const Tensor& targets, const char* op, bool same_shape) {
  check_defined(predictions, op, "predictions");
  check_floating(predictions, op, "predictions");
  if (!targets.defined()) return predictions;
  check_pair(predictions, "predictions", targets, "targets", op);
  if (same_shape)
    LOOM_CHECK(predictions.shape() == targets.shape(), ShapeError, op, ": predictions ",
               describe(predictions), " and targets ", describe(targets), " must have equal shapes");
  else
    check_broadcast(predictions, "predictions", targets, "targets", op);
  return predictions - targets;
}

// The pitch of x's rows (its last axis, elements at unit stride) when its leading axes step
// over them at one stride, the row length or up to 16 bytes more: a contiguous tensor or a large
// product's padded output (kernels/cpu/gemm.h); 0 otherwise (x is then copied, so that a
// gradient at x's pitch cannot be a narrow slice's share of a much wider storage).
int64_t padded_row_pitch(const Tensor& x) {
  const int64_t n = x.shape().back();
  int64_t rows = 0, pitch = 0;
  if ((n > 1 && x.strides().back() != 1) ||
      !merge_dims(x.shape(), x.strides(), 0, size_t(x.ndim() - 1), rows, pitch))
    return 0;
  if (rows <= 1) return std::max<int64_t>(n, 1);
  const int64_t padding_bytes = (pitch - n) * int64_t(dtype_size(x.dtype()));
  return pitch >= std::max<int64_t>(n, 1) && padding_bytes < 16 ? pitch : 0;
}

// A gradient for logits whose rows are stored at pitch ld (kernels/cpu/gemm.h), at the same pitch.
Tensor gradient_like(const Tensor& logits, int64_t ld) {
  const int64_t n = logits.shape().back();
  return ld == n ? Tensor::empty(logits.shape(), logits.dtype(), logits.device())
                 : Tensor::empty_padded_rows(logits.shape(), ld, logits.dtype(), logits.device());
}

}  // namespace

Tensor softmax_cross_entropy(const Tensor& logits, const Tensor& labels) {
  const char* op = "softmax_cross_entropy";
  check_defined(logits, op, "logits");
  check_defined(labels, op, "labels");
  check_floating(logits, op, "logits");
  check_floating(labels, op, "labels");
  check_pair(logits, "logits", labels, "labels", op);
  LOOM_CHECK(logits.ndim() >= 1, ShapeError, op, ": logits must have a class axis, got ", describe(logits));
  check_broadcast(logits, "logits", labels, "labels", op);
  return -sum(labels * log_softmax(logits, -1), {-1});
}

Tensor softmax_cross_entropy_with_integer_labels(const Tensor& logits_in, const Tensor& labels_in,
                                                 std::optional<DType> dtype) {
  const char* op = "softmax_cross_entropy_with_integer_labels";
  check_defined(logits_in, op, "logits");
  check_defined(labels_in, op, "labels");
  check_floating(logits_in, op, "logits");
  DType ldt = labels_in.dtype();
  LOOM_CHECK(ldt == DType::I32 || ldt == DType::I64 || ldt == DType::U8 || ldt == DType::U32,
             DTypeError, op, ": labels must be integer class indices, got labels ",
             describe(labels_in), " for logits ", describe(logits_in),
             "; use softmax_cross_entropy for probability labels");
  check_pair(logits_in, "logits", labels_in, "labels", op);
  LOOM_CHECK(logits_in.ndim() >= 1, ShapeError, op, ": logits must have a class axis, got ",
             describe(logits_in));
  Shape lead(logits_in.shape().begin(), logits_in.shape().end() - 1);
  LOOM_CHECK(labels_in.shape() == lead, ShapeError, op, ": labels ", describe(labels_in),
             " must have the leading shape ", shape_str(lead), " of logits ", describe(logits_in));
  const DType in_dtype = logits_in.dtype(), out_dtype = dtype.value_or(in_dtype);
  LOOM_CHECK(is_floating(out_dtype), DTypeError, op, ": dtype must be floating, got ",
             dtype_name(out_dtype), " for logits ", describe(logits_in));
  // One kernel reads the logits in their dtype and computes in `dtype` where that is the logits'
  // own or float32 over half logits; any other pair casts first.
  const bool half_to_f32 = (in_dtype == DType::BF16 || in_dtype == DType::F16) && out_dtype == DType::F32;
  if (out_dtype != in_dtype && !half_to_f32)
    return softmax_cross_entropy_with_integer_labels(logits_in.to(out_dtype), labels_in);

  // Rows at a pitch (a large product's padded output, kernels/cpu/gemm.h) are read in place,
  // and the gradient is written at the same pitch, its padding zeroed, for the products that
  // read it back.
  Tensor logits = logits_in.detach(), labels = labels_in.contiguous();
  int64_t ld = padded_row_pitch(logits);
  if (ld == 0) {
    logits = logits.contiguous();
    ld = logits.shape().back();
  }
  const int64_t n = logits.shape().back(), rows = shape_numel(lead);
  DType acc = in_dtype == DType::F64 ? DType::F64 : DType::F32;
  Tensor loss = Tensor::empty(lead, out_dtype, logits.device());
  Tensor lse = Tensor::empty({rows}, acc, logits.device());
  const bool grad = autograd::needs_grad({&logits_in});
  // On the GPU the forward also writes the gradient for the upstream gradient that
  // mean(loss) gives every row, 1 / rows in float32, from the rows it has just read (their second
  // reading comes from L2): the backward then rewrites only the rows whose upstream gradient is
  // something else (none, for the usual mean loss), where it read every row again.
  Tensor dx;
  std::optional<double> written_for;
  if (grad && logits.is_cuda() && out_dtype == DType::F32 && rows > 0 &&
      fusion_enabled(Fusion::cross_entropy_grad_in_forward)) {
    dx = gradient_like(logits, ld);
    LOOM_CUDA_ONLY(if (cuda::cross_entropy_can_write_gradient(logits.raw_data(), dx.raw_data()))
                       written_for = double(1.0f / float(rows)));
    if (!written_for) dx = Tensor();
  }
  if (logits.is_cuda()) {
    LOOM_CUDA_ONLY(cuda::cross_entropy_int(logits.raw_data(), in_dtype, labels.raw_data(), ldt,
                                           loss.raw_data(), out_dtype, lse.raw_data(), rows, n,
                                           ld, stream_of(logits),
                                           dx.defined() ? dx.raw_data() : nullptr,
                                           written_for.value_or(0.0)));
  } else {
    cpu::cross_entropy_int(logits.raw_data(), in_dtype, labels.raw_data(), ldt, loss.raw_data(),
                           out_dtype, lse.raw_data(), rows, n, ld);
  }
  if (!grad) return autograd::checked(op, std::move(loss), {&logits_in, &labels_in});
  return autograd::record(op, loss, {logits_in}, [logits, labels, lse, rows, n, ld, out_dtype, written_for,
                                                  written = dx](const Tensor& g_in) {
    Tensor g = g_in.to(out_dtype).contiguous();
    LOOM_INTERNAL_ASSERT(written.defined() == written_for.has_value());
    Tensor dx = written.defined() ? written : gradient_like(logits, ld);
    if (logits.is_cuda()) {
      LOOM_CUDA_ONLY(cuda::cross_entropy_int_backward(logits.raw_data(), logits.dtype(),
                                                      labels.raw_data(), labels.dtype(),
                                                      lse.raw_data(), g.raw_data(), out_dtype,
                                                      dx.raw_data(), rows, n, ld, stream_of(logits),
                                                      written_for));
    } else {
      cpu::cross_entropy_int_backward(logits.raw_data(), logits.dtype(), labels.raw_data(),
                                      labels.dtype(), lse.raw_data(), g.raw_data(), out_dtype,
                                      dx.raw_data(), rows, n, ld);
    }
    if (ld != n) dx.storage()->mark_zero_row_padding(ld, n);  // the kernels zero the padding
    return std::vector<Tensor>{dx};
  });
}

Tensor sigmoid_binary_cross_entropy(const Tensor& logits, const Tensor& labels_in) {
  const char* op = "sigmoid_binary_cross_entropy";
  check_defined(logits, op, "logits");
  check_defined(labels_in, op, "labels");
  check_floating(logits, op, "logits");
  check_pair(logits, "logits", labels_in, "labels", op);
  check_broadcast(logits, "logits", labels_in, "labels", op);
  Tensor labels = labels_in.to(logits.dtype());
  return -labels * log_sigmoid(logits) - (1.0 - labels) * log_sigmoid(-logits);
}

Tensor squared_error(const Tensor& predictions, const Tensor& targets) {
  return square(difference(predictions, targets, "squared_error", true));
}

Tensor l2_loss(const Tensor& predictions, const Tensor& targets) {
  return 0.5 * square(difference(predictions, targets, "l2_loss", true));
}

Tensor huber_loss(const Tensor& predictions, const Tensor& targets, double delta) {
  Tensor err = abs(difference(predictions, targets, "huber_loss", false));
  Tensor quadratic = minimum(err, scalar_like(delta, err));
  // err - quadratic rather than max(err - delta, 0): a tie would otherwise double the gradient.
  Tensor linear = err - quadratic;
  return 0.5 * square(quadratic) + delta * linear;
}

}  // namespace loom

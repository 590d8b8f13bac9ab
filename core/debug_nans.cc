#include "core/debug_nans.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "core/shape.h"

namespace loom {

namespace detail {
std::atomic<bool> g_debug_nans{false};
}  // namespace detail

namespace {
thread_local const char* g_backward_op = nullptr;
// The statistics use ops themselves (casts to float64, host copies); those must not be checked
// again, or a NaN output would recurse forever.
thread_local bool g_in_check = false;

struct InCheck {
  bool previous = g_in_check;
  InCheck() { g_in_check = true; }
  ~InCheck() { g_in_check = previous; }
};

struct Stats {
  int64_t nan = 0, inf = 0, finite = 0;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0;
};

Stats stats_of(const Tensor& t) {
  InCheck in_check;
  Stats s;
  // One host copy in float64 whatever the dtype: the slow path is acceptable in debug mode.
  for (double v : t.to(Device::cpu()).to(DType::F64).to_vector<double>()) {
    if (std::isnan(v)) {
      ++s.nan;
    } else if (std::isinf(v)) {
      ++s.inf;
    } else {
      ++s.finite;
      s.min = std::min(s.min, v);
      s.max = std::max(s.max, v);
      s.sum += v;
    }
  }
  return s;
}

bool checkable(const Tensor& t) {
  return debug_nans_enabled() && !g_in_check && t.defined() && is_floating(t.dtype()) && t.numel() > 0;
}

void describe_fault(std::ostringstream& os, const char* op, const std::string& phase,
                    const Stats& s, const char* what, const Tensor& out) {
  os << "debug_nans: " << op << " (" << phase << ") produced " << s.nan << " NaN and " << s.inf
     << " Inf value(s) in " << what << " " << tensor_stats(out) << ";";
}

const char* kHint =
    " this is the first op to produce them (set_debug_nans(false) to continue without checks)";
}  // namespace

bool set_debug_nans(bool enabled) { return detail::g_debug_nans.exchange(enabled); }

BackwardOpScope::BackwardOpScope(const char* op) : previous_(g_backward_op) { g_backward_op = op; }
BackwardOpScope::~BackwardOpScope() { g_backward_op = previous_; }

std::string tensor_stats(const Tensor& t) {
  if (!t.defined()) return "undefined";
  std::ostringstream os;
  os << shape_str(t.shape()) << " " << dtype_name(t.dtype()) << " " << t.device().str();
  if (t.numel() == 0) return os.str();
  Stats s = stats_of(t);
  if (s.finite > 0)
    os << " min " << s.min << " max " << s.max << " mean " << s.sum / double(s.finite);
  os << " nan " << s.nan << " inf " << s.inf;
  return os.str();
}

void check_op_output(const char* op, const Tensor& out, const std::vector<Tensor>& inputs,
                     const char* phase) {
  if (!checkable(out)) return;
  Stats s = stats_of(out);
  if (s.nan == 0 && s.inf == 0) return;
  std::string where = phase;
  if (g_backward_op && where == "forward") where = std::string("backward of '") + g_backward_op + "'";
  std::ostringstream os;
  describe_fault(os, op, where, s, "its output", out);
  for (size_t i = 0; i < inputs.size(); ++i) os << " input " << i << ": " << tensor_stats(inputs[i]) << ";";
  os << kHint;
  throw FloatingPointError(os.str());
}

void check_op_gradient(const char* op, const Tensor& grad, size_t input_index,
                       const Tensor& grad_output) {
  if (!checkable(grad)) return;
  Stats s = stats_of(grad);
  if (s.nan == 0 && s.inf == 0) return;
  std::ostringstream os;
  std::string what = "the gradient for its input " + std::to_string(input_index);
  describe_fault(os, op, "backward", s, what.c_str(), grad);
  os << " incoming gradient: " << tensor_stats(grad_output) << ";" << kHint;
  throw FloatingPointError(os.str());
}

}  // namespace loom

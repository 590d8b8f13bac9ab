// Switches for loom's fused routes.
//
// Where loom runs one fused kernel or library epilogue in place of a sequence of ops computing
// the same function, the route can be switched off, process-wide, and the ops it replaces run
// instead: to time a fusion against what it replaces within one binary, or to set aside one
// that misbehaves on some GPU or library version without rebuilding. Every fusion is on by
// default; the environment variable LOOM_FUSIONS_OFF (names separated by commas, or "all")
// starts the process with those off. Ops read the switches when they run, so a loom::jit step
// replays the routes its capture took.
//
// Example:
//   loom::FusionScope plain({loom::Fusion::gelu_epilogue}, false);  // a separate GELU pass
//   LOOM_FUSIONS_OFF=residual_epilogue,dgelu_epilogue loom_bench --model gpt2 ...
#pragma once
#include <string_view>
#include <vector>

namespace loom {

enum class Fusion {
  pointwise_conv_as_product,  // a 1x1 convolution (unit strides, no padding, one group) as a
                              // product on the HWIO kernel, not cuDNN on transposed copies
  gelu_epilogue,              // GELU in a product's epilogue under autodiff, keeping its input
                              // (cuBLASLt GELU_AUX_BIAS), not a bias epilogue and a GELU pass
  dgelu_epilogue,             // the gradient through that GELU in the next product's input
                              // gradient (DGELU), not a product and a GELU backward pass
  residual_epilogue,          // a residual added by the product (beta = 1), not a separate add
  input_grad_accumulate,      // an input gradient added into an earlier one by its product
                              // (beta = 1), not a product and a separate add
  batch_norm_relu_mask_from_x,  // BatchNorm + ReLU's backward recomputing the ReLU's mask from
                                // x, not reading the saved output
  batch_norm_running_stats_in_kernel,  // the running statistics updated by the statistics
                                       // kernel, not by a kernel of their own
  norm_rows_in_registers,     // LayerNorm / RMSNorm rows of up to 1024 elements held in
                              // registers, not streamed from memory twice
  cross_entropy_grad_in_forward,  // softmax cross-entropy's forward writing its gradient, not
                                  // the backward reading the logits again
};

/// Every fusion, in declaration order.
const std::vector<Fusion>& all_fusions();
std::string_view fusion_name(Fusion fusion);
/// "name,name" (or "all", or "") as fusions; ValueError naming an unknown entry and the known.
std::vector<Fusion> parse_fusions(std::string_view names);

bool fusion_enabled(Fusion fusion);
/// Process-wide (thread-safe); returns the previous value.
bool set_fusion_enabled(Fusion fusion, bool enabled);

/// RAII: the fusions set on or off for a scope, then each restored.
class FusionScope {
 public:
  FusionScope(std::vector<Fusion> fusions, bool enabled);
  ~FusionScope();
  FusionScope(const FusionScope&) = delete;
  FusionScope& operator=(const FusionScope&) = delete;

 private:
  std::vector<Fusion> fusions_;
  std::vector<bool> previous_;
};

}  // namespace loom

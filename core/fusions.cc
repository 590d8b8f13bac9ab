#include "core/fusions.h"

#include <array>
#include <atomic>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace loom {
namespace {

constexpr std::array kNames = {
    "pointwise_conv_as_product",   "gelu_epilogue",
    "dgelu_epilogue",              "residual_epilogue",
    "input_grad_accumulate",       "batch_norm_relu_mask_from_x",
    "batch_norm_running_stats_in_kernel", "norm_rows_in_registers",
    "cross_entropy_grad_in_forward",
};
constexpr size_t kCount = kNames.size();
static_assert(size_t(Fusion::cross_entropy_grad_in_forward) + 1 == kCount, "a name for each fusion");

// The switches, first set from LOOM_FUSIONS_OFF.
struct Switches {
  std::array<std::atomic<bool>, kCount> on;
  Switches() {
    for (auto& b : on) b.store(true);
    const char* off = std::getenv("LOOM_FUSIONS_OFF");
    if (!off) return;
    try {
      for (Fusion f : parse_fusions(off)) on[size_t(f)].store(false);
    } catch (const ValueError& e) {
      throw ValueError(std::string("LOOM_FUSIONS_OFF: ") + e.what());
    }
  }
};

std::atomic<bool>& switch_of(Fusion fusion) {
  static Switches switches;
  return switches.on.at(size_t(fusion));
}

std::string known_names() {
  std::string all;
  for (const char* n : kNames) all += (all.empty() ? "" : ", ") + std::string(n);
  return all;
}

}  // namespace

const std::vector<Fusion>& all_fusions() {
  static const std::vector<Fusion> all = [] {
    std::vector<Fusion> v;
    for (size_t i = 0; i < kCount; ++i) v.push_back(Fusion(i));
    return v;
  }();
  return all;
}

std::string_view fusion_name(Fusion fusion) { return kNames.at(size_t(fusion)); }

std::vector<Fusion> parse_fusions(std::string_view names) {
  if (names == "all") return all_fusions();
  std::vector<Fusion> out;
  while (!names.empty()) {
    const size_t comma = names.find(',');
    const std::string_view name = names.substr(0, comma);
    names = comma == std::string_view::npos ? std::string_view() : names.substr(comma + 1);
    if (name.empty()) continue;
    size_t i = 0;
    while (i < kCount && kNames[i] != name) ++i;
    LOOM_CHECK(i < kCount, ValueError, "unknown fusion '", name, "'; the fusions are ", known_names());
    out.push_back(Fusion(i));
  }
  return out;
}

bool fusion_enabled(Fusion fusion) {
  return switch_of(fusion).load(std::memory_order_relaxed);
}

bool set_fusion_enabled(Fusion fusion, bool enabled) {
  return switch_of(fusion).exchange(enabled);
}

FusionScope::FusionScope(std::vector<Fusion> fusions, bool enabled) : fusions_(std::move(fusions)) {
  for (Fusion f : fusions_) previous_.push_back(set_fusion_enabled(f, enabled));
}

FusionScope::~FusionScope() {
  for (size_t i = fusions_.size(); i-- > 0;) set_fusion_enabled(fusions_[i], previous_[i]);
}

}  // namespace loom

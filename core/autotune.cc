#include "core/autotune.h"

#include <atomic>

namespace loom {
namespace {
std::atomic<bool> g_conv_autotune{false};
std::atomic<bool> g_gemm_autotune{false};
}  // namespace

bool set_conv_autotune(bool enabled) { return g_conv_autotune.exchange(enabled); }
bool conv_autotune() { return g_conv_autotune.load(std::memory_order_relaxed); }
bool set_gemm_autotune(bool enabled) { return g_gemm_autotune.exchange(enabled); }
bool gemm_autotune() { return g_gemm_autotune.load(std::memory_order_relaxed); }

}  // namespace loom

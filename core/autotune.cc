#include "core/autotune.h"

#include <atomic>

namespace loom {
namespace {
std::atomic<bool> g_conv_autotune{false};
std::atomic<bool> g_gemm_autotune{false};
std::atomic<int64_t> g_conv_timings{0};
std::atomic<int64_t> g_gemm_timings{0};
}  // namespace

bool set_conv_autotune(bool enabled) { return g_conv_autotune.exchange(enabled); }
bool conv_autotune() { return g_conv_autotune.load(std::memory_order_relaxed); }
bool set_gemm_autotune(bool enabled) { return g_gemm_autotune.exchange(enabled); }
bool gemm_autotune() { return g_gemm_autotune.load(std::memory_order_relaxed); }
int64_t conv_timings() { return g_conv_timings.load(); }
int64_t gemm_timings() { return g_gemm_timings.load(); }
void note_conv_timing() { g_conv_timings.fetch_add(1); }
void note_gemm_timing() { g_gemm_timings.fetch_add(1); }

}  // namespace loom

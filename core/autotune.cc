#include "core/autotune.h"

#include <atomic>

namespace loom {
namespace {
std::atomic<bool> g_conv_autotune{false};
}

bool set_conv_autotune(bool enabled) { return g_conv_autotune.exchange(enabled); }
bool conv_autotune() { return g_conv_autotune.load(std::memory_order_relaxed); }

}  // namespace loom

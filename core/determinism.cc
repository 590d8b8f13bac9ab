#include "core/determinism.h"

#include <atomic>

namespace loom {
namespace {
std::atomic<bool> g_deterministic{false};
}

bool set_deterministic(bool enabled) { return g_deterministic.exchange(enabled); }
bool deterministic() { return g_deterministic.load(std::memory_order_relaxed); }

}  // namespace loom

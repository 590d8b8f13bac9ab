#include "core/precision.h"

#include <atomic>

namespace loom {
namespace {
// Relaxed is enough: the flag orders no other memory, each GEMM reads it once at dispatch.
std::atomic<bool> g_allow_tf32{false};
}  // namespace

bool set_allow_tf32(bool allow) { return g_allow_tf32.exchange(allow, std::memory_order_relaxed); }
bool allow_tf32() { return g_allow_tf32.load(std::memory_order_relaxed); }

}  // namespace loom

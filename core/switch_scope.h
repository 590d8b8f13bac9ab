// RAII for loom's process-wide switches, each a `bool set_x(bool)` that returns the previous
// value: the switch set for a scope, then restored.
//
// Example:
//   { loom::DeterministicScope on; ... }   // core/determinism.h: SwitchScope<set_deterministic>
#pragma once

namespace loom {

template <bool (*Set)(bool)>
class SwitchScope {
 public:
  explicit SwitchScope(bool enabled = true) : previous_(Set(enabled)) {}
  ~SwitchScope() { Set(previous_); }
  SwitchScope(const SwitchScope&) = delete;
  SwitchScope& operator=(const SwitchScope&) = delete;

 private:
  bool previous_;
};

}  // namespace loom

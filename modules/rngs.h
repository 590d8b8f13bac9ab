// Rngs (the rng streams of one init/apply) and Mutable (which variable collections a run may
// write): Flax's `rngs=` and `mutable=` arguments.
//
// Example:
//   vars = model.init(random::key(0), x);                              // {"params": key(0)}
//   vars = model.init({{"params", k1}, {"dropout", k2}}, x);
//   y = model.apply(vars, {.rngs = {{"dropout", k3}}}, x);
//   auto [y, updates] = model.apply_mutable(vars, {"batch_stats"}, x);  // a list
//   auto [y, all] = model.apply_mutable(vars, nn::Mutable::all(), x);
#pragma once
#include <initializer_list>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/random.h"

namespace loom::nn {

/// kind -> key. A single key means {"params": key}, as in Flax.
class Rngs {
 public:
  Rngs() = default;
  Rngs(random::Key params_key);  // NOLINT(google-explicit-constructor): Flax's single-key form
  Rngs(std::initializer_list<std::pair<const std::string, random::Key>> kinds) : keys_(kinds) {}
  explicit Rngs(std::map<std::string, random::Key> kinds) : keys_(std::move(kinds)) {}

  bool contains(const std::string& kind) const { return keys_.count(kind) != 0; }
  /// Throws InvalidRngError naming the kinds present.
  const random::Key& at(const std::string& kind) const;
  void set(const std::string& kind, random::Key key) { keys_[kind] = key; }
  bool empty() const { return keys_.empty(); }
  const std::map<std::string, random::Key>& items() const { return keys_; }

 private:
  std::map<std::string, random::Key> keys_;
};

/// A filter over collection names: none (the default), all, a list, or all except a list
/// (Flax's False / True / [..] / DenyList(..)).
class Mutable {
 public:
  Mutable() = default;  // nothing is mutable
  Mutable(std::initializer_list<std::string> cols) : cols_(cols) {}
  Mutable(std::vector<std::string> cols) : cols_(std::move(cols)) {}  // NOLINT
  Mutable(const char* col) : cols_{col} {}                            // NOLINT
  Mutable(std::string col) : cols_{std::move(col)} {}                 // NOLINT

  static Mutable none() { return Mutable(); }
  static Mutable all() { return all_except({}); }
  static Mutable all_except(std::vector<std::string> cols) {
    Mutable m(std::move(cols));
    m.deny_ = true;
    return m;
  }
  /// What init uses unless told otherwise: everything but "intermediates".
  static Mutable init_default() { return all_except({"intermediates"}); }

  bool allows(const std::string& col) const;
  /// This filter with `col` allowed too (Flax's union_filters(filter, col)).
  Mutable with(const std::string& col) const;
  bool allows_nothing() const { return !deny_ && cols_.empty(); }
  /// "nothing", "all", "[batch_stats, cache]", "all except [intermediates]".
  std::string str() const;

 private:
  std::vector<std::string> cols_;
  bool deny_ = false;  // true: every collection except cols_
};

}  // namespace loom::nn

#include "modules/rngs.h"

#include <algorithm>

#include "modules/errors.h"

namespace loom::nn {

Rngs::Rngs(random::Key params_key) : keys_{{"params", params_key}} {}

const random::Key& Rngs::at(const std::string& kind) const {
  auto it = keys_.find(kind);
  if (it == keys_.end()) {
    std::string present;
    for (const auto& [k, v] : keys_) present += (present.empty() ? "" : ", ") + k;
    LOOM_THROW(nn::InvalidRngError, "no rng of kind \"", kind, "\" (given: ",
               present.empty() ? "none" : present, ")");
  }
  return it->second;
}

bool Mutable::allows(const std::string& col) const {
  bool listed = std::find(cols_.begin(), cols_.end(), col) != cols_.end();
  return deny_ ? !listed : listed;
}

Mutable Mutable::with(const std::string& col) const {
  Mutable m = *this;
  if (deny_)
    m.cols_.erase(std::remove(m.cols_.begin(), m.cols_.end(), col), m.cols_.end());
  else if (!allows(col))
    m.cols_.push_back(col);
  return m;
}

std::string Mutable::str() const {
  std::string list = "[";
  for (size_t i = 0; i < cols_.size(); ++i) list += (i ? ", " : "") + cols_[i];
  list += "]";
  if (deny_) return cols_.empty() ? "all" : "all except " + list;
  return cols_.empty() ? "nothing" : list;
}

}  // namespace loom::nn

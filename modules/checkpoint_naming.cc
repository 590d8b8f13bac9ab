#include "modules/checkpoint_naming.h"

#include <algorithm>
#include <map>

namespace loom::nn {
namespace {

/// "Dense_12" -> ("Dense", 12); false for keys without a numeric suffix.
bool split_auto_name(const std::string& key, std::string& cls, int64_t& n) {
  size_t us = key.rfind('_');
  if (us == std::string::npos || us == 0 || us + 1 == key.size()) return false;
  for (size_t i = us + 1; i < key.size(); ++i)
    if (key[i] < '0' || key[i] > '9') return false;
  if (key.size() - us - 1 > 1 && key[us + 1] == '0') return false;  // "x_01" is not an auto-name
  cls = key.substr(0, us);
  n = std::stoll(key.substr(us + 1));
  return true;
}

Tree rename(const Tree& t, const std::string& where) {
  if (t.is_leaf()) return t;
  // New names: per class, in the order of the old (global) numbers.
  struct Auto {
    int64_t n;
    std::string cls, key;
  };
  std::vector<Auto> autos;
  for (const auto& [k, v] : t.items()) {
    std::string cls;
    int64_t n;
    if (v.is_dict() && split_auto_name(k, cls, n)) autos.push_back({n, cls, k});
  }
  std::sort(autos.begin(), autos.end(), [](const Auto& a, const Auto& b) { return a.n < b.n; });
  std::map<std::string, int64_t> next;
  std::map<std::string, std::string> renamed;
  for (const Auto& a : autos) renamed[a.key] = a.cls + "_" + std::to_string(next[a.cls]++);
  Tree out;
  for (const auto& [k, v] : t.items()) {
    auto it = renamed.find(k);
    std::string key = it == renamed.end() ? k : it->second;
    LOOM_CHECK(!out.contains(key), ValueError, "rename_pre_linen: at '", where.empty() ? "(root)" : where,
               "' the new name '", key, "' of '", k, "' collides with another entry");
    out.insert(key, rename(v, where.empty() ? key : where + "/" + key));
  }
  return out;
}

}  // namespace

Tree rename_pre_linen(const Tree& params) { return rename(params, ""); }

}  // namespace loom::nn

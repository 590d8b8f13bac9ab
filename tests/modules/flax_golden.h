// Helpers for comparing loom::nn variables and outputs with tests/golden/flax_modules.json
// (written by scripts/golden/gen_flax_modules.py from real Flax).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/tree.h"
#include "tests/support/testing.h"

namespace loom::testing {

inline const nlohmann::json& flax_golden() {
  static const nlohmann::json j = load_golden("flax_modules.json");
  return j;
}

inline const nlohmann::json& flax_case(const std::string& name) {
  for (const auto& c : flax_golden().at("cases"))
    if (c.at("name") == name) return c;
  throw IOError("flax_modules.json has no case " + name);
}

/// The golden input pattern ((i + offset) * 7919 % 1000) / 500 - 1 as float32.
inline Tensor flax_pattern(const Shape& shape, int64_t offset = 0) {
  std::vector<float> v(size_t(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = float(double(((int64_t(i) + offset) * 7919) % 1000) / 500.0 - 1.0);
  return from_vector(v, shape);
}

/// Compares `actual` with a golden array (full data, or a summary of a large one).
inline ::testing::AssertionResult matches_golden(const Tensor& actual, const nlohmann::json& g,
                                                 double rtol, double atol) {
  Shape shape = g.at("shape").get<Shape>();
  if (actual.shape() != shape)
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.shape())
                                         << " != golden " << shape_str(shape);
  if (g.contains("data")) return allclose(actual, golden_tensor(g), rtol, atol);
  const auto& s = g.at("summary");
  std::vector<double> v = actual.to_vector<double>();
  auto close = [&](double a, double e) { return std::abs(a - e) <= atol + rtol * std::abs(e); };
  std::vector<double> head = s.at("head").get<std::vector<double>>();
  for (size_t i = 0; i < head.size(); ++i)
    if (!close(v[i], head[i]))
      return ::testing::AssertionFailure() << "head[" << i << "]: " << v[i] << " vs " << head[i];
  size_t stride = s.at("stride").get<size_t>();
  std::vector<double> sample = s.at("sample").get<std::vector<double>>();
  for (size_t k = 0; k < sample.size(); ++k)
    if (!close(v[k * stride], sample[k]))
      return ::testing::AssertionFailure()
             << "element " << k * stride << ": " << v[k * stride] << " vs " << sample[k];
  double sum = 0, sum_sq = 0;
  for (double x : v) {
    sum += x;
    sum_sq += x * x;
  }
  double es = s.at("sum").get<double>(), esq = s.at("sum_sq").get<double>();
  double scale = std::sqrt(esq) + 1e-12;
  if (std::abs(sum - es) > 1e-5 * scale * std::sqrt(double(v.size())) + 1e-6 ||
      std::abs(sum_sq - esq) > 1e-5 * esq + 1e-9)
    return ::testing::AssertionFailure() << "sums " << sum << ", " << sum_sq << " vs golden " << es
                                         << ", " << esq;
  return ::testing::AssertionSuccess();
}

/// Every leaf path of `vars` equals the golden's, in Flax's order when `ordered_paths` is given
/// (a json list), and every value matches.
inline ::testing::AssertionResult tree_matches_golden(const Tree& vars, const nlohmann::json& g,
                                                      double rtol, double atol,
                                                      const nlohmann::json* ordered_paths = nullptr) {
  auto flat = vars.flatten();
  std::vector<std::string> paths, golden_paths;
  for (const auto& [p, t] : flat) paths.push_back(p);
  if (ordered_paths) {
    golden_paths = ordered_paths->get<std::vector<std::string>>();
  } else {  // nlohmann::json sorts object keys
    for (const auto& [p, v] : g.items()) golden_paths.push_back(p);
    std::sort(paths.begin(), paths.end());
  }
  if (paths != golden_paths) {
    std::string a, b;
    for (const auto& p : paths) a += p + " ";  // NOLINT
    for (const auto& p : golden_paths) b += p + " ";
    return ::testing::AssertionFailure() << "paths differ:\n  loom:  " << a << "\n  flax:  " << b;
  }
  for (const auto& [p, t] : flat) {
    auto r = matches_golden(t, g.at(p), rtol, atol);
    if (!r) return ::testing::AssertionFailure() << p << ": " << r.message();
  }
  return ::testing::AssertionSuccess();
}

/// A Tree built from golden variables (full data only).
inline Tree golden_tree(const nlohmann::json& g) {
  Tree t;
  for (const auto& [p, v] : g.items()) t.set(p, golden_tensor(v));
  return t;
}

}  // namespace loom::testing

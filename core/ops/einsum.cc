// Two-operand einsum (core/ops/linalg.h) as one dot_general: indices summed within one operand
// first, size-1 dims broadcast against their partner, then a transpose to the output order.
#include <algorithm>
#include <cctype>
#include <map>
#include <string>
#include <vector>

#include "core/ops/linalg.h"
#include "core/ops/product_operands.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"

namespace loom {
namespace {

constexpr int kEllipsisLabel = 1000;  // labels >= this are "..." dims; letters are char codes

struct EinsumTerm {
  std::vector<int> labels;  // -1 marks the ellipsis
  bool ellipsis = false;
};

EinsumTerm parse_term(const std::string& s, const std::string& spec) {
  EinsumTerm t;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 3, "...") == 0) {
      LOOM_CHECK(!t.ellipsis, ValueError, "einsum: '", spec, "' has two '...' in one term");
      t.ellipsis = true;
      t.labels.push_back(-1);
      i += 2;
    } else {
      LOOM_CHECK(std::isalpha(static_cast<unsigned char>(s[i])), ValueError, "einsum: '", spec,
                 "' contains '", s[i], "'; use letters, '...', one ',' and '->'");
      t.labels.push_back(s[i]);
    }
  }
  return t;
}

std::vector<int> expand(const EinsumTerm& t, int64_t ell_rank, int64_t max_rank) {
  std::vector<int> out;
  for (int l : t.labels) {
    if (l != -1) {
      out.push_back(l);
      continue;
    }
    for (int64_t j = 0; j < ell_rank; ++j) out.push_back(kEllipsisLabel + int(max_rank - ell_rank + j));
  }
  return out;
}

std::string label_str(int l) {
  return l >= kEllipsisLabel ? detail::cat("...[", l - kEllipsisLabel, "]") : std::string(1, char(l));
}

int64_t position(const std::vector<int>& labels, int l) {
  auto it = std::find(labels.begin(), labels.end(), l);
  return it == labels.end() ? -1 : int64_t(it - labels.begin());
}

}  // namespace

Tensor einsum(const std::string& spec_in, const Tensor& a_in, const Tensor& b_in) {
  check_product_operands(a_in, b_in, "einsum");
  std::string spec;
  for (char c : spec_in)
    if (!std::isspace(static_cast<unsigned char>(c))) spec += c;
  auto shapes = [&] {
    return detail::cat(" (spec '", spec_in, "', shapes ", shape_str(a_in.shape()), " and ",
                       shape_str(b_in.shape()), ")");
  };
  size_t arrow = spec.find("->");
  std::string lhs = spec.substr(0, arrow);
  size_t comma = lhs.find(',');
  LOOM_CHECK(comma != std::string::npos && lhs.find(',', comma + 1) == std::string::npos,
             ValueError, "einsum: this einsum takes exactly two operands", shapes());
  EinsumTerm ta = parse_term(lhs.substr(0, comma), spec), tb = parse_term(lhs.substr(comma + 1), spec);
  auto ell_rank = [&](const EinsumTerm& t, const Tensor& x) {
    int64_t letters = int64_t(t.labels.size()) - (t.ellipsis ? 1 : 0);
    LOOM_CHECK(t.ellipsis ? x.ndim() >= letters : x.ndim() == letters, ShapeError,
               "einsum: a term has ", letters, " indices for an operand of rank ", x.ndim(), shapes());
    return x.ndim() - letters;
  };
  int64_t ra = ell_rank(ta, a_in), rb = ell_rank(tb, b_in), rmax = std::max(ra, rb);
  std::vector<int> la = expand(ta, ra, rmax), lb = expand(tb, rb, rmax), lo;
  if (arrow != std::string::npos) {
    EinsumTerm to = parse_term(spec.substr(arrow + 2), spec);
    lo = expand(to, rmax, rmax);
  } else {  // numpy's implicit output: broadcast dims, then letters used once, sorted
    for (int64_t j = 0; j < rmax; ++j) lo.push_back(kEllipsisLabel + int(j));
    std::map<int, int> count;
    for (int l : la) count[l]++;
    for (int l : lb) count[l]++;
    for (auto [l, n] : count)
      if (n == 1 && l < kEllipsisLabel) lo.push_back(l);
  }
  for (const auto* labels : {&la, &lb}) {
    for (size_t i = 0; i < labels->size(); ++i)
      if (position(*labels, (*labels)[i]) != int64_t(i))
        LOOM_THROW(NotImplementedError, "einsum: index '", label_str((*labels)[i]),
                   "' repeats within one operand (diagonals are not supported)", shapes());
  }
  for (size_t i = 0; i < lo.size(); ++i) {
    LOOM_CHECK(position(lo, lo[i]) == int64_t(i), ValueError, "einsum: output index '",
               label_str(lo[i]), "' repeats", shapes());
    LOOM_CHECK(position(la, lo[i]) >= 0 || position(lb, lo[i]) >= 0, ValueError,
               "einsum: output index '", label_str(lo[i]), "' is in neither operand", shapes());
  }

  // Shared indices of size 1 on one side broadcast to the other side's size.
  Tensor a = a_in, b = b_in;
  Shape sa = a.shape(), sb = b.shape();
  for (size_t i = 0; i < la.size(); ++i) {
    int64_t j = position(lb, la[i]);
    if (j < 0 || sa[i] == sb[size_t(j)]) continue;
    LOOM_CHECK(sa[i] == 1 || sb[size_t(j)] == 1, ShapeError, "einsum: index '", label_str(la[i]),
               "' has size ", sa[i], " in the first operand and ", sb[size_t(j)],
               " in the second", shapes());
    if (sa[i] == 1) sa[i] = sb[size_t(j)];
    else sb[size_t(j)] = sa[i];
  }
  if (sa != a.shape()) a = broadcast_to(a, sa);
  if (sb != b.shape()) b = broadcast_to(b, sb);

  // Indices in one operand only and not in the output are summed away first.
  auto sum_private = [&](Tensor& x, std::vector<int>& labels, const std::vector<int>& other) {
    Axes axes;
    std::vector<int> kept;
    for (size_t i = 0; i < labels.size(); ++i) {
      if (position(other, labels[i]) < 0 && position(lo, labels[i]) < 0) axes.push_back(int64_t(i));
      else kept.push_back(labels[i]);
    }
    if (!axes.empty()) {
      x = sum(x, axes);
      labels = kept;
    }
  };
  sum_private(a, la, lb);
  sum_private(b, lb, la);

  DotDims dims;
  std::vector<int> result;  // labels of dot_general's output
  for (int l : lo) {
    if (position(la, l) >= 0 && position(lb, l) >= 0) {
      dims.lhs_batch.push_back(position(la, l));
      dims.rhs_batch.push_back(position(lb, l));
      result.push_back(l);
    }
  }
  for (size_t i = 0; i < la.size(); ++i) {
    int64_t j = position(lb, la[i]);
    if (j >= 0 && position(lo, la[i]) < 0) {
      dims.lhs_contracting.push_back(int64_t(i));
      dims.rhs_contracting.push_back(j);
    }
  }
  for (int l : la)
    if (position(lb, l) < 0) result.push_back(l);
  for (int l : lb)
    if (position(la, l) < 0) result.push_back(l);
  Tensor r = dot_general(a, b, dims);
  Axes perm;
  for (int l : lo) perm.push_back(position(result, l));
  return transpose(r, perm);
}

}  // namespace loom

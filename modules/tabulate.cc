#include "modules/tabulate.h"

#include <algorithm>

#include "core/format.h"

namespace loom::nn::detail {
namespace {

std::string describe_leaf(const std::string& name, const Tensor& t) {
  std::string s = name;
  s += ": ";
  s += describe(t);
  return s;
}

struct Totals {
  int64_t count = 0;
  size_t bytes = 0;
};

/// The variables a module holds directly (not its children's) in one collection.
std::vector<std::string> own_variables(const Tree& variables, const std::string& col,
                                       const std::vector<std::string>& path, Totals& totals) {
  std::vector<std::string> lines;
  if (!variables.contains(col)) return lines;
  const Tree* node = &variables[col];
  for (const auto& p : path) {
    if (!node->is_dict() || !node->contains(p)) return lines;
    node = &(*node)[p];
  }
  if (!node->is_dict()) return lines;
  Totals own;
  for (const auto& [k, v] : node->items()) {
    if (!v.is_leaf()) continue;
    lines.push_back(describe_leaf(k, v.tensor()));
    own.count += v.tensor().numel();
    own.bytes += v.tensor().nbytes();
  }
  if (!lines.empty()) {
    lines.push_back("");
    std::string count = with_commas(own.count);
    count += " (";
    count += human_bytes(double(own.bytes));
    count += ')';
    lines.push_back(count);
    totals.count += own.count;
    totals.bytes += own.bytes;
  }
  return lines;
}

}  // namespace

std::string format_table(const std::string& title, const std::vector<CallRecord>& records,
                         const Tree& variables) {
  std::vector<std::string> cols;  // collections, params first (as Flax)
  if (variables.contains("params")) cols.push_back("params");
  for (const auto& k : variables.keys())
    if (k != "params") cols.push_back(k);

  std::vector<std::string> header{"path", "module", "inputs", "outputs"};
  header.insert(header.end(), cols.begin(), cols.end());
  std::vector<std::vector<std::vector<std::string>>> rows;  // row -> column -> lines
  std::vector<Totals> totals(cols.size());
  std::vector<std::vector<std::string>> seen;  // a module's variables are shown once
  for (const CallRecord& r : records) {
    std::string path;
    for (const auto& p : r.path) {
      if (!path.empty()) path += '/';
      path += p;
    }
    std::vector<std::vector<std::string>> row{{path}, {r.type}, {r.inputs}, {r.outputs}};
    bool first = std::find(seen.begin(), seen.end(), r.path) == seen.end();
    if (first) seen.push_back(r.path);
    for (size_t c = 0; c < cols.size(); ++c)
      row.push_back(first ? own_variables(variables, cols[c], r.path, totals[c])
                          : std::vector<std::string>{});
    rows.push_back(std::move(row));
  }
  std::vector<size_t> width(header.size());
  for (size_t c = 0; c < header.size(); ++c) width[c] = header[c].size();
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size(); ++c)
      for (const auto& line : row[c]) width[c] = std::max(width[c], line.size());

  // Appends one cell: " text<padding> ", after a '|' for all but the first column.
  auto cell = [&](std::string& out, size_t c, const std::string& text) {
    if (c) out += '|';
    out += ' ';
    out += text;
    out.append(width[c] - text.size() + 1, ' ');
  };
  auto rule = [&](std::string& out, char fill) {
    for (size_t c = 0; c < width.size(); ++c) {
      if (c) out += '+';
      out.append(width[c] + 2, fill);
    }
    out += '\n';
  };
  std::string out = title;
  out += '\n';
  rule(out, '=');
  for (size_t c = 0; c < header.size(); ++c) cell(out, c, header[c]);
  out += '\n';
  rule(out, '=');
  for (const auto& row : rows) {
    size_t height = 1;
    for (const auto& cell : row) height = std::max(height, cell.size());
    for (size_t line = 0; line < height; ++line) {
      for (size_t c = 0; c < row.size(); ++c)
        cell(out, c, line < row[c].size() ? row[c][line] : std::string());
      out += '\n';
    }
    rule(out, '-');
  }
  for (size_t c = 0; c < cols.size(); ++c) {
    out += "Total ";
    out += cols[c];
    out += ": ";
    out += with_commas(totals[c].count);
    out += " (";
    out += human_bytes(double(totals[c].bytes));
    out += ")\n";
  }
  std::string trimmed;  // no trailing blanks after the last column
  for (char c : out) {
    if (c == '\n')
      while (!trimmed.empty() && trimmed.back() == ' ') trimmed.pop_back();
    trimmed += c;
  }
  return trimmed;
}

}  // namespace loom::nn::detail

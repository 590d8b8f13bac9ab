#include "core/tree.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "core/format.h"

namespace loom {
namespace {

std::string join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : prefix + "/" + key;
}

std::string shown(const std::string& path) { return path.empty() ? "(root)" : "'" + path + "'"; }

std::string key_list(const std::vector<Tree::Entry>& children) {
  if (children.empty()) return "(none)";
  std::string out;
  for (const auto& [k, v] : children) out += (out.empty() ? "" : ", ") + k;
  return out;
}

void check_key(const std::string& key, const char* op) {
  LOOM_CHECK(!key.empty() && key.find('/') == std::string::npos, ValueError, op, ": invalid key '",
             key, "' (keys must be non-empty and may not contain '/')");
}

std::vector<std::string> split_path(const std::string& path, const char* op) {
  std::vector<std::string> parts;
  if (path.empty()) return parts;
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    std::string part = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    LOOM_CHECK(!part.empty(), ValueError, op, ": path '", path, "' has an empty part");
    parts.push_back(std::move(part));
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return parts;
}

const Tree* find_child(const std::vector<Tree::Entry>& children, const std::string& key,
                       size_t hint = 0) {
  // Trees of one structure are usually built in one order: try the same position first.
  if (hint < children.size() && children[hint].first == key) return &children[hint].second;
  for (const auto& [k, v] : children)
    if (k == key) return &v;
  return nullptr;
}

// Whether a and b have the same structure, without building any path (the common case).
bool same_keys(const Tree& a, const Tree& b) {
  if (a.is_leaf() || b.is_leaf()) return a.is_leaf() == b.is_leaf();
  const auto &ea = a.items(), &eb = b.items();
  if (ea.size() != eb.size()) return false;
  for (size_t i = 0; i < ea.size(); ++i) {
    const Tree* other = find_child(eb, ea[i].first, i);
    if (!other || !same_keys(ea[i].second, *other)) return false;
  }
  return true;
}

void leaves_into(const Tree& t, std::vector<Tensor>& out) {
  if (t.is_leaf()) {
    out.push_back(t.tensor());
    return;
  }
  for (const auto& [k, child] : t.items()) leaves_into(child, out);
}

// The first path where a and b differ in structure ("" when they agree); `where` is the path of
// a and b themselves. `why` says what differs there.
bool first_diff(const Tree& a, const Tree& b, const std::string& where, std::string& path,
                std::string& why, const std::string& other_name = "second tree") {
  if (a.is_leaf() != b.is_leaf()) {
    path = where;
    why = a.is_leaf() ? "a leaf in the first tree, a dict in the " + other_name
                      : "a dict in the first tree, a leaf in the " + other_name;
    return true;
  }
  if (a.is_leaf()) return false;
  for (const auto& [k, child] : a.items()) {
    const Tree* other = find_child(b.items(), k);
    if (!other) {
      path = join(where, k);
      why = "present in the first tree, missing in the " + other_name;
      return true;
    }
    if (first_diff(child, *other, join(where, k), path, why, other_name)) return true;
  }
  for (const auto& [k, child] : b.items()) {
    if (!find_child(a.items(), k)) {
      path = join(where, k);
      why = "missing in the first tree, present in the " + other_name;
      return true;
    }
  }
  return false;
}

void check_same_structure(const Tree& a, const Tree& b, const char* op, const char* which) {
  if (same_keys(a, b)) return;
  std::string path, why;
  if (first_diff(a, b, "", path, why, which))
    LOOM_THROW(ShapeError, op, ": the first tree and the ", which,
               " differ in structure; first difference at ", shown(path), " (", why, ")");
}

void flatten_into(const Tree& t, const std::string& prefix,
                  std::vector<std::pair<std::string, Tensor>>& out) {
  if (t.is_leaf()) {
    out.emplace_back(prefix, t.tensor());
    return;
  }
  for (const auto& [k, child] : t.items()) flatten_into(child, join(prefix, k), out);
}

Tree unflatten_from(const Tree& t, const std::vector<Tensor>& leaves, size_t& next) {
  if (t.is_leaf()) return Tree(leaves[next++]);
  Tree out;
  for (const auto& [k, child] : t.items()) out.insert(k, unflatten_from(child, leaves, next));
  return out;
}

// Walks `a` and pairs every leaf with the leaves at the same path in `others`.
Tree map_paired(const std::function<Tensor(const std::vector<const Tensor*>&)>& f, const Tree& a,
                const std::vector<const Tree*>& others) {
  if (a.is_leaf()) {
    std::vector<const Tensor*> args{&a.tensor()};
    for (const Tree* o : others) args.push_back(&o->tensor());
    return Tree(f(args));
  }
  Tree out;
  std::vector<const Tree*> sub(others.size());
  const auto& entries = a.items();
  for (size_t j = 0; j < entries.size(); ++j) {
    for (size_t i = 0; i < others.size(); ++i)
      sub[i] = find_child(others[i]->items(), entries[j].first, j);
    out.insert(entries[j].first, map_paired(f, entries[j].second, sub));
  }
  return out;
}

}  // namespace

Tree::Tree(Tensor leaf) : leaf_(std::move(leaf)) {
  LOOM_CHECK(leaf_.defined(), ValueError,
             "Tree: a leaf must be a defined tensor (got an undefined Tensor)");
}

const std::vector<Tree::Entry>& Tree::entries() const {
  static const std::vector<Entry> none;
  return children_ ? *children_ : none;
}

std::vector<Tree::Entry>& Tree::own_entries() {
  if (!children_) children_ = std::make_shared<std::vector<Entry>>();
  else if (children_.use_count() > 1) children_ = std::make_shared<std::vector<Entry>>(*children_);
  else std::atomic_thread_fence(std::memory_order_acquire);  // after the last other owner let go
  return *children_;
}

Tree::Tree(const Tree& other) : leaf_(other.leaf_), children_(other.children_) {
  if (other.exposed_ && children_) children_ = std::make_shared<std::vector<Entry>>(*children_);
}

Tree& Tree::operator=(const Tree& other) {
  if (this != &other) *this = Tree(other);  // `other` may live inside this tree
  return *this;
}

const Tensor& Tree::tensor() const {
  LOOM_CHECK(is_leaf(), ValueError, "Tree::tensor: this node is a dict with keys [",
             key_list(entries()), "], not a leaf");
  return leaf_;
}

const std::vector<Tree::Entry>& Tree::items() const {
  LOOM_CHECK(is_dict(), ValueError, "Tree::items: this node is a leaf of shape ",
             shape_str(leaf_.shape()), ", not a dict");
  return entries();
}

std::vector<std::string> Tree::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : items()) out.push_back(k);
  return out;
}

bool Tree::contains(const std::string& key) const {
  return is_dict() && find_child(entries(), key) != nullptr;
}

const Tree& Tree::operator[](const std::string& key) const {
  const Tree* child = find_child(items(), key);
  LOOM_CHECK(child, IndexError, "Tree: no key '", key, "' (keys present: ", key_list(entries()),
             ")");
  return *child;
}

Tree& Tree::operator[](const std::string& key) {
  LOOM_CHECK(is_dict(), ValueError, "Tree[\"", key, "\"]: this node is a leaf of shape ",
             shape_str(leaf_.shape()), ", not a dict");
  exposed_ = true;  // the caller may keep the reference: copies must not share this dict now
  return child_for_write(key, "Tree[]");
}

Tree& Tree::child_for_write(const std::string& key, const char* op) {
  std::vector<Entry>& children = own_entries();
  for (auto& [k, v] : children)
    if (k == key) return v;
  check_key(key, op);
  children.emplace_back(key, Tree());
  return children.back().second;
}

void Tree::insert(const std::string& key, Tree value) {
  check_key(key, "Tree::insert");
  LOOM_CHECK(is_dict(), ValueError, "Tree::insert('", key, "'): this node is a leaf of shape ",
             shape_str(leaf_.shape()), ", not a dict");
  std::vector<Entry>& children = own_entries();
  for (auto& [k, v] : children) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  children.emplace_back(key, std::move(value));
}

bool Tree::erase(const std::string& key) {
  if (!contains(key)) return false;
  std::vector<Entry>& children = own_entries();
  children.erase(std::find_if(children.begin(), children.end(),
                              [&](const Entry& e) { return e.first == key; }));
  return true;
}

bool Tree::has_path(const std::string& path) const {
  const Tree* node = this;
  for (const std::string& part : split_path(path, "Tree::has_path")) {
    if (!node->is_dict()) return false;
    node = find_child(node->entries(), part);
    if (!node) return false;
  }
  return true;
}

const Tree& Tree::at(const std::string& path) const {
  const Tree* node = this;
  std::string where;
  for (const std::string& part : split_path(path, "Tree::at")) {
    LOOM_CHECK(node->is_dict(), IndexError, "Tree::at('", path, "'): ", shown(where),
               " is a leaf of shape ", shape_str(node->leaf_.shape()), ", so it has no key '",
               part, "'");
    const Tree* child = find_child(node->entries(), part);
    LOOM_CHECK(child, IndexError, "Tree::at('", path, "'): no key '", part, "' in ", shown(where),
               " (keys present: ", key_list(node->entries()), ")");
    node = child;
    where = join(where, part);
  }
  return *node;
}

void Tree::set(const std::string& path, Tree value) {
  std::vector<std::string> parts = split_path(path, "Tree::set");
  LOOM_CHECK(!parts.empty(), ValueError, "Tree::set: empty path");
  Tree* node = this;
  std::string where;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    LOOM_CHECK(node->is_dict(), ValueError, "Tree::set('", path, "'): ", shown(where),
               " is a leaf of shape ", shape_str(node->leaf_.shape()), ", not a dict");
    node = &node->child_for_write(parts[i], "Tree::set");
    where = join(where, parts[i]);
  }
  LOOM_CHECK(node->is_dict(), ValueError, "Tree::set('", path, "'): ", shown(where),
             " is a leaf of shape ", shape_str(node->leaf_.shape()), ", not a dict");
  node->insert(parts.back(), std::move(value));
}

bool Tree::erase_path(const std::string& path) {
  std::vector<std::string> parts = split_path(path, "Tree::erase_path");
  if (parts.empty()) return false;
  Tree* node = this;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    if (!node->contains(parts[i])) return false;
    node = &node->child_for_write(parts[i], "Tree::erase_path");  // unshared: changed below
  }
  return node->erase(parts.back());
}

std::vector<std::pair<std::string, Tensor>> Tree::flatten() const {
  std::vector<std::pair<std::string, Tensor>> out;
  flatten_into(*this, "", out);
  return out;
}

std::vector<Tensor> Tree::leaves() const {
  std::vector<Tensor> out;
  leaves_into(*this, out);
  return out;
}

Tree Tree::unflatten(const std::vector<Tensor>& leaves) const {
  size_t want = leaf_count();
  LOOM_CHECK(leaves.size() == want, ValueError, "Tree::unflatten: the tree has ", want,
             " leaves but ", leaves.size(), " tensors were given");
  size_t next = 0;
  return unflatten_from(*this, leaves, next);
}

size_t Tree::leaf_count() const {
  if (is_leaf()) return 1;
  size_t n = 0;
  for (const auto& [k, child] : entries()) n += child.leaf_count();
  return n;
}

int64_t Tree::total_size() const {
  if (is_leaf()) return leaf_.numel();
  int64_t n = 0;
  for (const auto& [k, child] : entries()) n += child.total_size();
  return n;
}

bool Tree::same_structure(const Tree& other) const { return same_keys(*this, other); }

std::string Tree::first_difference(const Tree& other) const {
  if (same_keys(*this, other)) return "";
  std::string path, why;
  if (!first_diff(*this, other, "", path, why)) return "";
  return path.empty() ? "(root)" : path;
}

std::string Tree::summary() const {
  struct Row {
    std::string path, shape, dtype, count;
  };
  std::vector<Row> rows;
  int64_t total = 0;
  double bytes = 0;
  for (const auto& [path, leaf] : flatten()) {
    rows.push_back({path.empty() ? "(root)" : path, shape_str(leaf.shape()),
                    std::string(dtype_name(leaf.dtype())), with_commas(leaf.numel())});
    total += leaf.numel();
    bytes += double(leaf.nbytes());
  }
  Row header{"path", "shape", "dtype", "count"};
  size_t w[4] = {header.path.size(), header.shape.size(), header.dtype.size(), header.count.size()};
  for (const Row& r : rows) {
    w[0] = std::max(w[0], r.path.size());
    w[1] = std::max(w[1], r.shape.size());
    w[2] = std::max(w[2], r.dtype.size());
    w[3] = std::max(w[3], r.count.size());
  }
  auto pad = [](const std::string& s, size_t width, bool right) {
    std::string fill(width - s.size(), ' ');
    return right ? fill + s : s + fill;
  };
  auto line = [&](const Row& r) {
    return pad(r.path, w[0], false) + "  " + pad(r.shape, w[1], false) + "  " +
           pad(r.dtype, w[2], false) + "  " + pad(r.count, w[3], true) + "\n";
  };
  std::string out = line(header);
  out += std::string(w[0] + w[1] + w[2] + w[3] + 6, '-') + "\n";
  for (const Row& r : rows) out += line(r);
  size_t n = rows.size();
  out += "total: " + with_commas(int64_t(n)) + (n == 1 ? " leaf, " : " leaves, ") +
         with_commas(total) + (total == 1 ? " element, " : " elements, ") + human_bytes(bytes) +
         "\n";
  return out;
}

Tree tree_map(const std::function<Tensor(const Tensor&)>& f, const Tree& t) {
  return map_paired([&](const std::vector<const Tensor*>& x) { return f(*x[0]); }, t, {});
}

Tree tree_map(const std::function<Tensor(const Tensor&, const Tensor&)>& f, const Tree& a,
              const Tree& b) {
  check_same_structure(a, b, "tree_map", "second tree");
  return map_paired([&](const std::vector<const Tensor*>& x) { return f(*x[0], *x[1]); }, a, {&b});
}

Tree tree_map(const std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>& f,
              const Tree& a, const Tree& b, const Tree& c) {
  check_same_structure(a, b, "tree_map", "second tree");
  check_same_structure(a, c, "tree_map", "third tree");
  return map_paired(
      [&](const std::vector<const Tensor*>& x) { return f(*x[0], *x[1], *x[2]); }, a, {&b, &c});
}

bool tree_allclose(const Tree& a, const Tree& b, double rtol, double atol) {
  if (!a.same_structure(b)) return false;
  for (const auto& [path, x] : a.flatten()) {
    const Tensor& y = b.at(path).tensor();
    if (x.shape() != y.shape()) return false;
    std::vector<double> xv = x.to_vector<double>(), yv = y.to_vector<double>();
    for (size_t i = 0; i < xv.size(); ++i) {
      double p = xv[i], q = yv[i];
      if (std::isnan(p) || std::isnan(q)) {
        if (std::isnan(p) != std::isnan(q)) return false;
      } else if (std::isinf(p) || std::isinf(q)) {
        if (p != q) return false;
      } else if (std::abs(p - q) > atol + rtol * std::abs(q)) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace loom

// Tree: a nested, insertion-ordered, string-keyed dictionary with Tensor leaves — Flax's
// variables dict ({"params": {"Dense_0": {"kernel": ...}}}), gradients, optimizer state.
// Paths join keys with '/': "params/Dense_0/kernel" (also the checkpoint key), so a key may
// not be empty or contain '/'. A Tree is a value: copying it copies the structure and shares the
// leaves' storage (tensors are values too).
//
// Structure: two trees have the same structure when their dicts hold the same key sets and their
// leaves sit at the same paths, as in JAX, where dict keys are sorted, so the order of insertion
// does not matter. Several-tree maps pair leaves by path; leaf shapes are not part of the
// structure. flatten()/leaves() and unflatten() use this tree's insertion order.
//
// Copies share their dicts until one of them is changed (copy on write), so passing a model's
// or optimizer's state around, as a training step does every call, costs no deep copy. A dict
// that has handed out a mutable reference to a child (non-const operator[]) is copied when its
// tree is copied instead, so a reference kept across a copy changes only its own tree.
//
// Example:
//   Tree vars;
//   vars.set("params/Dense_0/kernel", zeros({3, 4}));
//   Tree grads = tree_map([](const Tensor& p) { return zeros_like(p); }, vars);
//   for (auto& [path, leaf] : vars.flatten()) std::cout << path << " " << shape_str(leaf.shape());
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace loom {

class Tree {
 public:
  using Entry = std::pair<std::string, Tree>;

  Tree() = default;  // an empty dict
  /// A leaf; throws ValueError for an undefined tensor.
  Tree(Tensor leaf);  // NOLINT: a leaf converts implicitly, as a JAX leaf does
  Tree(const Tree& other);
  Tree& operator=(const Tree& other);
  Tree(Tree&&) noexcept = default;
  Tree& operator=(Tree&&) noexcept = default;
  static Tree dict() { return Tree(); }

  bool is_leaf() const { return leaf_.defined(); }
  bool is_dict() const { return !is_leaf(); }
  bool empty() const { return is_dict() && entries().empty(); }
  /// The leaf tensor; throws ValueError if this node is a dict.
  const Tensor& tensor() const;

  // --- dict access (this node must be a dict) ---
  const std::vector<Entry>& items() const;
  std::vector<std::string> keys() const;
  bool contains(const std::string& key) const;  // a direct child key
  /// Child by key; throws IndexError naming the key and the keys present.
  const Tree& operator[](const std::string& key) const;
  /// Child by key, inserted as an empty dict at the end when absent.
  Tree& operator[](const std::string& key);
  /// Sets a direct child (replacing in place, keeping its position, or appending). Keys must be
  /// non-empty and free of '/' (ValueError).
  void insert(const std::string& key, Tree value);
  bool erase(const std::string& key);  // false when absent
  size_t size() const { return entries().size(); }

  // --- path access ("a/b/c"; "" is this node) ---
  bool has_path(const std::string& path) const;
  /// Throws IndexError naming the missing part, where it was looked for and the keys there.
  const Tree& at(const std::string& path) const;
  /// Sets a leaf or subtree at `path`, creating intermediate dicts (ValueError when a part of the
  /// path is a leaf).
  void set(const std::string& path, Tree value);
  /// Removes the node at `path` (a leaf or subtree); false when absent.
  bool erase_path(const std::string& path);

  /// All leaves depth-first in insertion order with their paths (a root leaf has path "").
  std::vector<std::pair<std::string, Tensor>> flatten() const;
  std::vector<Tensor> leaves() const;
  /// Rebuilds a tree of this tree's structure from leaves in flatten() order (ValueError when
  /// the count differs).
  Tree unflatten(const std::vector<Tensor>& leaves) const;
  size_t leaf_count() const;
  int64_t total_size() const;  // sum of element counts
  bool same_structure(const Tree& other) const;
  /// Path where the structures of the two trees first differ, walking this tree in insertion
  /// order and then the keys only `other` has: "" when they agree, "(root)" when one root is a
  /// leaf and the other a dict.
  std::string first_difference(const Tree& other) const;

  /// Table of path, shape, dtype and element count per leaf, then a totals line
  /// ("total: 3 leaves, 1,234 elements, 4.82 KiB").
  std::string summary() const;

 private:
  const std::vector<Entry>& entries() const;  // the dict's entries (none for a leaf)
  std::vector<Entry>& own_entries();          // the same, unshared first: about to change
  /// The child at `key` (an empty dict appended when absent) of this dict, unshared, for a
  /// change made before returning to the caller (no reference escapes: not exposed).
  Tree& child_for_write(const std::string& key, const char* op);

  Tensor leaf_;
  std::shared_ptr<std::vector<Entry>> children_;  // null: no entries; shared between copies
  bool exposed_ = false;  // a mutable reference into children_ was handed out: copies copy it
};

/// f applied to every leaf.
Tree tree_map(const std::function<Tensor(const Tensor&)>& f, const Tree& t);
/// f applied leafwise to trees of the same structure; a mismatch throws ShapeError naming the
/// first differing path.
Tree tree_map(const std::function<Tensor(const Tensor&, const Tensor&)>& f, const Tree& a,
              const Tree& b);
Tree tree_map(const std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>& f,
              const Tree& a, const Tree& b, const Tree& c);
/// Same structure, equal leaf shapes and every leaf allclose: |a-b| <= atol + rtol|b| compared in
/// float64 on the host, whatever the dtypes; NaN matches NaN, infinities must be equal.
bool tree_allclose(const Tree& a, const Tree& b, double rtol = 1e-5, double atol = 1e-8);

}  // namespace loom

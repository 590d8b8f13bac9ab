// safetensors (huggingface/safetensors) reader and writer: the checkpoint format of loom.
//
// Layout: u64 little-endian header size N, N bytes of UTF-8 JSON padded with spaces to a multiple
// of 8, then the data section. The header maps each name to {"dtype", "shape", "data_offsets":
// [begin, end)} (offsets relative to the data section) plus an optional "__metadata__"
// string->string map. Loading enforces the reference implementation's rules: header at most
// 100 MB, offsets contiguous and covering the data section exactly, end - begin equal to
// numel * dtype size (overflow checked), no duplicate names, no trailing bytes. Every violation
// is a FormatError naming the file and what was expected.
//
// Example:
//   save_safetensors("w.safetensors", {{"kernel", k}, {"bias", b}}, {{"format", "loom"}});
//   SafetensorsFile f = load_safetensors("w.safetensors");
//   Tensor k2 = f.at("kernel");
//   save_tree_safetensors("vars.safetensors", variables);   // names "params/Dense_0/kernel", ...
//   Tree vars = load_tree_safetensors("vars.safetensors");
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "core/tree.h"

namespace loom::train {

/// Largest header accepted (the reference implementation's MAX_HEADER_SIZE).
inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

/// "F32", "BF16", ... for the dtypes loom has; inverse throws FormatError for other names.
std::string safetensors_dtype_name(DType dtype);

/// One tensor's header entry.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;  // byte offsets within the data section
};

/// A validated header: entries in header order, metadata, and where the data section starts.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + N
  uint64_t data_size = 0;
};

struct SafetensorsFile {
  std::vector<std::pair<std::string, Tensor>> tensors;  // header order; CPU, contiguous
  std::map<std::string, std::string> metadata;

  bool contains(const std::string& name) const;
  /// The named tensor; IndexError listing the names present when absent.
  const Tensor& at(const std::string& name) const;
  std::vector<std::string> names() const;
};

/// Writes atomically (write_file_atomic). Tensors may live on any device and be non-contiguous.
/// Data is laid out by descending dtype size (so every tensor is aligned for zero-copy readers),
/// keeping the given order within a size; the header lists names in the given order.
/// ValueError for duplicate or reserved ("__metadata__") names and undefined tensors.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
/// The same bytes save_safetensors writes.
std::vector<uint8_t> safetensors_to_bytes(
    const std::vector<std::pair<std::string, Tensor>>& tensors,
    const std::map<std::string, std::string>& metadata = {});

/// Reads and validates the whole file. IOError when it cannot be read, FormatError when it is not
/// a valid safetensors file.
SafetensorsFile load_safetensors(const std::string& path);
/// The header alone (names, dtypes, shapes), validated against the file size, without the data.
SafetensorsHeader read_safetensors_header(const std::string& path);
/// Parses an in-memory file; `origin` names it in errors.
SafetensorsFile safetensors_from_bytes(const std::vector<uint8_t>& bytes, const std::string& origin);

/// Every leaf of `tree` under its '/'-joined path (Flax state-dict naming). Empty subtrees have
/// no leaves and are not stored.
void save_tree_safetensors(const std::string& path, const Tree& tree,
                           const std::map<std::string, std::string>& metadata = {});
/// Rebuilds the tree from '/'-joined names in header order. FormatError for names with empty
/// segments or a name that is both a leaf and a prefix of another.
Tree load_tree_safetensors(const std::string& path);
/// Builds a tree from named tensors as load_tree_safetensors does (`origin` names the source).
Tree tree_from_named_tensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::string& origin);

}  // namespace loom::train

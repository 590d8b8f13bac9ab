#include "train/io/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <ostream>
#include <set>
#include <sstream>
#include <tuple>

#include "train/io/atomic_file.h"
#include "train/io/utf8.h"

namespace loom::train {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; loom assumes a little-endian host");

namespace {

using ojson = nlohmann::ordered_json;

constexpr DType kAllDTypes[] = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32,
                                DType::I64, DType::U8,  DType::U32,  DType::Bool};

DType dtype_from_safetensors_name(const std::string& name, const std::string& origin,
                                  const std::string& tensor) {
  for (DType t : kAllDTypes)
    if (safetensors_dtype_name(t) == name) return t;
  LOOM_THROW(FormatError, origin, ": tensor '", tensor, "' has dtype '", name,
             "', expected one of F32 F64 BF16 F16 I32 I64 U8 U32 BOOL");
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Number of bytes of the 8-byte prefix plus header, validated against the file size.
uint64_t checked_header_size(const uint8_t* prefix, uint64_t file_size, const std::string& origin) {
  uint64_t n = read_le64(prefix);
  if (n > kSafetensorsMaxHeader)
    LOOM_THROW(FormatError, origin, ": safetensors header size ", n, " is larger than the limit of ",
               kSafetensorsMaxHeader, " bytes (not a safetensors file, or corrupt)");
  if (n > file_size - 8)
    LOOM_THROW(FormatError, origin, ": safetensors header size ", n,
               " is larger than the rest of the file (", file_size - 8, " bytes): truncated or corrupt");
  return n;
}

void check_file_size_for_prefix(uint64_t file_size, const std::string& origin) {
  if (file_size < 8)
    LOOM_THROW(FormatError, origin, ": safetensors header too small: the file has ", file_size,
               " bytes, expected at least 8 (the header size)");
}

uint64_t json_uint(const ojson& j, const std::string& origin, const std::string& tensor,
                   const char* field) {
  if (!j.is_number_unsigned())
    LOOM_THROW(FormatError, origin, ": tensor '", tensor, "': ", field,
               " must hold non-negative integers, got ", j.dump());
  return j.get<uint64_t>();
}

// Parses and validates the JSON header against a data section of `data_size` bytes.
SafetensorsHeader parse_header(const uint8_t* text, uint64_t n, uint64_t data_size,
                               const std::string& origin) {
  if (size_t bad = utf8_invalid_offset(text, size_t(n)); bad != size_t(-1))
    LOOM_THROW(FormatError, origin, ": safetensors header is not valid UTF-8 (bad byte at header offset ",
               bad, ")");
  // Tracks keys per open object so duplicate names are rejected (JSON parsers keep one silently),
  // and bounds nesting: a valid header is at most 3 levels deep.
  std::vector<std::set<std::string>> open_keys;
  auto callback = [&](int depth, ojson::parse_event_t event, ojson& parsed) {
    if (depth > 3)
      LOOM_THROW(FormatError, origin, ": safetensors header nests deeper than a header can");
    switch (event) {
      case ojson::parse_event_t::object_start: open_keys.emplace_back(); break;
      case ojson::parse_event_t::object_end: open_keys.pop_back(); break;
      case ojson::parse_event_t::key: {
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!open_keys.back().insert(k).second)
          LOOM_THROW(FormatError, origin, ": safetensors header has duplicate key '", k, "'");
        break;
      }
      default: break;
    }
    return true;
  };
  ojson header;
  try {
    header = ojson::parse(text, text + n, callback);
  } catch (const nlohmann::json::exception& e) {
    LOOM_THROW(FormatError, origin, ": safetensors header is not valid JSON: ", e.what());
  }
  if (!header.is_object())
    LOOM_THROW(FormatError, origin, ": safetensors header must be a JSON object, got ",
               header.type_name());

  SafetensorsHeader out;
  out.data_start = 8 + n;
  out.data_size = data_size;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object())
        LOOM_THROW(FormatError, origin, ": __metadata__ must be an object of strings, got ",
                   info.type_name());
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string())
          LOOM_THROW(FormatError, origin, ": __metadata__ value of '", k, "' must be a string, got ",
                     v.type_name());
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    if (!info.is_object())
      LOOM_THROW(FormatError, origin, ": tensor '", name,
                 "' must be an object with dtype, shape and data_offsets, got ", info.type_name());
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!info.contains(field))
        LOOM_THROW(FormatError, origin, ": tensor '", name, "' has no '", field, "'");
    const ojson& dt = info["dtype"];
    const ojson& shape = info["shape"];
    const ojson& offsets = info["data_offsets"];
    if (!dt.is_string())
      LOOM_THROW(FormatError, origin, ": tensor '", name, "': dtype must be a string");
    if (!shape.is_array())
      LOOM_THROW(FormatError, origin, ": tensor '", name, "': shape must be an array");
    if (!offsets.is_array() || offsets.size() != 2)
      LOOM_THROW(FormatError, origin, ": tensor '", name,
                 "': data_offsets must be an array [begin, end]");

    SafetensorsEntry e;
    e.name = name;
    e.dtype = dtype_from_safetensors_name(dt.get<std::string>(), origin, name);
    uint64_t numel = 1;
    for (const ojson& d : shape) {
      uint64_t dim = json_uint(d, origin, name, "shape");
      if (dim > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel) ||
          numel > uint64_t(INT64_MAX))
        LOOM_THROW(FormatError, origin, ": tensor '", name, "': shape ", shape.dump(),
                   " overflows the element count");
      e.shape.push_back(int64_t(dim));
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(e.dtype)), &nbytes))
      LOOM_THROW(FormatError, origin, ": tensor '", name, "': shape ", shape.dump(),
                 " overflows the byte count");
    e.begin = json_uint(offsets[0], origin, name, "data_offsets");
    e.end = json_uint(offsets[1], origin, name, "data_offsets");
    if (e.end < e.begin)
      LOOM_THROW(FormatError, origin, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                 "] end before begin");
    if (e.end > data_size)
      LOOM_THROW(FormatError, origin, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                 "] out of range: the data section has ", data_size, " bytes");
    if (e.end - e.begin != nbytes)
      LOOM_THROW(FormatError, origin, ": tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                 "] span ", e.end - e.begin, " bytes, expected ", nbytes, " for shape ",
                 shape_str(e.shape), " of ", safetensors_dtype_name(e.dtype));
    out.entries.push_back(std::move(e));
  }

  // The tensors must tile the data section: sorted by offset, each starts where the previous
  // ended, and the last ends at the end of the file (no gaps, no sharing, no trailing bytes).
  std::vector<size_t> order(out.entries.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& x = out.entries[a];
    const auto& y = out.entries[b];
    return std::tie(x.begin, x.end) < std::tie(y.begin, y.end);
  });
  uint64_t expected = 0;
  for (size_t i : order) {
    const auto& e = out.entries[i];
    if (e.begin != expected)
      LOOM_THROW(FormatError, origin, ": tensor '", e.name, "' starts at data offset ", e.begin,
                 ", expected ", expected, e.begin < expected ? " (overlaps the previous tensor)"
                                                            : " (gap after the previous tensor)");
    expected = e.end;
  }
  if (expected != data_size)
    LOOM_THROW(FormatError, origin, ": the tensors cover ", expected,
               " bytes of the data section but it has ", data_size, " bytes (", data_size - expected,
               " trailing bytes)");
  return out;
}

// Bytes on disk are untrusted: any non-zero byte of a bool tensor becomes true (a C++ bool
// holding another value is undefined behaviour).
void normalize_bools(Tensor& t) {
  if (t.dtype() != DType::Bool) return;
  auto* p = static_cast<uint8_t*>(t.raw_data());
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = p[i] != 0;
}

struct Prepared {
  std::string header;  // padded
  std::vector<std::pair<std::string, Tensor>> data;  // in data order, CPU contiguous
};

Prepared prepare(const std::vector<std::pair<std::string, Tensor>>& tensors,
                 const std::map<std::string, std::string>& metadata) {
  std::set<std::string> seen;
  for (const auto& [name, t] : tensors) {
    LOOM_CHECK(name != "__metadata__", ValueError,
               "save_safetensors: '__metadata__' is reserved and cannot name a tensor");
    LOOM_CHECK(seen.insert(name).second, ValueError, "save_safetensors: duplicate tensor name '",
               name, "'");
    LOOM_CHECK(t.defined(), ValueError, "save_safetensors: tensor '", name, "' is undefined");
    LOOM_CHECK(utf8_invalid_offset(reinterpret_cast<const uint8_t*>(name.data()), name.size()) ==
                   size_t(-1),
               ValueError, "save_safetensors: tensor name is not valid UTF-8");
  }
  for (const auto& [k, v] : metadata) {
    LOOM_CHECK(utf8_invalid_offset(reinterpret_cast<const uint8_t*>(k.data()), k.size()) ==
                       size_t(-1) &&
                   utf8_invalid_offset(reinterpret_cast<const uint8_t*>(v.data()), v.size()) ==
                       size_t(-1),
               ValueError, "save_safetensors: metadata entry '", k, "' is not valid UTF-8");
  }
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_size(tensors[a].second.dtype()) > dtype_size(tensors[b].second.dtype());
  });
  Prepared p;
  std::vector<std::pair<uint64_t, uint64_t>> offsets(tensors.size());
  uint64_t pos = 0;
  for (size_t i : order) {
    Tensor t = tensors[i].second.detach().to(Device::cpu()).contiguous();
    offsets[i] = {pos, pos + t.nbytes()};
    pos += t.nbytes();
    p.data.emplace_back(tensors[i].first, t);
  }
  ojson header = ojson::object();
  if (!metadata.empty()) {
    ojson m = ojson::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i].second;
    ojson info = ojson::object();
    info["dtype"] = safetensors_dtype_name(t.dtype());
    info["shape"] = t.shape();
    info["data_offsets"] = {offsets[i].first, offsets[i].second};
    header[tensors[i].first] = std::move(info);
  }
  p.header = header.dump();
  p.header.append((8 - p.header.size() % 8) % 8, ' ');  // so the data section is 8-aligned
  return p;
}

void write_prepared(std::ostream& os, const Prepared& p) {
  uint64_t n = p.header.size();
  char prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = char((n >> (8 * i)) & 0xff);
  os.write(prefix, 8);
  os.write(p.header.data(), std::streamsize(p.header.size()));
  for (const auto& [name, t] : p.data)
    os.write(static_cast<const char*>(t.raw_data()), std::streamsize(t.nbytes()));
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
    case DType::U32: return "U32";
    case DType::Bool: return "BOOL";
  }
  return "?";
}

bool SafetensorsFile::contains(const std::string& name) const {
  return std::any_of(tensors.begin(), tensors.end(), [&](const auto& e) { return e.first == name; });
}

const Tensor& SafetensorsFile::at(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  std::string present;
  for (const auto& [n, t] : tensors) present += (present.empty() ? "" : ", ") + n;
  LOOM_THROW(IndexError, "safetensors: no tensor named '", name, "'; present: [", present, "]");
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [n, t] : tensors) out.push_back(n);
  return out;
}

std::vector<uint8_t> safetensors_to_bytes(
    const std::vector<std::pair<std::string, Tensor>>& tensors,
    const std::map<std::string, std::string>& metadata) {
  Prepared p = prepare(tensors, metadata);
  std::ostringstream os;
  write_prepared(os, p);
  std::string s = std::move(os).str();
  return std::vector<uint8_t>(s.begin(), s.end());
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  Prepared p = prepare(tensors, metadata);
  write_file_atomic(path, [&](std::ostream& os) { write_prepared(os, p); });
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  uint64_t size = file_size_checked(path);
  check_file_size_for_prefix(size, path);
  std::ifstream in(path, std::ios::binary);
  if (!in) LOOM_THROW(IOError, "cannot open ", path);
  uint8_t prefix[8];
  in.read(reinterpret_cast<char*>(prefix), 8);
  if (in.gcount() != 8) LOOM_THROW(IOError, "cannot read ", path, ": short read");
  uint64_t n = checked_header_size(prefix, size, path);
  std::vector<uint8_t> text(static_cast<size_t>(n));
  in.read(reinterpret_cast<char*>(text.data()), std::streamsize(n));
  if (uint64_t(in.gcount()) != n) LOOM_THROW(IOError, "cannot read ", path, ": short read");
  return parse_header(text.data(), n, size - 8 - n, path);
}

SafetensorsFile load_safetensors(const std::string& path) {
  SafetensorsHeader h = read_safetensors_header(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) LOOM_THROW(IOError, "cannot open ", path);
  SafetensorsFile f;
  f.metadata = std::move(h.metadata);
  for (const auto& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    in.seekg(std::streamoff(h.data_start + e.begin));
    in.read(static_cast<char*>(t.raw_data()), std::streamsize(e.end - e.begin));
    if (!in || uint64_t(in.gcount()) != e.end - e.begin)
      LOOM_THROW(IOError, "cannot read tensor '", e.name, "' from ", path,
                 ": short read (file changed while reading?)");
    normalize_bools(t);
    f.tensors.emplace_back(e.name, std::move(t));
  }
  return f;
}

SafetensorsFile safetensors_from_bytes(const std::vector<uint8_t>& bytes, const std::string& origin) {
  check_file_size_for_prefix(bytes.size(), origin);
  uint64_t n = checked_header_size(bytes.data(), bytes.size(), origin);
  SafetensorsHeader h = parse_header(bytes.data() + 8, n, bytes.size() - 8 - n, origin);
  SafetensorsFile f;
  f.metadata = std::move(h.metadata);
  for (const auto& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin)
      std::memcpy(t.raw_data(), bytes.data() + h.data_start + e.begin, size_t(e.end - e.begin));
    normalize_bools(t);
    f.tensors.emplace_back(e.name, std::move(t));
  }
  return f;
}

Tree tree_from_named_tensors(const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::string& origin) {
  Tree root;
  for (const auto& [name, t] : tensors) {
    std::vector<std::string> parts;
    size_t start = 0;
    while (true) {
      size_t slash = name.find('/', start);
      parts.push_back(name.substr(start, slash == std::string::npos ? std::string::npos : slash - start));
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
    for (const auto& p : parts)
      if (p.empty())
        LOOM_THROW(FormatError, origin, ": tensor name '", name,
                   "' is not a '/'-joined tree path (empty segment)");
    Tree* node = &root;
    size_t prefix_len = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      prefix_len += parts[i].size() + (i > 0 ? 1 : 0);
      if (!node->contains(parts[i])) node->insert(parts[i], Tree::dict());
      node = &(*node)[parts[i]];
      if (node->is_leaf())
        LOOM_THROW(FormatError, origin, ": tensor name '", name, "' continues below the leaf '",
                   name.substr(0, prefix_len), "'");
    }
    if (node->contains(parts.back()))
      LOOM_THROW(FormatError, origin, ": tensor name '", name,
                 "' is already a subtree of other tensors' names");
    node->insert(parts.back(), Tree(t));
  }
  return root;
}

void save_tree_safetensors(const std::string& path, const Tree& tree,
                           const std::map<std::string, std::string>& metadata) {
  LOOM_CHECK(tree.is_dict(), ValueError, "save_tree_safetensors: the tree is a single leaf; "
             "put it in a dict so it has a name");
  save_safetensors(path, tree.flatten(), metadata);
}

Tree load_tree_safetensors(const std::string& path) {
  return tree_from_named_tensors(load_safetensors(path).tensors, path);
}

}  // namespace loom::train

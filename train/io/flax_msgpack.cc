#include "train/io/flax_msgpack.h"

#include <bit>
#include <cstring>
#include <set>

#include "train/io/atomic_file.h"
#include "train/io/msgpack.h"
#include "train/io/utf8.h"

namespace loom::train {

static_assert(std::endian::native == std::endian::little,
              "Flax writes native (little-endian) array bytes; loom assumes a little-endian host");

namespace {

using msgpack::Packer;
using msgpack::Value;

constexpr const char* kChunkedMarker = "__msgpack_chunked_array__";
constexpr int8_t kExtNdarray = 1, kExtComplex = 2, kExtNpScalar = 3;
constexpr size_t kMaxNdim = 64;  // numpy's limit

// --- writing ----------------------------------------------------------------------------------

// ExtType(code, packb((shape, dtype.name, bytes), use_bin_type=True)), written without first
// building the payload so a large array is copied once.
void write_ndarray(Packer& p, const Shape& shape, DType dtype, const void* data, size_t nbytes) {
  std::vector<uint8_t> prefix;
  Packer q(prefix);
  q.array_header(3);
  q.array_header(shape.size());
  for (int64_t d : shape) q.integer(d);
  q.str(dtype_name(dtype));
  q.bin_header(nbytes);
  p.ext_header(kExtNdarray, prefix.size() + nbytes);
  p.raw(prefix.data(), prefix.size());
  p.raw(data, nbytes);
}

// flax.serialization._chunk: flat C-order chunks of max(1, MAX_CHUNK_SIZE // itemsize) elements.
void write_chunked(Packer& p, const Tensor& t, uint64_t max_chunk_bytes) {
  const size_t item = dtype_size(t.dtype());
  const uint64_t per_chunk = std::max<uint64_t>(1, max_chunk_bytes / item);
  const uint64_t n = uint64_t(t.numel());
  const uint64_t chunks = (n + per_chunk - 1) / per_chunk;
  p.map_header(3);
  p.str(kChunkedMarker);
  p.boolean(true);
  p.str("shape");
  p.map_header(t.shape().size());
  for (size_t i = 0; i < t.shape().size(); ++i) {
    p.str(std::to_string(i));
    p.integer(t.shape()[i]);
  }
  p.str("chunks");
  p.map_header(chunks);
  const auto* base = static_cast<const uint8_t*>(t.raw_data());
  for (uint64_t c = 0; c < chunks; ++c) {
    uint64_t begin = c * per_chunk, len = std::min(per_chunk, n - begin);
    p.str(std::to_string(c));
    write_ndarray(p, {int64_t(len)}, t.dtype(), base + begin * item, len * item);
  }
}

void write_node(Packer& p, const Tree& node, uint64_t max_chunk_bytes) {
  if (node.is_leaf()) {
    Tensor t = node.tensor().detach().to(Device::cpu()).contiguous();
    if (t.nbytes() > max_chunk_bytes) write_chunked(p, t, max_chunk_bytes);
    else write_ndarray(p, t.shape(), t.dtype(), t.raw_data(), t.nbytes());
    return;
  }
  p.map_header(node.size());
  for (const auto& [key, child] : node.items()) {
    // Flax reads keys with raw=False: a key that is not UTF-8 would make the file unreadable.
    LOOM_CHECK(utf8_invalid_offset(reinterpret_cast<const uint8_t*>(key.data()), key.size()) ==
                   size_t(-1),
               ValueError, "flax_to_bytes: tree key is not valid UTF-8");
    p.str(key);
    write_node(p, child, max_chunk_bytes);
  }
}

void estimate_size(const Tree& node, size_t& bytes) {
  if (node.is_leaf()) {
    bytes += node.tensor().nbytes() + 64 + 16 * node.tensor().shape().size();
    return;
  }
  bytes += 8;
  for (const auto& [key, child] : node.items()) {
    bytes += key.size() + 8;
    estimate_size(child, bytes);
  }
}

// --- reading ----------------------------------------------------------------------------------

std::string show(const std::string& path) { return path.empty() ? "(root)" : "'" + path + "'"; }
std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "/" + key;
}

class Reader {
 public:
  explicit Reader(const std::string& origin) : origin_(origin) {}

  Tree node(const Value& v, const std::string& path) {
    switch (v.type()) {
      case Value::Type::Map: return map(v, path);
      case Value::Type::Ext: return Tree(ext(v, path));
      case Value::Type::Nil: return Tree::dict();  // None: a pytree without leaves
      case Value::Type::Array: {  // a list/tuple not turned into a state dict: index keys
        Tree t;
        const auto& items = v.as_array();
        for (size_t i = 0; i < items.size(); ++i)
          t.insert(std::to_string(i), node(items[i], join(path, std::to_string(i))));
        return t;
      }
      case Value::Type::Bool: {
        Tensor t = Tensor::empty({}, DType::Bool);
        *t.data<bool>() = v.as_bool();
        return Tree(t);
      }
      case Value::Type::Int: {
        if (v.is_big_uint())
          fail(path, "integer ", v.as_uint(), " does not fit in int64");
        Tensor t = Tensor::empty({}, DType::I64);
        *t.data<int64_t>() = v.as_int();
        return Tree(t);
      }
      case Value::Type::Float: {
        if (v.is_float32()) {
          Tensor t = Tensor::empty({}, DType::F32);
          *t.data<float>() = float(v.as_float());
          return Tree(t);
        }
        Tensor t = Tensor::empty({}, DType::F64);
        *t.data<double>() = v.as_float();
        return Tree(t);
      }
      case Value::Type::Str:
      case Value::Type::Bin:
        fail(path, "a ", v.type_name(), " leaf, expected an array, a number or a dict");
    }
    fail(path, "unexpected msgpack type");
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail(const std::string& path, const Args&... args) const {
    LOOM_THROW(FormatError, origin_, ": Flax msgpack entry ", show(path), ": ", args...);
  }

  Tree map(const Value& v, const std::string& path) {
    if (v.find(kChunkedMarker)) return Tree(unchunk(v, path));
    Tree t;
    std::set<std::string_view> seen;
    for (const auto& [k, child] : v.as_map()) {
      if (k.type() != Value::Type::Str)
        fail(path, "a dict key is a msgpack ", k.type_name(), ", expected a string");
      const std::string& key = k.as_str();
      if (!seen.insert(key).second) fail(path, "duplicate key '", key, "'");
      t.insert(key, node(child, join(path, key)));
    }
    return t;
  }

  Tensor ext(const Value& v, const std::string& path) {
    switch (v.ext_type()) {
      case kExtNdarray: return ndarray(v.ext_data(), path);
      case kExtNpScalar: {
        Tensor t = ndarray(v.ext_data(), path);
        if (t.ndim() != 0)
          fail(path, "a NumPy scalar (ExtType 3) holds an array of shape ", shape_str(t.shape()),
               ", expected shape []");
        return t;
      }
      case kExtComplex: fail(path, "a complex number (ExtType 2): loom has no complex dtype");
      default:
        fail(path, "unknown msgpack ExtType ", int(v.ext_type()),
             ", expected 1 (ndarray) or 3 (NumPy scalar)");
    }
  }

  // Payload packb((shape, dtype_name, bytes)). Flax reads it with raw=True, so the name and data
  // may be str or bin (older writers used str for both).
  Tensor ndarray(std::span<const uint8_t> payload, const std::string& path) {
    msgpack::UnpackOptions opt;
    opt.max_depth = 2;
    opt.validate_utf8 = false;
    Value v = msgpack::unpack(payload, origin_ + " (array payload of " + show(path) + ")", opt);
    if (v.type() != Value::Type::Array || v.as_array().size() != 3)
      fail(path, "array payload must be a msgpack array [shape, dtype, data], got a ",
           v.type_name(), v.type() == Value::Type::Array
                              ? " of " + std::to_string(v.as_array().size()) + " items" : "");
    const Value& shape_v = v.as_array()[0];
    const Value& dtype_v = v.as_array()[1];
    const Value& data_v = v.as_array()[2];
    if (shape_v.type() != Value::Type::Array)
      fail(path, "array shape must be a msgpack array, got ", shape_v.type_name());
    if (shape_v.as_array().size() > kMaxNdim)
      fail(path, "array has ", shape_v.as_array().size(), " dimensions, more than ", kMaxNdim);
    Shape shape;
    uint64_t numel = 1;
    for (const Value& d : shape_v.as_array()) {
      if (d.type() != Value::Type::Int || (!d.is_big_uint() && d.as_int() < 0))
        fail(path, "array shape entries must be non-negative integers");
      uint64_t dim = d.as_uint();
      if (dim > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel) ||
          numel > uint64_t(INT64_MAX))
        fail(path, "array shape overflows the element count");
      shape.push_back(int64_t(dim));
    }
    std::string name = text_of(dtype_v, path, "dtype name");
    DType dtype;
    try {
      dtype = dtype_from_name(name);
    } catch (const DTypeError&) {
      fail(path, "array dtype '", name, "' is not supported; expected one of float32 float64 "
           "bfloat16 float16 int32 int64 uint8 uint32 bool");
    }
    std::span<const uint8_t> data;
    if (data_v.type() == Value::Type::Bin) {
      data = data_v.as_bin();
    } else if (data_v.type() == Value::Type::Str) {
      const std::string& s = data_v.as_str();
      data = {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
    } else {
      fail(path, "array data must be bin, got ", data_v.type_name());
    }
    uint64_t expected;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(dtype)), &expected) ||
        data.size() != expected)
      fail(path, "array of shape ", shape_str(shape), " and dtype ", name, " needs ", numel, " x ",
           dtype_size(dtype), " bytes, but the payload holds ", data.size());
    Tensor t = Tensor::empty(shape, dtype);
    if (!data.empty()) std::memcpy(t.raw_data(), data.data(), data.size());
    if (dtype == DType::Bool) {  // any non-zero byte is true; other bool bytes are UB in C++
      auto* p = static_cast<uint8_t*>(t.raw_data());
      for (size_t i = 0; i < data.size(); ++i) p[i] = p[i] != 0;
    }
    return t;
  }

  std::string text_of(const Value& v, const std::string& path, const char* what) {
    if (v.type() == Value::Type::Str) return v.as_str();
    if (v.type() == Value::Type::Bin)
      return std::string(reinterpret_cast<const char*>(v.as_bin().data()), v.as_bin().size());
    fail(path, what, " must be a string, got ", v.type_name());
  }

  // flax.serialization._unchunk: shape {"0": d0, ...}, chunks {"0": arr, ...} concatenated flat.
  Tensor unchunk(const Value& v, const std::string& path) {
    const Value* shape_v = v.find("shape");
    const Value* chunks_v = v.find("chunks");
    if (!shape_v || shape_v->type() != Value::Type::Map)
      fail(path, "chunked array needs a 'shape' dict");
    if (!chunks_v || chunks_v->type() != Value::Type::Map)
      fail(path, "chunked array needs a 'chunks' dict");
    auto indexed = [&](const Value& m, const char* what) {
      std::vector<const Value*> out(m.as_map().size(), nullptr);
      for (size_t i = 0; i < out.size(); ++i) {
        out[i] = m.find(std::to_string(i));
        if (!out[i])
          fail(path, "chunked array '", what, "' must have keys \"0\"..\"", out.size() - 1,
               "\", missing \"", i, "\"");
      }
      return out;
    };
    Shape shape;
    uint64_t numel = 1;
    auto dims = indexed(*shape_v, "shape");
    if (dims.size() > kMaxNdim) fail(path, "chunked array has more than ", kMaxNdim, " dimensions");
    for (const Value* d : dims) {
      if (d->type() != Value::Type::Int || d->is_big_uint() || d->as_int() < 0)
        fail(path, "chunked array shape entries must be non-negative integers");
      if (__builtin_mul_overflow(numel, uint64_t(d->as_int()), &numel) ||
          numel > uint64_t(INT64_MAX))
        fail(path, "chunked array shape overflows the element count");
      shape.push_back(d->as_int());
    }
    auto chunk_vs = indexed(*chunks_v, "chunks");
    if (chunk_vs.empty()) fail(path, "chunked array has no chunks");
    std::vector<Tensor> chunks;
    uint64_t total = 0;
    for (size_t i = 0; i < chunk_vs.size(); ++i) {
      const Value* c = chunk_vs[i];
      std::string cpath = join(path, "chunks/" + std::to_string(i));
      if (c->type() != Value::Type::Ext || c->ext_type() != kExtNdarray)
        fail(cpath, "a chunk must be an ndarray (ExtType 1), got ", c->type_name());
      chunks.push_back(ndarray(c->ext_data(), cpath));
      if (chunks.back().dtype() != chunks[0].dtype())
        fail(cpath, "chunk dtype ", dtype_name(chunks.back().dtype()), " differs from chunk 0's ",
             dtype_name(chunks[0].dtype()));
      total += uint64_t(chunks.back().numel());
    }
    if (total != numel)
      fail(path, "chunks hold ", total, " elements but the shape ", shape_str(shape), " needs ",
           numel);
    Tensor t = Tensor::empty(shape, chunks[0].dtype());
    auto* dst = static_cast<uint8_t*>(t.raw_data());
    for (const Tensor& c : chunks) {
      if (c.nbytes()) std::memcpy(dst, c.raw_data(), c.nbytes());
      dst += c.nbytes();
    }
    return t;
  }

  const std::string& origin_;
};

}  // namespace

std::vector<uint8_t> flax_to_bytes(const Tree& tree, uint64_t max_chunk_bytes) {
  std::vector<uint8_t> out;
  size_t estimate = 0;
  estimate_size(tree, estimate);
  out.reserve(estimate);
  Packer p(out);
  write_node(p, tree, max_chunk_bytes);
  return out;
}

Tree flax_from_bytes(const std::vector<uint8_t>& bytes, const std::string& origin) {
  Value v = msgpack::unpack(bytes, origin);
  return Reader(origin).node(v, "");
}

void save_flax_msgpack(const std::string& path, const Tree& tree) {
  write_file_atomic(path, flax_to_bytes(tree));
}

Tree load_flax_msgpack(const std::string& path) {
  return flax_from_bytes(read_file_bytes(path), path);
}

}  // namespace loom::train

#include "train/io/msgpack.h"

#include <cstring>
#include <limits>

#include "core/error.h"
#include "train/io/utf8.h"

namespace loom::train::msgpack {

// --- Value ------------------------------------------------------------------------------------

static_assert(sizeof(Value) <= 48, "Value is kept small to bound memory per decoded byte");

const Value::Heap& Value::empty_heap() {
  static const Heap h;
  return h;
}

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::Bool;
  v.scalar_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.type_ = Type::Int;
  v.scalar_ = uint64_t(i);
  return v;
}
Value Value::uinteger(uint64_t u) {
  Value v;
  v.type_ = Type::Int;
  v.scalar_ = u;
  v.big_uint_ = u > uint64_t(std::numeric_limits<int64_t>::max());
  return v;
}
Value Value::float64(double d) {
  Value v;
  v.type_ = Type::Float;
  std::memcpy(&v.scalar_, &d, 8);
  return v;
}
Value Value::float32(float f) {
  Value v = float64(double(f));
  v.f32_ = true;
  return v;
}
Value Value::str(std::string s) {
  Value v;
  v.type_ = Type::Str;
  auto h = std::make_shared<Heap>();
  h->str = std::move(s);
  v.heap_ = std::move(h);
  return v;
}
Value Value::bin(std::span<const uint8_t> bytes) {
  Value v;
  v.type_ = Type::Bin;
  v.bytes_ = bytes;
  return v;
}
Value Value::ext(int8_t type, std::span<const uint8_t> payload) {
  Value v;
  v.type_ = Type::Ext;
  v.ext_type_ = type;
  v.bytes_ = payload;
  return v;
}
Value Value::array(std::vector<Value> items) {
  Value v;
  v.type_ = Type::Array;
  auto h = std::make_shared<Heap>();
  h->array = std::move(items);
  v.heap_ = std::move(h);
  return v;
}
Value Value::map(std::vector<std::pair<Value, Value>> entries) {
  Value v;
  v.type_ = Type::Map;
  auto h = std::make_shared<Heap>();
  h->map = std::move(entries);
  v.heap_ = std::move(h);
  return v;
}

std::string_view Value::type_name() const {
  switch (type_) {
    case Type::Nil: return "nil";
    case Type::Bool: return "bool";
    case Type::Int: return "int";
    case Type::Float: return "float";
    case Type::Str: return "str";
    case Type::Bin: return "bin";
    case Type::Array: return "array";
    case Type::Map: return "map";
    case Type::Ext: return "ext";
  }
  return "?";
}

void Value::expect(Type t) const {
  if (type_ != t) {
    Value probe;
    probe.type_ = t;
    LOOM_THROW(FormatError, "msgpack: expected ", probe.type_name(), ", got ", type_name());
  }
}

bool Value::as_bool() const {
  expect(Type::Bool);
  return scalar_ != 0;
}
int64_t Value::as_int() const {
  expect(Type::Int);
  LOOM_CHECK(!big_uint_, FormatError, "msgpack: integer ", scalar_, " does not fit in int64");
  return int64_t(scalar_);
}
uint64_t Value::as_uint() const {
  expect(Type::Int);
  LOOM_CHECK(big_uint_ || int64_t(scalar_) >= 0, FormatError, "msgpack: expected a non-negative "
             "integer, got ", int64_t(scalar_));
  return scalar_;
}
double Value::as_float() const {
  expect(Type::Float);
  double d;
  std::memcpy(&d, &scalar_, 8);
  return d;
}
const std::string& Value::as_str() const {
  expect(Type::Str);
  return heap().str;
}
std::span<const uint8_t> Value::as_bin() const {
  expect(Type::Bin);
  return bytes_;
}
int8_t Value::ext_type() const {
  expect(Type::Ext);
  return ext_type_;
}
std::span<const uint8_t> Value::ext_data() const {
  expect(Type::Ext);
  return bytes_;
}
const std::vector<Value>& Value::as_array() const {
  expect(Type::Array);
  return heap().array;
}
const std::vector<std::pair<Value, Value>>& Value::as_map() const {
  expect(Type::Map);
  return heap().map;
}
const Value* Value::find(std::string_view key) const {
  for (const auto& [k, v] : as_map())
    if (k.type() == Type::Str && k.as_str() == key) return &v;
  return nullptr;
}

// --- Packer -----------------------------------------------------------------------------------

void Packer::be(uint64_t v, int nbytes) {
  for (int i = nbytes - 1; i >= 0; --i) byte(uint8_t(v >> (8 * i)));
}
void Packer::raw(const void* data, size_t n) {
  if (n == 0) return;
  const auto* p = static_cast<const uint8_t*>(data);
  out_.insert(out_.end(), p, p + n);
}
void Packer::nil() { byte(0xc0); }
void Packer::boolean(bool b) { byte(b ? 0xc3 : 0xc2); }

void Packer::uinteger(uint64_t v) {
  if (v < 0x80) byte(uint8_t(v));
  else if (v <= 0xff) byte(0xcc), be(v, 1);
  else if (v <= 0xffff) byte(0xcd), be(v, 2);
  else if (v <= 0xffffffffu) byte(0xce), be(v, 4);
  else byte(0xcf), be(v, 8);
}

void Packer::integer(int64_t v) {
  if (v >= 0) return uinteger(uint64_t(v));
  if (v >= -32) byte(uint8_t(v));
  else if (v >= -0x80) byte(0xd0), be(uint64_t(v), 1);
  else if (v >= -0x8000) byte(0xd1), be(uint64_t(v), 2);
  else if (v >= -0x80000000ll) byte(0xd2), be(uint64_t(v), 4);
  else byte(0xd3), be(uint64_t(v), 8);
}

void Packer::float64(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  byte(0xcb);
  be(bits, 8);
}
void Packer::float32(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  byte(0xca);
  be(bits, 4);
}

void Packer::str(std::string_view s) {
  size_t n = s.size();
  if (n < 32) byte(uint8_t(0xa0 | n));
  else if (n <= 0xff) byte(0xd9), be(n, 1);
  else if (n <= 0xffff) byte(0xda), be(n, 2);
  else if (n <= 0xffffffffu) byte(0xdb), be(n, 4);
  else LOOM_THROW(ValueError, "msgpack: string of ", n, " bytes exceeds the 2^32-1 limit");
  raw(s.data(), n);
}

void Packer::bin_header(size_t n) {
  if (n <= 0xff) byte(0xc4), be(n, 1);
  else if (n <= 0xffff) byte(0xc5), be(n, 2);
  else if (n <= 0xffffffffu) byte(0xc6), be(n, 4);
  else LOOM_THROW(ValueError, "msgpack: bin of ", n, " bytes exceeds the 2^32-1 limit");
}
void Packer::bin(const void* data, size_t n) {
  bin_header(n);
  raw(data, n);
}

void Packer::array_header(size_t n) {
  if (n < 16) byte(uint8_t(0x90 | n));
  else if (n <= 0xffff) byte(0xdc), be(n, 2);
  else if (n <= 0xffffffffu) byte(0xdd), be(n, 4);
  else LOOM_THROW(ValueError, "msgpack: array of ", n, " items exceeds the 2^32-1 limit");
}
void Packer::map_header(size_t n) {
  if (n < 16) byte(uint8_t(0x80 | n));
  else if (n <= 0xffff) byte(0xde), be(n, 2);
  else if (n <= 0xffffffffu) byte(0xdf), be(n, 4);
  else LOOM_THROW(ValueError, "msgpack: map of ", n, " entries exceeds the 2^32-1 limit");
}

void Packer::ext_header(int8_t type, size_t n) {
  switch (n) {
    case 1: byte(0xd4); break;
    case 2: byte(0xd5); break;
    case 4: byte(0xd6); break;
    case 8: byte(0xd7); break;
    case 16: byte(0xd8); break;
    default:
      if (n <= 0xff) byte(0xc7), be(n, 1);
      else if (n <= 0xffff) byte(0xc8), be(n, 2);
      else if (n <= 0xffffffffu) byte(0xc9), be(n, 4);
      else LOOM_THROW(ValueError, "msgpack: ext payload of ", n, " bytes exceeds the 2^32-1 limit");
  }
  byte(uint8_t(type));
}
void Packer::ext(int8_t type, const void* data, size_t n) {
  ext_header(type, n);
  raw(data, n);
}

void Packer::value(const Value& v) {
  switch (v.type()) {
    case Value::Type::Nil: nil(); break;
    case Value::Type::Bool: boolean(v.as_bool()); break;
    case Value::Type::Int:
      if (v.is_big_uint()) uinteger(v.as_uint());
      else integer(v.as_int());
      break;
    case Value::Type::Float:
      if (v.is_float32()) float32(float(v.as_float()));
      else float64(v.as_float());
      break;
    case Value::Type::Str: str(v.as_str()); break;
    case Value::Type::Bin: bin(v.as_bin().data(), v.as_bin().size()); break;
    case Value::Type::Array:
      array_header(v.as_array().size());
      for (const Value& x : v.as_array()) value(x);
      break;
    case Value::Type::Map:
      map_header(v.as_map().size());
      for (const auto& [k, x] : v.as_map()) value(k), value(x);
      break;
    case Value::Type::Ext: ext(v.ext_type(), v.ext_data().data(), v.ext_data().size()); break;
  }
}

std::vector<uint8_t> pack(const Value& v) {
  std::vector<uint8_t> out;
  Packer(out).value(v);
  return out;
}

// --- Decoder ----------------------------------------------------------------------------------

namespace {

class Decoder {
 public:
  Decoder(std::span<const uint8_t> in, const std::string& origin, const UnpackOptions& opt)
      : in_(in), origin_(origin), opt_(opt) {}

  Value top() {
    Value v = read(0);
    if (pos_ != in_.size())
      fail("extra data: the object ends at byte ", pos_, " but the input has ", in_.size(), " bytes");
    return v;
  }

 private:
  template <typename... Args>
  [[noreturn]] void fail(const Args&... args) const {
    LOOM_THROW(FormatError, origin_, ": msgpack: ", args...);
  }
  size_t remaining() const { return in_.size() - pos_; }
  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      fail("truncated input: ", what, " at byte ", pos_, " needs ", n, " bytes but only ",
           remaining(), " remain");
  }
  uint64_t be(int nbytes, const char* what) {
    need(uint64_t(nbytes), what);
    uint64_t v = 0;
    for (int i = 0; i < nbytes; ++i) v = (v << 8) | in_[pos_++];
    return v;
  }
  std::span<const uint8_t> take(uint64_t n, const char* what) {
    need(n, what);
    auto s = in_.subspan(pos_, size_t(n));
    pos_ += size_t(n);
    return s;
  }
  Value make_str(uint64_t n) {
    size_t at = pos_;
    auto s = take(n, "str");
    if (opt_.validate_utf8)
      if (size_t bad = utf8_invalid_offset(s.data(), s.size()); bad != size_t(-1))
        fail("str at byte ", at, " is not valid UTF-8 (bad byte at offset ", at + bad, ")");
    return Value::str(std::string(reinterpret_cast<const char*>(s.data()), s.size()));
  }
  Value make_ext(uint64_t n) {
    auto type = int8_t(uint8_t(be(1, "ext type")));
    return Value::ext(type, take(n, "ext payload"));
  }
  Value make_array(uint64_t n, int depth) {
    // Each element takes at least one byte: a count beyond the remaining bytes is a length bomb.
    if (n > remaining())
      fail("array at byte ", pos_, " declares ", n, " items but only ", remaining(), " bytes remain");
    std::vector<Value> items;
    items.reserve(size_t(n));
    for (uint64_t i = 0; i < n; ++i) items.push_back(read(depth + 1));
    return Value::array(std::move(items));
  }
  Value make_map(uint64_t n, int depth) {
    if (n > remaining() / 2)
      fail("map at byte ", pos_, " declares ", n, " entries but only ", remaining(), " bytes remain");
    std::vector<std::pair<Value, Value>> entries;
    entries.reserve(size_t(n));
    for (uint64_t i = 0; i < n; ++i) {
      Value k = read(depth + 1);
      Value v = read(depth + 1);
      entries.emplace_back(std::move(k), std::move(v));
    }
    return Value::map(std::move(entries));
  }

  Value read(int depth) {
    if (depth > opt_.max_depth) fail("nesting deeper than ", opt_.max_depth, " levels at byte ", pos_);
    if (++objects_ > opt_.max_objects)
      fail("more than ", opt_.max_objects, " objects (limit of UnpackOptions::max_objects)");
    size_t at = pos_;
    uint8_t c = uint8_t(be(1, "type byte"));
    if (c <= 0x7f) return Value::integer(c);
    if (c >= 0xe0) return Value::integer(int8_t(c));
    if ((c & 0xf0) == 0x80) return make_map(c & 0x0f, depth);
    if ((c & 0xf0) == 0x90) return make_array(c & 0x0f, depth);
    if ((c & 0xe0) == 0xa0) return make_str(c & 0x1f);
    switch (c) {
      case 0xc0: return Value();
      case 0xc2: return Value::boolean(false);
      case 0xc3: return Value::boolean(true);
      case 0xc4: return Value::bin(take(be(1, "bin8 length"), "bin"));
      case 0xc5: return Value::bin(take(be(2, "bin16 length"), "bin"));
      case 0xc6: return Value::bin(take(be(4, "bin32 length"), "bin"));
      case 0xc7: return make_ext(be(1, "ext8 length"));
      case 0xc8: return make_ext(be(2, "ext16 length"));
      case 0xc9: return make_ext(be(4, "ext32 length"));
      case 0xca: {
        uint32_t bits = uint32_t(be(4, "float32"));
        float f;
        std::memcpy(&f, &bits, 4);
        return Value::float32(f);
      }
      case 0xcb: {
        uint64_t bits = be(8, "float64");
        double d;
        std::memcpy(&d, &bits, 8);
        return Value::float64(d);
      }
      case 0xcc: return Value::integer(int64_t(be(1, "uint8")));
      case 0xcd: return Value::integer(int64_t(be(2, "uint16")));
      case 0xce: return Value::integer(int64_t(be(4, "uint32")));
      case 0xcf: return Value::uinteger(be(8, "uint64"));
      case 0xd0: return Value::integer(int8_t(be(1, "int8")));
      case 0xd1: return Value::integer(int16_t(be(2, "int16")));
      case 0xd2: return Value::integer(int32_t(be(4, "int32")));
      case 0xd3: return Value::integer(int64_t(be(8, "int64")));
      case 0xd4: return make_ext(1);
      case 0xd5: return make_ext(2);
      case 0xd6: return make_ext(4);
      case 0xd7: return make_ext(8);
      case 0xd8: return make_ext(16);
      case 0xd9: return make_str(be(1, "str8 length"));
      case 0xda: return make_str(be(2, "str16 length"));
      case 0xdb: return make_str(be(4, "str32 length"));
      case 0xdc: return make_array(be(2, "array16 length"), depth);
      case 0xdd: return make_array(be(4, "array32 length"), depth);
      case 0xde: return make_map(be(2, "map16 length"), depth);
      case 0xdf: return make_map(be(4, "map32 length"), depth);
      default: fail("invalid type byte ", int(c), " (0xc1 is never used) at byte ", at);
    }
  }

  std::span<const uint8_t> in_;
  const std::string& origin_;
  const UnpackOptions& opt_;
  size_t pos_ = 0;
  uint64_t objects_ = 0;
};

}  // namespace

Value unpack(std::span<const uint8_t> bytes, const std::string& origin, const UnpackOptions& opt) {
  return Decoder(bytes, origin, opt).top();
}

}  // namespace loom::train::msgpack

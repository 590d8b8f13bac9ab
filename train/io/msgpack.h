// A minimal MessagePack (msgpack.org spec) encoder and decoder for Flax checkpoints: nil, bool,
// ints, floats, str, bin, array, map and ext. Written for untrusted input: nesting is bounded,
// every declared length is checked against the bytes that remain before anything is allocated
// (an array of 2^32 elements in a 10-byte input is an error, not an allocation), truncated input
// and trailing bytes are FormatErrors naming the origin and the byte offset.
//
// The encoder picks the same representations as msgpack-python's packb(use_bin_type=True):
// the smallest int form (unsigned forms for non-negative values), float64 for doubles, str8 for
// strings of 32-255 bytes, fixext forms for ext payloads of 1/2/4/8/16 bytes.
//
// Example:
//   std::vector<uint8_t> out;
//   msgpack::Packer p(out);
//   p.map_header(1); p.str("a"); p.integer(-3);
//   msgpack::Value v = msgpack::unpack(out, "example");
//   int64_t a = v.find("a")->as_int();
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace loom::train::msgpack {

/// A decoded msgpack object. Bin and ext payloads are views: they point into the buffer passed to
/// unpack (or into the caller's memory for values built by hand), which must outlive the Value.
class Value {
 public:
  enum class Type : uint8_t { Nil, Bool, Int, Float, Str, Bin, Array, Map, Ext };

  Value() = default;  // nil
  static Value boolean(bool b);
  static Value integer(int64_t v);
  static Value uinteger(uint64_t v);
  static Value float64(double v);
  static Value float32(float v);
  static Value str(std::string s);
  static Value bin(std::span<const uint8_t> bytes);
  static Value ext(int8_t type, std::span<const uint8_t> payload);
  static Value array(std::vector<Value> items);
  static Value map(std::vector<std::pair<Value, Value>> entries);

  Type type() const { return type_; }
  std::string_view type_name() const;
  bool is_nil() const { return type_ == Type::Nil; }

  // Accessors throw FormatError when the type differs (the message names the actual type).
  bool as_bool() const;
  /// Int values within int64; FormatError for larger unsigned values.
  int64_t as_int() const;
  /// Int values that are non-negative.
  uint64_t as_uint() const;
  /// True when an Int was encoded as an unsigned value above INT64_MAX.
  bool is_big_uint() const { return type_ == Type::Int && big_uint_; }
  double as_float() const;
  bool is_float32() const { return type_ == Type::Float && f32_; }
  const std::string& as_str() const;
  std::span<const uint8_t> as_bin() const;
  int8_t ext_type() const;
  std::span<const uint8_t> ext_data() const;
  const std::vector<Value>& as_array() const;
  const std::vector<std::pair<Value, Value>>& as_map() const;
  /// The value under string key `key` of a map (first match), or nullptr.
  const Value* find(std::string_view key) const;

 private:
  struct Heap {
    std::string str;
    std::vector<Value> array;
    std::vector<std::pair<Value, Value>> map;
  };
  void expect(Type t) const;
  static const Heap& empty_heap();
  const Heap& heap() const { return heap_ ? *heap_ : empty_heap(); }

  // Kept small (48 bytes): a hostile input of one-byte objects must not multiply into gigabytes.
  Type type_ = Type::Nil;
  bool big_uint_ = false, f32_ = false;
  int8_t ext_type_ = 0;
  uint64_t scalar_ = 0;  // bool, int64 bits, uint64, or the double's bits
  std::span<const uint8_t> bytes_;
  std::shared_ptr<const Heap> heap_;  // str, array, map (immutable, so copies share it)
};

/// Appends msgpack to a byte vector.
class Packer {
 public:
  explicit Packer(std::vector<uint8_t>& out) : out_(out) {}
  void nil();
  void boolean(bool b);
  void integer(int64_t v);
  void uinteger(uint64_t v);
  void float64(double v);
  void float32(float v);
  void str(std::string_view s);
  void bin(const void* data, size_t n);
  void bin_header(size_t n);
  void array_header(size_t n);
  void map_header(size_t n);
  void ext(int8_t type, const void* data, size_t n);
  /// Ext header alone; the caller appends exactly `n` payload bytes next.
  void ext_header(int8_t type, size_t n);
  void raw(const void* data, size_t n);
  void value(const Value& v);

 private:
  void byte(uint8_t b) { out_.push_back(b); }
  void be(uint64_t v, int nbytes);
  std::vector<uint8_t>& out_;
};

std::vector<uint8_t> pack(const Value& v);

struct UnpackOptions {
  int max_depth = 64;          // arrays/maps nested deeper are a FormatError
  bool validate_utf8 = true;   // str must be UTF-8 (msgpack-python raw=False); false accepts bytes
  uint64_t max_objects = uint64_t(1) << 24;  // total decoded objects (bounds memory per input byte)
};

/// Decodes exactly one object that spans all of `bytes`. FormatError (naming `origin`, the
/// problem and the byte offset) for truncated, oversized, malformed or trailing input.
Value unpack(std::span<const uint8_t> bytes, const std::string& origin, const UnpackOptions& opt = {});

}  // namespace loom::train::msgpack

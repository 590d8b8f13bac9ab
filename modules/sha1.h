// SHA-1 (FIPS 180-4), used only to derive per-module rng keys exactly as Flax does: a module's
// k-th key of a stream is fold_in(base, be32(sha1(path parts ‖ bytes(k))[:4])). SHA-1's weakness
// as a cryptographic hash does not matter here; bit-compatibility with Flax does.
//
// Example:
//   nn::Sha1 h;
//   h.update("Dense_0");
//   h.update(std::string_view("\x01", 1));
//   uint32_t word = h.digest_prefix32();   // 0xb2b71315
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace loom::nn {

class Sha1 {
 public:
  Sha1();
  void update(std::string_view bytes);
  /// The 20-byte digest; the object must not be updated afterwards.
  std::array<uint8_t, 20> digest();
  /// The first four digest bytes read big-endian (what Flax folds into the key).
  uint32_t digest_prefix32();

 private:
  void block(const uint8_t* p);
  uint32_t h_[5];
  uint8_t buffer_[64];
  uint64_t length_ = 0;  // bytes hashed so far
  bool finished_ = false;
};

/// Lower-case hex digest of `bytes` (for tests and debugging).
std::string sha1_hex(std::string_view bytes);

}  // namespace loom::nn

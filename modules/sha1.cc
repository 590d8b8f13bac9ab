#include "modules/sha1.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace loom::nn {
namespace {
inline uint32_t rotl(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }
}  // namespace

Sha1::Sha1() : h_{0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u} {}

void Sha1::block(const uint8_t* p) {
  uint32_t w[80];
  for (int i = 0; i < 16; ++i)
    w[i] = uint32_t(p[4 * i]) << 24 | uint32_t(p[4 * i + 1]) << 16 | uint32_t(p[4 * i + 2]) << 8 |
           uint32_t(p[4 * i + 3]);
  for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4];
  for (int i = 0; i < 80; ++i) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999u;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1u;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDCu;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6u;
    }
    uint32_t t = rotl(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rotl(b, 30);
    b = a;
    a = t;
  }
  h_[0] += a;
  h_[1] += b;
  h_[2] += c;
  h_[3] += d;
  h_[4] += e;
}

void Sha1::update(std::string_view bytes) {
  LOOM_INTERNAL_ASSERT(!finished_);
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t n = bytes.size();
  size_t used = size_t(length_ % 64);
  length_ += n;
  if (used) {
    size_t take = std::min(n, 64 - used);
    std::memcpy(buffer_ + used, p, take);
    p += take;
    n -= take;
    if (used + take < 64) return;
    block(buffer_);
  }
  for (; n >= 64; p += 64, n -= 64) block(p);
  std::memcpy(buffer_, p, n);
}

std::array<uint8_t, 20> Sha1::digest() {
  if (!finished_) {
    uint64_t bits = length_ * 8;
    size_t used = size_t(length_ % 64);
    buffer_[used++] = 0x80;
    if (used > 56) {
      std::memset(buffer_ + used, 0, 64 - used);
      block(buffer_);
      used = 0;
    }
    std::memset(buffer_ + used, 0, 56 - used);
    for (int i = 0; i < 8; ++i) buffer_[56 + i] = uint8_t(bits >> (56 - 8 * i));
    block(buffer_);
    finished_ = true;
  }
  std::array<uint8_t, 20> out;
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j) out[size_t(4 * i + j)] = uint8_t(h_[i] >> (24 - 8 * j));
  return out;
}

uint32_t Sha1::digest_prefix32() {
  auto d = digest();
  return uint32_t(d[0]) << 24 | uint32_t(d[1]) << 16 | uint32_t(d[2]) << 8 | uint32_t(d[3]);
}

std::string sha1_hex(std::string_view bytes) {
  Sha1 h;
  h.update(bytes);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (uint8_t b : h.digest()) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

}  // namespace loom::nn

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TFRecord framing in
// TensorBoard event files. zlib only has the IEEE CRC-32 and Debian ships no CRC-32C library, so
// it is computed here with a 256-entry table (fast enough for a few records per step).
//
// Example:
//   uint32_t c = crc32c("123456789", 9);        // 0xE3069283, the standard check value
//   uint32_t m = masked_crc32c(data, size);     // what a TFRecord stores
#pragma once
#include <cstddef>
#include <cstdint>

namespace loom::train {

/// CRC-32C of `size` bytes, continuing from `crc` (0 to start).
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
/// TFRecord's masked form: ((c >> 15) | (c << 17)) + 0xa282ead8, so that a CRC stored inside
/// CRC-covered data does not check itself.
uint32_t mask_crc32c(uint32_t crc);
inline uint32_t masked_crc32c(const void* data, size_t size) {
  return mask_crc32c(crc32c(data, size));
}

}  // namespace loom::train

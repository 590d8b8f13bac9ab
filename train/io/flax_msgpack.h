// Flax's checkpoint format: flax.serialization.to_bytes / msgpack_restore (reference §4.2).
//
// A state dict is a msgpack map of string keys; array leaves are ExtType 1 whose payload is
// packb((shape, dtype_name, C-order bytes)); NumPy scalars are ExtType 3 with the same payload
// (read as 0-d tensors); arrays larger than 2^30 bytes are stored as
// {"__msgpack_chunked_array__": True, "shape": {"0": d0, ...}, "chunks": {"0": flat_chunk, ...}}.
// flax_to_bytes produces exactly the bytes flax.serialization.to_bytes produces for the same
// tree of arrays (dicts in insertion order, every leaf an ndarray; loom never writes ExtType 3,
// so a NumPy scalar in Flax corresponds to a 0-d array here).
//
// Reading maps Python values in a state dict to 0-d tensors (int -> int64, float -> float64 or
// float32, bool -> bool) and None to an empty dict (a pytree without leaves); strings, complex
// numbers (ExtType 2) and dtypes loom lacks (int8, uint64, complex64, ...) are FormatErrors.
//
// Example:
//   save_flax_msgpack("params.msgpack", variables);
//   Tree vars = load_flax_msgpack("params.msgpack");   // e.g. written by Flax's to_bytes
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tree.h"

namespace loom::train {

/// flax.serialization.MAX_CHUNK_SIZE: leaves above this many bytes are written in chunks.
inline constexpr uint64_t kFlaxMaxChunkSize = uint64_t(1) << 30;

/// The msgpack bytes of `tree` as Flax's to_bytes writes them. `max_chunk_bytes` is Flax's
/// MAX_CHUNK_SIZE (changeable for tests). Leaves may live on any device.
std::vector<uint8_t> flax_to_bytes(const Tree& tree, uint64_t max_chunk_bytes = kFlaxMaxChunkSize);

/// Inverse of flax_to_bytes (and of Flax's to_bytes); `origin` names the source in errors, which
/// also give the tree path of the offending entry.
Tree flax_from_bytes(const std::vector<uint8_t>& bytes, const std::string& origin);

/// Writes atomically (write_file_atomic).
void save_flax_msgpack(const std::string& path, const Tree& tree);
/// IOError when the file cannot be read, FormatError when it is not a Flax msgpack state dict.
Tree load_flax_msgpack(const std::string& path);

}  // namespace loom::train

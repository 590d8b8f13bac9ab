// Whole-file reads and crash-safe writes shared by every file format in train/io.
//
// write_file_atomic writes `path.tmp`, fsyncs it, renames it over `path` and fsyncs the directory,
// so a process killed at any moment leaves either the old file or the complete new one (a stale
// `path.tmp` may remain; the next save overwrites it).
//
// Example:
//   write_file_atomic("ckpt/params.safetensors", [&](std::ostream& os) { os.write(p, n); });
//   std::vector<uint8_t> bytes = read_file_bytes("ckpt/params.safetensors");
#pragma once
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace loom::train {

/// Streams the file's contents through `write`; any exception (from `write` or from the file
/// system, as IOError naming the path) removes the temporary file and leaves `path` untouched.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

/// The whole file; IOError naming the path when it is missing or unreadable, or when it is
/// larger than `max_bytes`.
std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes = UINT64_MAX);

/// Size of a regular file in bytes; IOError naming the path when missing or not a regular file.
uint64_t file_size_checked(const std::string& path);

}  // namespace loom::train

// Sequential reads from a file that may be gzip-compressed (detected by its magic bytes, not its
// name), for the dataset readers. Sizes are checked before allocating: a header that declares
// more data than the file could hold fails before any large buffer exists.
//
// Example:
//   MaybeGzipFile f("train-images-idx3-ubyte.gz");
//   uint8_t header[16];
//   f.read_exact(header, 16, "the IDX header");
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace loom::train {

class MaybeGzipFile {
 public:
  /// IOError naming the path when it is missing, not a regular file or unreadable.
  explicit MaybeGzipFile(const std::string& path);
  ~MaybeGzipFile();
  MaybeGzipFile(const MaybeGzipFile&) = delete;
  MaybeGzipFile& operator=(const MaybeGzipFile&) = delete;

  const std::string& path() const { return path_; }
  bool is_gzip() const { return gzip_; }
  uint64_t file_size() const { return file_size_; }
  /// An upper bound on the decompressed size: the file size, or for gzip the file size times
  /// deflate's maximum expansion (1032:1).
  uint64_t max_content_size() const;
  /// Bytes read so far (decompressed).
  uint64_t position() const { return position_; }

  /// Up to n bytes; fewer only at the end of the content. FormatError for corrupt gzip data.
  uint64_t read(void* dst, uint64_t n);
  /// Exactly n bytes, else FormatError "<path>: truncated: expected N bytes of <what> ...".
  void read_exact(void* dst, uint64_t n, const std::string& what);
  /// Everything that remains (at most max_content_size()).
  std::vector<uint8_t> read_rest();
  /// True when no content remains (reads one byte ahead: use it only to reject trailing data).
  bool at_end();

 private:
  std::string path_;
  void* gz_ = nullptr;  // gzFile (kept opaque so this header needs no zlib.h)
  bool gzip_ = false;
  uint64_t file_size_ = 0;
  uint64_t position_ = 0;
};

}  // namespace loom::train

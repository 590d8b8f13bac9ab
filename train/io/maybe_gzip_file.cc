#include "train/io/maybe_gzip_file.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "train/io/atomic_file.h"

namespace loom::train {
namespace {
gzFile gz(void* p) { return static_cast<gzFile>(p); }
constexpr uint64_t kDeflateMaxRatio = 1032;
}  // namespace

MaybeGzipFile::MaybeGzipFile(const std::string& path) : path_(path) {
  file_size_ = file_size_checked(path);
  {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) LOOM_THROW(IOError, "cannot open ", path, ": ", std::strerror(errno));
    unsigned char magic[2] = {0, 0};
    size_t got = std::fread(magic, 1, 2, f);
    std::fclose(f);
    gzip_ = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  }
  // zlib reads non-gzip files transparently, so one code path serves both.
  gz_ = gzopen(path.c_str(), "rb");
  if (!gz_) LOOM_THROW(IOError, "cannot open ", path, ": ", std::strerror(errno));
  gzbuffer(gz(gz_), 1 << 17);
}

MaybeGzipFile::~MaybeGzipFile() {
  if (gz_) gzclose(gz(gz_));
}

uint64_t MaybeGzipFile::max_content_size() const {
  if (!gzip_) return file_size_;
  return file_size_ > std::numeric_limits<uint64_t>::max() / kDeflateMaxRatio
             ? std::numeric_limits<uint64_t>::max()
             : file_size_ * kDeflateMaxRatio;
}

uint64_t MaybeGzipFile::read(void* dst, uint64_t n) {
  auto* out = static_cast<uint8_t*>(dst);
  uint64_t total = 0;
  while (total < n) {
    unsigned chunk = unsigned(std::min<uint64_t>(n - total, 1u << 30));
    int got = gzread(gz(gz_), out + total, chunk);
    if (got < 0) {
      int code = 0;
      const char* msg = gzerror(gz(gz_), &code);
      if (code == Z_ERRNO) LOOM_THROW(IOError, "cannot read ", path_, ": ", std::strerror(errno));
      LOOM_THROW(FormatError, path_, ": corrupt or truncated gzip data after ", position_ + total,
                 " decompressed bytes: ", msg ? msg : "unknown zlib error");
    }
    if (got == 0) break;
    total += uint64_t(got);
  }
  position_ += total;
  return total;
}

void MaybeGzipFile::read_exact(void* dst, uint64_t n, const std::string& what) {
  uint64_t start = position_;
  uint64_t got = read(dst, n);
  if (got != n)
    LOOM_THROW(FormatError, path_, ": truncated: expected ", n, " bytes of ", what, " at byte ", start,
               (gzip_ ? " (decompressed)" : ""), ", but the file ends after ", got);
}

std::vector<uint8_t> MaybeGzipFile::read_rest() {
  std::vector<uint8_t> out;
  const uint64_t cap = max_content_size();
  size_t step = size_t(std::min<uint64_t>(std::max<uint64_t>(file_size_, 1 << 16), 1 << 26));
  while (true) {
    size_t old = out.size();
    if (old >= cap) break;
    out.resize(old + size_t(std::min<uint64_t>(step, cap - old)));
    uint64_t got = read(out.data() + old, out.size() - old);
    out.resize(old + size_t(got));
    if (got == 0) break;
  }
  return out;
}

bool MaybeGzipFile::at_end() {
  uint8_t probe;
  uint64_t got = read(&probe, 1);
  if (got) --position_;  // callers only ask to report trailing data, never to continue
  return got == 0;
}

}  // namespace loom::train

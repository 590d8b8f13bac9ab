#include "train/io/cifar.h"

#include <cstring>

#include "train/io/maybe_gzip_file.h"

namespace loom::train {
namespace {

// Validates the byte count and labels of `n` records at `src`, then writes them NHWC into the
// outputs starting at record `first`.
void decode_records(const uint8_t* src, uint64_t size, CifarKind kind, const std::string& origin,
                    CifarData& out, int64_t first) {
  const bool c100 = kind == CifarKind::Cifar100;
  const int64_t rec = cifar_record_size(kind);
  const int64_t n = int64_t(size) / rec;
  uint8_t* images = out.images.data<uint8_t>() + first * kCifarImageBytes;
  uint8_t* labels = out.labels.data<uint8_t>() + first;
  uint8_t* coarse = c100 ? out.coarse_labels.data<uint8_t>() + first : nullptr;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* r = src + i * rec;
    if (c100) {
      if (r[0] >= 20)
        LOOM_THROW(FormatError, origin, ": CIFAR-100 record ", i, " (byte ", i * rec,
                   ") has coarse label ", int(r[0]), ", expected 0-19");
      if (r[1] >= 100)
        LOOM_THROW(FormatError, origin, ": CIFAR-100 record ", i, " (byte ", i * rec + 1,
                   ") has fine label ", int(r[1]), ", expected 0-99");
      coarse[i] = r[0];
      labels[i] = r[1];
    } else {
      if (r[0] >= 10)
        LOOM_THROW(FormatError, origin, ": CIFAR-10 record ", i, " (byte ", i * rec,
                   ") has label ", int(r[0]), ", expected 0-9");
      labels[i] = r[0];
    }
    const uint8_t* chw = r + (c100 ? 2 : 1);
    uint8_t* hwc = images + i * kCifarImageBytes;
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) hwc[p * 3 + c] = chw[c * 1024 + p];
  }
}

void check_size(uint64_t size, CifarKind kind, const std::string& origin) {
  const uint64_t rec = uint64_t(cifar_record_size(kind));
  const char* name = kind == CifarKind::Cifar10 ? "CIFAR-10" : "CIFAR-100";
  if (size == 0 || size % rec != 0)
    LOOM_THROW(FormatError, origin, ": ", size, " bytes is not a positive multiple of the ", name,
               " record size ", rec, " (", rec - kCifarImageBytes, " label byte",
               rec - kCifarImageBytes == 1 ? "" : "s", " + 3072 image bytes)");
}

CifarData allocate(int64_t n, CifarKind kind) {
  CifarData d;
  d.images = Tensor::empty({n, 32, 32, 3}, DType::U8);
  d.labels = Tensor::empty({n}, DType::U8);
  if (kind == CifarKind::Cifar100) d.coarse_labels = Tensor::empty({n}, DType::U8);
  return d;
}

}  // namespace

int64_t cifar_record_size(CifarKind kind) {
  return kCifarImageBytes + (kind == CifarKind::Cifar10 ? 1 : 2);
}

CifarData cifar_from_bytes(const std::vector<uint8_t>& bytes, CifarKind kind,
                           const std::string& origin) {
  check_size(bytes.size(), kind, origin);
  CifarData d = allocate(int64_t(bytes.size()) / cifar_record_size(kind), kind);
  decode_records(bytes.data(), bytes.size(), kind, origin, d, 0);
  return d;
}

CifarData load_cifar(const std::vector<std::string>& paths, CifarKind kind) {
  LOOM_CHECK(!paths.empty(), ValueError, "load_cifar: no files given");
  // Plain files: sizes are known up front, so records are checked and counted before reading.
  // Gzip files are decompressed first (bounded by what the file can expand to).
  std::vector<std::vector<uint8_t>> contents;
  int64_t total = 0;
  for (const auto& path : paths) {
    MaybeGzipFile f(path);
    if (!f.is_gzip()) check_size(f.file_size(), kind, path);
    contents.push_back(f.read_rest());
    check_size(contents.back().size(), kind, path);
    total += int64_t(contents.back().size()) / cifar_record_size(kind);
  }
  CifarData d = allocate(total, kind);
  int64_t first = 0;
  for (size_t i = 0; i < paths.size(); ++i) {
    decode_records(contents[i].data(), contents[i].size(), kind, paths[i], d, first);
    first += int64_t(contents[i].size()) / cifar_record_size(kind);
    contents[i] = {};
  }
  return d;
}

CifarData load_cifar(const std::string& path, CifarKind kind) {
  return load_cifar(std::vector<std::string>{path}, kind);
}

}  // namespace loom::train

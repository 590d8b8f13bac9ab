#include "train/io/idx.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "train/io/maybe_gzip_file.h"

namespace loom::train {
namespace {

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}
std::string hex8(uint8_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", v);
  return buf;
}

const char* idx_type_name(uint8_t t) {
  switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "unknown";
  }
}

// Reads an IDX file; `expected_magic` 0 accepts any unsigned-byte file.
Tensor read_idx(const std::string& path, uint32_t expected_magic, const char* kind) {
  MaybeGzipFile f(path);
  uint8_t magic_bytes[4];
  f.read_exact(magic_bytes, 4, "the IDX magic number");
  uint32_t magic = be32(magic_bytes);
  if (expected_magic != 0 && magic != expected_magic)
    LOOM_THROW(FormatError, path, ": not an IDX ", kind, " file: expected magic number ",
               hex32(expected_magic), ", got ", hex32(magic));
  if (magic_bytes[0] != 0 || magic_bytes[1] != 0)
    LOOM_THROW(FormatError, path, ": not an IDX file: the magic number ", hex32(magic),
               " must start with two zero bytes");
  if (magic_bytes[2] != 0x08)
    LOOM_THROW(FormatError, path, ": IDX data type ", hex8(magic_bytes[2]), " (",
               idx_type_name(magic_bytes[2]), ") is not supported, expected 0x08 (unsigned byte)");
  const int ndims = magic_bytes[3];
  if (ndims == 0) LOOM_THROW(FormatError, path, ": IDX header declares 0 dimensions");

  std::vector<uint8_t> dim_bytes(size_t(ndims) * 4);
  f.read_exact(dim_bytes.data(), dim_bytes.size(), "IDX dimension sizes");
  Shape shape;
  uint64_t numel = 1;
  for (int i = 0; i < ndims; ++i) {
    uint32_t d = be32(&dim_bytes[size_t(i) * 4]);
    if (__builtin_mul_overflow(numel, uint64_t(d), &numel))
      LOOM_THROW(FormatError, path, ": IDX dimensions overflow the element count");
    shape.push_back(int64_t(d));
  }
  if (expected_magic == kIdxImagesMagic && (shape[1] == 0 || shape[2] == 0))
    LOOM_THROW(FormatError, path, ": IDX images of size ", shape[1], "x", shape[2],
               ": rows and columns must be at least 1");

  const uint64_t header = 4 + 4 * uint64_t(ndims);
  // Check against what the file can hold before allocating (a hostile header can declare 2^64).
  if (!f.is_gzip() && f.file_size() - header != numel)
    LOOM_THROW(FormatError, path, ": IDX header declares shape ", shape_str(shape), " = ", numel,
               " bytes of data, but the file has ", f.file_size() - header, " bytes after the ",
               header, "-byte header");
  if (f.is_gzip() && numel > f.max_content_size())
    LOOM_THROW(FormatError, path, ": IDX header declares shape ", shape_str(shape), " = ", numel,
               " bytes of data, more than a ", f.file_size(), "-byte gzip file can hold");

  Tensor t = Tensor::empty(shape, DType::U8);
  f.read_exact(t.raw_data(), numel, "IDX data for shape " + shape_str(shape));
  if (!f.at_end())
    LOOM_THROW(FormatError, path, ": trailing bytes after the ", numel,
               " bytes of IDX data declared by shape ", shape_str(shape));
  return t;
}

std::string find_with_gz(const std::string& dir, const std::string& name) {
  namespace fs = std::filesystem;
  fs::path plain = fs::path(dir) / name;
  fs::path gz = fs::path(dir) / (name + ".gz");
  if (fs::exists(plain)) return plain.string();
  if (fs::exists(gz)) return gz.string();
  LOOM_THROW(IOError, "IDX file not found: tried ", plain.string(), " and ", gz.string());
}

}  // namespace

Tensor load_idx(const std::string& path) { return read_idx(path, 0, "unsigned-byte"); }

Tensor load_idx_images(const std::string& path) {
  return read_idx(path, kIdxImagesMagic, "image");
}

Tensor load_idx_labels(const std::string& path) {
  return read_idx(path, kIdxLabelsMagic, "label");
}

IdxDataset load_idx_dataset(const std::string& images_path, const std::string& labels_path) {
  IdxDataset d{load_idx_images(images_path), load_idx_labels(labels_path)};
  if (d.images.dim(0) != d.labels.dim(0))
    LOOM_THROW(FormatError, images_path, " holds ", d.images.dim(0), " images but ", labels_path,
               " holds ", d.labels.dim(0), " labels; expected the same count");
  return d;
}

IdxDataset load_mnist_split(const std::string& dir, const std::string& split) {
  LOOM_CHECK(split == "train" || split == "t10k", ValueError, "load_mnist_split: split '", split,
             "', expected 'train' or 't10k'");
  std::string images = find_with_gz(dir, split + "-images-idx3-ubyte");
  std::string labels = find_with_gz(dir, split + "-labels-idx1-ubyte");
  return load_idx_dataset(images, labels);
}

}  // namespace loom::train

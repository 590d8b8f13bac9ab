#include "train/io/idx.h"

#include <filesystem>

#include "tests/support/testing.h"
#include "tests/train/io/io_test_util.h"

namespace loom::train {
namespace {

using loom::testing::TempDir;
using loom::testing::write_bytes;
using loom::testing::write_gzip;

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(uint8_t(v >> s));
}

std::vector<uint8_t> idx_images(uint32_t n, uint32_t rows, uint32_t cols) {
  std::vector<uint8_t> b;
  put_be32(b, kIdxImagesMagic);
  put_be32(b, n);
  put_be32(b, rows);
  put_be32(b, cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) b.push_back(uint8_t(i * 7 + 3));
  return b;
}

std::vector<uint8_t> idx_labels(uint32_t n) {
  std::vector<uint8_t> b;
  put_be32(b, kIdxLabelsMagic);
  put_be32(b, n);
  for (uint32_t i = 0; i < n; ++i) b.push_back(uint8_t(i % 10));
  return b;
}

void expect_images(const Tensor& t, uint32_t n) {
  ASSERT_EQ(t.shape(), (Shape{int64_t(n), 28, 28}));
  ASSERT_EQ(t.dtype(), DType::U8);
  const uint8_t* p = t.data<uint8_t>();
  for (uint32_t i = 0; i < n * 28 * 28; ++i) ASSERT_EQ(p[i], uint8_t(i * 7 + 3)) << i;
}

TEST(Idx, ReadsRawAndGzipImagesAndLabels) {
  TempDir dir;
  write_bytes(dir.file("img"), idx_images(5, 28, 28));
  write_gzip(dir.file("img.gz"), idx_images(5, 28, 28));
  write_bytes(dir.file("lab"), idx_labels(5));
  write_gzip(dir.file("lab.gz"), idx_labels(5));
  expect_images(load_idx_images(dir.file("img")), 5);
  expect_images(load_idx_images(dir.file("img.gz")), 5);
  for (const char* name : {"lab", "lab.gz"}) {
    Tensor l = load_idx_labels(dir.file(name));
    EXPECT_EQ(l.shape(), (Shape{5}));
    EXPECT_EQ(l.to_vector<int32_t>(), (std::vector<int32_t>{0, 1, 2, 3, 4}));
  }
  // Compression is recognised from the content, not the name.
  write_gzip(dir.file("img_no_suffix"), idx_images(2, 28, 28));
  expect_images(load_idx_images(dir.file("img_no_suffix")), 2);
  // Generic reader and other image sizes.
  write_bytes(dir.file("small"), idx_images(3, 4, 5));
  EXPECT_EQ(load_idx(dir.file("small")).shape(), (Shape{3, 4, 5}));
  EXPECT_EQ(load_idx_images(dir.file("small")).shape(), (Shape{3, 4, 5}));
  // Zero images is a valid (empty) file.
  write_bytes(dir.file("none"), idx_images(0, 28, 28));
  EXPECT_EQ(load_idx_images(dir.file("none")).shape(), (Shape{0, 28, 28}));
}

TEST(Idx, DatasetAndMnistSplitNames) {
  TempDir dir;
  write_gzip(dir.file("train-images-idx3-ubyte.gz"), idx_images(4, 28, 28));
  write_bytes(dir.file("train-labels-idx1-ubyte"), idx_labels(4));
  IdxDataset d = load_mnist_split(dir.file(""), "train");
  EXPECT_EQ(d.images.dim(0), 4);
  EXPECT_EQ(d.labels.dim(0), 4);
  EXPECT_THROW_WITH(load_mnist_split(dir.file(""), "t10k"), IOError, "t10k-images-idx3-ubyte.gz");
  EXPECT_THROW_WITH(load_mnist_split(dir.file(""), "test"), ValueError, "'train' or 't10k'");
  write_bytes(dir.file("labels3"), idx_labels(3));
  EXPECT_THROW_WITH(load_idx_dataset(dir.file("train-images-idx3-ubyte.gz"), dir.file("labels3")),
                    FormatError, "4 images", "3 labels", "labels3");
}

TEST(IdxNegative, WrongMagic) {
  TempDir dir;
  write_bytes(dir.file("lab"), idx_labels(3));
  EXPECT_THROW_WITH(load_idx_images(dir.file("lab")), FormatError, dir.file("lab"),
                    "expected magic number 0x00000803", "got 0x00000801");
  write_bytes(dir.file("img"), idx_images(1, 28, 28));
  EXPECT_THROW_WITH(load_idx_labels(dir.file("img")), FormatError, "expected magic number 0x00000801",
                    "got 0x00000803");
  std::vector<uint8_t> text = {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '!'};
  write_bytes(dir.file("text"), text);
  EXPECT_THROW_WITH(load_idx(dir.file("text")), FormatError, "two zero bytes");
  std::vector<uint8_t> floats;
  put_be32(floats, 0x00000D01);
  put_be32(floats, 1);
  put_be32(floats, 0);
  write_bytes(dir.file("floats"), floats);
  EXPECT_THROW_WITH(load_idx(dir.file("floats")), FormatError, "0x0d (float32)", "expected 0x08");
}

TEST(IdxNegative, SizeMismatches) {
  TempDir dir;
  auto img = idx_images(3, 28, 28);
  // Truncated data (raw and gzip) and truncated headers.
  write_bytes(dir.file("short"), std::vector<uint8_t>(img.begin(), img.end() - 10));
  EXPECT_THROW_WITH(load_idx_images(dir.file("short")), FormatError, dir.file("short"),
                    "declares shape [3, 28, 28] = 2352 bytes", "has 2342 bytes");
  write_gzip(dir.file("short.gz"), std::vector<uint8_t>(img.begin(), img.end() - 10));
  EXPECT_THROW_WITH(load_idx_images(dir.file("short.gz")), FormatError, "truncated",
                    "expected 2352 bytes", "ends after 2342");
  write_bytes(dir.file("hdr"), std::vector<uint8_t>(img.begin(), img.begin() + 9));
  EXPECT_THROW_WITH(load_idx_images(dir.file("hdr")), FormatError, "truncated",
                    "IDX dimension sizes");
  write_bytes(dir.file("empty"), {});
  EXPECT_THROW_WITH(load_idx_images(dir.file("empty")), FormatError, "magic number");
  // Trailing bytes.
  auto longer = img;
  longer.push_back(0);
  write_bytes(dir.file("long"), longer);
  EXPECT_THROW_WITH(load_idx_images(dir.file("long")), FormatError, "has 2353 bytes");
  write_gzip(dir.file("long.gz"), longer);
  EXPECT_THROW_WITH(load_idx_images(dir.file("long.gz")), FormatError, "trailing bytes");
  // Labels count wrong.
  auto lab = idx_labels(5);
  lab[7] = 9;
  write_bytes(dir.file("lab"), lab);
  EXPECT_THROW_WITH(load_idx_labels(dir.file("lab")), FormatError, "shape [9]", "has 5 bytes");
  // Zero-sized image rows.
  write_bytes(dir.file("flat"), idx_images(2, 0, 28));
  EXPECT_THROW_WITH(load_idx_images(dir.file("flat")), FormatError, "at least 1");
}

TEST(IdxNegative, HugeDeclaredSizesFailBeforeAllocating) {
  TempDir dir;
  std::vector<uint8_t> b;
  put_be32(b, kIdxImagesMagic);
  for (int i = 0; i < 3; ++i) put_be32(b, 0xffffffffu);  // 2^96 bytes: overflows
  b.resize(b.size() + 100, 0);
  write_bytes(dir.file("overflow"), b);
  EXPECT_THROW_WITH(load_idx_images(dir.file("overflow")), FormatError, "overflow");
  std::vector<uint8_t> big;
  put_be32(big, kIdxImagesMagic);
  put_be32(big, 0x7fffffffu);  // ~1.7 TB of images declared
  put_be32(big, 28);
  put_be32(big, 28);
  big.resize(big.size() + 1000, 1);
  write_bytes(dir.file("big"), big);
  EXPECT_THROW_WITH(load_idx_images(dir.file("big")), FormatError, "has 1000 bytes");
  write_gzip(dir.file("big.gz"), big);
  EXPECT_THROW_WITH(load_idx_images(dir.file("big.gz")), FormatError, "gzip file can hold");
}

TEST(IdxNegative, CorruptGzipAndMissingFile) {
  TempDir dir;
  write_gzip(dir.file("img.gz"), idx_images(3, 28, 28));
  auto gz = loom::testing::read_bytes(dir.file("img.gz"));
  auto corrupt = gz;
  for (size_t i = 20; i < corrupt.size() - 8; i += 3) corrupt[i] ^= 0x5a;
  write_bytes(dir.file("corrupt.gz"), corrupt);
  EXPECT_THROW_WITH(load_idx_images(dir.file("corrupt.gz")), FormatError, dir.file("corrupt.gz"));
  write_bytes(dir.file("cut.gz"), std::vector<uint8_t>(gz.begin(), gz.begin() + long(gz.size() / 2)));
  EXPECT_THROW_WITH(load_idx_images(dir.file("cut.gz")), FormatError, dir.file("cut.gz"));
  EXPECT_THROW_WITH(load_idx_images(dir.file("absent.gz")), IOError, "absent.gz");
}

TEST(Idx, FashionMnistFromDebianWhenInstalled) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  IdxDataset train = load_mnist_split(dir, "train");
  IdxDataset test = load_mnist_split(dir, "t10k");
  EXPECT_EQ(train.images.shape(), (Shape{60000, 28, 28}));
  EXPECT_EQ(train.labels.shape(), (Shape{60000}));
  EXPECT_EQ(test.images.shape(), (Shape{10000, 28, 28}));
  EXPECT_EQ(test.labels.shape(), (Shape{10000}));
  for (const Tensor* labels : {&train.labels, &test.labels}) {
    std::vector<int64_t> counts(10, 0);
    const uint8_t* p = labels->data<uint8_t>();
    for (int64_t i = 0; i < labels->numel(); ++i) {
      ASSERT_LT(p[i], 10) << "label out of range at " << i;
      ++counts[p[i]];
    }
    for (int64_t c : counts) EXPECT_EQ(c, labels->numel() / 10);  // balanced classes
  }
}

}  // namespace
}  // namespace loom::train

#include "train/io/cifar.h"

#include "tests/support/testing.h"
#include "tests/train/io/io_test_util.h"

namespace loom::train {
namespace {

using loom::testing::TempDir;
using loom::testing::write_bytes;
using loom::testing::write_gzip;

// Record i: labels from i, pixel (c, h, w) = (i + c * 50 + h * 3 + w) mod 256.
std::vector<uint8_t> cifar_file(int n, CifarKind kind, int first = 0) {
  std::vector<uint8_t> b;
  for (int i = first; i < first + n; ++i) {
    if (kind == CifarKind::Cifar100) {
      b.push_back(uint8_t(i % 20));
      b.push_back(uint8_t(i % 100));
    } else {
      b.push_back(uint8_t(i % 10));
    }
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 32; ++h)
        for (int w = 0; w < 32; ++w) b.push_back(uint8_t(i + c * 50 + h * 3 + w));
  }
  return b;
}

void expect_records(const CifarData& d, int n, CifarKind kind, int first = 0) {
  ASSERT_EQ(d.images.shape(), (Shape{n, 32, 32, 3}));
  ASSERT_EQ(d.labels.shape(), (Shape{n}));
  const uint8_t* img = d.images.data<uint8_t>();
  for (int i = 0; i < n; ++i) {
    int r = first + i;
    EXPECT_EQ(d.labels.data<uint8_t>()[i], kind == CifarKind::Cifar100 ? r % 100 : r % 10);
    if (kind == CifarKind::Cifar100) {
      EXPECT_EQ(d.coarse_labels.data<uint8_t>()[i], r % 20);
    }
    for (int h = 0; h < 32; ++h)
      for (int w = 0; w < 32; ++w)
        for (int c = 0; c < 3; ++c)
          ASSERT_EQ(img[((i * 32 + h) * 32 + w) * 3 + c], uint8_t(r + c * 50 + h * 3 + w))
              << "record " << i << " h " << h << " w " << w << " c " << c;
  }
}

TEST(Cifar, Cifar10RecordsBecomeNHWC) {
  TempDir dir;
  write_bytes(dir.file("data_batch_1.bin"), cifar_file(3, CifarKind::Cifar10));
  CifarData d = load_cifar(dir.file("data_batch_1.bin"), CifarKind::Cifar10);
  expect_records(d, 3, CifarKind::Cifar10);
  EXPECT_FALSE(d.coarse_labels.defined());
  EXPECT_EQ(cifar_record_size(CifarKind::Cifar10), 3073);
}

TEST(Cifar, Cifar100CoarseAndFineLabels) {
  TempDir dir;
  write_bytes(dir.file("train.bin"), cifar_file(25, CifarKind::Cifar100));
  expect_records(load_cifar(dir.file("train.bin"), CifarKind::Cifar100), 25, CifarKind::Cifar100);
  EXPECT_EQ(cifar_record_size(CifarKind::Cifar100), 3074);
}

TEST(Cifar, SeveralFilesAndGzip) {
  TempDir dir;
  write_bytes(dir.file("a.bin"), cifar_file(2, CifarKind::Cifar10, 0));
  write_gzip(dir.file("b.bin.gz"), cifar_file(3, CifarKind::Cifar10, 2));
  expect_records(load_cifar({dir.file("a.bin"), dir.file("b.bin.gz")}, CifarKind::Cifar10), 5,
                 CifarKind::Cifar10);
  expect_records(cifar_from_bytes(cifar_file(2, CifarKind::Cifar10), CifarKind::Cifar10, "mem"), 2,
                 CifarKind::Cifar10);
}

TEST(CifarNegative, SizeNotAMultipleOfTheRecord) {
  TempDir dir;
  auto b = cifar_file(2, CifarKind::Cifar10);
  b.pop_back();
  write_bytes(dir.file("cut.bin"), b);
  EXPECT_THROW_WITH(load_cifar(dir.file("cut.bin"), CifarKind::Cifar10), FormatError,
                    dir.file("cut.bin"), "6145 bytes", "CIFAR-10 record size 3073");
  write_gzip(dir.file("cut.bin.gz"), b);
  EXPECT_THROW_WITH(load_cifar(dir.file("cut.bin.gz"), CifarKind::Cifar10), FormatError, "6145 bytes");
  // A CIFAR-10 file read as CIFAR-100.
  write_bytes(dir.file("c10.bin"), cifar_file(2, CifarKind::Cifar10));
  EXPECT_THROW_WITH(load_cifar(dir.file("c10.bin"), CifarKind::Cifar100), FormatError,
                    "CIFAR-100 record size 3074", "2 label bytes");
  write_bytes(dir.file("empty.bin"), {});
  EXPECT_THROW_WITH(load_cifar(dir.file("empty.bin"), CifarKind::Cifar10), FormatError,
                    "0 bytes is not a positive multiple");
  EXPECT_THROW_WITH(load_cifar(dir.file("absent.bin"), CifarKind::Cifar10), IOError, "absent.bin");
  EXPECT_THROW_WITH(load_cifar(std::vector<std::string>{}, CifarKind::Cifar10), ValueError,
                    "no files");
}

TEST(CifarNegative, LabelsOutOfRange) {
  auto b = cifar_file(3, CifarKind::Cifar10);
  b[3073 * 2] = 10;
  EXPECT_THROW_WITH(cifar_from_bytes(b, CifarKind::Cifar10, "lab.bin"), FormatError, "lab.bin",
                    "record 2", "label 10", "expected 0-9");
  auto c = cifar_file(2, CifarKind::Cifar100);
  c[3074 + 1] = 100;
  EXPECT_THROW_WITH(cifar_from_bytes(c, CifarKind::Cifar100, "x"), FormatError, "record 1",
                    "fine label 100", "0-99");
  c = cifar_file(2, CifarKind::Cifar100);
  c[0] = 20;
  EXPECT_THROW_WITH(cifar_from_bytes(c, CifarKind::Cifar100, "x"), FormatError, "coarse label 20");
}

}  // namespace
}  // namespace loom::train

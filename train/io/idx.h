// IDX files (MNIST, Fashion-MNIST, EMNIST): a big-endian magic 00 00 <type> <ndims>, one
// big-endian u32 per dimension, then the C-order data. Plain or gzip-compressed (detected from
// the content), as Debian's dataset-fashion-mnist installs them. Only unsigned-byte data
// (type 0x08) is read. Every mismatch (magic, dimensions, size, truncation, trailing bytes) is a
// FormatError naming the file, what was expected and what was found.
//
// Example:
//   Tensor images = load_idx_images("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
//   Tensor labels = load_idx_labels("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz");
//   IdxDataset test = load_mnist_split("/usr/share/datasets/fashion-mnist", "t10k");
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace loom::train {

inline constexpr uint32_t kIdxImagesMagic = 0x00000803;  // u8, 3 dims: [N, rows, cols]
inline constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // u8, 1 dim: [N]

/// Any unsigned-byte IDX file: a U8 tensor of the dimensions in its header.
Tensor load_idx(const std::string& path);
/// An image file (magic 0x00000803): U8 [N, rows, cols] (rows and cols at least 1).
Tensor load_idx_images(const std::string& path);
/// A label file (magic 0x00000801): U8 [N].
Tensor load_idx_labels(const std::string& path);

struct IdxDataset {
  Tensor images;  // U8 [N, rows, cols]
  Tensor labels;  // U8 [N]
};
/// Images and labels whose counts must agree (FormatError naming both files otherwise).
IdxDataset load_idx_dataset(const std::string& images_path, const std::string& labels_path);
/// `<dir>/<split>-images-idx3-ubyte` and `<split>-labels-idx1-ubyte`, each with or without
/// ".gz" (split "train" or "t10k"). IOError naming the paths tried when a file is missing.
IdxDataset load_mnist_split(const std::string& dir, const std::string& split);

}  // namespace loom::train

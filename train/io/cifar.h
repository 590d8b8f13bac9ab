// CIFAR-10 / CIFAR-100 binary files (https://www.cs.toronto.edu/~kriz/cifar.html): fixed-size
// records of label byte(s) then 3072 image bytes as R, G and B planes of 32x32 (CHW). Images are
// returned NHWC, the layout loom's convolutions take. Plain or gzip-compressed files.
//   CIFAR-10:  <label 0-9> <3072 bytes>                    (3073-byte records)
//   CIFAR-100: <coarse 0-19> <fine 0-99> <3072 bytes>       (3074-byte records)
// The file size must be a positive multiple of the record size and every label in range;
// otherwise a FormatError names the file, the record and what was expected.
//
// Example:
//   CifarData train = load_cifar({"data_batch_1.bin", "data_batch_2.bin"}, CifarKind::Cifar10);
//   // train.images: U8 [20000, 32, 32, 3], train.labels: U8 [20000]
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace loom::train {

enum class CifarKind { Cifar10, Cifar100 };

inline constexpr int64_t kCifarImageBytes = 32 * 32 * 3;

/// Bytes per record: 3073 for CIFAR-10, 3074 for CIFAR-100.
int64_t cifar_record_size(CifarKind kind);

struct CifarData {
  Tensor images;         // U8 [N, 32, 32, 3] (NHWC)
  Tensor labels;         // U8 [N]: the class (CIFAR-10) or the fine label (CIFAR-100)
  Tensor coarse_labels;  // U8 [N] superclass 0-19 for CIFAR-100; undefined for CIFAR-10
};

CifarData load_cifar(const std::string& path, CifarKind kind);
/// Several files (e.g. data_batch_1..5.bin) concatenated in order.
CifarData load_cifar(const std::vector<std::string>& paths, CifarKind kind);
/// Decodes file contents already in memory; `origin` names them in errors.
CifarData cifar_from_bytes(const std::vector<uint8_t>& bytes, CifarKind kind,
                           const std::string& origin);

}  // namespace loom::train

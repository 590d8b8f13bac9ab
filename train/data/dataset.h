// In-memory datasets and the named datasets loom knows (`--dataset`).
//
//   Dataset train = load_dataset("fashion_mnist", Split::Train);   // U8 [60000, 28, 28, 1]
//   Dataset text  = load_dataset("text:/usr/share/games/fortunes/fortunes", Split::Train);
#pragma once
#include <string>

#include "core/tensor.h"

namespace loom::train {

enum class Split { Train, Test };

/// Examples stacked on the leading axis, on the host.
struct Dataset {
  std::string name;
  Tensor inputs;        // images U8 [N, H, W, C]; tokens I32 [N] for a text corpus
  Tensor labels;        // I32 [N] for classification; undefined for a text corpus
  int64_t num_classes = 0;  // 0 for a text corpus (vocabulary: 256 bytes)
  bool is_text() const { return !labels.defined(); }
  int64_t size() const { return inputs.defined() ? inputs.dim(0) : 0; }
};

/// Names: "fashion_mnist" and "mnist" (IDX files; directory from LOOM_DATA_DIR or the Debian
/// package's /usr/share/datasets/<name>), "cifar10:DIR", "cifar100:DIR" (binary version),
/// "text:FILE" (bytes; the last 10% is the test split), "synthetic:HxWxC:CLASSES:N" (random
/// images whose brightness encodes the label, for benchmarks and tests). Errors name the dataset and the files tried.
Dataset load_dataset(const std::string& name, Split split);

}  // namespace loom::train

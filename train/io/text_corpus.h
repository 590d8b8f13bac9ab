// Any file as a byte-level corpus for language modelling: every byte is a token (vocabulary of
// 256), split into a training part and a validation part (the last `validation_fraction` of the
// bytes, so the two never overlap).
//
// Example:
//   TextCorpus c = load_text_corpus("/usr/share/games/fortunes/fortunes", 0.1, DType::I32);
//   // c.train: I32 [n - n_val], c.validation: I32 [n_val]
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace loom::train {

inline constexpr int64_t kByteVocabSize = 256;

struct TextCorpus {
  Tensor train;       // 1-D tokens, the first part of the file
  Tensor validation;  // 1-D tokens, the last part (may be empty when the fraction is 0)
};

/// Splits `floor(n * validation_fraction)` bytes (at least 1 when the fraction is positive) off
/// the end. `dtype` is U8 or I32. FormatError naming the file when it is empty; ValueError for a
/// fraction outside [0, 1) or another dtype; IOError when the file cannot be read.
TextCorpus load_text_corpus(const std::string& path, double validation_fraction = 0.1,
                            DType dtype = DType::U8);
TextCorpus text_corpus_from_bytes(const std::vector<uint8_t>& bytes, const std::string& origin,
                                  double validation_fraction = 0.1, DType dtype = DType::U8);

}  // namespace loom::train

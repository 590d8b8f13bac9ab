#include "train/io/text_corpus.h"

#include <cmath>
#include <cstring>

#include "train/io/atomic_file.h"

namespace loom::train {
namespace {

Tensor tokens(const uint8_t* p, int64_t n, DType dtype) {
  Tensor t = Tensor::empty({n}, dtype);
  if (dtype == DType::U8) {
    if (n) std::memcpy(t.raw_data(), p, size_t(n));
  } else {
    int32_t* out = t.data<int32_t>();
    for (int64_t i = 0; i < n; ++i) out[i] = p[i];
  }
  return t;
}

}  // namespace

TextCorpus text_corpus_from_bytes(const std::vector<uint8_t>& bytes, const std::string& origin,
                                  double validation_fraction, DType dtype) {
  LOOM_CHECK(dtype == DType::U8 || dtype == DType::I32, ValueError, "text corpus ", origin,
             ": token dtype ", dtype_name(dtype), " is not supported, expected uint8 or int32");
  LOOM_CHECK(validation_fraction >= 0.0 && validation_fraction < 1.0, ValueError, "text corpus ",
             origin, ": validation fraction ", validation_fraction, " must be in [0, 1)");
  LOOM_CHECK(!bytes.empty(), FormatError, origin, ": text corpus is empty, expected at least 1 byte");
  const int64_t n = int64_t(bytes.size());
  int64_t n_val = int64_t(std::floor(double(n) * validation_fraction));
  if (validation_fraction > 0 && n_val == 0 && n >= 2) n_val = 1;
  if (n_val >= n) n_val = n - 1;  // keep at least one training token
  TextCorpus c;
  c.train = tokens(bytes.data(), n - n_val, dtype);
  c.validation = tokens(bytes.data() + (n - n_val), n_val, dtype);
  return c;
}

TextCorpus load_text_corpus(const std::string& path, double validation_fraction, DType dtype) {
  return text_corpus_from_bytes(read_file_bytes(path), path, validation_fraction, dtype);
}

}  // namespace loom::train

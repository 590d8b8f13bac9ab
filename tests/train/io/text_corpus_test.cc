#include "train/io/text_corpus.h"

#include "tests/support/testing.h"
#include "tests/train/io/io_test_util.h"

namespace loom::train {
namespace {

using loom::testing::TempDir;
using loom::testing::write_bytes;

TEST(TextCorpus, SplitsTheLastFractionForValidation) {
  TempDir dir;
  std::string text = "hello world, \xc3\xa9t\xc3\xa9 \xff\x00!";
  text.push_back('\0');
  write_bytes(dir.file("corpus.txt"), std::vector<uint8_t>(text.begin(), text.end()));
  TextCorpus c = load_text_corpus(dir.file("corpus.txt"), 0.25);
  const int64_t n = int64_t(text.size());  // 22 bytes
  const int64_t n_val = n / 4;             // floor(22 * 0.25) = 5
  ASSERT_EQ(c.train.shape(), (Shape{n - n_val}));
  ASSERT_EQ(c.validation.shape(), (Shape{n_val}));
  EXPECT_EQ(c.train.dtype(), DType::U8);
  std::vector<int32_t> all = c.train.to_vector<int32_t>();
  for (int32_t v : c.validation.to_vector<int32_t>()) all.push_back(v);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(all[size_t(i)], int32_t(uint8_t(text[size_t(i)]))) << i;

  TextCorpus i32 = load_text_corpus(dir.file("corpus.txt"), 0.25, DType::I32);
  EXPECT_EQ(i32.train.dtype(), DType::I32);
  EXPECT_EQ(i32.validation.to_vector<int32_t>(), c.validation.to_vector<int32_t>());
  EXPECT_EQ(i32.train.to_vector<int32_t>()[0], 'h');
}

TEST(TextCorpus, EdgeFractions) {
  std::vector<uint8_t> b = {'a', 'b', 'c'};
  TextCorpus none = text_corpus_from_bytes(b, "mem", 0.0);
  EXPECT_EQ(none.train.numel(), 3);
  EXPECT_EQ(none.validation.numel(), 0);
  TextCorpus tiny = text_corpus_from_bytes(b, "mem", 0.01);  // floor is 0: at least 1
  EXPECT_EQ(tiny.validation.to_vector<int32_t>(), std::vector<int32_t>{'c'});
  TextCorpus most = text_corpus_from_bytes(b, "mem", 0.99);  // keeps 1 training byte
  EXPECT_EQ(most.train.numel(), 1);
  EXPECT_EQ(most.validation.numel(), 2);
  TextCorpus one = text_corpus_from_bytes({'x'}, "mem", 0.5);
  EXPECT_EQ(one.train.numel(), 1);
  EXPECT_EQ(one.validation.numel(), 0);
}

TEST(TextCorpusNegative, EmptyMissingAndBadArguments) {
  TempDir dir;
  write_bytes(dir.file("empty.txt"), {});
  EXPECT_THROW_WITH(load_text_corpus(dir.file("empty.txt")), FormatError, dir.file("empty.txt"),
                    "empty");
  EXPECT_THROW_WITH(load_text_corpus(dir.file("absent.txt")), IOError, "absent.txt");
  std::vector<uint8_t> b = {'a', 'b'};
  EXPECT_THROW_WITH(text_corpus_from_bytes(b, "c", 1.0), ValueError, "[0, 1)");
  EXPECT_THROW_WITH(text_corpus_from_bytes(b, "c", -0.1), ValueError, "[0, 1)");
  EXPECT_THROW_WITH(text_corpus_from_bytes(b, "c", 0.1, DType::F32), ValueError, "float32");
}

}  // namespace
}  // namespace loom::train

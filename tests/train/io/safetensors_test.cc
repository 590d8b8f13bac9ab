#include "train/io/safetensors.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "tests/support/testing.h"
#include "tests/train/io/io_test_util.h"
#include "train/io/atomic_file.h"

namespace loom::train {
namespace {

using loom::testing::TempDir;
using loom::testing::read_bytes;
using loom::testing::write_bytes;

// The 8-byte little-endian header size followed by `rest`. (Built as a string first: GCC 12
// reports false -Warray-bounds positives for inserts into a freshly sized 8-byte vector.)
std::vector<uint8_t> le64(uint64_t n, const std::string& rest = "") {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(char(uint8_t(n >> (8 * i))));
  s += rest;
  return std::vector<uint8_t>(s.begin(), s.end());
}

// A file with the given header text (padded to 8 bytes) and data section.
std::vector<uint8_t> make_file(std::string header, const std::vector<uint8_t>& data) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return le64(header.size(), header + std::string(data.begin(), data.end()));
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

std::vector<std::pair<std::string, Tensor>> every_dtype() {
  return {
      {"u8", from_vector<uint8_t>({1, 2, 3}, {3})},
      {"f32", from_vector<float>({1.5f, -2.0f, NAN, INFINITY, -0.0f, 1e-40f}, {2, 3})},
      {"f64", from_vector<double>({1.0 / 3.0, -1e300}, {2, 1})},
      {"bf16", from_vector<float>({0.5f, -3.0f, 65280.0f}, {3}).to(DType::BF16)},
      {"f16", from_vector<float>({0.5f, -65504.0f}, {2}).to(DType::F16)},
      {"i32", from_vector<int32_t>({-1, 2147483647, -2147483647 - 1}, {3})},
      {"i64", from_vector<int64_t>({9007199254740993LL, -5}, {2})},
      {"u32", from_vector<uint32_t>({4294967295u, 0u}, {1, 2})},
      {"flag", from_vector<bool>({true, false, true}, {3})},
      {"scalar", scalar(2.5, DType::F32)},
      {"empty", Tensor::empty({0, 4}, DType::F32)},
  };
}

TEST(Safetensors, RoundTripEveryDtypeKeepsOrderValuesAndMetadata) {
  TempDir dir;
  std::string path = dir.file("all.safetensors");
  auto tensors = every_dtype();
  save_safetensors(path, tensors, {{"format", "loom"}, {"step", "12"}});
  SafetensorsFile f = load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    EXPECT_EQ(f.tensors[i].first, tensors[i].first);
    EXPECT_TRUE(bitwise_equal(f.tensors[i].second, tensors[i].second)) << tensors[i].first;
    EXPECT_FALSE(f.tensors[i].second.is_cuda());
  }
  EXPECT_EQ(f.metadata, (std::map<std::string, std::string>{{"format", "loom"}, {"step", "12"}}));
  EXPECT_TRUE(f.contains("bf16"));
  EXPECT_EQ(f.at("i64").to_vector<int64_t>()[0], 9007199254740993LL);
  EXPECT_THROW_WITH(f.at("nope"), IndexError, "nope", "u8");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(Safetensors, LayoutIsAlignedAndMatchesTheSpec) {
  auto tensors = every_dtype();
  std::vector<uint8_t> bytes = safetensors_to_bytes(tensors);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[size_t(i)];
  EXPECT_EQ((8 + n) % 8, 0u) << "header padded so the data section is 8-aligned";
  auto j = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + long(n));
  uint64_t covered = 0;
  for (const auto& [name, t] : tensors) {
    auto offsets = j.at(name).at("data_offsets").get<std::vector<uint64_t>>();
    EXPECT_EQ(offsets[0] % dtype_size(t.dtype()), 0u) << name << " must be aligned";
    EXPECT_EQ(offsets[1] - offsets[0], t.nbytes()) << name;
    covered += offsets[1] - offsets[0];
  }
  EXPECT_EQ(8 + n + covered, bytes.size());
  EXPECT_EQ(safetensors_from_bytes(bytes, "mem").tensors.size(), tensors.size());
}

TEST(Safetensors, ExactBytesOfASmallFile) {
  auto bytes = safetensors_to_bytes({{"x", from_vector<float>({1.0f, 2.0f}, {2})}});
  std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  std::vector<uint8_t> data = {0, 0, 0x80, 0x3f, 0, 0, 0, 0x40};
  EXPECT_EQ(bytes, make_file(header, data));
  EXPECT_NE(header.size() % 8, 0u);  // so the padding path is exercised
}

TEST(Safetensors, ReadsHandWrittenFilesWithWhitespaceAndZeroSizeTensors) {
  std::string header = R"(  {"__metadata__": {"format": "pt"},
      "b": {"dtype": "I32", "shape": [1], "data_offsets": [4, 8]},
      "z": {"dtype": "F16", "shape": [0], "data_offsets": [4, 4]},
      "a": {"dtype": "U8", "shape": [2, 2], "data_offsets": [0, 4]}}  )";
  auto f = safetensors_from_bytes(make_file(header, {1, 2, 3, 4, 7, 0, 0, 0}), "hand");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"b", "z", "a"}));  // header order
  EXPECT_EQ(f.at("b").to_vector<int32_t>(), std::vector<int32_t>{7});
  EXPECT_EQ(f.at("a").to_vector<int32_t>(), (std::vector<int32_t>{1, 2, 3, 4}));
  EXPECT_EQ(f.at("z").numel(), 0);
  EXPECT_EQ(f.metadata.at("format"), "pt");
}

TEST(Safetensors, BoolBytesAreNormalised) {
  auto f = safetensors_from_bytes(
      make_file(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", {0, 1, 7}), "b");
  const uint8_t* p = static_cast<const uint8_t*>(f.at("m").raw_data());
  EXPECT_EQ(p[0], 0);
  EXPECT_EQ(p[1], 1);
  EXPECT_EQ(p[2], 1);
}

// --- the reference implementation's negative cases, each a FormatError naming the file -------

void expect_format_error(const std::vector<uint8_t>& bytes, const std::vector<std::string>& parts) {
  TempDir dir;
  std::string path = dir.file("bad.safetensors");
  write_bytes(path, bytes);
  std::vector<std::string> with_path = parts;
  with_path.push_back(path);
  try {
    load_safetensors(path);
    ADD_FAILURE() << "expected FormatError containing " << parts[0];
  } catch (const FormatError& e) {
    for (const auto& p : with_path)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message '" << e.what() << "' lacks '" << p << "'";
  }
  // The in-memory parser agrees.
  EXPECT_THROW(safetensors_from_bytes(bytes, "mem"), FormatError);
}

const std::string kGood = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

TEST(SafetensorsNegative, HeaderTooSmall) {
  expect_format_error({}, {"header too small", "at least 8"});
  expect_format_error({1, 0, 0}, {"header too small"});
}

TEST(SafetensorsNegative, HeaderLengthBeyondFile) {
  std::vector<uint8_t> b = le64(60);  // test_invalid_header_length: N = 60, nothing follows
  expect_format_error(b, {"header size 60", "larger than the rest of the file"});
}

TEST(SafetensorsNegative, HeaderTooLarge) {
  std::vector<uint8_t> b = le64(100'000'001, std::string(56, ' '));
  expect_format_error(b, {"header size 100000001", "limit of 100000000"});
  expect_format_error(le64(UINT64_MAX), {"larger than the limit"});
}

TEST(SafetensorsNegative, HeaderNotUtf8) {
  expect_format_error(le64(8, "{\"\xff\xfe\":1}"), {"not valid UTF-8"});
}

TEST(SafetensorsNegative, HeaderNotJson) {
  expect_format_error(make_file("{", {}), {"not valid JSON"});
  expect_format_error(make_file("", {}), {"not valid JSON"});
  expect_format_error(make_file(kGood + "x", std::vector<uint8_t>(8)), {"not valid JSON"});
}

TEST(SafetensorsNegative, HeaderNotAnObject) {
  expect_format_error(make_file("[1, 2]", {}), {"must be a JSON object", "array"});
  expect_format_error(make_file("3", {}), {"must be a JSON object"});
  expect_format_error(make_file(R"({"a": 1})", {}), {"tensor 'a'", "must be an object"});
  expect_format_error(make_file(R"({"a":{"dtype":"F32","shape":[0]}})", {}), {"no 'data_offsets'"});
  expect_format_error(make_file(R"({"__metadata__":{"k":1}})", {}), {"__metadata__", "'k'"});
  expect_format_error(make_file(R"({"a":{"dtype":"F32","shape":[[[[1]]]],"data_offsets":[0,0]}})", {}),
                      {"nests deeper"});
}

TEST(SafetensorsNegative, UnknownDtype) {
  expect_format_error(make_file(R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})",
                                {0, 0}),
                      {"tensor 'a'", "dtype 'F8_E4M3'", "expected one of F32"});
  expect_format_error(make_file(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,2]}})", {0, 0}),
                      {"dtype must be a string"});
}

TEST(SafetensorsNegative, OffsetsOutOfRange) {
  expect_format_error(
      make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::vector<uint8_t>(6)),
      {"tensor 'a'", "out of range", "6 bytes"});
  expect_format_error(
      make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::vector<uint8_t>(8)),
      {"end before begin"});
  expect_format_error(
      make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", std::vector<uint8_t>(8)),
      {"non-negative integers"});
  expect_format_error(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", {}),
                      {"[begin, end]"});
}

TEST(SafetensorsNegative, OverlappingOffsets) {
  // test_json_attack: tensors sharing offsets.
  std::ostringstream h;
  h << "{";
  for (int i = 0; i < 10; ++i)
    h << (i ? "," : "") << "\"t" << i << R"(":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  h << "}";
  expect_format_error(make_file(h.str(), std::vector<uint8_t>(8)), {"overlaps"});
  expect_format_error(make_file(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},
                                    "b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                                std::vector<uint8_t>(6)),
                      {"tensor 'b'", "starts at data offset 2, expected 4", "overlaps"});
}

TEST(SafetensorsNegative, NonContiguousOffsets) {
  expect_format_error(make_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},
                                    "b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})",
                                std::vector<uint8_t>(6)),
                      {"tensor 'b'", "gap"});
  expect_format_error(make_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                                std::vector<uint8_t>(4)),
                      {"starts at data offset 2, expected 0"});
}

TEST(SafetensorsNegative, SizeNotMatchingShapeTimesDtype) {
  // test_invalid_info
  expect_format_error(make_file(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,8]}})",
                                std::vector<uint8_t>(8)),
                      {"tensor 'a'", "span 8 bytes, expected 24", "[2, 3]"});
}

TEST(SafetensorsNegative, TrailingAndMissingBytes) {
  // test_metadata_incomplete_buffer: extra bytes (polyglot files), then 2 bytes missing.
  expect_format_error(make_file(kGood, std::vector<uint8_t>(10)), {"2 trailing bytes"});
  expect_format_error(make_file(kGood, std::vector<uint8_t>(6)), {"out of range"});
  expect_format_error(make_file("{}", {0}), {"1 trailing bytes"});
}

TEST(SafetensorsNegative, ShapeOverflow) {
  // test_validation_overflow
  expect_format_error(
      make_file(R"({"a":{"dtype":"F32","shape":[2,18446744073709551615],"data_offsets":[0,0]}})", {}),
      {"tensor 'a'", "overflows"});
  expect_format_error(
      make_file(R"({"a":{"dtype":"F64","shape":[4611686018427387904,2],"data_offsets":[0,0]}})", {}),
      {"overflows"});
  expect_format_error(
      make_file(R"({"a":{"dtype":"F32","shape":[1e30],"data_offsets":[0,0]}})", {}),
      {"non-negative integers"});
}

TEST(SafetensorsNegative, DuplicateNames) {
  expect_format_error(make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},
                                    "a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                                {1, 2}),
                      {"duplicate key 'a'"});
}

TEST(SafetensorsNegative, TruncatedAtEveryLength) {
  auto good = safetensors_to_bytes(every_dtype(), {{"format", "loom"}});
  for (size_t n = 0; n < good.size(); ++n) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + long(n));
    EXPECT_THROW(safetensors_from_bytes(cut, "cut"), FormatError) << "length " << n;
  }
}

TEST(SafetensorsNegative, MissingFileIsIOError) {
  TempDir dir;
  EXPECT_THROW_WITH(load_safetensors(dir.file("absent.safetensors")), IOError, "absent.safetensors");
  EXPECT_THROW_WITH(load_safetensors(dir.file("")), IOError, "not a regular file");
}

TEST(Safetensors, SaveRejectsBadNames) {
  TempDir dir;
  Tensor t = zeros({2});
  EXPECT_THROW_WITH(save_safetensors(dir.file("x"), {{"a", t}, {"a", t}}), ValueError, "duplicate",
                    "'a'");
  EXPECT_THROW_WITH(save_safetensors(dir.file("x"), {{"__metadata__", t}}), ValueError, "reserved");
  EXPECT_THROW_WITH(save_safetensors(dir.file("x"), {{"u", Tensor()}}), ValueError, "undefined");
  EXPECT_FALSE(std::filesystem::exists(dir.file("x")));
}

TEST(Safetensors, TreeRoundTripUsesFlaxPaths) {
  TempDir dir;
  Tree vars;
  vars.set("params/Dense_0/kernel", from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}));
  vars.set("params/Dense_0/bias", from_vector<float>({0.5f, 0.25f, 0.125f}, {3}));
  vars.set("batch_stats/BatchNorm_0/mean", from_vector<double>({1, 2}, {2}));
  vars.set("opt_state/count", scalar(3, DType::I32));
  std::string path = dir.file("vars.safetensors");
  save_tree_safetensors(path, vars, {{"step", "3"}});
  EXPECT_EQ(load_safetensors(path).names(),
            (std::vector<std::string>{"params/Dense_0/kernel", "params/Dense_0/bias",
                                      "batch_stats/BatchNorm_0/mean", "opt_state/count"}));
  Tree back = load_tree_safetensors(path);
  EXPECT_TRUE(back.same_structure(vars));
  EXPECT_TRUE(tree_allclose(back, vars, 0, 0));
  EXPECT_EQ(back.keys(), vars.keys());
  EXPECT_EQ(back.at("opt_state/count").tensor().dtype(), DType::I32);
}

TEST(SafetensorsNegative, TreeNamesMustFormATree) {
  Tensor t = zeros({1});
  EXPECT_THROW_WITH(tree_from_named_tensors({{"a//b", t}}, "f"), FormatError, "empty segment");
  EXPECT_THROW_WITH(tree_from_named_tensors({{"/a", t}}, "f"), FormatError, "empty segment");
  EXPECT_THROW_WITH(tree_from_named_tensors({{"a/b", t}, {"a/b/c", t}}, "f"), FormatError,
                    "below the leaf 'a/b'");
  EXPECT_THROW_WITH(tree_from_named_tensors({{"a/b/c", t}, {"a/b", t}}, "f"), FormatError,
                    "'a/b'");
}

TEST(AtomicFile, FailedWriteKeepsThePreviousFile) {
  TempDir dir;
  std::string path = dir.file("ckpt.bin");
  write_file_atomic(path, std::vector<uint8_t>{1, 2, 3});
  EXPECT_EQ(read_file_bytes(path), (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_THROW(write_file_atomic(path,
                                 [](std::ostream& os) {
                                   os << "partial";
                                   throw ValueError("interrupted");
                                 }),
               ValueError);
  EXPECT_EQ(read_file_bytes(path), (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  // A stale .tmp from a killed process is simply overwritten.
  write_bytes(path + ".tmp", {9, 9, 9, 9, 9});
  write_file_atomic(path, std::vector<uint8_t>{4, 5});
  EXPECT_EQ(read_file_bytes(path), (std::vector<uint8_t>{4, 5}));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(AtomicFile, UnwritableDirectoryIsIOError) {
  TempDir dir;
  EXPECT_THROW_WITH(write_file_atomic(dir.file("no/such/dir/f"), std::vector<uint8_t>{1}), IOError,
                    "no/such/dir/f.tmp");
  EXPECT_THROW_WITH(read_file_bytes(dir.file("missing")), IOError, "missing");
  write_bytes(dir.file("big"), std::vector<uint8_t>(100));
  EXPECT_THROW_WITH(read_file_bytes(dir.file("big"), 10), IOError, "limit");
}

}  // namespace
}  // namespace loom::train

#include "train/io/flax_msgpack.h"

#include <cmath>
#include <cstring>
#include <fstream>

#include "tests/support/testing.h"
#include "tests/train/io/io_test_util.h"
#include "train/io/msgpack.h"

namespace loom::train {
namespace {

using loom::testing::TempDir;
using msgpack::Packer;

std::vector<uint8_t> golden_bytes(const std::string& name) {
  return loom::testing::read_bytes(std::string(LOOM_GOLDEN_DIR) + "/" + name);
}

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(uint8_t(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// The tree the golden JSON describes, in to_bytes order.
Tree golden_tree(const nlohmann::json& leaves) {
  Tree t;
  for (const auto& leaf : leaves) {
    if (leaf.contains("empty_dict")) t.set(leaf.at("path").get<std::string>(), Tree::dict());
    else t.set(leaf.at("path").get<std::string>(), loom::testing::golden_tensor(leaf));
  }
  return t;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.nbytes()) == 0;
}

void expect_trees_bitwise_equal(const Tree& actual, const Tree& expected) {
  ASSERT_EQ(actual.first_difference(expected), "");
  auto a = actual.flatten();
  auto e = expected.flatten();
  ASSERT_EQ(a.size(), e.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, e[i].first);
    EXPECT_EQ(dtype_name(a[i].second.dtype()), dtype_name(e[i].second.dtype())) << a[i].first;
    EXPECT_EQ(shape_str(a[i].second.shape()), shape_str(e[i].second.shape())) << a[i].first;
    EXPECT_TRUE(bitwise_equal(a[i].second, e[i].second)) << a[i].first;
  }
}

TEST(FlaxMsgpack, ReadsRealFlaxBytesToTheSameValues) {
  nlohmann::json g = loom::testing::load_golden("flax_params.json");
  Tree tree = flax_from_bytes(golden_bytes("flax_params.msgpack"), "flax_params.msgpack");
  Tree expected = golden_tree(g.at("leaves"));
  expect_trees_bitwise_equal(tree, expected);
  // Insertion order is Flax's, not sorted.
  EXPECT_EQ(tree.keys(), (std::vector<std::string>{"params", "batch_stats", "extras"}));
  EXPECT_EQ(tree["params"].keys(), (std::vector<std::string>{"Dense_0", "BatchNorm_0", "Dense_1"}));
  EXPECT_TRUE(tree.at("extras/empty").empty());
  const Tensor& scale = tree.at("extras/scale").tensor();  // the NumPy scalar (ExtType 3)
  EXPECT_EQ(scale.ndim(), 0);
  EXPECT_EQ(scale.item<float>(), 0.25f);
  EXPECT_EQ(tree.at("extras/step").tensor().ndim(), 0);
  EXPECT_EQ(tree.at("extras/step").tensor().item<int32_t>(), 7);
  EXPECT_EQ(tree.at("extras/embedding_bf16").tensor().dtype(), DType::BF16);
  EXPECT_TRUE(std::isnan(tree.at("extras/special_f32").tensor().to_vector<float>()[0]));
  EXPECT_EQ(tree.at("extras/count_i64").tensor().to_vector<int64_t>()[0], 9007199254740993LL);
}

TEST(FlaxMsgpack, WritesExactlyFlaxBytes) {
  nlohmann::json g = loom::testing::load_golden("flax_params.json");
  std::vector<uint8_t> expected = from_hex(g.at("loom_bytes_hex").get<std::string>());
  // From values alone (the NumPy scalar is a 0-d array in loom, as in the recorded bytes) ...
  EXPECT_EQ(flax_to_bytes(golden_tree(g.at("leaves"))), expected);
  // ... and after reading Flax's own file.
  Tree tree = flax_from_bytes(golden_bytes("flax_params.msgpack"), "flax_params.msgpack");
  EXPECT_EQ(flax_to_bytes(tree), expected);
  // Flax's file differs only in the scalar's ExtType code (3 instead of 1).
  std::vector<uint8_t> flax = golden_bytes("flax_params.msgpack");
  ASSERT_EQ(flax.size(), expected.size());
  size_t differing = 0;
  for (size_t i = 0; i < flax.size(); ++i) differing += flax[i] != expected[i];
  EXPECT_EQ(differing, 1u);
}

TEST(FlaxMsgpack, ChunkedArraysMatchFlax) {
  nlohmann::json g = loom::testing::load_golden("flax_params.json");
  const auto& c = g.at("chunked");
  std::vector<uint8_t> flax = golden_bytes("flax_chunked.msgpack");
  Tree expected = golden_tree(c.at("leaves"));
  Tree tree = flax_from_bytes(flax, "flax_chunked.msgpack");
  expect_trees_bitwise_equal(tree, expected);
  EXPECT_EQ(flax_to_bytes(expected, c.at("max_chunk_bytes").get<uint64_t>()), flax);
  // With the default 1 GiB limit nothing is chunked, and the result reads back the same.
  std::vector<uint8_t> plain = flax_to_bytes(expected);
  EXPECT_LT(plain.size(), flax.size());
  expect_trees_bitwise_equal(flax_from_bytes(plain, "plain"), expected);
}

TEST(FlaxMsgpack, FileRoundTripAndPythonValues) {
  TempDir dir;
  Tree t;
  t.set("params/w", from_vector<float>({1, 2, 3, 4}, {2, 2}));
  t.set("params/b", from_vector<float>({-1}, {1}).to(DType::BF16));
  t.set("state/mask", from_vector<bool>({true, false}, {2}));
  t.set("state/nothing", Tree::dict());
  std::string path = dir.file("vars.msgpack");
  save_flax_msgpack(path, t);
  expect_trees_bitwise_equal(load_flax_msgpack(path), t);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  // Python ints/floats/bools/None as Flax's msgpack_restore sees them in a state dict.
  std::vector<uint8_t> b;
  Packer p(b);
  p.map_header(5);
  p.str("step"), p.integer(-12);
  p.str("lr"), p.float64(0.5);
  p.str("f32"), p.float32(0.25f);
  p.str("flag"), p.boolean(true);
  p.str("none"), p.nil();
  Tree v = flax_from_bytes(b, "py");
  EXPECT_EQ(v.at("step").tensor().dtype(), DType::I64);
  EXPECT_EQ(v.at("step").tensor().item<int64_t>(), -12);
  EXPECT_EQ(v.at("lr").tensor().dtype(), DType::F64);
  EXPECT_EQ(v.at("f32").tensor().dtype(), DType::F32);
  EXPECT_EQ(v.at("flag").tensor().item<bool>(), true);
  EXPECT_TRUE(v.at("none").empty());

  Tree bad;
  bad.set("\xff", zeros({1}));
  EXPECT_THROW_WITH(flax_to_bytes(bad), ValueError, "UTF-8");
}

// --- hostile input --------------------------------------------------------------------------

// An ndarray ext around a hand-made payload.
std::vector<uint8_t> with_array_payload(const std::function<void(Packer&)>& payload,
                                        int8_t code = 1) {
  std::vector<uint8_t> inner;
  Packer q(inner);
  payload(q);
  std::vector<uint8_t> out;
  Packer p(out);
  p.map_header(1);
  p.str("w");
  p.ext(code, inner.data(), inner.size());
  return out;
}

TEST(FlaxMsgpackNegative, TruncatedFileAtEveryLength) {
  std::vector<uint8_t> good = golden_bytes("flax_params.msgpack");
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_THROW(flax_from_bytes(std::vector<uint8_t>(good.begin(), good.begin() + long(n)), "cut"),
                 FormatError)
        << "length " << n;
  TempDir dir;
  loom::testing::write_bytes(dir.file("t.msgpack"), std::vector<uint8_t>(good.begin(), good.end() - 3));
  EXPECT_THROW_WITH(load_flax_msgpack(dir.file("t.msgpack")), FormatError, "t.msgpack", "truncated");
  EXPECT_THROW_WITH(load_flax_msgpack(dir.file("absent.msgpack")), IOError, "absent.msgpack");
}

TEST(FlaxMsgpackNegative, DepthAndLengthBombs) {
  std::vector<uint8_t> deep;
  for (int i = 0; i < 200; ++i) deep.insert(deep.end(), {0x81, 0xa1, 'a'});
  deep.push_back(0x80);
  EXPECT_THROW_WITH(flax_from_bytes(deep, "deep.msgpack"), FormatError, "deep.msgpack", "deeper");
  EXPECT_THROW_WITH(flax_from_bytes({0xdf, 0x7f, 0xff, 0xff, 0xff}, "len.msgpack"), FormatError,
                    "len.msgpack", "declares");
  // A bin inside the array payload that claims more bytes than the payload holds.
  auto bomb = with_array_payload([](Packer& q) {
    q.array_header(3);
    q.array_header(1);
    q.integer(4);
    q.str("float32");
    q.bin_header(0xffffffffu);
  });
  EXPECT_THROW_WITH(flax_from_bytes(bomb, "bomb"), FormatError, "array payload of 'w'", "truncated");
}

TEST(FlaxMsgpackNegative, WrongExtPayload) {
  auto not_array = with_array_payload([](Packer& q) { q.str("hello"); });
  EXPECT_THROW_WITH(flax_from_bytes(not_array, "x"), FormatError, "entry 'w'", "[shape, dtype, data]");
  auto two = with_array_payload([](Packer& q) {
    q.array_header(2);
    q.array_header(0);
    q.str("float32");
  });
  EXPECT_THROW_WITH(flax_from_bytes(two, "x"), FormatError, "of 2 items");
  auto bad_shape = with_array_payload([](Packer& q) {
    q.array_header(3);
    q.array_header(1);
    q.integer(-2);
    q.str("float32");
    q.bin("", 0);
  });
  EXPECT_THROW_WITH(flax_from_bytes(bad_shape, "x"), FormatError, "non-negative");
  auto overflow = with_array_payload([](Packer& q) {
    q.array_header(3);
    q.array_header(2);
    q.uinteger(uint64_t(1) << 40);
    q.uinteger(uint64_t(1) << 40);
    q.str("float32");
    q.bin("", 0);
  });
  EXPECT_THROW_WITH(flax_from_bytes(overflow, "x"), FormatError, "overflows");
  auto data_not_bin = with_array_payload([](Packer& q) {
    q.array_header(3);
    q.array_header(0);
    q.str("float32");
    q.integer(5);
  });
  EXPECT_THROW_WITH(flax_from_bytes(data_not_bin, "x"), FormatError, "data must be bin");
  auto trailing = with_array_payload([](Packer& q) {
    q.array_header(3);
    q.array_header(0);
    q.str("uint8");
    q.bin("\x01", 1);
    q.nil();
  });
  EXPECT_THROW_WITH(flax_from_bytes(trailing, "x"), FormatError, "extra data");
  std::vector<uint8_t> complex_ext = {0x81, 0xa1, 'c', 0xd4, 2, 0};
  EXPECT_THROW_WITH(flax_from_bytes(complex_ext, "x"), FormatError, "entry 'c'", "complex");
  std::vector<uint8_t> unknown_ext = {0x81, 0xa1, 'u', 0xd4, 9, 0};
  EXPECT_THROW_WITH(flax_from_bytes(unknown_ext, "x"), FormatError, "unknown msgpack ExtType 9");
  auto scalar_not_0d = with_array_payload(
      [](Packer& q) {
        q.array_header(3);
        q.array_header(1);
        q.integer(1);
        q.str("uint8");
        q.bin("\x01", 1);
      },
      3);
  EXPECT_THROW_WITH(flax_from_bytes(scalar_not_0d, "x"), FormatError, "NumPy scalar");
}

TEST(FlaxMsgpackNegative, DtypeAndSizeMismatch) {
  auto short_data = with_array_payload([](Packer& q) {
    q.array_header(3);
    q.array_header(2);
    q.integer(2);
    q.integer(3);
    q.str("float32");
    q.bin(std::string(20, '\0').data(), 20);
  });
  EXPECT_THROW_WITH(flax_from_bytes(short_data, "size.msgpack"), FormatError, "size.msgpack",
                    "entry 'w'", "[2, 3]", "float32", "needs 6 x 4 bytes", "holds 20");
  auto int8 = with_array_payload([](Packer& q) {
    q.array_header(3);
    q.array_header(1);
    q.integer(2);
    q.str("int8");
    q.bin("\x01\x02", 2);
  });
  EXPECT_THROW_WITH(flax_from_bytes(int8, "x"), FormatError, "dtype 'int8' is not supported");
  auto legacy = with_array_payload([](Packer& q) {  // old writers: name and data as str
    q.array_header(3);
    q.array_header(1);
    q.integer(2);
    q.bin("uint8", 5);
    q.str(std::string("\x05\x06", 2));
  });
  EXPECT_EQ(flax_from_bytes(legacy, "x").at("w").tensor().to_vector<int32_t>(), (std::vector<int32_t>{5, 6}));
}

TEST(FlaxMsgpackNegative, MalformedStateDicts) {
  std::vector<uint8_t> b;
  Packer p(b);
  p.map_header(2);
  p.str("a"), p.nil();
  p.str("a"), p.nil();
  EXPECT_THROW_WITH(flax_from_bytes(b, "x"), FormatError, "duplicate key 'a'");
  b.clear();
  p.map_header(1);
  p.integer(1), p.nil();
  EXPECT_THROW_WITH(flax_from_bytes(b, "x"), FormatError, "key is a msgpack int");
  b.clear();
  p.map_header(1);
  p.str("name"), p.str("Dense");
  EXPECT_THROW_WITH(flax_from_bytes(b, "x"), FormatError, "entry 'name'", "str leaf");

  auto chunked = [&](const std::function<void(Packer&)>& body) {
    b.clear();
    p.map_header(1);
    p.str("big");
    body(p);
    return b;
  };
  auto chunk = [](Packer& q, int64_t n, const char* dtype, size_t item) {
    std::vector<uint8_t> inner;
    Packer r(inner);
    r.array_header(3);
    r.array_header(1);
    r.integer(n);
    r.str(dtype);
    std::vector<uint8_t> zeros(size_t(n) * item);
    r.bin(zeros.data(), zeros.size());
    q.ext(1, inner.data(), inner.size());
  };
  auto wrong_total = chunked([&](Packer& q) {
    q.map_header(3);
    q.str("__msgpack_chunked_array__"), q.boolean(true);
    q.str("shape"), q.map_header(1), q.str("0"), q.integer(5);
    q.str("chunks"), q.map_header(1), q.str("0");
    chunk(q, 4, "float32", 4);
  });
  EXPECT_THROW_WITH(flax_from_bytes(wrong_total, "x"), FormatError, "entry 'big'", "hold 4 elements",
                    "needs 5");
  auto mixed = chunked([&](Packer& q) {
    q.map_header(3);
    q.str("__msgpack_chunked_array__"), q.boolean(true);
    q.str("shape"), q.map_header(1), q.str("0"), q.integer(4);
    q.str("chunks"), q.map_header(2), q.str("0");
    chunk(q, 2, "float32", 4);
    q.str("1");
    chunk(q, 2, "int32", 4);
  });
  EXPECT_THROW_WITH(flax_from_bytes(mixed, "x"), FormatError, "differs");
  auto missing_key = chunked([&](Packer& q) {
    q.map_header(3);
    q.str("__msgpack_chunked_array__"), q.boolean(true);
    q.str("shape"), q.map_header(1), q.str("0"), q.integer(2);
    q.str("chunks"), q.map_header(1), q.str("7");
    chunk(q, 2, "float32", 4);
  });
  EXPECT_THROW_WITH(flax_from_bytes(missing_key, "x"), FormatError, "missing \"0\"");
  auto no_shape = chunked([&](Packer& q) {
    q.map_header(1);
    q.str("__msgpack_chunked_array__"), q.boolean(true);
  });
  EXPECT_THROW_WITH(flax_from_bytes(no_shape, "x"), FormatError, "needs a 'shape' dict");
}

}  // namespace
}  // namespace loom::train

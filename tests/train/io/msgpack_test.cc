#include "train/io/msgpack.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "tests/train/io/io_test_util.h"

namespace loom::train::msgpack {
namespace {

std::vector<uint8_t> packed(const std::function<void(Packer&)>& f) {
  std::vector<uint8_t> out;
  Packer p(out);
  f(p);
  return out;
}

// Expected bytes are msgpack-python 1.2.4's packb(x, use_bin_type=True).
TEST(Msgpack, IntegersUseTheSmallestFormLikeMsgpackPython) {
  auto i = [](int64_t v) { return packed([&](Packer& p) { p.integer(v); }); };
  EXPECT_EQ(i(0), (std::vector<uint8_t>{0x00}));
  EXPECT_EQ(i(127), (std::vector<uint8_t>{0x7f}));
  EXPECT_EQ(i(128), (std::vector<uint8_t>{0xcc, 0x80}));
  EXPECT_EQ(i(256), (std::vector<uint8_t>{0xcd, 0x01, 0x00}));
  EXPECT_EQ(i(65536), (std::vector<uint8_t>{0xce, 0x00, 0x01, 0x00, 0x00}));
  EXPECT_EQ(i(4294967296LL), (std::vector<uint8_t>{0xcf, 0, 0, 0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(i(-1), (std::vector<uint8_t>{0xff}));
  EXPECT_EQ(i(-32), (std::vector<uint8_t>{0xe0}));
  EXPECT_EQ(i(-33), (std::vector<uint8_t>{0xd0, 0xdf}));
  EXPECT_EQ(i(-129), (std::vector<uint8_t>{0xd1, 0xff, 0x7f}));
  EXPECT_EQ(i(-32769), (std::vector<uint8_t>{0xd2, 0xff, 0xff, 0x7f, 0xff}));
  EXPECT_EQ(i(INT64_MIN), (std::vector<uint8_t>{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(packed([](Packer& p) { p.uinteger(UINT64_MAX); }),
            (std::vector<uint8_t>{0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
}

TEST(Msgpack, StringsBinsExtsAndContainers) {
  EXPECT_EQ(packed([](Packer& p) { p.str("abc"); }), (std::vector<uint8_t>{0xa3, 'a', 'b', 'c'}));
  auto s32 = packed([](Packer& p) { p.str(std::string(32, 'x')); });
  EXPECT_EQ(s32[0], 0xd9);  // str8 (use_bin_type=True)
  EXPECT_EQ(s32[1], 32);
  auto s256 = packed([](Packer& p) { p.str(std::string(256, 'x')); });
  EXPECT_EQ((std::vector<uint8_t>(s256.begin(), s256.begin() + 3)), (std::vector<uint8_t>{0xda, 1, 0}));
  EXPECT_EQ(packed([](Packer& p) { p.bin("\x01\x02", 2); }), (std::vector<uint8_t>{0xc4, 2, 1, 2}));
  EXPECT_EQ(packed([](Packer& p) { p.ext(1, "\x07", 1); }), (std::vector<uint8_t>{0xd4, 1, 7}));
  EXPECT_EQ(packed([](Packer& p) { p.ext(3, "abcd", 4); }),
            (std::vector<uint8_t>{0xd6, 3, 'a', 'b', 'c', 'd'}));
  EXPECT_EQ(packed([](Packer& p) { p.ext(1, "abc", 3); }),
            (std::vector<uint8_t>{0xc7, 3, 1, 'a', 'b', 'c'}));
  EXPECT_EQ(packed([](Packer& p) { p.float64(1.5); }),
            (std::vector<uint8_t>{0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(packed([](Packer& p) { p.array_header(16); }), (std::vector<uint8_t>{0xdc, 0, 16}));
  EXPECT_EQ(packed([](Packer& p) { p.map_header(2); }), (std::vector<uint8_t>{0x82}));
  EXPECT_EQ(packed([](Packer& p) {
              p.nil();
              p.boolean(true);
              p.boolean(false);
            }),
            (std::vector<uint8_t>{0xc0, 0xc3, 0xc2}));
}

TEST(Msgpack, RoundTripOfEveryType) {
  std::vector<uint8_t> blob = {0, 1, 2, 255};
  std::vector<std::pair<Value, Value>> m;
  m.emplace_back(Value::str("k"), Value::integer(-5));
  m.emplace_back(Value::integer(3), Value());
  Value v = Value::array({Value(), Value::boolean(true), Value::integer(-300),
                          Value::uinteger(UINT64_MAX), Value::float64(-2.25),
                          Value::float32(0.5f), Value::str(std::string(70000, 'z')),
                          Value::bin(blob), Value::ext(-7, blob), Value::map(std::move(m)),
                          Value::array(std::vector<Value>(20, Value::integer(1)))});
  std::vector<uint8_t> bytes = pack(v);
  Value back = unpack(bytes, "roundtrip");
  EXPECT_EQ(pack(back), bytes);
  const auto& a = back.as_array();
  ASSERT_EQ(a.size(), 11u);
  EXPECT_TRUE(a[0].is_nil());
  EXPECT_TRUE(a[1].as_bool());
  EXPECT_EQ(a[2].as_int(), -300);
  EXPECT_TRUE(a[3].is_big_uint());
  EXPECT_EQ(a[3].as_uint(), UINT64_MAX);
  EXPECT_THROW(a[3].as_int(), FormatError);
  EXPECT_EQ(a[4].as_float(), -2.25);
  EXPECT_TRUE(a[5].is_float32());
  EXPECT_EQ(a[6].as_str().size(), 70000u);
  EXPECT_EQ(std::vector<uint8_t>(a[7].as_bin().begin(), a[7].as_bin().end()), blob);
  EXPECT_EQ(a[8].ext_type(), -7);
  EXPECT_EQ(a[9].find("k")->as_int(), -5);
  EXPECT_EQ(a[9].find("absent"), nullptr);
  EXPECT_EQ(a[10].as_array().size(), 20u);
  EXPECT_THROW(a[2].as_str(), FormatError);
}

TEST(MsgpackNegative, TruncatedInputAtEveryLength) {
  std::vector<uint8_t> blob(300, 7);
  Value v = Value::map({{Value::str("a"), Value::array({Value::integer(70000), Value::float64(1),
                                                        Value::bin(blob), Value::ext(1, blob),
                                                        Value::str("hello")})}});
  std::vector<uint8_t> bytes = pack(v);
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::span<const uint8_t> cut(bytes.data(), n);
    EXPECT_THROW(unpack(cut, "cut"), FormatError) << "length " << n;
  }
  EXPECT_THROW_WITH(unpack(std::span<const uint8_t>(bytes.data(), 5), "trunc.msgpack"), FormatError,
                    "trunc.msgpack", "remain");
}

TEST(MsgpackNegative, DepthBomb) {
  std::vector<uint8_t> bomb(100000, 0x91);  // [[[[...]]]] 100000 levels
  bomb.push_back(0xc0);
  EXPECT_THROW_WITH(unpack(bomb, "bomb"), FormatError, "bomb", "deeper than 64");
  std::vector<uint8_t> maps;
  for (int i = 0; i < 1000; ++i) maps.insert(maps.end(), {0x81, 0xa1, 'k'});
  maps.push_back(0xc0);
  EXPECT_THROW_WITH(unpack(maps, "maps"), FormatError, "deeper");
  // 64 levels are fine.
  std::vector<uint8_t> ok(64, 0x91);
  ok.push_back(0xc0);
  EXPECT_NO_THROW(unpack(ok, "ok"));
}

TEST(MsgpackNegative, LengthBombs) {
  EXPECT_THROW_WITH(unpack(std::vector<uint8_t>{0xdd, 0xff, 0xff, 0xff, 0xff}, "a"), FormatError,
                    "declares 4294967295 items", "0 bytes remain");
  EXPECT_THROW_WITH(unpack(std::vector<uint8_t>{0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0}, "m"),
                    FormatError, "declares 4294967295 entries");
  EXPECT_THROW_WITH(unpack(std::vector<uint8_t>{0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, "s"), FormatError,
                    "needs 4294967295 bytes", "only 1 remain");
  EXPECT_THROW_WITH(unpack(std::vector<uint8_t>{0xc6, 0x7f, 0xff, 0xff, 0xff}, "b"), FormatError,
                    "needs 2147483647 bytes");
  EXPECT_THROW_WITH(unpack(std::vector<uint8_t>{0xc9, 0xff, 0xff, 0xff, 0xff, 1}, "e"), FormatError,
                    "ext payload");
  // Many small objects are bounded too.
  UnpackOptions opt;
  opt.max_objects = 100;
  std::vector<uint8_t> many = {0xdc, 0x01, 0x00};
  many.resize(many.size() + 256, 0xc0);
  EXPECT_THROW_WITH(unpack(many, "many", opt), FormatError, "more than 100 objects");
}

TEST(MsgpackNegative, MalformedBytes) {
  EXPECT_THROW_WITH(unpack(std::vector<uint8_t>{0xc1}, "x"), FormatError, "invalid type byte 193");
  EXPECT_THROW_WITH(unpack(std::vector<uint8_t>{0xc0, 0xc0}, "x"), FormatError, "extra data");
  EXPECT_THROW_WITH(unpack(std::vector<uint8_t>{0xa2, 0xc3, 0x28}, "x"), FormatError,
                    "not valid UTF-8");
  EXPECT_THROW(unpack(std::vector<uint8_t>{}, "x"), FormatError);
  UnpackOptions raw;
  raw.validate_utf8 = false;
  EXPECT_EQ(unpack(std::vector<uint8_t>{0xa2, 0xc3, 0x28}, "x", raw).as_str(), "\xc3\x28");
}

}  // namespace
}  // namespace loom::train::msgpack

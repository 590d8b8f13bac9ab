#include "core/dtype.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/error.h"

namespace loom {
namespace {

const std::vector<DType> kAll = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32,
                                 DType::I64, DType::U8,  DType::U32,  DType::Bool};

TEST(DType, NamesAndSizes) {
  struct Case {
    DType t;
    const char* name;
    size_t size;
    bool floating;
  };
  for (const Case& c : {Case{DType::F32, "float32", 4, true}, Case{DType::F64, "float64", 8, true},
                        Case{DType::BF16, "bfloat16", 2, true}, Case{DType::F16, "float16", 2, true},
                        Case{DType::I32, "int32", 4, false}, Case{DType::I64, "int64", 8, false},
                        Case{DType::U8, "uint8", 1, false}, Case{DType::U32, "uint32", 4, false},
                        Case{DType::Bool, "bool", 1, false}}) {
    EXPECT_EQ(dtype_name(c.t), c.name);
    EXPECT_EQ(dtype_from_name(c.name), c.t);
    EXPECT_EQ(dtype_size(c.t), c.size) << c.name;
    EXPECT_EQ(is_floating(c.t), c.floating) << c.name;
    EXPECT_EQ(is_integral(c.t), !c.floating) << c.name;
  }
  EXPECT_EQ(sizeof(bfloat16), 2u);
  EXPECT_EQ(sizeof(float16), 2u);
}

TEST(DType, UnknownNameIsDTypeError) {
  try {
    dtype_from_name("float8");
    FAIL() << "no throw";
  } catch (const DTypeError& e) {
    EXPECT_NE(std::string(e.what()).find("'float8'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dtype_from_name("Float32"), DTypeError);
  EXPECT_THROW(dtype_from_name(""), DTypeError);
}

TEST(DType, CppTypesMapToDTypes) {
  EXPECT_EQ(dtype_v<float>, DType::F32);
  EXPECT_EQ(dtype_v<double>, DType::F64);
  EXPECT_EQ(dtype_v<bfloat16>, DType::BF16);
  EXPECT_EQ(dtype_v<float16>, DType::F16);
  EXPECT_EQ(dtype_v<int32_t>, DType::I32);
  EXPECT_EQ(dtype_v<int64_t>, DType::I64);
  EXPECT_EQ(dtype_v<uint8_t>, DType::U8);
  EXPECT_EQ(dtype_v<uint32_t>, DType::U32);
  EXPECT_EQ(dtype_v<bool>, DType::Bool);
  for (DType t : kAll) {
    visit_dtype(t, [&](auto z) {
      EXPECT_EQ(dtype_v<decltype(z)>, t);
      EXPECT_EQ(sizeof(z), dtype_size(t));
    });
  }
}

// jnp.promote_types for explicitly typed arrays (JAX's type lattice).
TEST(DType, PromotionFollowsJax) {
  using D = DType;
  struct Case {
    D a, b, want;
  };
  const Case cases[] = {
      {D::F32, D::F32, D::F32},   {D::F32, D::F64, D::F64},   {D::BF16, D::F16, D::F32},
      {D::BF16, D::F32, D::F32},  {D::F16, D::F32, D::F32},   {D::BF16, D::F64, D::F64},
      {D::F16, D::F64, D::F64},   {D::BF16, D::BF16, D::BF16}, {D::I32, D::F32, D::F32},
      {D::I32, D::BF16, D::BF16}, {D::I64, D::F16, D::F16},   {D::U8, D::BF16, D::BF16},
      {D::I64, D::F32, D::F32},   {D::I32, D::F64, D::F64},   {D::Bool, D::F32, D::F32},
      {D::Bool, D::BF16, D::BF16}, {D::Bool, D::I32, D::I32}, {D::Bool, D::U8, D::U8},
      {D::Bool, D::Bool, D::Bool}, {D::U8, D::I32, D::I32},   {D::U8, D::I64, D::I64},
      {D::U8, D::U32, D::U32},    {D::U32, D::I32, D::I64},   {D::U32, D::I64, D::I64},
      {D::I32, D::I64, D::I64},   {D::U8, D::U8, D::U8},      {D::U32, D::U32, D::U32},
      {D::Bool, D::U32, D::U32},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(promote_types(c.a, c.b), c.want)
        << dtype_name(c.a) << " + " << dtype_name(c.b) << " gave "
        << dtype_name(promote_types(c.a, c.b)) << ", want " << dtype_name(c.want);
  }
}

TEST(DType, PromotionIsSymmetricAndIdempotent) {
  for (DType a : kAll) {
    EXPECT_EQ(promote_types(a, a), a);
    for (DType b : kAll) {
      DType ab = promote_types(a, b);
      EXPECT_EQ(ab, promote_types(b, a)) << dtype_name(a) << ", " << dtype_name(b);
      // The result is at least as wide as either side: promoting again changes nothing.
      EXPECT_EQ(promote_types(ab, a), ab);
      EXPECT_EQ(promote_types(ab, b), ab);
      if (is_floating(a) || is_floating(b)) {
        EXPECT_TRUE(is_floating(ab));
      }
    }
  }
}

TEST(DType, HostConvert) {
  EXPECT_EQ(convert<int32_t>(2.9), 2);
  EXPECT_EQ(convert<int32_t>(-2.9f), -2);
  EXPECT_EQ(convert<bool>(0.5), true);
  EXPECT_EQ(convert<bool>(0.0f), false);
  EXPECT_EQ(convert<bool>(bfloat16(-0.0f)), false);
  EXPECT_EQ(convert<bool>(float16(1e-7f)), true);  // a f16 subnormal is non-zero
  EXPECT_EQ(convert<float>(true), 1.0f);
  EXPECT_EQ(convert<bfloat16>(3.0).bits, 0x4040);
  EXPECT_EQ(convert<float16>(int64_t(-2)).bits, 0xc000);
  EXPECT_EQ(convert<int64_t>(float16::from_bits(0x7bff)), 65504);
  EXPECT_EQ(convert<float16>(bfloat16(1.0f)).bits, 0x3c00);
  EXPECT_EQ(convert<uint8_t>(int32_t(200)), 200);
}

}  // namespace
}  // namespace loom

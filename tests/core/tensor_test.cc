// Tensor core on the CPU: creation, element access, reshape, casts, strided views, devices.
#include "core/tensor.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "core/memory.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

const std::vector<DType> kAllDTypes = {DType::F32, DType::F64, DType::BF16,
                                       DType::F16, DType::I32, DType::I64,
                                       DType::U8,  DType::U32, DType::Bool};

bool is_signed(DType t) { return t != DType::U8 && t != DType::U32 && t != DType::Bool; }

TEST(Tensor, UndefinedTensor) {
  Tensor t;
  EXPECT_FALSE(t.defined());
  EXPECT_THROW(t.device(), ValueError);
  EXPECT_THROW(t.raw_data(), ValueError);
  EXPECT_EQ(t.str(), "Tensor(undefined)");
}

TEST(Tensor, EmptyHasShapeStridesAndStorage) {
  Tensor t = Tensor::empty({2, 3, 4}, DType::F64);
  EXPECT_TRUE(t.defined());
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.ndim(), 3);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 24u * 8);
  EXPECT_EQ(t.dim(-1), 4);
  EXPECT_EQ(t.dim(0), 2);
  EXPECT_THROW(t.dim(3), IndexError);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_FALSE(t.is_cuda());
  EXPECT_GE(t.storage()->nbytes(), t.nbytes());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);  // 64-byte aligned
  EXPECT_THROW_WITH(Tensor::empty({2, -1}), ShapeError, "[2, -1]");
  EXPECT_THROW_WITH(t.data<float>(), DTypeError, "float32", "float64");
  Tensor none = Tensor::empty({0, 3});
  EXPECT_EQ(none.numel(), 0);
  EXPECT_TRUE(none.to_vector<float>().empty());
}

TEST(Tensor, ZerosOnesFullScalar) {
  for (DType t : kAllDTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    Tensor z = zeros({2, 3}, t), o = ones({4}, t), f = full({3}, 2, t);
    EXPECT_EQ(z.dtype(), t);
    EXPECT_EQ(z.shape(), (Shape{2, 3}));
    EXPECT_EQ(z.to_vector<double>(), std::vector<double>(6, 0.0));
    EXPECT_EQ(o.to_vector<double>(), std::vector<double>(4, 1.0));
    EXPECT_EQ(f.to_vector<double>(), std::vector<double>(3, t == DType::Bool ? 1.0 : 2.0));
  }
  EXPECT_EQ(full({2}, 2.7, DType::I32).to_vector<int32_t>(), (std::vector<int32_t>{2, 2}));
  EXPECT_EQ(full({2}, -2.7, DType::I64).to_vector<int64_t>(), (std::vector<int64_t>{-2, -2}));
  EXPECT_EQ(full({1}, 0.1, DType::BF16).item<float>(), static_cast<float>(bfloat16(0.1f)));
  EXPECT_EQ(full({1}, 0.1, DType::F16).item<float>(), static_cast<float>(float16(0.1f)));
  EXPECT_EQ(full({1}, 0.1, DType::F64).item<double>(), 0.1);
  EXPECT_EQ(full({1}, 1e5, DType::F16).item<float>(), INFINITY);
  EXPECT_TRUE(std::isnan(full({1}, NAN, DType::BF16).item<float>()));
  Tensor s = scalar(3.5);
  EXPECT_EQ(s.ndim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(s.shape(), Shape{});
  EXPECT_EQ(s.dtype(), DType::F32);
  EXPECT_EQ(s.item<float>(), 3.5f);
  EXPECT_EQ(scalar(7, DType::I64).item<int64_t>(), 7);
  EXPECT_EQ(zeros({}).numel(), 1);
}

TEST(Tensor, Arange) {
  Tensor a = arange(5);
  EXPECT_EQ(a.dtype(), DType::F32);
  EXPECT_EQ(a.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(1, 2, 0.25, DType::F64).to_vector<double>(),
            (std::vector<double>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(arange(5, 0, -2, DType::I32).to_vector<int32_t>(), (std::vector<int32_t>{5, 3, 1}));
  EXPECT_EQ(arange(0, 1, 0.1, DType::F64).numel(), 10);
  EXPECT_EQ(arange(3, DType::I64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(arange(0).shape(), (Shape{0}));
  EXPECT_EQ(arange(5, 1).shape(), (Shape{0}));  // empty, like numpy
  EXPECT_EQ(arange(4, DType::U8).dtype(), DType::U8);
  EXPECT_THROW_WITH(arange(0, 1, 0), ValueError, "step");
}

TEST(Tensor, FromVectorAndLike) {
  Tensor t = from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.dtype(), DType::I32);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.to_vector<int32_t>(), (std::vector<int32_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(t.data<int32_t>()[4], 5);
  EXPECT_EQ(from_vector<bool>({true, false, true}, {3}).to_vector<bool>(),
            (std::vector<bool>{true, false, true}));
  EXPECT_EQ(from_vector<bfloat16>({bfloat16(1.5f)}, {1}).dtype(), DType::BF16);
  EXPECT_EQ(from_vector<float16>({float16(-2.0f)}, {}).item<double>(), -2.0);
  EXPECT_EQ(from_vector<uint32_t>({4000000000u}, {1}).item<uint32_t>(), 4000000000u);
  EXPECT_EQ(from_vector<uint32_t>({4000000000u}, {1}).item<int64_t>(), 4000000000);
  EXPECT_EQ(from_vector<float>({}, {0, 2}).numel(), 0);
  EXPECT_THROW_WITH(from_vector<float>({1, 2, 3}, {2, 2}), ShapeError, "3 values", "[2, 2]");
  // The input vector is copied.
  std::vector<double> v{1, 2};
  Tensor c = from_vector(v, {2});
  v[0] = 100;
  EXPECT_EQ(c.to_vector<double>()[0], 1.0);

  Tensor base = full({2, 2}, 3, DType::F16);
  for (const Tensor& like : {zeros_like(base), ones_like(base), full_like(base, 9),
                             empty_like(base)}) {
    EXPECT_EQ(like.shape(), base.shape());
    EXPECT_EQ(like.dtype(), DType::F16);
    EXPECT_TRUE(like.device().is_cpu());
    EXPECT_NE(like.storage(), base.storage());
  }
  EXPECT_EQ(zeros_like(base).to_vector<float>(), std::vector<float>(4, 0));
  EXPECT_EQ(ones_like(base).to_vector<float>(), std::vector<float>(4, 1));
  EXPECT_EQ(full_like(base, 9).to_vector<float>(), std::vector<float>(4, 9));
}

TEST(Tensor, ItemAndToVectorConvert) {
  Tensor f = from_vector<float>({1.75f, -2.5f, 0.0f, 300.0f}, {4});
  EXPECT_EQ(f.to_vector<int32_t>(), (std::vector<int32_t>{1, -2, 0, 300}));
  EXPECT_EQ(f.to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 0, 300}));
  EXPECT_EQ(f.to_vector<bool>(), (std::vector<bool>{true, true, false, true}));
  EXPECT_EQ(f.to_vector<double>(), (std::vector<double>{1.75, -2.5, 0, 300}));
  std::vector<bfloat16> b = f.to_vector<bfloat16>();
  EXPECT_EQ(b[0].bits, bfloat16(1.75f).bits);
  std::vector<float16> h = f.to_vector<float16>();
  EXPECT_EQ(h[1].bits, float16(-2.5f).bits);
  EXPECT_EQ(from_vector<bool>({true}, {1, 1}).item<float>(), 1.0f);
  EXPECT_EQ(from_vector<int64_t>({-7}, {1, 1, 1}).item<double>(), -7.0);
  EXPECT_EQ(from_vector<uint8_t>({255}, {}).item<int32_t>(), 255);
  EXPECT_EQ(from_vector<double>({0.1}, {1}).item<float>(), 0.1f);
  EXPECT_THROW_WITH(f.item<float>(), ShapeError, "item", "[4]");
  EXPECT_THROW_WITH(zeros({0}).item<float>(), ShapeError, "[0]");
}

TEST(Tensor, Reshape) {
  Tensor t = arange(24).reshape({2, 3, 4});
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.reshape({-1}).shape(), (Shape{24}));
  EXPECT_EQ(t.reshape({4, -1}).shape(), (Shape{4, 6}));
  EXPECT_EQ(t.reshape({-1, 2, 3}).shape(), (Shape{4, 2, 3}));
  EXPECT_EQ(t.reshape({1, 24, 1}).shape(), (Shape{1, 24, 1}));
  EXPECT_EQ(t.reshape({24}).to_vector<float>()[23], 23.0f);
  EXPECT_EQ(t.reshape({6, 4}).storage(), t.storage());  // a view, no copy
  EXPECT_EQ(scalar(1).reshape({1, 1}).shape(), (Shape{1, 1}));
  EXPECT_EQ(zeros({1, 1}).reshape({}).shape(), Shape{});
  EXPECT_EQ(zeros({0, 3}).reshape({-1, 3}).shape(), (Shape{0, 3}));
  EXPECT_THROW_WITH(t.reshape({5, -1}), ShapeError, "reshape", "[2, 3, 4]", "[5, -1]");
  EXPECT_THROW_WITH(t.reshape({7}), ShapeError, "reshape", "[2, 3, 4]", "[7]", "24 elements");
  EXPECT_THROW_WITH(t.reshape({-1, -1}), ShapeError, "more than one -1", "[-1, -1]");
  EXPECT_THROW_WITH(t.reshape({-2, 12}), ShapeError, "negative", "[-2, 12]");
}

// Values that every dtype in the pair can hold exactly (so both sides are well defined).
std::vector<double> cast_values(DType from, DType to) {
  if (from == DType::Bool || to == DType::Bool) {
    std::vector<double> v{0, 1};
    if (from != DType::Bool) v.insert(v.end(), {2, 127});
    if (is_floating(from)) v.push_back(0.5);
    if (from != DType::Bool && is_signed(from)) v.push_back(-3);
    return v;
  }
  std::vector<double> v{0, 1, 2, 3, 7, 100, 127};
  if (from != DType::U8 && to != DType::U8) v.insert(v.end(), {256, 1024, 2048});
  else v.push_back(255);
  if (is_floating(from)) v.insert(v.end(), {0.5, 2.75, 126.5});
  if (is_signed(from) && is_signed(to)) v.insert(v.end(), {-1, -2, -100});
  if (is_signed(from) && is_signed(to) && is_floating(from)) v.insert(v.end(), {-0.5, -2.75});
  return v;
}

double cast_reference(double v, DType to) {
  if (to == DType::Bool) return v != 0 ? 1 : 0;
  if (!is_floating(to)) return std::trunc(v);
  return v;  // the values above are exact in every floating dtype
}

TEST(Tensor, CastsBetweenAllDTypes) {
  for (DType from : kAllDTypes) {
    for (DType to : kAllDTypes) {
      SCOPED_TRACE(std::string(dtype_name(from)) + " -> " + std::string(dtype_name(to)));
      std::vector<double> values = cast_values(from, to);
      Tensor src = from_vector(values, {int64_t(values.size())}).to(from);
      ASSERT_EQ(src.to_vector<double>(), values);  // exact in the source dtype
      Tensor out = src.to(to);
      EXPECT_EQ(out.dtype(), to);
      EXPECT_EQ(out.shape(), src.shape());
      std::vector<double> got = out.to_vector<double>();
      for (size_t i = 0; i < values.size(); ++i)
        EXPECT_EQ(got[i], cast_reference(values[i], to)) << "value " << values[i];
      if (from == to) {
        EXPECT_EQ(out.storage(), src.storage());  // no-op cast
      }
    }
  }
}

TEST(Tensor, CastsRoundToNearestEven) {
  Tensor f = from_vector<float>({1.0f + std::ldexp(1.0f, -8), 1.0f + 3 * std::ldexp(1.0f, -8),
                                 65520.0f, std::ldexp(1.0f, -25), 0.1f, NAN, -INFINITY},
                                {7});
  std::vector<bfloat16> b = f.to(DType::BF16).to_vector<bfloat16>();
  EXPECT_EQ(b[0].bits, 0x3f80);
  EXPECT_EQ(b[1].bits, 0x3f82);
  EXPECT_EQ(b[4].bits, 0x3dcd);
  EXPECT_TRUE(std::isnan(static_cast<float>(b[5])));
  EXPECT_EQ(b[6].bits, 0xff80);
  std::vector<float16> h = f.to(DType::F16).to_vector<float16>();
  EXPECT_EQ(h[2].bits, 0x7c00);  // overflow to inf
  EXPECT_EQ(h[3].bits, 0x0000);  // tie to zero
  EXPECT_EQ(h[4].bits, 0x2e66);
  EXPECT_TRUE(std::isnan(static_cast<float>(h[5])));
  EXPECT_EQ(h[6].bits, 0xfc00);
  // Through the half types and back.
  EXPECT_EQ(f.to(DType::F16).to(DType::BF16).to_vector<bfloat16>()[4].bits,
            bfloat16(static_cast<float>(float16(0.1f))).bits);
  EXPECT_EQ(from_vector<double>({0.1}, {1}).to(DType::F32).item<float>(), 0.1f);
  EXPECT_EQ(from_vector<int64_t>({16777217}, {1}).to(DType::F32).item<double>(), 16777216.0);
  EXPECT_EQ(from_vector<float>({0.25f, -0.0f}, {2}).to(DType::Bool).to_vector<bool>(),
            (std::vector<bool>{true, false}));
}

TEST(Tensor, StridedViewsAreMadeContiguous) {
  Tensor base = arange(6, DType::I32).reshape({2, 3});
  // The transpose as a view: shape [3, 2], strides [1, 3].
  Tensor tr(base.storage(), {3, 2}, {1, 3}, 0, DType::I32);
  EXPECT_FALSE(tr.is_contiguous());
  EXPECT_EQ(tr.to_vector<int32_t>(), (std::vector<int32_t>{0, 3, 1, 4, 2, 5}));
  Tensor c = tr.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), base.storage());
  EXPECT_EQ(c.strides(), (Shape{2, 1}));
  EXPECT_EQ(c.to_vector<int32_t>(), (std::vector<int32_t>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(base.contiguous().storage(), base.storage());
  // Reshape of a non-contiguous view copies first.
  EXPECT_EQ(tr.reshape({6}).to_vector<int32_t>(), (std::vector<int32_t>{0, 3, 1, 4, 2, 5}));
  // Casting a view.
  EXPECT_EQ(tr.to(DType::F64).to_vector<double>(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  // Offset and step: column 1 and 2 of each row -> [[1, 2], [4, 5]]; every other column.
  Tensor cols(base.storage(), {2, 2}, {3, 1}, 1, DType::I32);
  EXPECT_FALSE(cols.is_contiguous());
  EXPECT_EQ(cols.contiguous().to_vector<int32_t>(), (std::vector<int32_t>{1, 2, 4, 5}));
  Tensor step(base.storage(), {2, 2}, {3, 2}, 0, DType::I32);
  EXPECT_EQ(step.to_vector<int32_t>(), (std::vector<int32_t>{0, 2, 3, 5}));
  // A stride-0 broadcast view repeats the row.
  Tensor row(base.storage(), {3, 3}, {0, 1}, 3, DType::I32);
  EXPECT_EQ(row.contiguous().to_vector<int32_t>(),
            (std::vector<int32_t>{3, 4, 5, 3, 4, 5, 3, 4, 5}));
  // Size-1 dimensions may have any stride and still be contiguous.
  Tensor ones_dims(base.storage(), {1, 6, 1}, {99, 1, 42}, 0, DType::I32);
  EXPECT_TRUE(ones_dims.is_contiguous());
  // A 4-D permutation.
  Tensor b4 = arange(24, DType::I64).reshape({2, 3, 2, 2});
  Tensor p(b4.storage(), {2, 2, 3, 2}, {12, 1, 4, 2}, 0, DType::I64);  // axes (0, 3, 1, 2)
  std::vector<int64_t> want;
  for (int a = 0; a < 2; ++a)
    for (int d = 0; d < 2; ++d)
      for (int b = 0; b < 3; ++b)
        for (int c2 = 0; c2 < 2; ++c2) want.push_back(a * 12 + b * 4 + c2 * 2 + d);
  EXPECT_EQ(p.contiguous().to_vector<int64_t>(), want);
}

TEST(Device, ParseAndPrint) {
  EXPECT_EQ(Device::parse("cpu"), Device::cpu());
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_EQ(Device::parse("gpu"), Device::cuda(0));
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
  EXPECT_EQ(Device::cuda(1).str(), "cuda:1");
  EXPECT_EQ(Device::cpu().str(), "cpu");
  EXPECT_NE(Device::cuda(0), Device::cuda(1));
  for (const char* bad : {"", "CPU", "tpu", "cuda:", "cuda:-1", "cuda:x", "cuda:1x", "cuda0",
                          "cuda: 1", "cuda:+1", "cuda:99999999999", "cpu:0"}) {
    SCOPED_TRACE(bad);
    std::string quoted = std::string("'") + bad + "'";
    EXPECT_THROW_WITH(Device::parse(bad), DeviceError, quoted.c_str(),
                      "expected cpu, cuda or cuda:N");
  }
}

TEST(Device, CudaWithoutGpuIsAClearDeviceError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present";
  EXPECT_EQ(cuda_device_count(), 0);
  EXPECT_EQ(default_device(), Device::cpu());
  auto check = [](const std::function<void()>& f, const char* what, const char* device = "cuda:0") {
    try {
      f();
      ADD_FAILURE() << what << " did not throw";
    } catch (const DeviceError& e) {
      std::string msg = e.what();
      bool clear = msg.find("no GPU is visible") != std::string::npos ||
                   msg.find("built without CUDA") != std::string::npos;
      EXPECT_TRUE(clear) << what << ": " << msg;
      EXPECT_NE(msg.find(device), std::string::npos) << what << ": " << msg;
    }
  };
  check([] { zeros({2}, DType::F32, Device::cuda()); }, "zeros on cuda");
  check([] { arange(3).to(Device::cuda()); }, "to(cuda)");
  check([] { Tensor::empty({1}, DType::F32, Device::parse("cuda:1")); }, "empty on cuda:1",
        "cuda:1");
  check([] { memory_stats(Device::cuda()); }, "memory_stats(cuda)");
  check([] { empty_cache(Device::cuda()); }, "empty_cache(cuda)");
}

TEST(Memory, CpuHasNoCachingAllocator) {
  zeros({1000});
  MemoryStats s = memory_stats(Device::cpu());
  EXPECT_EQ(s.allocated, 0u);
  EXPECT_EQ(s.reserved, 0u);
  EXPECT_EQ(s.peak_allocated, 0u);
  EXPECT_EQ(s.num_device_mallocs, 0);
  EXPECT_NO_THROW(empty_cache(Device::cpu()));
  EXPECT_NO_THROW(reset_peak_memory(Device::cpu()));
}

TEST(Tensor, CopyToCpuIsNoOp) {
  Tensor t = arange(4);
  Tensor same = t.to(Device::cpu());
  EXPECT_EQ(same.storage(), t.storage());
  Tensor d = t.detach();
  EXPECT_EQ(d.storage(), t.storage());
}

}  // namespace
}  // namespace loom

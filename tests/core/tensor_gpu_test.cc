// The tensor core on a GPU: host<->device copies, casts (equal to the CPU's, bit for bit apart
// from NaN payloads), fills, printing and strided copies of non-contiguous views (transposes
// included, which go through shared-memory tiles).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>

#include "core/ops/shape.h"
#include "core/tensor.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

const std::vector<DType> kAllDTypes = {DType::F32, DType::F64, DType::BF16,
                                       DType::F16, DType::I32, DType::I64,
                                       DType::U8,  DType::U32, DType::Bool};
const std::vector<DType> kFloatDTypes = {DType::F32, DType::F64, DType::BF16, DType::F16};

bool is_signed(DType t) { return t != DType::U8 && t != DType::U32 && t != DType::Bool; }

std::string pair_name(DType a, DType b) {
  return std::string(dtype_name(a)) + " -> " + std::string(dtype_name(b));
}

// The bytes of a tensor (any device), contiguous on the host.
std::vector<uint8_t> host_bytes(const Tensor& t) {
  Tensor h = t.to(Device::cpu()).contiguous();
  std::vector<uint8_t> out(h.nbytes());
  if (!out.empty()) std::memcpy(out.data(), h.raw_data(), out.size());
  return out;
}

bool is_nan_bits(const uint8_t* p, DType t) {
  switch (t) {
    case DType::F32: {
      float f;
      std::memcpy(&f, p, 4);
      return std::isnan(f);
    }
    case DType::F64: {
      double d;
      std::memcpy(&d, p, 8);
      return std::isnan(d);
    }
    case DType::BF16:
    case DType::F16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return t == DType::BF16 ? (b & 0x7fff) > 0x7f80 : (b & 0x7fff) > 0x7c00;
    }
    default: return false;
  }
}

// Equal bytes element by element, except that a NaN matches any NaN (the GPU's conversions
// produce the canonical NaN and may drop the sign and payload).
::testing::AssertionResult same_elements(const Tensor& gpu, const Tensor& cpu) {
  if (gpu.dtype() != cpu.dtype() || gpu.shape() != cpu.shape())
    return ::testing::AssertionFailure() << "dtype/shape differ: " << dtype_name(gpu.dtype())
                                         << shape_str(gpu.shape()) << " vs "
                                         << dtype_name(cpu.dtype()) << shape_str(cpu.shape());
  std::vector<uint8_t> a = host_bytes(gpu), b = host_bytes(cpu);
  size_t w = dtype_size(gpu.dtype()), bad = 0, first = 0;
  for (size_t i = 0; i < a.size() / (w ? w : 1); ++i) {
    const uint8_t *pa = &a[i * w], *pb = &b[i * w];
    if (std::memcmp(pa, pb, w) == 0) continue;
    if (is_nan_bits(pa, gpu.dtype()) && is_nan_bits(pb, gpu.dtype())) continue;
    if (bad++ == 0) first = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  auto val = [&](const Tensor& t, size_t i) {
    return t.to(Device::cpu()).reshape({-1}).to_vector<double>()[i];
  };
  uint64_t ga = 0, cb = 0;
  std::memcpy(&ga, &a[first * w], w);
  std::memcpy(&cb, &b[first * w], w);
  return ::testing::AssertionFailure()
         << bad << " elements differ; first at " << first << ": gpu bits 0x" << std::hex << ga
         << " cpu bits 0x" << cb << std::dec << " (gpu " << val(gpu, first) << ", cpu "
         << val(cpu, first) << ")";
}

Tensor random_values(int64_t n, DType dtype, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) {
    int64_t r = int64_t(rng() % 2001) - 1000;
    x = dtype == DType::Bool ? double(r & 1)
        : is_floating(dtype) ? double(r) / 7.0
        : is_signed(dtype)   ? double(r)
                             : double(std::abs(r) % (dtype == DType::U8 ? 256 : 1000));
  }
  return from_vector(v, {n}).to(dtype);
}

TEST(TensorGpu, HostDeviceRoundTripEveryDType) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  for (DType t : kAllDTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(7), int64_t(1000), int64_t(3 << 20) + 5}) {
      Tensor h = random_values(n, t, uint64_t(n) + 17);
      Tensor d = h.to(g);
      EXPECT_TRUE(d.is_cuda());
      EXPECT_EQ(d.device(), g);
      EXPECT_EQ(d.dtype(), t);
      EXPECT_EQ(d.shape(), h.shape());
      EXPECT_NE(d.storage(), h.storage());
      Tensor back = d.to(Device::cpu());
      EXPECT_TRUE(back.device().is_cpu());
      EXPECT_EQ(host_bytes(back), host_bytes(h)) << "n = " << n;
    }
  }
  // Multi-dimensional, and a copy to the same device is a no-op.
  Tensor m = arange(24).reshape({2, 3, 4}).to(g);
  EXPECT_EQ(m.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(m.to(g).storage(), m.storage());
  EXPECT_EQ(m.to_vector<float>()[23], 23.0f);
  EXPECT_EQ(m.reshape({-1, 4}).to_vector<int32_t>()[5], 5);
  EXPECT_EQ(scalar(2.5, DType::F64, g).item<double>(), 2.5);
  // A non-contiguous host view goes up in logical order.
  Tensor base = arange(6, DType::I32).reshape({2, 3});
  Tensor tr(base.storage(), {3, 2}, {1, 3}, 0, DType::I32);
  EXPECT_EQ(tr.to(g).to_vector<int32_t>(), (std::vector<int32_t>{0, 3, 1, 4, 2, 5}));
  EXPECT_TRUE(tr.to(g).is_contiguous());
}

TEST(TensorGpu, CreationOnDevice) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  for (DType t : kAllDTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    std::vector<double> values{0, 1, 2, 7, 100};
    if (is_signed(t)) values.insert(values.end(), {-3, -100});
    if (is_floating(t)) values.insert(values.end(), {0.1, 2.5, -1e-8, 1e-30, NAN, INFINITY});
    if (t == DType::F32 || t == DType::F64 || t == DType::F16 || t == DType::BF16)
      values.insert(values.end(), {65504, 65520, 1e5, std::ldexp(1.0, -25), std::ldexp(3.0, -25)});
    if (t == DType::I64) values.push_back(-9000000000.0);
    if (t == DType::U32) values.push_back(4000000000.0);
    for (double v : values) {
      for (Shape shape : {Shape{}, Shape{0}, Shape{5}, Shape{3, 1000}}) {
        Tensor d = full(shape, v, t, g);
        EXPECT_TRUE(d.is_cuda());
        EXPECT_TRUE(same_elements(d, full(shape, v, t))) << "value " << v;
      }
    }
    Tensor z = zeros({17, 3}, t, g), o = ones({17, 3}, t, g);
    EXPECT_TRUE(z.is_cuda());
    EXPECT_TRUE(same_elements(z, zeros({17, 3}, t)));
    EXPECT_TRUE(same_elements(o, ones({17, 3}, t)));
    EXPECT_TRUE(same_elements(zeros_like(o), zeros({17, 3}, t)));
    EXPECT_TRUE(same_elements(ones_like(z), ones({17, 3}, t)));
    EXPECT_TRUE(same_elements(full_like(z, 3), full({17, 3}, 3, t)));
    EXPECT_TRUE(empty_like(z).is_cuda());
    EXPECT_TRUE(same_elements(arange(10, t, g), arange(10, t)));
    if (is_floating(t)) {  // steps whose values round in every half type
      EXPECT_TRUE(same_elements(arange(-1.3, 300.0, 0.37, t, g), arange(-1.3, 300.0, 0.37, t)));
    }
  }
}

// Values both dtypes of a pair hold (conversions outside a type's range are undefined in C++).
std::vector<double> cast_values(DType from, DType to) {
  std::vector<double> v{0, 1, 2, 3, 7, 100, 127};
  if (from == DType::Bool) return {0, 1};
  if (to != DType::U8 && from != DType::U8) v.insert(v.end(), {256, 1000, 2049, 65504});
  else v.push_back(255);
  if (is_floating(from)) v.insert(v.end(), {0.5, 2.75, 126.5, 0.1, 1.0 / 3});
  if (is_signed(from) && is_signed(to)) v.insert(v.end(), {-1, -2, -100, -127});
  if (is_signed(from) && is_signed(to) && is_floating(from)) v.insert(v.end(), {-0.5, -2.75});
  if (is_floating(from) && is_floating(to)) {
    v.insert(v.end(), {NAN, -NAN, INFINITY, -INFINITY, -0.0, 1e-5, 6e-8, 3e-8, 1e5, 70000,
                       std::ldexp(1.0, -24), std::ldexp(1.0, -25), std::ldexp(3.0, -25),
                       1 + std::ldexp(1.0, -8), 1 + 3 * std::ldexp(1.0, -8),
                       1 + std::ldexp(1.0, -11), 1 + 3 * std::ldexp(1.0, -11), 65519, 65520});
  }
  if ((from == DType::I64 || from == DType::F64) && is_signed(to)) {
    v.insert(v.end(), {16777217, -16777219});
    if (to != DType::I32) v.push_back(9007199254740993.0);
  }
  return v;
}

TEST(TensorGpu, CastsEqualCpuCastsForAllDTypePairs) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  for (DType from : kAllDTypes) {
    for (DType to : kAllDTypes) {
      SCOPED_TRACE(pair_name(from, to));
      std::vector<double> values = cast_values(from, to);
      Tensor src = from_vector(values, {int64_t(values.size())}).to(from);
      Tensor on_gpu = src.to(g).to(to);
      EXPECT_TRUE(on_gpu.is_cuda());
      EXPECT_EQ(on_gpu.dtype(), to);
      EXPECT_TRUE(same_elements(on_gpu, src.to(to)));
    }
  }
}

/// The CPU's casts keep denormals for a scope: loom's CPU threads flush them to zero by default,
/// as JAX's CPU backend does, while the GPU's casts keep them (H200, 2026-11-29).
struct CpuKeepsDenormals {
  const bool was = cpu_flushes_denormals();
  CpuKeepsDenormals() { set_cpu_flush_denormals(false); }
  ~CpuKeepsDenormals() { set_cpu_flush_denormals(was); }
};

TEST(TensorGpu, HalfCastsOfEveryBitPatternEqualCpu) {
  LOOM_REQUIRE_GPU();
  CpuKeepsDenormals keep;
  Device g = Device::cuda(0);
  std::vector<bfloat16> b(65536);
  std::vector<float16> h(65536);
  for (uint32_t i = 0; i < 65536; ++i) {
    b[i] = bfloat16::from_bits(uint16_t(i));
    h[i] = float16::from_bits(uint16_t(i));
  }
  for (const Tensor& src : {from_vector(b, {65536}), from_vector(h, {65536})}) {
    Tensor d = src.to(g);
    for (DType to : kFloatDTypes) {
      SCOPED_TRACE(pair_name(src.dtype(), to));
      EXPECT_TRUE(same_elements(d.to(to), src.to(to)));
    }
  }
}

TEST(TensorGpu, FloatToHalfRoundingEqualsCpuOnRandomBitPatterns) {
  LOOM_REQUIRE_GPU();
  CpuKeepsDenormals keep;
  Device g = Device::cuda(0);
  std::mt19937 rng(1234);
  std::vector<float> f(1 << 20);
  for (size_t i = 0; i < f.size(); ++i) {
    uint32_t bits = rng();
    // Half of them near the f16 range, where the rounding is interesting.
    if (i % 2) bits = (bits & 0x807fffffu) | ((100u + (bits >> 23) % 50u) << 23);
    f[i] = bits_float(bits);
  }
  Tensor src = from_vector(f, {int64_t(f.size())});
  Tensor d = src.to(g);
  for (DType to : {DType::BF16, DType::F16, DType::F64}) {
    SCOPED_TRACE(pair_name(DType::F32, to));
    EXPECT_TRUE(same_elements(d.to(to), src.to(to)));
  }
  // From float64 (through float32 on both sides).
  std::vector<double> dv(1 << 16);
  for (auto& x : dv) x = std::ldexp(double(rng()) / 4294967296.0 - 0.5, int(rng() % 60) - 30);
  Tensor s64 = from_vector(dv, {int64_t(dv.size())});
  for (DType to : {DType::F32, DType::BF16, DType::F16}) {
    SCOPED_TRACE(pair_name(DType::F64, to));
    EXPECT_TRUE(same_elements(s64.to(g).to(to), s64.to(to)));
  }
}

TEST(TensorGpu, PrintingACudaTensor) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  EXPECT_EQ(arange(6).reshape({2, 3}).to(g).str(),
            "Tensor(shape=[2, 3], dtype=float32, device=cuda:0)\n"
            "[[0, 1, 2],\n"
            " [3, 4, 5]]");
  EXPECT_EQ(from_vector<bool>({true, false}, {2}).to(g).str(),
            "Tensor(shape=[2], dtype=bool, device=cuda:0)\n"
            "[True, False]");
  EXPECT_EQ(full({2}, 0.1, DType::BF16, g).str(),
            "Tensor(shape=[2], dtype=bfloat16, device=cuda:0)\n"
            "[0.100098, 0.100098]");
  EXPECT_EQ(arange(1001, DType::I32, g).str(),
            "Tensor(shape=[1001], dtype=int32, device=cuda:0)\n"
            "[0, 1, 2, ..., 998, 999, 1000]");
  std::ostringstream os;
  os << scalar(-2, DType::I64, g);
  EXPECT_EQ(os.str(), "Tensor(shape=[], dtype=int64, device=cuda:0)\n-2");
}

TEST(TensorGpu, StridedCopyOfNonContiguousViews) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  for (DType t : kAllDTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    Tensor host = random_values(24, t, 5).reshape({2, 3, 4});
    Tensor dev = host.to(g);
    struct View {
      Shape shape, strides;
      int64_t offset;
    };
    for (const View& v : {View{{4, 3, 2}, {1, 4, 12}, 0},     // full reversal of the axes
                          View{{3, 2}, {4, 12}, 1},            // a column slice with offset
                          View{{2, 2, 2}, {12, 8, 2}, 1},      // steps of 2
                          View{{3, 5}, {0, 1}, 7},             // stride-0 broadcast
                          View{{1, 4, 1}, {100, 1, 7}, 20}}) {  // contiguous despite strides
      Tensor hv(host.storage(), v.shape, v.strides, v.offset, t);
      Tensor dv(dev.storage(), v.shape, v.strides, v.offset, t);
      Tensor c = dv.contiguous();
      EXPECT_TRUE(c.is_cuda());
      EXPECT_TRUE(c.is_contiguous());
      EXPECT_TRUE(same_elements(c, hv.contiguous())) << shape_str(v.shape);
      EXPECT_EQ(dv.to_vector<double>(), hv.to_vector<double>()) << shape_str(v.shape);
      for (DType to : kAllDTypes) {
        if (!is_signed(to) && is_signed(t)) continue;  // negative values to unsigned: undefined
        EXPECT_TRUE(same_elements(dv.to(to), hv.to(to))) << pair_name(t, to);
      }
    }
  }
  // A large transpose exercises the grid-stride loop.
  Tensor big = random_values(1536 * 1031, DType::F32, 9).reshape({1536, 1031});
  Tensor bt(big.to(g).storage(), {1031, 1536}, {1, 1031}, 0, DType::F32);
  Tensor ht(big.storage(), {1031, 1536}, {1, 1031}, 0, DType::F32);
  EXPECT_TRUE(same_elements(bt.contiguous(), ht.contiguous()));
  EXPECT_TRUE(same_elements(bt.to(DType::BF16), ht.to(DType::BF16)));
  // Rank 8 works on the device; rank 9 is refused with a ShapeError naming the limit.
  Tensor r8 = arange(256, DType::I32).reshape({2, 2, 2, 2, 2, 2, 2, 2});
  Shape s8(8, 2), st8 = {1, 2, 4, 8, 16, 32, 64, 128};
  Tensor h8(r8.storage(), s8, st8, 0, DType::I32), d8(r8.to(g).storage(), s8, st8, 0, DType::I32);
  EXPECT_TRUE(same_elements(d8.contiguous(), h8.contiguous()));
  Tensor r9 = arange(512, DType::I32).to(g);
  Shape s9(9, 2), st9 = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  EXPECT_THROW(Tensor(r9.storage(), s9, st9, 0, DType::I32).contiguous(), ShapeError);
}

// Transposes take the tiled kernel when src's stride-1 dim is not dst's last and both are at
// least 8 long; the other cases here check that the choice leaves the generic kernel correct.
// A non-contiguous view of a tensor of `shape`, copied on the GPU (as it is, and cast) against
// the same on the CPU, for every dtype.
struct ViewCase {
  const char* what;
  Shape shape;
  std::function<Tensor(const Tensor&)> view;
};
void expect_view_copies_equal_cpu(const std::vector<ViewCase>& cases, uint64_t seed) {
  Device g = Device::cuda(0);
  for (const ViewCase& c : cases) {
    for (DType t : kAllDTypes) {
      SCOPED_TRACE(std::string(c.what) + ", " + std::string(dtype_name(t)));
      Tensor host = random_values(shape_numel(c.shape), t, seed).reshape(c.shape);
      Tensor hv = c.view(host), dv = c.view(host.to(g));
      ASSERT_FALSE(dv.is_contiguous());
      EXPECT_TRUE(same_elements(dv.contiguous(), hv.contiguous()));
      const DType to = t == DType::BF16 ? DType::F32 : DType::BF16;  // a cast on the way
      EXPECT_TRUE(same_elements(dv.to(to), hv.to(to))) << pair_name(t, to);
    }
  }
}

TEST(TensorGpu, TransposedCopiesEqualCpu) {
  LOOM_REQUIRE_GPU();
  Device g = Device::cuda(0);
  expect_view_copies_equal_cpu({
      {"2-D with edge tiles", {37, 45}, [](const Tensor& t) { return transpose(t); }},
      {"conv weight HWIO -> OHWI", {3, 3, 64, 128},
       [](const Tensor& t) { return transpose(t, {3, 0, 1, 2}); }},
      {"conv weight OHWI -> HWIO", {128, 3, 3, 64},
       [](const Tensor& t) { return transpose(t, {1, 2, 3, 0}); }},
      {"head split, last dim still contiguous", {2, 5, 3, 33},
       [](const Tensor& t) { return transpose(t, {0, 2, 1, 3}); }},
      {"axes reversed, a batch dim between", {40, 3, 50},
       [](const Tensor& t) { return transpose(t, {2, 1, 0}); }},
      {"batch dims before and between", {4, 40, 3, 50},
       [](const Tensor& t) { return transpose(t, {0, 3, 2, 1}); }},
      {"permuted slice", {6, 40, 50},
       [](const Tensor& t) { return transpose(slice(t, {1, 3, 2}, {5, 38, 47}), {2, 0, 1}); }},
      {"permuted slice, steps of 2 across", {6, 40, 50},
       [](const Tensor& t) {
         return transpose(slice(t, {1, 3, 2}, {5, 38, 47}, {1, 2, 1}), {2, 0, 1});
       }},
      {"permuted slice with no stride-1 dim", {6, 40, 50},
       [](const Tensor& t) {
         return transpose(slice(t, {1, 3, 2}, {5, 38, 47}, {1, 1, 2}), {2, 0, 1});
       }},
      {"a side too short to tile", {100, 5}, [](const Tensor& t) { return transpose(t); }},
  }, 11);
  // 70000 batch entries of one edge tile each: more tiles than the grid has blocks (and than a
  // grid's y or z could count).
  Tensor many = arange(70000 * 10 * 9, DType::I32).reshape({70000, 10, 9});
  Tensor many_t = transpose(many, {0, 2, 1}), many_dt = transpose(many.to(g), {0, 2, 1});
  EXPECT_TRUE(same_elements(many_dt.contiguous(), many_t.contiguous()));
  EXPECT_TRUE(same_elements(many_dt.to(DType::F32), many_t.to(DType::F32)));
  // As many batch entries with sides too short to tile stay with the generic kernel.
  Tensor tiny = arange(70000 * 2 * 3, DType::I32).reshape({70000, 2, 3});
  EXPECT_TRUE(same_elements(transpose(tiny.to(g), {0, 2, 1}).contiguous(),
                            transpose(tiny, {0, 2, 1}).contiguous()));
}

// Views whose innermost run is contiguous (a padded gradient sliced back, a broadcast along the
// middle dims) are copied as rows in 16-byte packs when every row is aligned, element by element
// otherwise: both equal the CPU, for every dtype and with a cast on the way.
TEST(TensorGpu, RowStridedCopiesEqualCpu) {
  LOOM_REQUIRE_GPU();
  expect_view_copies_equal_cpu({
      {"padded NHWC gradient sliced back (rows of 128)", {3, 9, 9, 16},
       [](const Tensor& t) { return slice(t, {0, 0, 0, 0}, {3, 8, 8, 16}); }},
      {"a middle slice starting one row in (rows of 256)", {4, 10, 32},
       [](const Tensor& t) { return slice(t, {0, 1, 0}, {4, 9, 32}); }},
      {"broadcast along H and W (rows of 24)", {3, 1, 1, 24},
       [](const Tensor& t) { return broadcast_to(t, {3, 7, 7, 24}); }},
      {"channels from an odd offset (misaligned rows)", {3, 9, 9, 16},
       [](const Tensor& t) { return slice(t, {0, 0, 0, 1}, {3, 9, 9, 9}); }},
      {"rows of 5", {6, 7, 5},
       [](const Tensor& t) { return slice(t, {0, 2, 0}, {6, 7, 5}, {1, 2, 1}); }},
  }, 12);
}

TEST(TensorGpu, DeviceIndexOutOfRange) {
  LOOM_REQUIRE_GPU();
  EXPECT_EQ(default_device(), Device::cuda(0));
  int n = cuda_device_count();
  try {
    zeros({1}, DType::F32, Device::cuda(n));
    FAIL() << "no throw";
  } catch (const DeviceError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("cuda:" + std::to_string(n)), std::string::npos) << msg;
    EXPECT_NE(msg.find("GPU(s) are visible"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace loom

// CUDA against the CPU for dropout: bit-identical masks (threefry on the device) and gradients,
// through the one-pass kernels and the composed ops.
#include "core/autodiff.h"
#include "core/ops/dropout.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"
#include "tests/support/gpu_compare.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::expect_gpu_matches;
using testing::test_values;

TEST(DropoutGpu, SameMaskAsCpu) {
  LOOM_REQUIRE_GPU();
  Tensor x = test_values({8, 33, 5}, 1, -1, 1, DType::F32);
  for (Axes bdims : {Axes{}, Axes{0}, Axes{1, 2}}) {
    for (double rate : {0.1, 0.5, 0.9}) {
      random::Key key = random::key(int64_t(rate * 100) + int64_t(bdims.size()));
      Tensor cpu = dropout(x, rate, key, bdims);
      Tensor gpu = dropout(x.to(Device::cuda()), rate, key, bdims);
      EXPECT_ALLCLOSE(gpu, cpu, 0, 0) << "rate " << rate;
      Tensor c16 = dropout(x.to(DType::BF16), rate, key, bdims);
      EXPECT_ALLCLOSE(dropout(x.to(DType::BF16).to(Device::cuda()), rate, key, bdims), c16, 0, 0);
    }
  }
  expect_gpu_matches("dropout grad", [](const std::vector<Tensor>& in) { return dropout(in[0], 0.4, random::key(9), {1}); }, {x});
}

// The one-pass kernel in 16-byte packs (mask periods a multiple of 8 or 4 elements, aligned) and
// element by element, forward and backward, and attention weights' dropout: the CPU's bits.
TEST(DropoutGpu, OnePassKernelsEqualCpu) {
  LOOM_REQUIRE_GPU();
  for (DType dt : {DType::BF16, DType::F32, DType::F16, DType::F64}) {
    for (Shape shape : {Shape{4, 6, 64}, Shape{3, 7, 33}}) {
      Tensor x = test_values(shape, 2, -1, 1, DType::F64).to(dt), ct = test_values(shape, 3, -1, 1, DType::F64).to(dt);
      for (Axes bdims : {Axes{}, Axes{0}, Axes{0, 1}}) {
        const random::Key key = random::key(int64_t(shape[2]) + int64_t(bdims.size()));
        auto f = [&](const Tensor& t) { return dropout(t, 0.3, key, bdims); };
        std::string what = std::string(dtype_name(dt)) + " " + shape_str(shape) + " dims " + shape_str(Shape(bdims));
        EXPECT_ALLCLOSE(f(x.to(Device::cuda())), f(x), 0, 0) << what;
        EXPECT_ALLCLOSE(testing::vjp([&](const std::vector<Tensor>& in) { return f(in[0]); }, {x.to(Device::cuda())}, ct.to(Device::cuda()))[0],
                        testing::vjp([&](const std::vector<Tensor>& in) { return f(in[0]); }, {x}, ct)[0], 0, 0) << what;
        Shape mask_shape = shape;
        for (int64_t d : bdims) mask_shape[size_t(d)] = 1;
        EXPECT_ALLCLOSE(attention_dropout(x.to(Device::cuda()), 0.2, key, mask_shape),
                        attention_dropout(x, 0.2, key, mask_shape), 0, 0) << what << " attention";
      }
    }
  }
  // the mask words themselves, from a host key and from a key on the device
  for (int64_t n : {1, 32, 1000, 4097}) {
    auto cpu = random::bernoulli_bits(random::key(8), 0.6, n).to_vector<uint32_t>();
    EXPECT_EQ(random::bernoulli_bits(random::key(8), 0.6, n, Device::cuda()).to(Device::cpu()).to_vector<uint32_t>(), cpu) << n;
    random::Key on_device = random::wrap_key_data(random::key_data(random::key(8)).to(Device::cuda()));
    EXPECT_EQ(random::bernoulli_bits(on_device, 0.6, n, Device::cuda()).to(Device::cpu()).to_vector<uint32_t>(), cpu) << n;
  }
}

}  // namespace
}  // namespace loom

// The seed (upgrading_to_linen.txt), sections "Defining Simple Modules", "Using Modules inside
// other Modules" and "Sharing submodules and defining multiple methods", in loom.
// docs/linen_to_loom.md quotes the code between the "// [doc]" markers.
#include <gtest/gtest.h>

#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "modules/layers/activation.h"
#include "modules/layers/linear.h"
#include "tests/modules/flax_golden.h"

namespace loom {
namespace {

// [doc:dense]
struct Dense : nn::Module<Dense> {
  int64_t features;
  bool use_bias = true;
  nn::Initializer kernel_init = nn::initializers::lecun_normal();
  nn::Initializer bias_init = nn::initializers::zeros();

  Tensor call(const Tensor& inputs) const {
    Tensor kernel = param("kernel", kernel_init, {inputs.dim(-1), features});
    Tensor y = matmul(inputs, kernel);
    if (use_bias) {
      Tensor bias = param("bias", bias_init, {features});
      y = y + bias;
    }
    return y;
  }
};
// [end]

TEST(SeedSimpleModules, DenseEqualsFlaxDense) {
  const auto& c = testing::flax_case("dense");
  Tensor x = testing::golden_tensor(c.at("input"));
  // [doc:dense-use]
  Tree variables = Dense{.features = 4}.init(random::key(0), x);
  Tensor y = Dense{.features = 4}.apply(variables, x);
  // [end]
  EXPECT_TRUE(testing::tree_matches_golden(variables, c.at("variables"), 1e-6, 1e-7,
                                           &c.at("variable_paths")));
  EXPECT_TRUE(testing::matches_golden(y, c.at("output"), 1e-5, 1e-6));
  // The same as the library's nn::Dense.
  EXPECT_TRUE(tree_allclose(variables, nn::Dense{.features = 4}.init(random::key(0), x), 0, 0));
  Tree no_bias = Dense{.features = 4, .use_bias = false}.init(random::key(0), x);
  EXPECT_FALSE(no_bias.has_path("params/bias"));
}

// [doc:encoder]
struct Encoder : nn::Module<Encoder> {
  Tensor call(const Tensor& x) const {
    Tensor h = nn::Dense{.features = 500}(x);
    h = nn::relu(h);
    Tensor z = nn::Dense{.features = 500}.named("latents")(h);
    return z;
  }
};
// [end]

TEST(SeedSimpleModules, EncoderNamesItsChildren) {
  Tensor x = testing::flax_pattern({2, 784});
  Tree variables = Encoder{}.init(random::key(0), x);
  EXPECT_EQ(variables["params"].keys(), (std::vector<std::string>{"Dense_0", "latents"}));
  EXPECT_EQ(variables.at("params/latents/kernel").tensor().shape(), (Shape{500, 500}));
  EXPECT_EQ(Encoder{}.apply(variables, x).shape(), (Shape{2, 500}));
}

// The AutoEncoder's parts (small, so that Flax's golden stays small).
struct AEEncoder : nn::Module<AEEncoder> {
  int64_t latents;
  Tensor call(const Tensor& x) const {
    Tensor h = nn::relu(nn::Dense{.features = 5}(x));
    return nn::Dense{.features = latents}.named("latents")(h);
  }
};
struct AEDecoder : nn::Module<AEDecoder> {
  Tensor call(const Tensor& z) const {
    return nn::Dense{.features = 6}(nn::relu(nn::Dense{.features = 5}(z)));
  }
};

// [doc:autoencoder]
struct AutoEncoder : nn::Module<AutoEncoder> {
  int64_t latents = 3;

  // setup(): each child named after the attribute Flax would assign it to.
  AEEncoder encoder() const { return AEEncoder{.latents = latents}.named("encoder"); }
  AEDecoder decoder() const { return AEDecoder{}.named("decoder"); }

  Tensor call(const Tensor& x) const {
    Tensor z = encoder()(x);
    return decoder()(z);
  }

  Tensor generate(const Tensor& z) const { return nn::sigmoid(decoder()(z)); }
};
// [end]

TEST(SeedSimpleModules, AutoEncoderSetupStyleAndASecondMethod) {
  const auto& c = testing::flax_case("autoencoder");
  Tensor x = testing::golden_tensor(c.at("input"));
  Tensor z = testing::golden_tensor(c.at("z"));
  // [doc:autoencoder-use]
  Tree variables = AutoEncoder{}.init(random::key(0), x);
  Tensor reconstruction = AutoEncoder{}.apply(variables, x);
  Tensor generated = AutoEncoder{}.apply(variables, &AutoEncoder::generate, z);
  // [end]
  EXPECT_TRUE(testing::tree_matches_golden(variables, c.at("variables"), 1e-6, 1e-7,
                                           &c.at("variable_paths")));
  EXPECT_TRUE(testing::matches_golden(reconstruction, c.at("output"), 1e-5, 1e-6));
  EXPECT_TRUE(testing::matches_golden(generated, c.at("generated"), 1e-5, 1e-6));
  // The decoder is shared between call and generate: one set of params.
  EXPECT_EQ(variables["params"].keys(), (std::vector<std::string>{"encoder", "decoder"}));
}

}  // namespace
}  // namespace loom

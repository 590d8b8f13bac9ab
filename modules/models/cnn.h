// The seed's CNN (Flax's MNIST example): two 3x3 convolutions with average pooling, then two
// dense layers. Parameter names and initialisation equal Flax's.
#pragma once
#include "core/ops/shape.h"
#include "modules/layers/activation.h"
#include "modules/layers/conv.h"
#include "modules/layers/linear.h"

namespace loom::nn::models {

struct CNN : nn::Module<CNN> {
  int64_t num_classes = 10;

  Tensor call(const Tensor& input) const {
    Tensor x = nn::Conv{.features = 32, .kernel_size = {3, 3}}(input);
    x = nn::avg_pool(nn::relu(x), {2, 2}, {2, 2});
    x = nn::Conv{.features = 64, .kernel_size = {3, 3}}(x);
    x = nn::avg_pool(nn::relu(x), {2, 2}, {2, 2});
    x = x.reshape({x.dim(0), -1});
    x = nn::relu(nn::Dense{.features = 256}(x));
    return nn::Dense{.features = num_classes}(x);
  }
};

}  // namespace loom::nn::models

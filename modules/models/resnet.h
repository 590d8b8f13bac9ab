// ResNet v1.5 as Flax's ImageNet example (flax/examples/imagenet/models.py): NHWC, convs without
// bias, BatchNorm(momentum 0.9, epsilon 1e-5) whose running statistics live in "batch_stats",
// the last norm of each block initialised with zero scale, projection shortcuts "conv_proj" /
// "norm_proj", stem "conv_init" 7x7/2 + "bn_init" + 3x3/2 SAME max pool, global average pool and
// a Dense head. Parameter names, order and initialisation equal Flax's, so a Flax checkpoint
// loads as it is (ResNet-50 with 1000 classes: 25,557,032 params).
//
// small_input_stem (not in Flax's example) replaces the stem by a 3x3 stride-1 conv without max
// pool for 28x28 / 32x32 images (Fashion-MNIST, CIFAR); the names stay "conv_init" / "bn_init".
//
// Example:
//   auto model = nn::models::resnet50(1000);
//   Tree vars = model.init(random::key(0), x);                          // params + batch_stats
//   auto [logits, upd] = model.apply_mutable(vars, {"batch_stats"}, x);  // training
//   Tensor eval = nn::models::resnet50(1000, {.train = false}).apply(vars, x);
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "modules/layers/activation.h"
#include "modules/layers/conv.h"
#include "modules/layers/linear.h"
#include "modules/layers/normalization.h"

namespace loom::nn::models {

using Activation = std::function<Tensor(const Tensor&)>;

namespace detail {
inline Tensor relu_act(const Tensor& x) { return nn::relu(x); }
}  // namespace detail

/// Two 3x3 convs (ResNet-18/34).
struct ResNetBlock : Module<ResNetBlock> {
  int64_t filters = 0;
  /// Flax's conv / norm ModuleDefs: partials the block builds its children from.
  Partial<Conv> conv = nn::partial(Conv{.use_bias = false});
  Partial<BatchNorm> norm = nn::partial(BatchNorm{.momentum = 0.9, .epsilon = 1e-5});
  Activation act = detail::relu_act;
  Shape strides = {1, 1};

  Tensor call(const Tensor& x) const;
};

/// 1x1, 3x3 (strided), 1x1 with 4x filters (ResNet-50 and deeper).
struct BottleneckResNetBlock : Module<BottleneckResNetBlock> {
  int64_t filters = 0;
  Partial<Conv> conv = nn::partial(Conv{.use_bias = false});
  Partial<BatchNorm> norm = nn::partial(BatchNorm{.momentum = 0.9, .epsilon = 1e-5});
  Activation act = detail::relu_act;
  Shape strides = {1, 1};

  Tensor call(const Tensor& x) const;
};

enum class ResNetBlockKind { Basic, Bottleneck };

struct ResNet : Module<ResNet> {
  std::vector<int64_t> stage_sizes = {};
  ResNetBlockKind block_cls = ResNetBlockKind::Basic;
  int64_t num_classes = 1000;
  int64_t num_filters = 64;
  /// Computation dtype of convs, norms and the head (Flax's dtype; unset: float32 params').
  std::optional<DType> dtype = {};
  Activation act = detail::relu_act;
  /// Flax's __call__(x, train): batch statistics (and their update) when true.
  bool train = true;
  /// 3x3 stride-1 stem without max pool, for small images.
  bool small_input_stem = false;
  /// Cross-replica BatchNorm (Flax's example uses axis_name='batch' under pmap).
  std::optional<std::string> axis_name = {};

  /// x [N, H, W, C] -> logits [N, num_classes].
  Tensor call(const Tensor& x) const { return call(x, train); }
  Tensor call(const Tensor& x, bool train_override) const;
};

/// Preset options shared by the resnetN() factories.
struct ResNetOptions {
  int64_t num_filters = 64;
  std::optional<DType> dtype = {};
  bool train = true;
  bool small_input_stem = false;
};

ResNet resnet(const std::vector<int64_t>& stage_sizes, ResNetBlockKind kind, int64_t num_classes,
              const ResNetOptions& options = {});
ResNet resnet18(int64_t num_classes = 1000, const ResNetOptions& options = {});
ResNet resnet34(int64_t num_classes = 1000, const ResNetOptions& options = {});
ResNet resnet50(int64_t num_classes = 1000, const ResNetOptions& options = {});
ResNet resnet101(int64_t num_classes = 1000, const ResNetOptions& options = {});
ResNet resnet152(int64_t num_classes = 1000, const ResNetOptions& options = {});
ResNet resnet200(int64_t num_classes = 1000, const ResNetOptions& options = {});

}  // namespace loom::nn::models

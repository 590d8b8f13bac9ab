#include "modules/models/resnet.h"

#include "core/ops/reduce.h"

namespace loom::nn::models {
namespace {

// self.conv(features, kernel, strides) built from the partial at this point (naming order).
Conv make_conv(Conv c, int64_t features, Shape kernel, Shape strides) {
  c.features = features;
  c.kernel_size = std::move(kernel);
  c.strides = std::move(strides);
  return c;
}

bool is_relu(const Activation& act) {
  auto* fn = act.target<Tensor (*)(const Tensor&)>();
  return fn && *fn == &detail::relu_act;
}

// act(n(y) + residual) (residual optional): a relu and the add run inside the norm's kernels
// instead of as two more passes over the activation, forward and backward.
Tensor norm_act(const BatchNorm& n, const Activation& act, const Tensor& y,
                const Tensor& residual = Tensor()) {
  if (is_relu(act)) return n(y, residual, true);
  Tensor z = n(y);
  return act(residual.defined() ? residual + z : z);
}

// act(shortcut + last(y)), the shortcut being x or, when the shapes differ (Flax's check), the
// strided 1x1 projection "conv_proj" / "norm_proj" of x. Flax calls the last norm before the
// projection (the order names and initialises them), so the add and act join the norm that runs
// last: the last norm itself, or norm_proj (the sum is the same either way round).
Tensor add_shortcut(const Partial<Conv>& conv, const Partial<BatchNorm>& norm,
                    const Activation& act, const Tensor& x, const BatchNorm& last,
                    const Tensor& y, const Shape& strides) {
  if (x.shape() == y.shape()) return norm_act(last, act, y, x);
  Tensor out = last(y);
  Tensor r = make_conv(conv.named("conv_proj"), y.dim(-1), {1, 1}, strides)(x);
  return norm_act(norm.named("norm_proj"), act, r, out);
}

}  // namespace

Tensor ResNetBlock::call(const Tensor& x) const {
  Tensor y = make_conv(conv(), filters, {3, 3}, strides)(x);
  y = norm_act(norm(), act, y);
  y = make_conv(conv(), filters, {3, 3}, {1, 1})(y);
  BatchNorm last = norm();
  last.scale_init = initializers::zeros();
  return add_shortcut(conv, norm, act, x, last, y, strides);
}

Tensor BottleneckResNetBlock::call(const Tensor& x) const {
  Tensor y = make_conv(conv(), filters, {1, 1}, {1, 1})(x);
  y = norm_act(norm(), act, y);
  y = make_conv(conv(), filters, {3, 3}, strides)(y);
  y = norm_act(norm(), act, y);
  y = make_conv(conv(), filters * 4, {1, 1}, {1, 1})(y);
  BatchNorm last = norm();
  last.scale_init = initializers::zeros();
  return add_shortcut(conv, norm, act, x, last, y, strides);
}

Tensor ResNet::call(const Tensor& input, bool train_override) const {
  LOOM_CHECK(input.ndim() == 4, ShapeError, "ResNet: input must be [N, H, W, C], got ",
             shape_str(input.shape()));
  auto conv = nn::partial(Conv{.use_bias = false, .dtype = dtype});
  auto norm = nn::partial(BatchNorm{.use_running_average = !train_override,
                                    .momentum = 0.9,
                                    .epsilon = 1e-5,
                                    .dtype = dtype,
                                    .axis_name = axis_name});
  Tensor x;
  if (small_input_stem) {
    x = make_conv(conv.named("conv_init"), num_filters, {3, 3}, {1, 1})(input);
    x = norm.named("bn_init")(x, Tensor(), true);
  } else {
    Conv stem = make_conv(conv.named("conv_init"), num_filters, {7, 7}, {2, 2});
    stem.padding = Padding::explicit_pads({{3, 3}, {3, 3}});
    x = norm.named("bn_init")(stem(input), Tensor(), true);
    x = nn::max_pool(x, {3, 3}, {2, 2}, Padding::same());
  }
  for (size_t i = 0; i < stage_sizes.size(); ++i) {
    for (int64_t j = 0; j < stage_sizes[i]; ++j) {
      Shape strides = i > 0 && j == 0 ? Shape{2, 2} : Shape{1, 1};
      int64_t filters = num_filters << i;
      if (block_cls == ResNetBlockKind::Basic)
        x = ResNetBlock{.filters = filters, .conv = conv, .norm = norm, .act = act,
                        .strides = strides}(x);
      else
        x = BottleneckResNetBlock{.filters = filters, .conv = conv, .norm = norm, .act = act,
                                  .strides = strides}(x);
    }
  }
  x = mean(x, {1, 2});
  x = nn::Dense{.features = num_classes, .dtype = dtype}(x);
  return dtype ? x.to(*dtype) : x;
}

ResNet resnet(const std::vector<int64_t>& stage_sizes, ResNetBlockKind kind, int64_t num_classes,
              const ResNetOptions& o) {
  return ResNet{.stage_sizes = stage_sizes,
                .block_cls = kind,
                .num_classes = num_classes,
                .num_filters = o.num_filters,
                .dtype = o.dtype,
                .train = o.train,
                .small_input_stem = o.small_input_stem};
}

using K = ResNetBlockKind;
ResNet resnet18(int64_t n, const ResNetOptions& o) { return resnet({2, 2, 2, 2}, K::Basic, n, o); }
ResNet resnet34(int64_t n, const ResNetOptions& o) { return resnet({3, 4, 6, 3}, K::Basic, n, o); }
ResNet resnet50(int64_t n, const ResNetOptions& o) {
  return resnet({3, 4, 6, 3}, K::Bottleneck, n, o);
}
ResNet resnet101(int64_t n, const ResNetOptions& o) {
  return resnet({3, 4, 23, 3}, K::Bottleneck, n, o);
}
ResNet resnet152(int64_t n, const ResNetOptions& o) {
  return resnet({3, 8, 36, 3}, K::Bottleneck, n, o);
}
ResNet resnet200(int64_t n, const ResNetOptions& o) {
  return resnet({3, 24, 36, 3}, K::Bottleneck, n, o);
}

}  // namespace loom::nn::models

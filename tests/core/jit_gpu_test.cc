// loom::jit on a GPU: a training step captured as a CUDA graph gives the eager step's numbers
// (launched from the host or from the device), replays without allocating, updates donated
// inputs in place, and a step that waits for the GPU fails the capture cleanly.
#include <gtest/gtest.h>

#include <iterator>
#include <limits>
#include <optional>
#include <vector>

#include "core/autotune.h"
#include "core/grad.h"
#include "core/jit.h"
#include "core/memory.h"
#include "core/ops/conv.h"
#include "core/ops/dropout.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "core/random.h"
#include "optim/optimizers.h"
#include "optim/transform.h"
#include "optim/wrappers.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

// One SGD step of a two-layer MLP on a fixed batch: {"w1", "w2"} -> {"w1", "w2", "loss"}.
Tree sgd_step(const Tree& in, const Tensor& x, const Tensor& y) {
  auto loss_fn = [&](const Tree& p) {
    Tensor h = relu(matmul(x, p["w1"].tensor()));
    return mean(square(matmul(h, p["w2"].tensor()) - y));
  };
  auto [loss, grads] = value_and_grad(loss_fn)(in);
  Tree out = tree_map([](const Tensor& p, const Tensor& g) { return p - g * 0.05; }, in, grads);
  out.insert("loss", loss);
  return out;
}

struct Problem {
  Device gpu = Device::cuda();
  Tensor x = testing::test_values({64, 32}, 1, -1, 1, DType::F32).to(gpu);
  Tensor y = testing::test_values({64, 8}, 2, -1, 1, DType::F32).to(gpu);
  Tree params() const {
    Tree p;
    p.insert("w1", testing::test_values({32, 48}, 3, -0.3, 0.3, DType::F32).to(gpu));
    p.insert("w2", testing::test_values({48, 8}, 4, -0.3, 0.3, DType::F32).to(gpu));
    return p;
  }
};

// The losses of `steps` eager SGD steps from pb.params(); `last` gets the params after them.
std::vector<float> eager_losses(const Problem& pb, int steps, Tree& last) {
  std::vector<float> losses;
  last = pb.params();
  for (int i = 0; i < steps; ++i) {
    Tree out = sgd_step(last, pb.x, pb.y);
    losses.push_back(out["loss"].tensor().item<float>());
    out.erase("loss");
    last = out;
  }
  return losses;
}

TEST(JitGpu, CapturedStepEqualsEagerStep) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  Tree p;
  const std::vector<float> eager = eager_losses(pb, 8, p);
  std::vector<float> replayed;
  Jit step = jit([&](const Tree& in) { return sgd_step(in, pb.x, pb.y); }, {.warmup = 2});
  Tree q = pb.params();
  int64_t mallocs_after_capture = 0;
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(step.graph_info().has_value(), i > 2) << "call " << i;
    Tree out = step(q);
    replayed.push_back(out["loss"].tensor().item<float>());
    if (i == 2) {
      EXPECT_TRUE(step.captured());
      mallocs_after_capture = memory_stats(pb.gpu).num_device_mallocs;
    }
    out.erase("loss");
    q = out;  // the graph's output buffers: copied into its inputs by the next call
  }
  for (size_t i = 0; i < eager.size(); ++i)
    EXPECT_NEAR(replayed[i], eager[i], 1e-6 * std::abs(eager[i])) << "step " << i;
  EXPECT_LT(replayed.back(), replayed.front());
  EXPECT_EQ(memory_stats(pb.gpu).num_device_mallocs, mallocs_after_capture);  // replays allocate nothing
  // The profile of the graph: the forward and backward products and elementwise ops are kernels,
  // and the last replay's launch took host time.
  const std::optional<JitGraphInfo> info = step.graph_info();
  ASSERT_TRUE(info.has_value());
  EXPECT_GE(info->kernel_nodes, 6);
  // Everything runs on one stream, so the capture is a straight line of nodes.
  EXPECT_TRUE(info->straight_line);
  EXPECT_EQ(info->edges, info->kernel_nodes + info->copy_nodes + info->memset_nodes +
                             info->other_nodes - 1);
  EXPECT_GT(info->last_launch_ms, 0.0);
  EXPECT_ALLCLOSE(q["w1"].tensor().to(Device::cpu()), p["w1"].tensor().to(Device::cpu()), 1e-5, 1e-6);
}

TEST(JitGpu, DeviceLaunchedStepEqualsEagerStep) {
  // Replays launched from the device (a kernel tail-launching the step's graph): the same losses
  // as eager steps, each read right after its replay was queued, so a replay that the stream did
  // not wait for would show an older loss; with donated inputs, as loom_bench runs it.
  LOOM_REQUIRE_GPU();
  Problem pb;
  Tree p;
  const std::vector<float> eager = eager_losses(pb, 10, p);
  std::vector<float> replayed;
  Jit step = jit([&](const Tree& in) { return sgd_step(in, pb.x, pb.y); },
                 {.warmup = 1, .donate_inputs = true, .device_launch = true});
  Tree q = pb.params();
  for (int i = 0; i < 10; ++i) {
    Tree out = step(q);
    replayed.push_back(out["loss"].tensor().item<float>());
    out.erase("loss");
    q = out;
  }
  for (size_t i = 0; i < eager.size(); ++i)
    EXPECT_NEAR(replayed[i], eager[i], 1e-6 * std::abs(eager[i])) << "step " << i;
  const std::optional<JitGraphInfo> info = step.graph_info();
  ASSERT_TRUE(info.has_value());
  // An H100 with a CUDA 12+ driver takes device launches of kernel, memcpy and memset nodes.
  EXPECT_TRUE(info->device_launched) << "replays fell back to host launches: "
                                      << info->device_launch_refusal;
  EXPECT_ALLCLOSE(q["w1"].tensor().to(Device::cpu()), p["w1"].tensor().to(Device::cpu()), 1e-5, 1e-6);
}

TEST(JitGpu, EmptyingTheCacheKeepsTheGraphsMemory) {
  // A captured graph's intermediates are free blocks of its private pool between replays;
  // empty_cache must not give them to the driver, which would hand them to new tensors.
  LOOM_REQUIRE_GPU();
  Problem pb;
  Tree p = pb.params();
  std::vector<float> eager;
  for (int i = 0; i < 5; ++i) {
    Tree out = sgd_step(p, pb.x, pb.y);
    eager.push_back(out["loss"].tensor().item<float>());
    out.erase("loss");
    p = out;
  }
  Jit step = jit([&](const Tree& in) { return sgd_step(in, pb.x, pb.y); }, {.warmup = 1});
  Tree q = pb.params();
  std::vector<Tensor> fillers;
  for (int i = 0; i < 5; ++i) {
    if (i == 3) {
      empty_cache(pb.gpu);
      for (int j = 0; j < 50; ++j)
        for (const Shape& s : {Shape{64, 48}, Shape{64, 8}, Shape{32, 48}, Shape{48, 8}, Shape{1}})
          fillers.push_back(full(s, 7.0, DType::F32, pb.gpu));
    }
    Tree out = step(q);
    EXPECT_NEAR(out["loss"].tensor().item<float>(), eager[i], 1e-6 * std::abs(eager[i])) << i;
    out.erase("loss");
    q = out;
  }
  for (const Tensor& f : fillers) EXPECT_EQ(max(abs(f - 7.0)).item<float>(), 0.0f);
}

TEST(JitGpu, DonatedInputsAreUpdatedInPlace) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  // adamw's fused update writes the new params and moments over the donated inputs: the same
  // numbers as the eager step, and the outputs are the buffers passed in (nothing is copied).
  optim::GradientTransformation tx = optim::adamw(1e-2, {.weight_decay = 0.1});
  auto train_step = [&](const Tree& in) {
    auto loss_fn = [&](const Tree& p) {
      Tensor h = relu(matmul(pb.x, p["w1"].tensor()));
      return mean(square(matmul(h, p["w2"].tensor()) - pb.y));
    };
    auto [loss, grads] = value_and_grad(loss_fn)(in["params"]);
    auto [params, opt] = optim::update_and_apply(tx, grads, in["opt"], in["params"]);
    Tree out;
    out.insert("params", params);
    out.insert("opt", opt);
    out.insert("loss", loss);
    return out;
  };
  auto initial = [&] {
    Tree t;
    t.insert("params", pb.params());
    t.insert("opt", tx.init(t["params"]));
    return t;
  };
  std::vector<float> eager, replayed;
  Tree p = initial();
  for (int i = 0; i < 6; ++i) {
    Tree out = train_step(p);
    eager.push_back(out["loss"].tensor().item<float>());
    out.erase("loss");
    p = out;
  }
  // The buffers the captured step read its inputs from (the last host run of the step is the
  // capture): with donation the outputs must be those very buffers. (Comparing an output with
  // the previous call's output would prove nothing: a jit always returns the same buffers.)
  const char* const kLeaves[] = {"params/w1", "opt/0/mu/w2", "opt/0/nu/w1"};
  std::vector<const void*> step_inputs;
  Jit step = jit([&](const Tree& in) {
    step_inputs.clear();
    for (const char* leaf : kLeaves) step_inputs.push_back(in.at(leaf).tensor().storage().get());
    return train_step(in);
  }, {.warmup = 1, .donate_inputs = true});
  Tree q = initial();
  for (int i = 0; i < 6; ++i) {
    std::vector<const void*> passed;
    for (const char* leaf : kLeaves) passed.push_back(q.at(leaf).tensor().storage().get());
    Tree out = step(q);
    replayed.push_back(out["loss"].tensor().item<float>());
    out.erase("loss");
    if (i >= 1) {  // the capture was call 1
      ASSERT_EQ(step_inputs.size(), std::size(kLeaves));
      for (size_t k = 0; k < step_inputs.size(); ++k) {
        EXPECT_EQ(out.at(kLeaves[k]).tensor().storage().get(), step_inputs[k]) << kLeaves[k] << " call " << i;
        // the capture call's inputs became the graph's buffers: the state is never copied
        if (i == 1) {
          EXPECT_EQ(step_inputs[k], passed[k]) << kLeaves[k];
        }
      }
    }
    q = out;
  }
  for (size_t i = 0; i < eager.size(); ++i) EXPECT_EQ(replayed[i], eager[i]) << "step " << i;
  EXPECT_ALLCLOSE(q.at("params/w1").tensor().to(Device::cpu()), p.at("params/w1").tensor().to(Device::cpu()), 0, 0);
  EXPECT_FALSE(donated(q.at("params/w1").tensor()));  // only while a step is being captured
}

TEST(JitGpu, DonatedLeavesSharingAStorageAreCopied) {
  // "frozen" is the very tensor of "params/w1": the fused update writes w1's new values over
  // its input buffer, which must therefore not be the buffer "frozen" is read from.
  LOOM_REQUIRE_GPU();
  Problem pb;
  optim::GradientTransformation tx = optim::adam(1e-2);  // fused: updates donated buffers in place
  auto train_step = [&](const Tree& in) {
    auto loss_fn = [&](const Tree& p) { return sum(square(matmul(pb.x, p["w1"].tensor()))); };
    auto [loss, grads] = value_and_grad(loss_fn)(in["params"]);
    auto [params, opt] = optim::update_and_apply(tx, grads, in["opt"], in["params"]);
    Tree out;
    out.insert("params", params);
    out.insert("opt", opt);
    out.insert("frozen_sum", sum(in["frozen"].tensor()));  // read after the update
    return out;
  };
  auto with_frozen = [&](Tree t, const Tensor& frozen) {
    t.insert("frozen", frozen);
    return t;
  };
  Tree p;
  p.insert("params", Tree());
  p["params"].insert("w1", pb.params()["w1"].tensor());
  p.insert("opt", tx.init(p["params"]));
  const Tensor w1 = p.at("params/w1").tensor();
  const float expected = sum(w1).item<float>();
  // The first call is the capture, so it sees "frozen" and "params/w1" as one storage.
  Jit step = jit(train_step, {.warmup = 0, .donate_inputs = true});
  Tree in = with_frozen(p, w1);
  for (int i = 0; i < 3; ++i) {
    Tree out = step(in);
    EXPECT_FLOAT_EQ(out["frozen_sum"].tensor().item<float>(), expected) << "call " << i;
    out.erase("frozen_sum");
    in = with_frozen(out, w1);
  }
  EXPECT_FLOAT_EQ(sum(w1).item<float>(), expected);  // the caller's tensor, copied, not donated
}

TEST(JitGpu, AnOutputPassedBackUnderAnotherNameIsReadBeforeTheBuffersChange) {
  // "prev" comes back as the graph's own buffer for "cur": loading the next call's inputs must
  // read it before the new "cur" is copied over it.
  LOOM_REQUIRE_GPU();
  const Device gpu = Device::cuda();
  auto step_fn = [](const Tree& in) {
    Tree out;
    out.insert("prev", in["cur"].tensor());
    out.insert("cur", in["cur"].tensor() * 2.0 + in["prev"].tensor());
    return out;
  };
  auto initial = [&] {
    Tree t;
    t.insert("prev", full({5}, 1.0, DType::F32, gpu));
    t.insert("cur", full({5}, 3.0, DType::F32, gpu));
    return t;
  };
  Tree e = initial(), q = initial();
  Jit step = jit(step_fn, {.warmup = 1});
  for (int i = 0; i < 5; ++i) {
    e = step_fn(e);
    q = step(q);
    for (const char* leaf : {"prev", "cur"})
      EXPECT_ALLCLOSE(q[leaf].tensor().to(Device::cpu()), e[leaf].tensor().to(Device::cpu()), 0, 0)
          << leaf << " call " << i;
  }
}

// Wrappers that keep the old inner state on some steps (multi_steps between its emits,
// apply_if_finite on a non-finite gradient) call the fused optimizer's update() and then select
// where(keep, old_state, new_state): with donated inputs the update must not have written the new
// moments over the old ones, or the captured step would drift from the eager one.
TEST(JitGpu, DonationKeepsTheStateWrappersSelectFrom) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  const double inf = std::numeric_limits<double>::infinity();
  for (int variant = 0; variant < 2; ++variant) {
    optim::GradientTransformation tx = variant == 0 ? optim::multi_steps(optim::adam(1e-2), 2)
                                                    : optim::apply_if_finite(optim::adam(1e-2), 5);
    auto train_step = [&](const Tree& in) {
      const Tensor scale = in["scale"].tensor();
      auto loss_fn = [&](const Tree& p) {
        Tensor h = relu(matmul(pb.x, p["w1"].tensor()));
        return mean(square(matmul(h, p["w2"].tensor()) - pb.y)) * scale;
      };
      auto [loss, grads] = value_and_grad(loss_fn)(in["params"]);
      auto [params, opt] = optim::update_and_apply(tx, grads, in["opt"], in["params"]);
      Tree out;
      out.insert("params", params);
      out.insert("opt", opt);
      return out;
    };
    // Call 3 (a replay) of apply_if_finite gets an infinite loss scale: its step is skipped.
    auto with_scale = [&](Tree t, int call) {
      t.insert("scale", scalar(variant == 1 && call == 3 ? inf : 1.0, DType::F32, pb.gpu));
      return t;
    };
    auto initial = [&] {
      Tree t;
      t.insert("params", pb.params());
      t.insert("opt", tx.init(t["params"]));
      return t;
    };
    Tree p = initial();
    for (int i = 0; i < 6; ++i) p = train_step(with_scale(p, i));
    Jit step = jit(train_step, {.warmup = 1, .donate_inputs = true});
    Tree q = initial();
    for (int i = 0; i < 6; ++i) q = step(with_scale(q, i));
    for (const char* leaf : {"params/w1", "params/w2"})
      EXPECT_ALLCLOSE(q.at(leaf).tensor().to(Device::cpu()), p.at(leaf).tensor().to(Device::cpu()), 1e-5, 1e-6)
          << (variant == 0 ? "multi_steps " : "apply_if_finite ") << leaf;
  }
}

// With autotuning on, a convolution or product first met inside a capture runs the heuristics'
// choice there (timing waits for the device) and is not cached with it: its first call outside
// a capture times it, and later calls take the cached choice. The captured and eager results
// agree.
TEST(JitGpu, AutotunedShapesMetInACaptureAreTimedAtTheirFirstCallOutsideOne) {
  LOOM_REQUIRE_GPU();
  ConvAutotuneScope conv_on;
  GemmAutotuneScope gemm_on;
  const Device gpu = Device::cuda();
  // Shapes no other test uses (the choices are cached for the process); cuBLASLt offers several
  // algorithms for a product this size, so it is timed.
  Tensor w = testing::test_values({3, 3, 3, 5}, 2, -1, 1, DType::F32).to(gpu);
  Tensor b = testing::test_values({320, 192}, 4, -1, 1, DType::F32).to(gpu);
  auto f = [&](const Tree& in) {
    Tree out;
    out.insert("y", conv(in["x"].tensor(), w));
    out.insert("z", matmul(in["a"].tensor(), b));
    return out;
  };
  Tree in;
  in.insert("x", testing::test_values({2, 9, 11, 3}, 1, -1, 1, DType::F32).to(gpu));
  in.insert("a", testing::test_values({256, 320}, 3, -1, 1, DType::F32).to(gpu));
  // cuDNN's handle is made at its first use, which must not be inside the capture (a test runs
  // in a process of its own): a convolution of another shape first.
  (void)conv(testing::test_values({1, 5, 5, 3}, 9, -1, 1, DType::F32).to(gpu), w).to(Device::cpu());
  Jit step = jit(f, {.warmup = 0});
  const int64_t conv0 = conv_timings(), gemm0 = gemm_timings();
  Tree captured = step(in);
  ASSERT_TRUE(step.captured());
  EXPECT_EQ(conv_timings(), conv0);
  EXPECT_EQ(gemm_timings(), gemm0);
  Tree eager = f(in);
  EXPECT_EQ(conv_timings(), conv0 + 1);
  EXPECT_EQ(gemm_timings(), gemm0 + 1);
  f(in);
  EXPECT_EQ(conv_timings(), conv0 + 1);
  EXPECT_EQ(gemm_timings(), gemm0 + 1);
  EXPECT_ALLCLOSE(captured["y"].tensor(), eager["y"].tensor(), 1e-5, 1e-5);
  EXPECT_ALLCLOSE(captured["z"].tensor(), eager["z"].tensor(), 1e-4, 1e-4);
}

TEST(JitGpu, ChangedInputShapeIsAnError) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  Jit step = jit([&](const Tree& in) { return sgd_step(in, pb.x, pb.y); }, {.warmup = 0});
  Tree p = pb.params();
  step(p);
  ASSERT_TRUE(step.captured());
  Tree wrong = p;
  wrong.insert("w2", zeros({48, 9}, DType::F32, pb.gpu));
  EXPECT_THROW_WITH(step(wrong), ValueError, "loom::jit", "w2", "[48, 9]", "[48, 8]");
}

TEST(JitGpu, WaitingForTheGpuInsideTheStepFailsTheCaptureCleanly) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  Jit step = jit([&](const Tree& in) {
    Tree out = sgd_step(in, pb.x, pb.y);
    (void)out["loss"].tensor().item<float>();  // a host sync: not capturable
    return out;
  }, {.warmup = 0});
  EXPECT_THROW_WITH(step(pb.params()), CudaError, "loom::jit", "must not wait for the GPU");
  // The stream and the allocator still work.
  Tree out = sgd_step(pb.params(), pb.x, pb.y);
  EXPECT_TRUE(std::isfinite(out["loss"].tensor().item<float>()));
}

TEST(JitGpu, RandomDrawsFromHostKeysFailTheCapture) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  // A dropout mask drawn from a host key would be the same at every replay: refused.
  Jit step = jit([&](const Tree& in) {
    Tree out = sgd_step(in, pb.x, pb.y);
    out.insert("noise", random::normal(random::key(3), {4}, DType::F32, pb.gpu));
    return out;
  }, {.warmup = 1});
  EXPECT_NO_THROW(step(pb.params()));  // the warm-up call runs eagerly
  EXPECT_THROW_WITH(step(pb.params()), CudaError, "loom::jit", "random.normal",
                    "would repeat the same numbers");
  EXPECT_FALSE(jit_capturing());
  EXPECT_EQ(random::normal(random::key(3), {4}, DType::F32, pb.gpu).shape(), (Shape{4}));
}

bool same(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         a.to(Device::cpu()).to_vector<float>() == b.to(Device::cpu()).to_vector<float>();
}

// A key passed in as a tensor (as a traced key in jax.jit) is read by every replay: a dropout
// step under jit draws the masks of the key it is given, the same as the eager step.
TEST(JitGpu, KeysPassedAsTensorsDrawFreshNumbersAtEveryReplay) {
  LOOM_REQUIRE_GPU();
  Problem pb;
  auto step_fn = [&](const Tree& in) {
    const random::Key key = random::wrap_key_data(in["rng"].tensor());
    Tree out;
    out.insert("dropped", dropout(pb.x, 0.5, random::fold_in(key, 1)));
    out.insert("noise", random::normal(random::split(key, 2)[1], {4}, DType::F32, pb.gpu));
    return out;
  };
  auto input = [&](int i) {
    Tree in;
    in.insert("rng", random::key_data(random::fold_in(random::key(9), uint32_t(i))).to(pb.gpu));
    return in;
  };
  Jit step = jit(step_fn, {.warmup = 1});
  std::vector<Tensor> masks;
  for (int i = 0; i < 5; ++i) {
    Tree got = step(input(i)), expected = step_fn(input(i));
    for (const char* leaf : {"dropped", "noise"})
      EXPECT_TRUE(same(got[leaf].tensor(), expected[leaf].tensor())) << leaf << " call " << i;
    masks.push_back(got["dropped"].tensor().to(Device::cpu()));
  }
  EXPECT_TRUE(step.captured());
  EXPECT_FALSE(same(masks[3], masks[4]));  // two replays, two keys, two masks
}

}  // namespace
}  // namespace loom

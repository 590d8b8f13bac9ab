// The module system core: Flax's naming rules, variable sharing, rng derivation, collections,
// mutability and the flax.errors family. Layer-independent (a tiny module with one param).
#include "modules/module.h"

#include <gtest/gtest.h>

#include <set>

#include "core/grad.h"
#include "core/memory.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "modules/layers/linear.h"
#include "modules/sha1.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

std::vector<std::string> keys_of(const Tree& t) { return t.keys(); }
using Names = std::vector<std::string>;

// A leaf module with one param: scale * x.
struct Scale : nn::Module<Scale> {
  double init_value = 1.0;
  Tensor call(const Tensor& x) const {
    return x * param("scale", nn::initializers::constant(init_value), {x.dim(-1)});
  }
};

TEST(ModuleNaming, AutoNamesPerClassAndExplicitNamesKeepTheCounter) {
  struct Encoder : nn::Module<Encoder> {
    Tensor call(const Tensor& x) const {
      Tensor h = nn::Dense{.features = 5}(x);          // Dense_0
      h = Scale{}(h);                                  // Scale_0
      h = nn::Dense{.features = 4}.named("latents")(h);  // latents: Dense_1 is not used up
      h = nn::Dense{.features = 3}(h);                 // Dense_1
      return Scale{}(h);                               // Scale_1
    }
  };
  Tree vars = Encoder{}.init(random::key(0), ones({2, 6}));
  EXPECT_EQ(keys_of(vars), Names{"params"});
  EXPECT_EQ(keys_of(vars["params"]), (Names{"Dense_0", "Scale_0", "latents", "Dense_1", "Scale_1"}));
  EXPECT_EQ(vars.at("params/latents/kernel").tensor().shape(), (Shape{5, 4}));
  EXPECT_EQ(vars.at("params/Dense_1/kernel").tensor().shape(), (Shape{4, 3}));
  EXPECT_EQ(Encoder::type_name(), "Encoder");
  EXPECT_EQ(nn::Dense::type_name(), "Dense");
}

TEST(ModuleNaming, AllocationTracesNameTheModulePath) {
  struct Encoder : nn::Module<Encoder> {
    Tensor call(const Tensor& x) const { return Scale{}(nn::Dense{.features = 5}.named("proj")(x)); }
  };
  Tensor x = ones({2, 6});
  Tree vars = Encoder{}.init(random::key(0), x);
  std::vector<AllocationEvent> events;
  Tensor y;
  {
    AllocationTrace trace;
    y = Encoder{}.apply(vars, x);
    events = trace.events();
  }
  std::set<std::string> scopes;
  const AllocationEvent* ey = nullptr;
  for (const AllocationEvent& e : events) {
    if (!e.allocated) continue;
    scopes.insert(e.scope);
    if (e.ptr == y.storage()->data()) ey = &e;
  }
  EXPECT_TRUE(scopes.count("/proj")) << ::testing::PrintToString(scopes);
  ASSERT_TRUE(ey);
  EXPECT_EQ(ey->scope, "/Scale_0");
  EXPECT_EQ(ey->op, "mul");
}

TEST(ModuleNaming, ConstructionOrderDecidesNumbers) {
  // As Flax: a = Dense(4); b = Dense(3); b(x); a(...) -> a is Dense_0.
  struct M : nn::Module<M> {
    Tensor call(const Tensor& x) const {
      auto a = nn::Dense{.features = 4};
      auto b = nn::Dense{.features = 3};
      return a(b(x));
    }
  };
  Tree vars = M{}.init(random::key(0), ones({1, 2}));
  EXPECT_EQ(vars.at("params/Dense_0/kernel").tensor().shape(), (Shape{3, 4}));
  EXPECT_EQ(vars.at("params/Dense_1/kernel").tensor().shape(), (Shape{2, 3}));
}

TEST(ModuleNaming, CallingAChildTwiceSharesItsParams) {
  struct M : nn::Module<M> {
    Tensor call(const Tensor& x) const {
      auto d = nn::Dense{.features = 3};
      auto copy = d;  // a copy of a named child is the same child
      return d(x) + copy(x) + d(x);
    }
  };
  Tensor x = ones({2, 3});
  Tree vars = M{}.init(random::key(0), x);
  EXPECT_EQ(keys_of(vars["params"]), Names{"Dense_0"});
  Tensor y = M{}.apply(vars, x);
  Tensor one = matmul(x, vars.at("params/Dense_0/kernel").tensor());
  EXPECT_ALLCLOSE(y, one * 3.0, 1e-6, 1e-6);
}

TEST(ModuleNaming, CallingTheParentTwiceReusesNames) {
  struct Inner : nn::Module<Inner> {
    Tensor call(const Tensor& x) const { return nn::Dense{.features = 3}(x); }
  };
  struct Outer : nn::Module<Outer> {
    Tensor call(const Tensor& x) const {
      auto inner = Inner{};
      return inner(inner(x));  // Inner_0 twice: one Dense_0 inside
    }
  };
  Tree vars = Outer{}.init(random::key(0), ones({1, 3}));
  EXPECT_EQ(keys_of(vars["params"]), Names{"Inner_0"});
  EXPECT_EQ(keys_of(vars["params"]["Inner_0"]), Names{"Dense_0"});
}

TEST(ModuleNaming, SetupStyleAccessorsShareByName) {
  struct Block : nn::Module<Block> {
    nn::Dense proj() const { return nn::Dense{.features = 2}.named("proj"); }
    Tensor call(const Tensor& x) const { return proj()(x) + proj()(x); }
    Tensor other(const Tensor& x) const { return proj()(x); }
  };
  Tensor x = ones({1, 2});
  Tree vars = Block{}.init(random::key(0), x);
  EXPECT_EQ(keys_of(vars["params"]), Names{"proj"});
  Tensor a = Block{}.apply(vars, &Block::other, x);
  Tensor b = Block{}.apply(vars, x);
  EXPECT_ALLCLOSE(b, a * 2.0, 1e-6, 1e-6);
}

TEST(ModuleNaming, ModulesBuiltOutsideAreNamedWhenCalledAndCopiesAreNew) {
  struct Stack : nn::Module<Stack> {
    nn::Dense layer = nn::Dense{.features = 3};  // a preset built outside any body
    Tensor call(const Tensor& x) const {
      nn::Dense a = layer, b = layer;  // copies made in the body: Dense_0, Dense_1
      b.features = 2;
      return b(a(x));
    }
  };
  Tree vars = Stack{}.init(random::key(0), ones({1, 4}));
  EXPECT_EQ(vars.at("params/Dense_0/kernel").tensor().shape(), (Shape{4, 3}));
  EXPECT_EQ(vars.at("params/Dense_1/kernel").tensor().shape(), (Shape{3, 2}));
}

TEST(ModuleNaming, NameInUse) {
  struct ExplicitThenAuto : nn::Module<ExplicitThenAuto> {
    Tensor call(const Tensor& x) const {
      Tensor y = nn::Dense{.features = 2}.named("Dense_0")(x);
      return nn::Dense{.features = 2}(y);  // Flax: NameInUseError
    }
  };
  EXPECT_THROW_WITH(ExplicitThenAuto{}.init(random::key(0), ones({1, 2})), nn::NameInUseError,
                    "\"Dense_0\"", "Name in use", "ExplicitThenAuto");
  struct TwoTypes : nn::Module<TwoTypes> {
    Tensor call(const Tensor& x) const {
      Tensor y = nn::Dense{.features = 2}.named("block")(x);
      return Scale{}.named("block")(y);
    }
  };
  EXPECT_THROW_WITH(TwoTypes{}.init(random::key(0), ones({1, 2})), nn::NameInUseError,
                    "\"block\"", "Dense");
  struct ParamAndChild : nn::Module<ParamAndChild> {
    Tensor call(const Tensor& x) const {
      Tensor w = param("kernel", nn::initializers::ones(), {2});
      return nn::Dense{.features = 2}.named("kernel")(x * w);
    }
  };
  EXPECT_THROW_WITH(ParamAndChild{}.init(random::key(0), ones({1, 2})), nn::NameInUseError,
                    "\"kernel\"", "variable");
  struct ParamTwice : nn::Module<ParamTwice> {
    Tensor call(const Tensor& x) const {
      return x * param("w", nn::initializers::ones(), {2}) * param("w", nn::initializers::ones(), {2});
    }
  };
  EXPECT_THROW_WITH(ParamTwice{}.init(random::key(0), ones({1, 2})), nn::NameInUseError,
                    "param \"w\"");
}

struct Weird : nn::Module<Weird> {
  static constexpr std::string_view kModuleName = "Block";
  Tensor call(const Tensor& x) const { return Scale{}(x); }
};

TEST(ModuleNaming, KModuleNameOverridesTheClassName) {
  struct Top : nn::Module<Top> {
    // As in Python, the outer module is built first (Block_0) but called last, so Block_1's
    // params are created first.
    Tensor call(const Tensor& x) const { return Weird{}(Weird{}(x)); }
  };
  Tree vars = Top{}.init(random::key(0), ones({2}));
  EXPECT_EQ(keys_of(vars["params"]), (Names{"Block_1", "Block_0"}));
  EXPECT_EQ(nn::detail::type_name_from_signature(
                "std::string f() [with T = loom::nn::Conv<float>; std::string = x]"),
            "Conv");
  EXPECT_EQ(nn::detail::type_name_from_signature(
                "std::string f() [with T = {anonymous}::Test_Body()::Local]"),
            "Local");
}

// --- rng derivation ------------------------------------------------------------------------------

TEST(ModuleRng, Sha1StandardVectors) {
  EXPECT_EQ(nn::sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(nn::sha1_hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(nn::sha1_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  EXPECT_EQ(nn::sha1_hex(std::string(1000000, 'a')), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  nn::Sha1 h;  // incremental updates across block boundaries
  for (int i = 0; i < 100; ++i) h.update("abcdefghij");
  nn::Sha1 whole;
  std::string s;
  for (int i = 0; i < 100; ++i) s += "abcdefghij";
  whole.update(s);
  EXPECT_EQ(h.digest(), whole.digest());
  nn::Sha1 d;  // Flax's Dense_0 first key: sha1(b'Dense_0\x01')[:4]
  d.update("Dense_0");
  d.update(std::string(1, '\x01'));
  EXPECT_EQ(d.digest_prefix32(), 0xb2b71315u);
}

std::vector<random::Key>* g_keys = nullptr;

struct KeyProbe : nn::Module<KeyProbe> {
  std::string kind = "params";
  int count = 1;
  Tensor call(const Tensor& x) const {
    for (int i = 0; i < count; ++i) g_keys->push_back(make_rng(kind));
    return x;
  }
};

TEST(ModuleRng, FlaxDerivationVectors) {
  std::vector<random::Key> keys;
  g_keys = &keys;
  // Root module, first key of key(0): fold_in(key(0), 0xbf8b4530) = (1428664606, 3351135085).
  KeyProbe{}.init(random::key(0), zeros({1}));
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0], (random::Key{1428664606u, 3351135085u}));
  // Dense_0's kernel key: fold_in(key(0), 0xb2b71315) = (3043437727, 3662875008).
  keys.clear();
  struct Top : nn::Module<Top> {
    Tensor call(const Tensor& x) const {
      return KeyProbe{.count = 2}.named("Dense_0")(x);
    }
  };
  Top{}.init(random::key(0), zeros({1}));
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0], (random::Key{3043437727u, 3662875008u}));
  EXPECT_EQ(keys[0], random::fold_in(random::key(0), 0xb2b71315u));
  EXPECT_EQ(keys[1], random::fold_in(random::key(0), 0x8916588au));  // the bias key
  g_keys = nullptr;
}

TEST(ModuleRng, CountersPersistAcrossCallsAndFallBackToParams) {
  std::vector<random::Key> keys;
  g_keys = &keys;
  struct Top : nn::Module<Top> {
    Tensor call(const Tensor& x) const {
      KeyProbe p{.kind = "dropout"};
      p(x);
      p(x);  // the same scope: counter 2
      return x;
    }
  };
  // No "dropout" stream at init: Flax falls back to "params".
  Top{}.init(random::key(3), zeros({1}));
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_NE(keys[0], keys[1]);
  nn::Sha1 h;
  h.update("KeyProbe_0");
  h.update(std::string(1, '\x02'));
  EXPECT_EQ(keys[1], random::fold_in(random::key(3), h.digest_prefix32()));
  // With a dropout stream the same derivation uses that key.
  keys.clear();
  Top{}.apply(Tree(), {.rngs = {{"dropout", random::key(9)}}}, zeros({1}));
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[1], random::fold_in(random::key(9), h.digest_prefix32()));
  // Neither: InvalidRngError naming the path and the kind.
  EXPECT_THROW_WITH(Top{}.apply(Tree(), zeros({1})), nn::InvalidRngError, "/KeyProbe_0",
                    "needs PRNG for \"dropout\"", ".rngs");
  g_keys = nullptr;
}

// --- variables, collections, errors ----------------------------------------------------------------

struct Counter : nn::Module<Counter> {
  Tensor call(const Tensor& x) const {
    nn::Variable count = variable("counter", "count", [] { return zeros({}); });
    nn::Variable total = variable("counter", "total", nn::initializers::zeros(), {x.dim(-1)});
    if (!is_initializing()) {
      count.set_value(count.value() + 1.0);
      total.set_value(total.value() + x);
    }
    sow("intermediates", "seen", x);
    return x * param("w", nn::initializers::ones(), {x.dim(-1)});
  }
};

TEST(ModuleVariables, MutableCollectionsAndSow) {
  Tensor x = from_vector<float>({1, 2}, {2});
  Tree vars = Counter{}.init(random::key(0), x);
  EXPECT_EQ(keys_of(vars), (Names{"counter", "params"}));  // no intermediates at init
  EXPECT_EQ(vars.at("counter/count").tensor().item<float>(), 0.0f);

  auto [y, updated] = Counter{}.apply_mutable(vars, {"counter"}, x);
  EXPECT_EQ(keys_of(updated), Names{"counter"});
  EXPECT_EQ(updated.at("counter/count").tensor().item<float>(), 1.0f);
  EXPECT_EQ(updated.at("counter/total").tensor().to_vector<float>(), (std::vector<float>{1, 2}));
  EXPECT_EQ(vars.at("counter/count").tensor().item<float>(), 0.0f);  // inputs untouched

  // All mutable: intermediates appear, sown as a tuple {"0": x}.
  auto [y2, everything] = Counter{}.apply_mutable(vars, nn::Mutable::all(), x);
  EXPECT_EQ(keys_of(everything), (Names{"counter", "params", "intermediates"}));
  EXPECT_TRUE(everything.has_path("intermediates/seen/0"));

  // Writing an immutable collection: Flax's message plus what to do.
  EXPECT_THROW_WITH(Counter{}.apply(vars, x), nn::ModifyScopeVariableError,
                    "Cannot update variable \"count\" in \"/\" because collection \"counter\" is "
                    "immutable.",
                    "apply_mutable");
  // The collection missing altogether.
  Tree params_only;
  params_only.insert("params", vars["params"]);
  EXPECT_THROW_WITH(Counter{}.apply(params_only, x), nn::ScopeCollectionNotFound,
                    "\"count\"", "\"counter\"");
  // A missing variable in a non-empty immutable collection.
  Tree partial = vars;
  partial["counter"].erase("total");
  EXPECT_THROW_WITH(Counter{}.apply(partial, x), nn::ScopeVariableNotFoundError, "\"total\"");
}

TEST(ModuleErrors, ParamErrors) {
  struct Net : nn::Module<Net> {
    Tensor call(const Tensor& x) const { return nn::Dense{.features = 3}(x); }
  };
  Tree vars = Net{}.init(random::key(0), ones({2, 4}));
  // apply(params) instead of apply({"params": params}).
  EXPECT_THROW_WITH(Net{}.apply(vars["params"], ones({2, 4})), nn::ScopeCollectionNotFound,
                    "Tried to access \"kernel\" from collection \"params\" in \"/Dense_0\"",
                    "{\"params\": ...}", "Dense_0");
  // The input shape changed.
  EXPECT_THROW_WITH(Net{}.apply(vars, ones({2, 5})), nn::ScopeParamShapeError,
                    "For parameter \"kernel\" in \"/Dense_0\"", "[5, 3]", "[4, 3]");
  // Params of another model.
  Tree other;
  other.set("params/Dense_1/kernel", zeros({4, 3}));
  EXPECT_THROW_WITH(Net{}.apply(other, ones({2, 4})), nn::ScopeParamNotFoundError,
                    "Could not find parameter named \"kernel\" in scope \"/Dense_0\"");
  // {"params": {"params": ...}}.
  Tree nested;
  nested.insert("params", vars);
  EXPECT_THROW_WITH(Net{}.apply(nested, ones({2, 4})),
                    nn::ApplyScopeInvalidVariablesStructureError, "{\"params\": {\"params\": ...}}");
  // Calling a module outside init/apply.
  EXPECT_THROW_WITH(nn::Dense{.features = 3}(ones({2, 4})), nn::CallCompactUnboundModuleError,
                    "Can't call compact methods on unbound modules", "Dense", "init");
  // All are loom::Errors.
  EXPECT_THROW(Net{}.apply(vars, ones({2, 5})), Error);
}

TEST(ModuleErrors, ChildParamsFromTheParentAreRejected) {
  struct Sneaky : nn::Module<Sneaky> {
    Tensor call(const Tensor& x) const {
      Scale child;
      return x * child.param("w", nn::initializers::ones(), {1});
    }
  };
  EXPECT_THROW_WITH(Sneaky{}.init(random::key(0), ones({1})), nn::ModuleError,
                    "not the one running");
}

TEST(ModuleGrad, ApplyIsDifferentiableInTheParams) {
  struct Net : nn::Module<Net> {
    Tensor call(const Tensor& x) const {
      return nn::Dense{.features = 1}(loom::relu(nn::Dense{.features = 3}(x)));
    }
  };
  Tensor x = testing::test_values({4, 2}, 1).to(DType::F64);
  Tree vars = Net{}.init(random::key(0), x.to(DType::F32));
  Tree params = tree_map([](const Tensor& p) { return p.to(DType::F64); }, vars["params"]);
  auto loss = [&](const Tree& p) {
    Tree v;
    v.insert("params", p);
    return sum(square(Net{}.apply(v, x)));
  };
  auto [value, grads] = value_and_grad(loss)(params);
  EXPECT_TRUE(grads.same_structure(params));
  // Finite differences on the first layer's kernel.
  std::vector<Tensor> leaves = params.leaves();
  EXPECT_TRUE(testing::check_gradients(
      [&](const std::vector<Tensor>& in) {
        Tree v;
        v.insert("params", params.unflatten(in));
        return sum(square(Net{}.apply(v, x)));
      },
      leaves));
  EXPECT_GT(value.item<double>(), 0.0);
}

}  // namespace
}  // namespace loom

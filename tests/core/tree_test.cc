#include "core/tree.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "tests/support/testing.h"

namespace loom {
namespace {

Tree sample() {
  Tree t;
  t.set("params/Dense_0/kernel", arange(12).reshape({3, 4}));
  t.set("params/Dense_0/bias", zeros({4}));
  t.set("params/Dense_1/kernel", ones({4, 2}, DType::BF16));
  t.set("batch_stats/mean", full({2}, 0.5, DType::F64));
  return t;
}

TEST(Tree, LeafAndDict) {
  Tree empty;
  EXPECT_TRUE(empty.is_dict());
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.size(), 0u);
  Tree leaf = zeros({2});
  EXPECT_TRUE(leaf.is_leaf());
  EXPECT_FALSE(leaf.empty());
  EXPECT_EQ(leaf.tensor().shape(), (Shape{2}));
  EXPECT_THROW_WITH(empty.tensor(), ValueError, "dict");
  EXPECT_THROW_WITH(leaf.items(), ValueError, "leaf", "[2]");
  EXPECT_THROW_WITH(Tree{Tensor()}, ValueError, "undefined");
}

TEST(Tree, PathAccess) {
  Tree t = sample();
  EXPECT_TRUE(t.has_path("params/Dense_0/kernel"));
  EXPECT_TRUE(t.has_path("params/Dense_0"));
  EXPECT_TRUE(t.has_path(""));
  EXPECT_FALSE(t.has_path("params/Dense_2"));
  EXPECT_FALSE(t.has_path("params/Dense_0/kernel/x"));  // through a leaf
  EXPECT_EQ(t.at("params/Dense_0/kernel").tensor().shape(), (Shape{3, 4}));
  EXPECT_EQ(t.at("params/Dense_0/kernel").tensor().to_vector<float>()[5], 5.0f);
  EXPECT_EQ(t["params"]["Dense_1"]["kernel"].tensor().dtype(), DType::BF16);
  EXPECT_EQ(&t.at(""), &t);
  EXPECT_TRUE(t.contains("params"));
  EXPECT_FALSE(t.contains("Dense_0"));
  EXPECT_EQ(t.at("params").keys(), (std::vector<std::string>{"Dense_0", "Dense_1"}));
}

TEST(Tree, MissingKeyErrorsNameKeyAndListKeysPresent) {
  const Tree t = sample();
  EXPECT_THROW_WITH(t.at("params/Dense_0/weight"), IndexError, "'weight'", "'params/Dense_0'",
                    "kernel, bias");
  EXPECT_THROW_WITH(t.at("params/Conv_0/kernel"), IndexError, "'Conv_0'", "Dense_0, Dense_1");
  EXPECT_THROW_WITH(t.at("nope"), IndexError, "'nope'", "(root)", "params, batch_stats");
  EXPECT_THROW_WITH(t.at("params/Dense_0/kernel/x"), IndexError, "'params/Dense_0/kernel'",
                    "leaf", "[3, 4]", "'x'");
  EXPECT_THROW_WITH(t["params"]["bogus"], IndexError, "'bogus'", "Dense_0, Dense_1");
  EXPECT_THROW_WITH(t.at("params//bias"), ValueError, "empty part");
  EXPECT_THROW_WITH(Tree().at("a"), IndexError, "'a'", "(none)");
}

TEST(Tree, InsertionOrderIsKept) {
  Tree t;
  for (const char* k : {"zeta", "alpha", "mid", "beta"}) t.insert(k, zeros({1}));
  EXPECT_EQ(t.keys(), (std::vector<std::string>{"zeta", "alpha", "mid", "beta"}));
  // Replacing keeps the position.
  t.insert("alpha", ones({3}));
  EXPECT_EQ(t.keys(), (std::vector<std::string>{"zeta", "alpha", "mid", "beta"}));
  EXPECT_EQ(t["alpha"].tensor().numel(), 3);
  // Mutable operator[] appends an empty dict when absent.
  Tree& fresh = t["omega"];
  EXPECT_TRUE(fresh.is_dict());
  EXPECT_TRUE(fresh.empty());
  EXPECT_EQ(t.keys().back(), "omega");
  std::vector<std::string> paths;
  for (const auto& [p, leaf] : sample().flatten()) paths.push_back(p);
  EXPECT_EQ(paths, (std::vector<std::string>{"params/Dense_0/kernel", "params/Dense_0/bias",
                                             "params/Dense_1/kernel", "batch_stats/mean"}));
}

TEST(Tree, SetCreatesIntermediateDicts) {
  Tree t;
  t.set("a/b/c/d", scalar(1));
  EXPECT_TRUE(t.at("a").is_dict());
  EXPECT_TRUE(t.at("a/b/c").is_dict());
  EXPECT_TRUE(t.at("a/b/c/d").is_leaf());
  EXPECT_EQ(t.leaf_count(), 1u);
  // Replacing a subtree by a leaf and a leaf by a subtree.
  t.set("a/b", scalar(2));
  EXPECT_TRUE(t.at("a/b").is_leaf());
  EXPECT_FALSE(t.has_path("a/b/c"));
  Tree sub;
  sub.set("x", zeros({2}));
  t.set("a/b", sub);
  EXPECT_TRUE(t.has_path("a/b/x"));
  // A leaf on the way is an error naming it.
  t.set("leaf", zeros({5}));
  EXPECT_THROW_WITH(t.set("leaf/below", zeros({1})), ValueError, "'leaf'", "[5]");
  EXPECT_THROW_WITH(t.set("", zeros({1})), ValueError, "empty path");
  EXPECT_THROW_WITH(t.insert("has/slash", zeros({1})), ValueError, "'has/slash'");
  EXPECT_THROW_WITH(t.insert("", zeros({1})), ValueError, "invalid key");
}

TEST(Tree, Erase) {
  Tree t = sample();
  EXPECT_TRUE(t["params"]["Dense_0"].erase("kernel"));
  EXPECT_FALSE(t.has_path("params/Dense_0/kernel"));
  EXPECT_TRUE(t.has_path("params/Dense_0/bias"));
  EXPECT_FALSE(t["params"]["Dense_0"].erase("kernel"));
  EXPECT_EQ(t.leaf_count(), 3u);
  EXPECT_TRUE(t.erase_path("params/Dense_1"));
  EXPECT_FALSE(t.erase_path("params/Dense_1"));
  EXPECT_FALSE(t.erase_path("no/such/path"));
  EXPECT_EQ(t.leaf_count(), 2u);
  EXPECT_TRUE(t.erase("batch_stats"));
  EXPECT_EQ(t.keys(), (std::vector<std::string>{"params"}));
  Tree leaf = zeros({1});
  EXPECT_FALSE(leaf.erase("x"));
}

TEST(Tree, FlattenUnflattenRoundTrip) {
  Tree t = sample();
  auto flat = t.flatten();
  ASSERT_EQ(flat.size(), 4u);
  EXPECT_EQ(flat[0].second.shape(), (Shape{3, 4}));
  std::vector<Tensor> leaves = t.leaves();
  ASSERT_EQ(leaves.size(), 4u);
  Tree back = t.unflatten(leaves);
  EXPECT_TRUE(back.same_structure(t));
  EXPECT_EQ(back.flatten().size(), 4u);
  for (size_t i = 0; i < flat.size(); ++i) {
    EXPECT_EQ(back.flatten()[i].first, flat[i].first);
    EXPECT_EQ(back.flatten()[i].second.storage(), flat[i].second.storage());  // shared, not copied
  }
  // New leaves go into the same places.
  std::vector<Tensor> doubled;
  for (const Tensor& l : leaves) doubled.push_back(full_like(l, 7));
  Tree seven = t.unflatten(doubled);
  EXPECT_EQ(seven.at("batch_stats/mean").tensor().to_vector<double>(),
            (std::vector<double>{7, 7}));
  EXPECT_THROW_WITH(t.unflatten({zeros({1})}), ValueError, "4 leaves", "1 tensors");
  // A root leaf flattens to the empty path.
  Tree leaf = zeros({3});
  ASSERT_EQ(leaf.flatten().size(), 1u);
  EXPECT_EQ(leaf.flatten()[0].first, "");
  EXPECT_TRUE(leaf.unflatten({ones({2})}).is_leaf());
  // An empty tree has no leaves.
  EXPECT_TRUE(Tree().flatten().empty());
  EXPECT_TRUE(Tree().unflatten({}).empty());
}

TEST(Tree, CopiesAreIndependentValues) {
  Tree a = sample();
  Tree b = a;
  b.set("params/Dense_0/bias", ones({4}));
  b.erase("batch_stats");
  EXPECT_EQ(a.at("params/Dense_0/bias").tensor().to_vector<float>()[0], 0.0f);
  EXPECT_TRUE(a.has_path("batch_stats/mean"));
  // Copies share their dicts until changed (copy on write): every way of changing one, at any
  // depth, leaves the other as it was, whichever of the two is changed.
  Tree c = a, d = a;
  c["params"]["Dense_0"].insert("extra", ones({2}));
  EXPECT_FALSE(a.has_path("params/Dense_0/extra"));
  EXPECT_FALSE(d.has_path("params/Dense_0/extra"));
  a.erase_path("params/Dense_0/kernel");
  EXPECT_TRUE(d.has_path("params/Dense_0/kernel"));
  EXPECT_TRUE(c.has_path("params/Dense_0/kernel"));
  EXPECT_FALSE(a.has_path("params/Dense_0/kernel"));
  EXPECT_FALSE(d.erase_path("params/Dense_0/missing"));
  EXPECT_TRUE(d.same_structure(sample()));
}

TEST(Tree, ReferencesKeptAcrossACopyChangeOnlyTheirTree) {
  Tree t = sample();
  Tree& params = t["params"];
  Tree& bias = t["params"]["Dense_0"]["bias"];
  Tree snapshot = t;
  params.insert("k", ones({2}));
  bias = Tree(ones({4}));
  EXPECT_FALSE(snapshot.has_path("params/k"));
  EXPECT_EQ(snapshot.at("params/Dense_0/bias").tensor().to_vector<float>()[0], 0.0f);
  EXPECT_TRUE(t.has_path("params/k"));
  EXPECT_EQ(t.at("params/Dense_0/bias").tensor().to_vector<float>()[0], 1.0f);
  // A tree put inside itself is a copy of what it was, not a cycle.
  Tree u = sample();
  u["self"] = u;
  u["batch_stats"].insert("again", u);
  EXPECT_TRUE(u.has_path("self/params/Dense_0/kernel"));
  EXPECT_TRUE(u.at("self/self").empty());  // the key existed, empty, when u was copied
  EXPECT_TRUE(u.has_path("batch_stats/again/self/params"));
  EXPECT_FALSE(u.has_path("batch_stats/again/batch_stats/again"));
  EXPECT_EQ(u.leaf_count(), 3 * sample().leaf_count() + sample().leaf_count());
}

TEST(Tree, LeafCountAndTotalSize) {
  Tree t = sample();
  EXPECT_EQ(t.leaf_count(), 4u);
  EXPECT_EQ(t.total_size(), 12 + 4 + 8 + 2);
  EXPECT_EQ(t.at("params").total_size(), 24);
  EXPECT_EQ(Tree().leaf_count(), 0u);
  EXPECT_EQ(Tree().total_size(), 0);
  EXPECT_EQ(Tree(zeros({0, 5})).total_size(), 0);
  EXPECT_EQ(Tree(scalar(3)).total_size(), 1);
}

TEST(Tree, MapOneTree) {
  Tree t = sample();
  Tree z = tree_map([](const Tensor& x) { return full_like(x, 3); }, t);
  EXPECT_TRUE(z.same_structure(t));
  auto flat = z.flatten();
  EXPECT_EQ(flat[0].first, "params/Dense_0/kernel");  // insertion order kept
  for (const auto& [path, leaf] : flat) {
    EXPECT_EQ(leaf.shape(), t.at(path).tensor().shape()) << path;
    EXPECT_EQ(leaf.dtype(), t.at(path).tensor().dtype()) << path;
    for (double v : leaf.to_vector<double>()) EXPECT_EQ(v, 3.0) << path;
  }
  // The input is unchanged.
  EXPECT_EQ(t.at("params/Dense_0/bias").tensor().to_vector<float>()[0], 0.0f);
}

TEST(Tree, MapTwoAndThreeTreesPairsLeavesByPath) {
  Tree a, b, c;
  a.set("x/w", from_vector<double>({1, 2}, {2}));
  a.set("x/b", from_vector<double>({10}, {1}));
  // b and c hold the same keys inserted in another order: leaves are paired by path.
  b.set("x/b", from_vector<double>({20}, {1}));
  b.set("x/w", from_vector<double>({3, 4}, {2}));
  c.set("x/b", from_vector<double>({30}, {1}));
  c.set("x/w", from_vector<double>({5, 6}, {2}));
  Tree sum2 = tree_map(
      [](const Tensor& p, const Tensor& q) {
        std::vector<double> x = p.to_vector<double>(), y = q.to_vector<double>();
        for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
        return from_vector(x, p.shape());
      },
      a, b);
  EXPECT_EQ(sum2.keys(), (std::vector<std::string>{"x"}));
  EXPECT_EQ(sum2.at("x").keys(), (std::vector<std::string>{"w", "b"}));  // a's order
  EXPECT_EQ(sum2.at("x/w").tensor().to_vector<double>(), (std::vector<double>{4, 6}));
  EXPECT_EQ(sum2.at("x/b").tensor().to_vector<double>(), (std::vector<double>{30}));
  Tree sum3 = tree_map(
      [](const Tensor& p, const Tensor& q, const Tensor& r) {
        std::vector<double> x = p.to_vector<double>(), y = q.to_vector<double>(),
                            z = r.to_vector<double>();
        for (size_t i = 0; i < x.size(); ++i) x[i] = x[i] + 10 * y[i] + 100 * z[i];
        return from_vector(x, p.shape());
      },
      a, b, c);
  EXPECT_EQ(sum3.at("x/w").tensor().to_vector<double>(), (std::vector<double>{531, 642}));
  EXPECT_EQ(sum3.at("x/b").tensor().to_vector<double>(), (std::vector<double>{3210}));
}

TEST(Tree, MapStructureMismatchNamesFirstDifferingPath) {
  Tree a = sample();
  Tree b = sample();
  b.erase_path("params/Dense_1/kernel");
  b.set("params/Dense_1/scale", zeros({2}));
  auto first = [](const Tensor& x, const Tensor&) { return x; };
  EXPECT_EQ(a.first_difference(b), "params/Dense_1/kernel");
  EXPECT_FALSE(a.same_structure(b));
  EXPECT_THROW_WITH(tree_map(first, a, b), ShapeError, "tree_map", "'params/Dense_1/kernel'",
                    "missing in the second tree");
  // Keys only the second tree has.
  Tree c = sample();
  c.set("params/Dense_0/extra", zeros({1}));
  EXPECT_EQ(a.first_difference(c), "params/Dense_0/extra");
  EXPECT_THROW_WITH(tree_map(first, a, c), ShapeError, "'params/Dense_0/extra'",
                    "present in the second tree");
  // A leaf where the other has a dict.
  Tree d = sample();
  d.set("batch_stats", zeros({2}));
  EXPECT_EQ(a.first_difference(d), "batch_stats");
  EXPECT_THROW_WITH(tree_map(first, a, d), ShapeError, "'batch_stats'",
                    "a dict in the first tree, a leaf in the second tree");
  // Three trees: the third is checked too.
  auto first3 = [](const Tensor& x, const Tensor&, const Tensor&) { return x; };
  EXPECT_NO_THROW(tree_map(first3, a, sample(), sample()));
  EXPECT_THROW_WITH(tree_map(first3, a, sample(), b), ShapeError, "third tree",
                    "'params/Dense_1/kernel'");
  // Roots of different kinds.
  EXPECT_EQ(Tree(zeros({1})).first_difference(Tree()), "(root)");
  // Shapes are not part of the structure; order is not either.
  Tree e;
  e.set("batch_stats/mean", zeros({7}));
  e.set("params/Dense_1/kernel", zeros({1}));
  e.set("params/Dense_0/bias", zeros({1}));
  e.set("params/Dense_0/kernel", zeros({1}));
  EXPECT_TRUE(a.same_structure(e));
  EXPECT_EQ(a.first_difference(e), "");
}

TEST(Tree, Allclose) {
  Tree a = sample();
  Tree b = tree_map([](const Tensor& x) { return x.to(DType::F64); }, a);
  EXPECT_TRUE(tree_allclose(a, a));
  EXPECT_TRUE(tree_allclose(a, b));  // dtypes may differ, values are compared
  Tree c = a;
  c.set("params/Dense_0/bias", full({4}, 1e-3));
  EXPECT_FALSE(tree_allclose(a, c));
  EXPECT_TRUE(tree_allclose(a, c, 0, 1e-2));
  Tree rel = a;
  rel.set("batch_stats/mean", full({2}, 0.5 * (1 + 1e-4), DType::F64));
  EXPECT_FALSE(tree_allclose(rel, a));
  EXPECT_TRUE(tree_allclose(rel, a, 1e-3, 0));
  // Shape and structure differences are not close.
  Tree shape = a;
  shape.set("params/Dense_0/bias", zeros({2, 2}));
  EXPECT_FALSE(tree_allclose(a, shape));
  Tree missing = a;
  missing.erase("batch_stats");
  EXPECT_FALSE(tree_allclose(a, missing));
  // NaN matches NaN; infinities must be equal.
  double nan = std::numeric_limits<double>::quiet_NaN(), inf = INFINITY;
  Tree n1(from_vector<double>({nan, inf, 1}, {3})), n2(from_vector<double>({nan, inf, 1}, {3}));
  EXPECT_TRUE(tree_allclose(n1, n2));
  Tree n3(from_vector<double>({nan, -inf, 1}, {3})), n4(from_vector<double>({0, inf, 1}, {3}));
  EXPECT_FALSE(tree_allclose(n1, n3));
  EXPECT_FALSE(tree_allclose(n1, n4));
}

TEST(Tree, SummaryTable) {
  Tree t;
  t.set("params/Dense_0/kernel", zeros({784, 128}));
  t.set("params/Dense_0/bias", zeros({128}, DType::BF16));
  t.set("batch_stats/mean", zeros({3}, DType::F64));
  std::string s = t.summary();
  const std::string expected =
      "path                   shape       dtype       count\n"
      "----------------------------------------------------\n"
      "params/Dense_0/kernel  [784, 128]  float32   100,352\n"
      "params/Dense_0/bias    [128]       bfloat16      128\n"
      "batch_stats/mean       [3]         float64         3\n"
      "total: 3 leaves, 100,483 elements, 392.27 KiB\n";
  EXPECT_EQ(s, expected);
  // 100352*4 + 128*2 + 3*8 = 401,688 bytes = 392.27 KiB.
  EXPECT_EQ(Tree().summary(),
            "path  shape  dtype  count\n"
            "-------------------------\n"
            "total: 0 leaves, 0 elements, 0 B\n");
  Tree one(scalar(1, DType::I32));
  EXPECT_NE(one.summary().find("(root)  []     int32      1"), std::string::npos) << one.summary();
  EXPECT_NE(one.summary().find("total: 1 leaf, 1 element, 4 B"), std::string::npos);
}

}  // namespace
}  // namespace loom

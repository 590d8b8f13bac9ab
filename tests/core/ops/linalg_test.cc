// matmul, dot_general, einsum and matmul_bias_act on the CPU: against a naive einsum reference,
// float64 finite-difference gradients, error messages, and JAX goldens.
#include <map>
#include <set>

#include "core/autodiff.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/reduce.h"
#include "core/ops/shape.h"
#include "core/ops/loss.h"
#include "core/precision.h"
#include "tests/support/testing.h"

namespace loom {
namespace {

using testing::check_gradients;
using testing::test_values;

// Naive einsum over single letters with an explicit output: every assignment of every letter is
// enumerated and a[..] * b[..] accumulated into out[..], in float64.
Tensor ref_einsum(const std::string& spec, const Tensor& a, const Tensor& b) {
  size_t comma = spec.find(','), arrow = spec.find("->");
  std::string sa = spec.substr(0, comma), sb = spec.substr(comma + 1, arrow - comma - 1),
              so = spec.substr(arrow + 2);
  std::map<char, int64_t> size;
  for (size_t i = 0; i < sa.size(); ++i) size[sa[i]] = a.shape()[i];
  for (size_t i = 0; i < sb.size(); ++i) size[sb[i]] = b.shape()[i];
  std::vector<char> letters;
  for (auto& [c, n] : size) letters.push_back(c);
  Shape out_shape;
  for (char c : so) out_shape.push_back(size[c]);
  std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  std::vector<double> out(size_t(shape_numel(out_shape)), 0.0);
  std::map<char, int64_t> at;
  for (char c : letters) at[c] = 0;
  auto flat = [&](const std::string& s) {
    int64_t f = 0;
    for (char c : s) f = f * size[c] + at[c];
    return f;
  };
  for (auto& [c, n] : size)
    if (n == 0) return from_vector(out, out_shape);
  while (true) {
    out[size_t(flat(so))] += va[size_t(flat(sa))] * vb[size_t(flat(sb))];
    size_t d = letters.size();
    while (d-- > 0) {
      if (++at[letters[d]] < size[letters[d]]) break;
      at[letters[d]] = 0;
    }
    if (d == size_t(-1)) break;
  }
  return from_vector(out, out_shape);
}

// The same contraction as dot_general(a, b, dims), spelled as an einsum for ref_einsum.
std::string dot_spec(int64_t ra, int64_t rb, const DotDims& d) {
  std::string la, lb;
  for (int64_t i = 0; i < ra; ++i) la += char('a' + i);
  for (int64_t j = 0; j < rb; ++j) lb += char('n' + j);
  for (size_t i = 0; i < d.lhs_contracting.size(); ++i)
    lb[size_t(d.rhs_contracting[i])] = la[size_t(d.lhs_contracting[i])];
  for (size_t i = 0; i < d.lhs_batch.size(); ++i)
    lb[size_t(d.rhs_batch[i])] = la[size_t(d.lhs_batch[i])];
  std::string out;
  for (int64_t ax : d.lhs_batch) out += la[size_t(ax)];
  std::set<int64_t> used_a(d.lhs_batch.begin(), d.lhs_batch.end()), used_b(d.rhs_batch.begin(), d.rhs_batch.end());
  used_a.insert(d.lhs_contracting.begin(), d.lhs_contracting.end());
  used_b.insert(d.rhs_contracting.begin(), d.rhs_contracting.end());
  for (int64_t i = 0; i < ra; ++i)
    if (!used_a.count(i)) out += la[size_t(i)];
  for (int64_t j = 0; j < rb; ++j)
    if (!used_b.count(j)) out += lb[size_t(j)];
  return la + "," + lb + "->" + out;
}

// A transposed view of a 2-D tensor (strides swapped, no copy).
Tensor transposed(const Tensor& x) {
  return Tensor(x.storage(), {x.dim(1), x.dim(0)}, {x.strides()[1], x.strides()[0]}, x.offset(),
                x.dtype());
}

template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Linalg, Matmul2DMatchesReference) {
  for (auto [m, k, n] : {std::tuple{3, 5, 7}, {1, 4, 1}, {6, 1, 2}, {17, 33, 9}}) {
    Tensor a = test_values({m, k}, 1), b = test_values({k, n}, 2);
    Tensor expect = ref_einsum("ik,kj->ij", a, b);
    EXPECT_ALLCLOSE(matmul(a, b), expect, 1e-12, 1e-12) << m << "x" << k << "x" << n;
    Tensor f = matmul(a.to(DType::F32), b.to(DType::F32));
    EXPECT_EQ(f.dtype(), DType::F32);
    EXPECT_ALLCLOSE(f, expect, 1e-5, 1e-5);
  }
}

TEST(Linalg, MatmulStridedViews) {
  Tensor a = test_values({5, 3}, 3), b = test_values({4, 5}, 4);
  Tensor at = transposed(a), bt = transposed(b);  // [3, 5] and [5, 4], column-major
  EXPECT_ALLCLOSE(matmul(at, bt), ref_einsum("ik,kj->ij", at, bt), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(matmul(at, test_values({5, 2}, 5)),
                  ref_einsum("ik,kj->ij", at, test_values({5, 2}, 5)), 1e-12, 1e-12);
  // a row-strided slice: 3 rows of 5 out of a [3, 8] buffer
  Tensor big = test_values({3, 8}, 6);
  Tensor sliced(big.storage(), {3, 5}, {8, 1}, 2, DType::F64);
  Tensor c = test_values({5, 4}, 7);
  EXPECT_ALLCLOSE(matmul(sliced, c), ref_einsum("ik,kj->ij", sliced, c), 1e-12, 1e-12);
  // a broadcast row (stride 0) cannot be a leading dimension: copied, still correct
  Tensor row = test_values({1, 5}, 8);
  Tensor rows(row.storage(), {4, 5}, {0, 1}, 0, DType::F64);
  EXPECT_ALLCLOSE(matmul(rows, c), ref_einsum("ik,kj->ij", rows, c), 1e-12, 1e-12);
}

// A large product whose rows are not a multiple of 16 bytes (GPT-2's vocabulary of 50257) is
// stored with rows padded to one (kernels/cpu/gemm.h): the values are the product's, and the
// cross-entropy over it reads the padded rows in place and writes its gradient at their pitch,
// which the backward products read in place; every gradient equals the contiguous path's.
TEST(Linalg, LargeMisalignedProductsStoreRowsAtA16BytePitch) {
  const int64_t batch = 2, seq = 256, dim = 256, vocab = 4101;  // 2 * 512 * 256 * 4101 >= 2^30
  Tensor h = test_values({batch, seq, dim}, 11, -1, 1, DType::F32);
  Tensor emb = test_values({vocab, dim}, 12, -1, 1, DType::F32);
  std::vector<int32_t> label_values(size_t(batch * seq));
  for (size_t i = 0; i < label_values.size(); ++i) label_values[i] = int32_t((i * 7919) % vocab);
  Tensor labels = from_vector(label_values, {batch, seq});

  Tensor logits = matmul(h, transpose(emb));  // a tied output layer, as nn::Embed::attend
  EXPECT_EQ(logits.shape(), (Shape{batch, seq, vocab}));
  EXPECT_EQ(logits.strides(), (Shape{seq * 4104, 4104, 1}));  // 4101 floats padded to 16 bytes
  EXPECT_ALLCLOSE(logits, matmul(h.to(DType::F64), transpose(emb.to(DType::F64))).to(DType::F32),
                  1e-5, 1e-5);
  // Below 2^30 flops, or with n a multiple of 16 bytes, the output stays contiguous.
  EXPECT_TRUE(matmul(test_values({8, dim}, 13, -1, 1, DType::F32), transpose(emb)).is_contiguous());
  EXPECT_TRUE(matmul(h, test_values({dim, 4104}, 14, -1, 1, DType::F32)).is_contiguous());

  auto loss_grads = [&](bool contiguous) {
    Tensor hl = autograd::make_leaf(h, 0), el = autograd::make_leaf(emb, 1);
    autograd::RecordingGuard rec(true);
    Tensor out = matmul(hl, transpose(el));
    if (contiguous) out = out.contiguous();
    Tensor loss = mean(softmax_cross_entropy_with_integer_labels(out, labels));
    std::vector<Tensor> grads = autograd::backward(loss, {hl, el});
    grads.insert(grads.begin(), loss.detach());
    return grads;
  };
  // Cross-entropy's gradient comes at the logits' pitch with its padding zeroed and promised
  // so (Storage::has_zero_row_padding): the GPU's products read it in place.
  {
    Tensor ll = autograd::make_leaf(logits, 0);
    autograd::RecordingGuard rec(true);
    Tensor dl = autograd::backward(sum(softmax_cross_entropy_with_integer_labels(ll, labels)), {ll})[0];
    EXPECT_EQ(dl.strides(), logits.strides());
    EXPECT_TRUE(dl.storage()->has_zero_row_padding(4104, vocab));
    Tensor rows(dl.storage(), {batch * seq, 4104}, {4104, 1}, 0, DType::F32);
    EXPECT_EQ(sum(abs(slice_axis(rows, 1, vocab, 4104))).item<float>(), 0.f);
    EXPECT_GT(sum(abs(slice_axis(rows, 1, 0, vocab))).item<float>(), 0.f);
  }
  std::vector<Tensor> padded = loss_grads(false), contiguous = loss_grads(true);
  EXPECT_TRUE(padded[0].to_vector<float>() == contiguous[0].to_vector<float>());
  for (size_t i = 1; i < padded.size(); ++i)
    EXPECT_ALLCLOSE(padded[i], contiguous[i], 1e-6, 1e-7) << "gradient " << i;
}

// A product's gradient is laid out as its operand is stored: through a transposed view of a
// parameter (a tied output layer, x @ transpose(embedding)) the parameter's gradient comes out
// contiguous, as it does for a kernel stored [in, out] and for x, and the view costs no copy.
TEST(Linalg, GradientsFollowTheOperandsStorageOrder) {
  Tensor h = test_values({2, 4, 6}, 21), emb = test_values({10, 6}, 22), kernel = test_values({6, 10}, 23);
  Tensor r = test_values({2, 4, 10}, 24);
  for (bool tied : {true, false}) {
    Tensor hl = autograd::make_leaf(h, 0), wl = autograd::make_leaf(tied ? emb : kernel, 1);
    autograd::RecordingGuard rec(true);
    Tensor y = matmul(hl, tied ? transpose(wl) : wl);
    std::vector<Tensor> grads = autograd::backward(sum(y * r), {hl, wl});
    EXPECT_TRUE(grads[0].is_contiguous()) << tied;
    EXPECT_TRUE(grads[1].is_contiguous()) << tied;
    Tensor h2 = h.reshape({8, 6}), r2 = r.reshape({8, 10});
    Tensor expected_w = tied ? ref_einsum("mn,mk->nk", r2, h2) : ref_einsum("mk,mn->kn", h2, r2);
    EXPECT_ALLCLOSE(grads[1], expected_w, 1e-12, 1e-12) << tied;
    Tensor w = tied ? transpose(emb).contiguous() : kernel;
    EXPECT_ALLCLOSE(grads[0], ref_einsum("mn,kn->mk", r2, w).reshape({2, 4, 6}), 1e-12, 1e-12) << tied;
  }
  // A transposed lhs: transpose(xt) @ kernel with xt stored [K, M].
  Tensor xt = test_values({6, 8}, 25), r2 = r.reshape({8, 10});
  Tensor xl = autograd::make_leaf(xt, 0), wl = autograd::make_leaf(kernel, 1);
  autograd::RecordingGuard rec(true);
  std::vector<Tensor> grads = autograd::backward(sum(matmul(transpose(xl), wl) * r2), {xl, wl});
  EXPECT_TRUE(grads[0].is_contiguous());
  EXPECT_ALLCLOSE(grads[0], ref_einsum("kn,mn->km", kernel, r2), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(grads[1], ref_einsum("km,mn->kn", xt, r2), 1e-12, 1e-12);
}

// One input taken by three products (an attention's query, key and value projections): the
// later products' backward adds its input gradient into the earlier ones' (beta = 1) instead of
// leaving a separate add. The sum is checked against finite differences and against the
// gradients of the products taken one at a time.
TEST(Linalg, ProductsOfOneInputAddTheirGradientsTogether) {
  Tensor x = test_values({2, 3, 5}, 81);
  std::vector<Tensor> w = {test_values({5, 4}, 82), test_values({5, 4}, 83), test_values({5, 6}, 84)};
  Tensor bias = test_values({4}, 85);
  auto loss_of = [&](const std::vector<Tensor>& in, const std::vector<size_t>& which) {
    Tensor total;
    for (size_t i : which) {
      Tensor y = i == 1 ? matmul_bias_act(in[0], in[2], in[4], Epilogue::Bias) : matmul(in[0], in[1 + i]);
      Tensor term = sum(y * test_values(y.shape(), 90 + i));
      total = total.defined() ? total + term : term;
    }
    return total;
  };
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return loss_of(in, {0, 1, 2}); },
                              {x, w[0], w[1], w[2], bias}));
  auto grad_x = [&](const std::vector<size_t>& which) {
    Tensor leaf = autograd::make_leaf(x, 0);
    autograd::RecordingGuard recording(true);
    return autograd::backward(loss_of({leaf, w[0], w[1], w[2], bias}, which), {leaf})[0];
  };
  EXPECT_ALLCLOSE(grad_x({0, 1, 2}), grad_x({0}) + grad_x({1}) + grad_x({2}), 1e-12, 1e-12);
  // a product with no output columns adds nothing to the gradient it is offered
  Tensor leaf = autograd::make_leaf(x, 0);
  autograd::RecordingGuard recording(true);
  Tensor loss = sum(matmul(leaf, test_values({5, 0}, 86))) + loss_of({leaf, w[0], w[1], w[2], bias}, {0});
  EXPECT_ALLCLOSE(autograd::backward(loss, {leaf})[0], grad_x({0}), 1e-12, 1e-12);
}

TEST(Linalg, MatmulBatchAndVectorCases) {
  Tensor a = test_values({2, 1, 3, 4}, 9), b = test_values({5, 4, 2}, 10);
  Tensor out = matmul(a, b);
  ASSERT_EQ(out.shape(), (Shape{2, 5, 3, 2}));
  Tensor expect = ref_einsum("xyik,zkj->xzij", a, b).reshape({2, 5, 3, 2});  // y == 1
  EXPECT_ALLCLOSE(out, expect, 1e-12, 1e-12);

  // a 2-D (or size-1 batch) rhs folds the lhs batch dims into its rows
  Tensor x = test_values({2, 3, 4}, 52), w = test_values({1, 4, 5}, 53);
  EXPECT_ALLCLOSE(matmul(x, w), ref_einsum("bik,okj->bij", x, w), 1e-12, 1e-12);
  Tensor l = test_values({1, 3, 4}, 54), y = test_values({2, 4, 6}, 57);  // lhs broadcast instead
  EXPECT_ALLCLOSE(matmul(l, y), ref_einsum("oik,bkj->bij", l, y), 1e-12, 1e-12);
  Tensor v = test_values({4}, 11), m = test_values({2, 4, 3}, 12);
  EXPECT_ALLCLOSE(matmul(v, m), ref_einsum("k,bkj->bj", v, m), 1e-12, 1e-12);
  Tensor m2 = test_values({2, 3, 4}, 13);
  EXPECT_ALLCLOSE(matmul(m2, v), ref_einsum("bik,k->bi", m2, v), 1e-12, 1e-12);
  Tensor dot = matmul(v, v);
  EXPECT_EQ(dot.shape(), Shape{});
  EXPECT_ALLCLOSE(dot, ref_einsum("k,k->", v, v), 1e-12, 1e-12);
}

TEST(Linalg, MatmulEmptyAndDtypes) {
  Tensor z = matmul(zeros({3, 0}), zeros({0, 4}));
  EXPECT_EQ(z.shape(), (Shape{3, 4}));
  EXPECT_ALLCLOSE(z, zeros({3, 4}), 0, 0);
  EXPECT_EQ(matmul(zeros({0, 2}), zeros({2, 4})).shape(), (Shape{0, 4}));
  EXPECT_EQ(matmul(zeros({2, 0, 2}), zeros({2, 5})).shape(), (Shape{2, 0, 5}));

  Tensor a = test_values({4, 6}, 14), b = test_values({6, 3}, 15);
  Tensor expect = ref_einsum("ik,kj->ij", a, b);
  Tensor mixed = matmul(a.to(DType::F32), b);  // float32 x float64 -> float64
  EXPECT_EQ(mixed.dtype(), DType::F64);
  EXPECT_ALLCLOSE(mixed, expect, 1e-6, 1e-6);
  for (DType half : {DType::BF16, DType::F16}) {
    Tensor h = matmul(a.to(half), b.to(half));
    EXPECT_EQ(h.dtype(), half);
    EXPECT_ALLCLOSE(h.to(DType::F64), expect, 2e-2, 2e-2) << dtype_name(half);
  }
}

TEST(Linalg, MatmulErrorsNameShapes) {
  std::string msg = error_of([] { matmul(zeros({2, 3}), zeros({4, 5})); });
  EXPECT_NE(msg.find("matmul"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;
  EXPECT_THROW(matmul(zeros({2, 3}), zeros({4, 5})), ShapeError);
  EXPECT_THROW(matmul(zeros({2, 2, 3}), zeros({3, 3, 5})), ShapeError);  // batch 2 vs 3
  EXPECT_THROW(matmul(scalar(1.0), zeros({3})), ShapeError);
  EXPECT_THROW(matmul(ones({2, 2}, DType::I32), ones({2, 2}, DType::I32)), DTypeError);
  EXPECT_THROW(matmul(Tensor(), zeros({2})), ValueError);
}

TEST(Linalg, DotGeneralMatchesReference) {
  struct Case {
    Shape a, b;
    DotDims dims;
  };
  std::vector<Case> cases = {
      {{2, 3, 4, 5}, {4, 5, 6}, {{2, 3}, {0, 1}, {}, {}}},        // DenseGeneral
      {{3, 2, 4, 5}, {5, 6, 2, 4}, {{2, 3}, {3, 0}, {1}, {2}}},   // batch not leading
      {{3}, {4, 2}, {{}, {}, {}, {}}},                            // outer product
      {{2, 3, 4}, {2, 4, 3}, {{1, 2}, {2, 1}, {0}, {0}}},         // full contraction per batch
      {{4, 3}, {5, 4}, {{0}, {1}, {}, {}}},                       // both operands transposed
      {{2, 5, 3}, {3, 2, 4}, {{2}, {0}, {0}, {1}}},               // batch on the rhs middle
  };
  for (const Case& c : cases) {
    Tensor a = test_values(c.a, 16), b = test_values(c.b, 17);
    std::string spec = dot_spec(int64_t(c.a.size()), int64_t(c.b.size()), c.dims);
    EXPECT_ALLCLOSE(dot_general(a, b, c.dims), ref_einsum(spec, a, b), 1e-12, 1e-12) << spec;
  }
  Tensor a = test_values({2, 5, 3}, 18), b = test_values({3, 2, 4}, 19);
  EXPECT_ALLCLOSE(dot_general(a, b, {{-1}, {-3}, {-3}, {-2}}), dot_general(a, b, {{2}, {0}, {0}, {1}}),
                  0, 0);
}

TEST(Linalg, DotGeneralErrors) {
  Tensor a = zeros({2, 3}), b = zeros({4, 5});
  std::string msg = error_of([&] { dot_general(a, b, {{1}, {0}, {}, {}}); });
  EXPECT_NE(msg.find("dot_general"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;
  EXPECT_THROW(dot_general(a, b, {{1}, {0}, {}, {}}), ShapeError);
  EXPECT_THROW(dot_general(a, zeros({3, 2}), {{1}, {0}, {0}, {0}}), ShapeError);  // batch 2 vs 3
  EXPECT_THROW(dot_general(a, zeros({3}), {{1, 1}, {0, 0}, {}, {}}), ShapeError);  // repeated
  EXPECT_THROW(dot_general(a, zeros({3}), {{1}, {}, {}, {}}), ShapeError);         // unpaired
  EXPECT_THROW(dot_general(a, zeros({3}), {{2}, {0}, {}, {}}), IndexError);        // out of range
}

TEST(Linalg, EinsumMatchesReference) {
  Tensor q = test_values({2, 3, 2, 4}, 18), k = test_values({2, 5, 2, 4}, 19);
  EXPECT_ALLCLOSE(einsum("...qhd,...khd->...hqk", q, k), ref_einsum("bqhd,bkhd->bhqk", q, k),
                  1e-12, 1e-12);
  Tensor p = test_values({2, 2, 3, 5}, 20), v = test_values({2, 5, 2, 4}, 21);
  EXPECT_ALLCLOSE(einsum("...hqk,...khd->...qhd", p, v), ref_einsum("bhqk,bkhd->bqhd", p, v),
                  1e-12, 1e-12);
  Tensor a = test_values({3, 4, 2}, 22), b = test_values({4, 5}, 23);
  EXPECT_ALLCLOSE(einsum("ijk,jl->li", a, b), ref_einsum("ijk,jl->li", a, b), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(einsum("ij, jk", test_values({2, 3}, 24), test_values({3, 4}, 25)),
                  ref_einsum("ij,jk->ik", test_values({2, 3}, 24), test_values({3, 4}, 25)), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(einsum("ij,ij->", test_values({2, 3}, 26), test_values({2, 3}, 27)),
                  ref_einsum("ij,ij->", test_values({2, 3}, 26), test_values({2, 3}, 27)), 1e-12, 1e-12);
  // ellipses of different ranks broadcast right-aligned; size-1 dims broadcast
  Tensor x = test_values({4, 1, 3}, 28), w = test_values({2, 3, 5}, 29);
  Tensor e = einsum("...i,...ij->...j", x, w);
  ASSERT_EQ(e.shape(), (Shape{4, 2, 5}));
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>(), ev = e.to_vector<double>();
  for (int64_t a0 = 0; a0 < 4; ++a0)
    for (int64_t b0 = 0; b0 < 2; ++b0)
      for (int64_t j = 0; j < 5; ++j) {
        double s = 0;
        for (int64_t i = 0; i < 3; ++i) s += xv[size_t(a0 * 3 + i)] * wv[size_t((b0 * 3 + i) * 5 + j)];
        EXPECT_NEAR(ev[size_t((a0 * 2 + b0) * 5 + j)], s, 1e-12);
      }
}

TEST(Linalg, EinsumErrors) {
  Tensor a = zeros({2, 3}), b = zeros({3, 4});
  EXPECT_THROW(einsum("ij,jk,kl->il", a, b), ValueError);
  EXPECT_THROW(einsum("ij->ij", a, b), ValueError);
  EXPECT_THROW(einsum("i$,jk->ik", a, b), ValueError);
  EXPECT_THROW(einsum("ii,jk->ik", zeros({3, 3}), b), NotImplementedError);
  EXPECT_THROW(einsum("ijk,jk->ik", a, b), ShapeError);   // rank mismatch
  EXPECT_THROW(einsum("ij,jk->iz", a, b), ValueError);    // unknown output index
  EXPECT_THROW(einsum("ij,jk->ii", a, b), ValueError);    // repeated output index
  std::string msg = error_of([&] { einsum("ij,ik->jk", a, b); });  // i: 2 vs 3
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 4]"), std::string::npos) << msg;
}

TEST(Linalg, Gradients) {
  auto weighted = [](const Tensor& out, uint64_t seed) {
    return sum(out * test_values(out.shape(), seed));
  };
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return weighted(matmul(in[0], in[1]), 1); },
                              {test_values({3, 4}, 30), test_values({4, 2}, 31)}));
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return weighted(matmul(in[0], in[1]), 9); },
                              {test_values({2, 3, 4}, 55), test_values({4, 2}, 56)}));
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return weighted(matmul(in[0], in[1]), 2); },
                              {test_values({2, 1, 3, 4}, 32), test_values({3, 4, 2}, 33)}));
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return weighted(matmul(in[0], in[1]), 3); },
                              {test_values({4}, 34), test_values({2, 4, 3}, 35)}));
  EXPECT_TRUE(check_gradients([&](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); },
                              {test_values({5}, 36), test_values({5}, 37)}));
  EXPECT_TRUE(check_gradients(
      [&](const std::vector<Tensor>& in) {
        return weighted(dot_general(in[0], in[1], {{2, 3}, {3, 0}, {1}, {2}}), 4);
      },
      {test_values({3, 2, 4, 2}, 38), test_values({2, 3, 2, 4}, 39)}));
  EXPECT_TRUE(check_gradients(
      [&](const std::vector<Tensor>& in) { return weighted(einsum("...qhd,...khd->...hqk", in[0], in[1]), 5); },
      {test_values({2, 3, 2, 4}, 40), test_values({2, 2, 2, 4}, 41)}));
  EXPECT_TRUE(check_gradients(
      [&](const std::vector<Tensor>& in) { return weighted(einsum("ijk,jl->li", in[0], in[1]), 6); },
      {test_values({3, 4, 2}, 42), test_values({4, 5}, 43)}));
  // a transposed lhs (contracting its leading axis)
  EXPECT_TRUE(check_gradients(
      [&](const std::vector<Tensor>& in) { return weighted(dot_general(in[0], in[1], {{0}, {0}, {}, {}}), 7); },
      {test_values({4, 3}, 44), test_values({4, 2}, 45)}));
  for (Epilogue ep : {Epilogue::Bias, Epilogue::BiasRelu, Epilogue::BiasGelu})
    EXPECT_TRUE(check_gradients(
        [&](const std::vector<Tensor>& in) { return weighted(matmul_bias_act(in[0], in[1], in[2], ep), 8); },
        {test_values({2, 3, 4}, 46), test_values({4, 5}, 47), test_values({5}, 48)}))
        << int(ep);
}

TEST(Linalg, MatmulBiasActComposes) {
  Tensor a = test_values({2, 3, 4}, 49), b = test_values({4, 5}, 50), bias = test_values({5}, 51);
  Tensor z = matmul(a, b) + bias;
  EXPECT_ALLCLOSE(matmul_bias_act(a, b, bias), z, 1e-12, 1e-12);
  EXPECT_ALLCLOSE(matmul_bias_act(a, b, bias, Epilogue::BiasRelu), relu(z), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(matmul_bias_act(a, b, bias, Epilogue::BiasGelu), gelu(z), 1e-12, 1e-12);
  EXPECT_ALLCLOSE(matmul_bias_act(a, b, Tensor(), Epilogue::None), matmul(a, b), 0, 0);
  std::string msg = error_of([&] { matmul_bias_act(a, b, zeros({4})); });
  EXPECT_NE(msg.find("[2, 3, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4, 5]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[4]"), std::string::npos) << msg;
  EXPECT_THROW(matmul_bias_act(a, zeros({2, 4, 5}), bias), ShapeError);
}

// residual + (a @ b + bias): the separate ops' values (the CPU composes them), gradients by
// finite differences (the residual's is the upstream gradient), and errors naming the shapes.
TEST(Linalg, MatmulBiasAddIsTheResidualPlusTheProduct) {
  Tensor a = test_values({2, 3, 4}, 52), b = test_values({4, 5}, 53), bias = test_values({5}, 54);
  Tensor r = test_values({2, 3, 5}, 55);
  EXPECT_ALLCLOSE(matmul_bias_add(a, b, bias, r), matmul(a, b) + bias + r, 1e-12, 1e-12);
  EXPECT_ALLCLOSE(matmul_bias_add(a, b, Tensor(), r), matmul(a, b) + r, 1e-12, 1e-12);
  EXPECT_EQ(matmul_bias_add(a.to(DType::F32), b.to(DType::F32), bias.to(DType::F32), r).dtype(),
            DType::F64);  // the add promotes, as the separate ops do
  EXPECT_TRUE(check_gradients(
      [](const std::vector<Tensor>& in) {
        return sum(matmul_bias_add(in[0], in[1], in[2], in[3]) * test_values({2, 3, 5}, 56));
      },
      {a, b, bias, r}));
  std::string msg = error_of([&] { matmul_bias_add(a, b, bias, zeros({2, 3, 4})); });
  EXPECT_NE(msg.find("residual [2, 3, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("b [4, 5]"), std::string::npos) << msg;
  EXPECT_THROW(matmul_bias_add(a, b, zeros({4}), r), ShapeError);
  EXPECT_THROW(matmul_bias_add(a, b, bias, Tensor()), ValueError);
}

TEST(Linalg, Tf32SwitchDefaultsOff) {
  EXPECT_FALSE(allow_tf32());
  {
    Tf32Guard on(true);
    EXPECT_TRUE(allow_tf32());
  }
  EXPECT_FALSE(allow_tf32());
  set_allow_tf32(true);
  EXPECT_TRUE(allow_tf32());
  set_allow_tf32(false);
}

TEST(Linalg, MatchesJaxGoldens) {
  nlohmann::json golden = testing::load_golden("linalg_pool.json");
  for (const auto& c : golden.at("linalg")) {
    std::string name = c.at("name"), op = c.at("op");
    Tensor a = testing::golden_tensor(c.at("a")), b = testing::golden_tensor(c.at("b"));
    Tensor w = testing::golden_tensor(c.at("w"));
    auto f = [&](const Tensor& x, const Tensor& y) {
      if (op == "matmul") return matmul(x, y);
      if (op == "einsum") return einsum(c.at("spec").get<std::string>(), x, y);
      const auto& d = c.at("dims");
      return dot_general(x, y, {d.at("lhs_contracting").get<Axes>(), d.at("rhs_contracting").get<Axes>(),
                                d.at("lhs_batch").get<Axes>(), d.at("rhs_batch").get<Axes>()});
    };
    EXPECT_ALLCLOSE(f(a, b), testing::golden_tensor(c.at("out")), 1e-5, 1e-5) << name;
    Tensor la = autograd::make_leaf(a, 0), lb = autograd::make_leaf(b, 1);
    std::vector<Tensor> grads;
    {
      autograd::RecordingGuard rec(true);
      grads = autograd::backward(sum(f(la, lb) * w), {la, lb});
    }
    EXPECT_ALLCLOSE(grads[0], testing::golden_tensor(c.at("grad_a")), 1e-5, 1e-5) << name;
    EXPECT_ALLCLOSE(grads[1], testing::golden_tensor(c.at("grad_b")), 1e-5, 1e-5) << name;
  }
}

}  // namespace
}  // namespace loom

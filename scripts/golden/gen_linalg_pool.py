#!/usr/bin/env python3
"""Generates tests/golden/linalg_pool.json: matmul / dot_general / einsum and Flax pooling
outputs and gradients that loom's core/ops/linalg and core/ops/pool must reproduce.

Pinned versions (recorded in the JSON as well): jax 0.10.2, jaxlib 0.10.2, flax 0.12.8,
numpy 2.4.6, XLA CPU backend, default x32 mode, float32 throughout.

Each case stores its inputs, a fixed cotangent `w`, the output, and the gradients of
sum(out * w) with respect to every input (jax.grad), so both forward and backward are pinned.
Inputs come from numpy's default_rng with fixed seeds; NaN is written as the string "nan"
(avg_explicit_exclude has windows of padding only, 0/0 in Flax); the "ties" cases round inputs to halves so
that max/min windows hold equal values and the gradient routing rule (first maximum) is tested.

Usage: python3 scripts/golden/gen_linalg_pool.py   (writes tests/golden/linalg_pool.json)
"""
import json
import os

import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from flax import linen as nn
from flax.linen import pooling
from jax import lax

PINNED = {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "numpy": "2.4.6"}
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "linalg_pool.json")


def num(v):
  if np.isnan(v):  # JSON has no NaN/inf: strings, as testing::golden_tensor reads them
    return "nan"
  if np.isinf(v):
    return "inf" if v > 0 else "-inf"
  return float(str(v))  # shortest repr that round-trips through float32 (keeps the file small)


def arr(x):
  x = np.asarray(x, dtype=np.float32)
  return {"shape": list(x.shape), "dtype": "float32", "data": [num(v) for v in x.ravel()]}


def rand(rng, shape, ties=False):
  x = rng.uniform(-2.0, 2.0, size=shape).astype(np.float32)
  return np.round(x * 2) / 2 if ties else x


def with_grads(f, inputs, rng):
  out = f(*inputs)
  w = rand(rng, out.shape)
  grads = jax.grad(lambda *xs: jnp.sum(f(*xs) * w), argnums=tuple(range(len(inputs))))(*inputs)
  return out, w, grads


def linalg_cases(rng):
  cases = []

  def add(name, op, a_shape, b_shape, f, **params):
    a, b = rand(rng, a_shape), rand(rng, b_shape)
    out, w, (ga, gb) = with_grads(f, (jnp.asarray(a), jnp.asarray(b)), rng)
    cases.append(dict(name=name, op=op, a=arr(a), b=arr(b), w=arr(w), out=arr(out),
                      grad_a=arr(ga), grad_b=arr(gb), **params))

  add("matmul_2d", "matmul", (3, 4), (4, 5), jnp.matmul)
  add("matmul_broadcast_batch", "matmul", (2, 1, 3, 4), (5, 4, 2), jnp.matmul)
  add("matmul_vec_mat", "matmul", (4,), (4, 3), jnp.matmul)
  add("matmul_mat_vec", "matmul", (2, 3, 4), (4,), jnp.matmul)
  add("matmul_vec_vec", "matmul", (6,), (6,), jnp.matmul)

  def dg(lc, rc, lb, rb):
    return dict(lhs_contracting=lc, rhs_contracting=rc, lhs_batch=lb, rhs_batch=rb)

  def dot(lc, rc, lb, rb):
    return lambda a, b: lax.dot_general(a, b, ((tuple(lc), tuple(rc)), (tuple(lb), tuple(rb))))

  # DenseGeneral: contract the last two axes of x with the first two of the kernel.
  add("dense_general", "dot_general", (2, 3, 4, 5), (4, 5, 6), dot([2, 3], [0, 1], [], []),
      dims=dg([2, 3], [0, 1], [], []))
  # Batch axes that are not leading, contracting axes in swapped order.
  add("batch_not_leading", "dot_general", (3, 2, 4, 5), (5, 6, 2, 4),
      dot([2, 3], [3, 0], [1], [2]), dims=dg([2, 3], [3, 0], [1], [2]))
  add("outer_product", "dot_general", (3,), (4, 2), dot([], [], [], []), dims=dg([], [], [], []))
  add("attention_logits", "einsum", (2, 3, 2, 4), (2, 5, 2, 4),
      lambda q, k: jnp.einsum("...qhd,...khd->...hqk", q, k), spec="...qhd,...khd->...hqk")
  add("attention_values", "einsum", (2, 2, 3, 5), (2, 5, 2, 4),
      lambda p, v: jnp.einsum("...hqk,...khd->...qhd", p, v), spec="...hqk,...khd->...qhd")
  add("einsum_sum_private", "einsum", (3, 4, 2), (4, 5),
      lambda a, b: jnp.einsum("ijk,jl->li", a, b), spec="ijk,jl->li")
  return cases


def pool_cases(rng):
  cases = []

  def add(name, op, shape, window, strides, padding, count_include_pad=True, ties=False):
    x = jnp.asarray(rand(rng, shape, ties))
    pad = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
    if op == "max_pool":
      f = lambda x: nn.max_pool(x, window, strides, pad)
    elif op == "min_pool":
      f = lambda x: pooling.min_pool(x, window, strides, pad)  # not re-exported by nn
    else:
      f = lambda x: nn.avg_pool(x, window, strides, pad, count_include_pad)
    out, w, (gx,) = with_grads(f, (x,), rng)
    cases.append(dict(name=name, op=op, window=list(window),
                      strides=list(strides) if strides else [],
                      padding=padding if isinstance(padding, str) else [list(p) for p in padding],
                      count_include_pad=count_include_pad, x=arr(x), w=arr(w), out=arr(out),
                      grad_x=arr(gx)))

  add("max_valid_2x2_s2", "max_pool", (2, 5, 6, 3), (2, 2), (2, 2), "VALID")
  add("max_same_3x3_s2", "max_pool", (2, 5, 6, 3), (3, 3), (2, 2), "SAME")
  add("max_explicit", "max_pool", (1, 4, 5, 2), (2, 3), (1, 2), [(1, 0), (2, 1)])
  add("max_default_strides", "max_pool", (1, 4, 4, 2), (3, 3), None, "VALID")
  add("max_ties_same", "max_pool", (1, 5, 5, 2), (3, 3), (1, 1), "SAME", ties=True)
  add("min_ties_explicit", "min_pool", (1, 5, 4, 2), (2, 2), (1, 1), [(1, 1), (0, 1)], ties=True)
  add("avg_same_include", "avg_pool", (2, 5, 6, 3), (3, 3), (2, 2), "SAME", True)
  add("avg_same_exclude", "avg_pool", (2, 5, 6, 3), (3, 3), (2, 2), "SAME", False)
  add("avg_explicit_include", "avg_pool", (1, 4, 5, 2), (2, 2), (1, 1), [(1, 1), (0, 2)], True)
  add("avg_explicit_exclude", "avg_pool", (1, 4, 5, 2), (2, 2), (1, 1), [(1, 1), (0, 2)], False)
  add("max_1d_same", "max_pool", (2, 7, 2), (3,), (2,), "SAME")
  add("avg_1d_valid", "avg_pool", (2, 7, 2), (2,), (2,), "VALID")
  add("max_3d_same", "max_pool", (1, 4, 3, 5, 2), (2, 2, 3), (2, 1, 2), "SAME")
  add("avg_3d_exclude", "avg_pool", (1, 4, 3, 5, 2), (2, 2, 2), (2, 2, 2), "SAME", False)
  add("max_no_batch", "max_pool", (5, 6, 3), (2, 2), (2, 2), "SAME")
  add("avg_no_batch_exclude", "avg_pool", (5, 6, 3), (3, 3), (2, 2), "SAME", False)
  return cases


def main():
  versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "flax": flax.__version__,
              "numpy": np.__version__}
  for k, v in PINNED.items():
    if versions[k] != v:
      print(f"warning: {k} {versions[k]} differs from the pinned {v}")
  rng = np.random.default_rng(20240503)
  data = {"versions": versions, "backend": jax.default_backend(),
          "linalg": linalg_cases(rng), "pool": pool_cases(rng)}
  with open(OUT, "w") as f:
    json.dump(data, f, separators=(",", ":"), allow_nan=False)
    f.write("\n")
  print(f"wrote {OUT}: {len(data['linalg'])} linalg and {len(data['pool'])} pool cases")


if __name__ == "__main__":
  main()

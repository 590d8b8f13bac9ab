#!/usr/bin/env python3
"""Generates tests/golden/reduce_shape.json: reductions (var, logsumexp, argmax/argmin,
optax.global_norm) and shape/indexing ops (jnp.pad in every mode, jnp.take, jnp.take_along_axis,
jax.nn.one_hot, jnp.tril/triu, lax.slice) whose exact JAX semantics core/ops/reduce and
core/ops/shape must reproduce: NaN handling, out-of-range indices, reflect/wrap index rules.

Pinned versions (recorded in the JSON as well): jax 0.10.2, jaxlib 0.10.2, optax 0.2.8,
numpy 2.4.6, XLA CPU backend, default x32 mode, float32 throughout.

Differentiable cases store a fixed cotangent `w` and `grad` = jax.grad(sum(f(x) * w)), so the
backward rule is pinned too. NaN / inf are written as the strings "nan", "inf", "-inf".

Usage: python3 scripts/golden/gen_reduce_shape.py   (writes tests/golden/reduce_shape.json)
"""
import json
import os

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax
from jax import lax

PINNED = {"jax": "0.10.2", "jaxlib": "0.10.2", "optax": "0.2.8", "numpy": "2.4.6"}
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "reduce_shape.json")


def num(v, integer):
  if integer:
    return int(v)
  if np.isnan(v):
    return "nan"
  if np.isinf(v):
    return "inf" if v > 0 else "-inf"
  return float(str(np.float32(v)))


def arr(x):
  x = np.asarray(x)
  integer = np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_
  dtype = "int32" if integer else "float32"
  x = x.astype(np.int32 if integer else np.float32)
  return {"shape": list(x.shape), "dtype": dtype, "data": [num(v, integer) for v in x.ravel()]}


def rand(rng, shape, lo=-2.0, hi=2.0):
  return rng.uniform(lo, hi, size=shape).astype(np.float32)


def case(name, f, x, rng, grad=True, **params):
  out = f(x)
  c = {"name": name, "x": arr(x), "out": arr(out), **params}
  if grad:
    w = rand(rng, np.shape(out))
    g = jax.grad(lambda v: jnp.sum(f(v) * w))(jnp.asarray(x))
    c["w"] = arr(w)
    c["grad"] = arr(g)
  return c


def main():
  rng = np.random.default_rng(20240611)
  cases = []

  x = rand(rng, (3, 4, 5))
  cases.append(case("var_axis1_keep", lambda v: jnp.var(v, axis=1, keepdims=True), x, rng,
                    op="var", axes=[1], keepdims=True))
  cases.append(case("var_all", lambda v: jnp.var(v), x, rng, op="var", axes=[], keepdims=False))

  x = rand(rng, (4, 6)) * 10
  x[1, :] = -np.inf       # fully masked row: -inf, NaN gradient (as JAX)
  x[2, 3] = -np.inf       # partly masked row
  x[3, :] += 1000.0       # would overflow without the max shift
  cases.append(case("logsumexp_rows", lambda v: jax.nn.logsumexp(v, axis=-1), x, rng,
                    op="logsumexp", axes=[-1], keepdims=False))
  x = rand(rng, (2, 3, 4))
  cases.append(case("logsumexp_axes02_keep", lambda v: jax.nn.logsumexp(v, axis=(0, 2), keepdims=True),
                    x, rng, op="logsumexp", axes=[0, 2], keepdims=True))

  x = np.round(rand(rng, (4, 5)))  # ties
  x[2, 1] = np.nan
  x[2, 3] = np.nan
  for axis in (0, 1, -1):
    cases.append(case(f"argmax_axis{axis}", lambda v: jnp.argmax(v, axis=axis), x, rng, grad=False,
                      op="argmax", axis=axis))
    cases.append(case(f"argmin_axis{axis}", lambda v: jnp.argmin(v, axis=axis), x, rng, grad=False,
                      op="argmin", axis=axis))

  x = rand(rng, (3, 4))
  for mode, jmode in (("constant", "constant"), ("wrap", "wrap"), ("reflect", "reflect")):
    pads = [[2, 5], [1, 3]] if mode != "reflect" else [[4, 2], [3, 6]]  # pads wider than the data
    kw = {"constant_values": 1.5} if mode == "constant" else {}
    cases.append(case(f"pad_{mode}", lambda v: jnp.pad(v, pads, mode=jmode, **kw), x, rng,
                      op="pad", mode=mode, pads=pads, value=1.5 if mode == "constant" else 0.0))
  x1 = rand(rng, (1, 3))
  cases.append(case("pad_reflect_size1", lambda v: jnp.pad(v, [[2, 1], [0, 0]], mode="reflect"),
                    x1, rng, op="pad", mode="reflect", pads=[[2, 1], [0, 0]], value=0.0))

  x = rand(rng, (3, 5, 2))
  idx = np.array([[0, 4, -1], [7, -6, 2], [4, 4, 4]], dtype=np.int32)  # repeats, negatives, out of range
  for mode in ("fill", "clip"):
    cases.append(case(f"take_axis1_{mode}", lambda v: jnp.take(v, idx, axis=1, mode=mode), x, rng,
                      op="take", axis=1, mode=mode, indices=arr(idx)))
  idx0 = np.array([2, 0, 2, -3], dtype=np.int32)
  cases.append(case("take_axis0_fill", lambda v: jnp.take(v, idx0, axis=0), x, rng,
                    op="take", axis=0, mode="fill", indices=arr(idx0)))

  x = rand(rng, (3, 1, 4))
  tidx = np.array([[[0, 3, -1]], [[1, 1, 9]]], dtype=np.int32).reshape(1, 2, 3)  # broadcasts x dims
  cases.append(case("take_along_axis_bcast", lambda v: jnp.take_along_axis(v, tidx, axis=2), x, rng,
                    op="take_along_axis", axis=2, indices=arr(tidx)))

  oidx = np.array([[0, 2, -1], [3, 1, 5]], dtype=np.int32)
  cases.append({"name": "one_hot", "op": "one_hot", "num_classes": 4, "x": arr(oidx),
                "out": arr(jax.nn.one_hot(oidx, 4))})

  x = rand(rng, (2, 3, 5))
  for k in (-1, 0, 2):
    cases.append(case(f"tril_k{k}", lambda v: jnp.tril(v, k), x, rng, op="tril", k=k))
    cases.append(case(f"triu_k{k}", lambda v: jnp.triu(v, k), x, rng, op="triu", k=k))

  x = rand(rng, (5, 7))
  cases.append(case("slice_strided", lambda v: lax.slice(v, (1, 0), (5, 7), (2, 3)), x, rng,
                    op="slice", start=[1, 0], limit=[5, 7], strides=[2, 3]))

  tree = {"a": rand(rng, (3, 4)), "b": {"c": rand(rng, (5,)), "d": rand(rng, (2, 2))}}
  gn = optax.global_norm(tree)
  cases.append({"name": "global_norm", "op": "global_norm",
                "leaves": {"a": arr(tree["a"]), "b/c": arr(tree["b"]["c"]), "b/d": arr(tree["b"]["d"])},
                "out": arr(gn)})

  versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "optax": optax.__version__,
              "numpy": np.__version__}
  for k, v in PINNED.items():
    if versions[k] != v:
      print(f"warning: {k} {versions[k]} differs from the pinned {v}")
  with open(OUT, "w") as f:
    json.dump({"versions": versions, "backend": jax.default_backend(), "cases": cases}, f,
              separators=(",", ":"))
  print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")


if __name__ == "__main__":
  main()

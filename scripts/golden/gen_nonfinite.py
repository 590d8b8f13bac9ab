#!/usr/bin/env python3
"""Generates tests/golden/nonfinite.json: what JAX, Flax and Optax give for NaN, +-inf, +-0,
values at the edges of float32's range and inputs at the kinks of piecewise functions, for the elementwise, reduction, softmax, loss and pooling
ops whose special values loom must reproduce (a diverging run must fail where JAX's would, with
the same NaNs and infinities, on both devices). Each case holds its inputs, the output and the
input gradients (jax.vjp with a cotangent of ones).

Pinned versions (recorded in the JSON as well): jax 0.10.2, jaxlib 0.10.2, flax 0.12.8,
optax 0.2.8, numpy 2.4.6, on the XLA CPU backend, default config (x32 mode, float32 math).

Usage: python3 scripts/golden/gen_nonfinite.py   (writes tests/golden/nonfinite.json)
"""
import json
import os

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from gen_nn_ops import arr  # the golden arrays' JSON form: NaN and infinities as strings

PINNED = {"jax": "0.10.2", "jaxlib": "0.10.2", "flax": "0.12.8", "optax": "0.2.8", "numpy": "2.4.6"}

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "nonfinite.json")

INF, NAN = np.inf, np.nan
# Every unary op sees these: the special values, both zeros, float32's extremes and values past
# the range of exp. (No denormals: JAX's CPU backend reads them as 0, and loom's libm-based CPU
# functions read them as they are.)
SPECIAL = np.array([NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0, 3.0e38, -3.0e38, 1.0e13, 100.0, -100.0],
                   dtype=np.float32)


def case(name, f, inputs, differentiable=True):
  """f's output for inputs (name -> array) and, when differentiable, its vjp with ones."""
  names = list(inputs)
  args = [jnp.asarray(inputs[k]) for k in names]
  c = {"name": name, "inputs": {k: arr(v) for k, v in inputs.items()}}
  if differentiable:
    y, pullback = jax.vjp(f, *args)
    grads = pullback(jnp.ones_like(y))
    c["grads"] = {k: arr(g) for k, g in zip(names, grads)}
  else:
    y = f(*args)
  c["output"] = arr(y)
  return c


def unary_cases():
  ops = {
      "exp": jnp.exp, "log": jnp.log, "sqrt": jnp.sqrt, "rsqrt": jax.lax.rsqrt, "tanh": jnp.tanh,
      "sigmoid": jax.nn.sigmoid, "erf": jax.scipy.special.erf, "relu": jax.nn.relu,
      "gelu": nn.gelu, "gelu_exact": lambda x: nn.gelu(x, approximate=False), "silu": jax.nn.silu,
      "softplus": jax.nn.softplus, "log_sigmoid": jax.nn.log_sigmoid, "elu": jax.nn.elu,
      "leaky_relu": jax.nn.leaky_relu, "abs": jnp.abs, "sign": jnp.sign, "square": jnp.square,
      "reciprocal": jnp.reciprocal, "neg": jnp.negative, "sin": jnp.sin, "cos": jnp.cos,
  }
  return [case(name, f, {"x": SPECIAL}) for name, f in ops.items()]


def binary_cases():
  # every pair of a few special values
  v = np.array([NAN, INF, -INF, 0.0, -0.0, 2.0, -2.0], dtype=np.float32)
  a, b = np.meshgrid(v, v, indexing="ij")
  a, b = a.ravel(), b.ravel()
  ops = {"add": jnp.add, "sub": jnp.subtract, "mul": jnp.multiply, "div": jnp.divide,
         "maximum": jnp.maximum, "minimum": jnp.minimum, "pow": jnp.power}
  return [case(name, f, {"a": a, "b": b}) for name, f in ops.items()]


# Rows of a [6, 4] matrix: finite, with +inf, with -inf, all -inf, with NaN, +inf and -inf.
ROWS = np.array([[1.0, 2.0, 3.0, 4.0],
                 [1.0, INF, 2.0, 3.0],
                 [1.0, -INF, 2.0, 3.0],
                 [-INF, -INF, -INF, -INF],
                 [NAN, 1.0, 2.0, 3.0],
                 [INF, -INF, 2.0, 1.0]], dtype=np.float32)


def row_cases():
  out = []
  for name, f in {"sum": lambda x: jnp.sum(x, axis=-1), "mean": lambda x: jnp.mean(x, axis=-1),
                  "max": lambda x: jnp.max(x, axis=-1), "min": lambda x: jnp.min(x, axis=-1),
                  "var": lambda x: jnp.var(x, axis=-1),
                  "logsumexp": lambda x: jax.nn.logsumexp(x, axis=-1),
                  "softmax": lambda x: jax.nn.softmax(x, axis=-1),
                  "log_softmax": lambda x: jax.nn.log_softmax(x, axis=-1)}.items():
    out.append(case(name, f, {"x": ROWS}))
  for name, f in {"argmax": lambda x: jnp.argmax(x, axis=-1),
                  "argmin": lambda x: jnp.argmin(x, axis=-1)}.items():
    out.append(case(name, f, {"x": ROWS}, differentiable=False))
  # losses on the same rows: one-hot labels of class 2, integer labels 1 (the +inf of row 1)
  onehot = np.zeros_like(ROWS)
  onehot[:, 2] = 1.0
  out.append(case("softmax_cross_entropy",
                  lambda x: optax.softmax_cross_entropy(x, jnp.asarray(onehot)), {"x": ROWS}))
  out[-1]["labels"] = arr(onehot)
  labels = np.array([1, 1, 0, 2, 3, 2], dtype=np.int32)
  out.append(case("softmax_cross_entropy_with_integer_labels",
                  lambda x: optax.softmax_cross_entropy_with_integer_labels(x, jnp.asarray(labels)),
                  {"x": ROWS}))
  out[-1]["labels"] = arr(labels)
  targets = np.array([[0.0, 1.0, 0.5, 1.0]] * 6, dtype=np.float32)
  out.append(case("sigmoid_binary_cross_entropy",
                  lambda x: optax.sigmoid_binary_cross_entropy(x, jnp.asarray(targets)), {"x": ROWS}))
  out[-1]["labels"] = arr(targets)
  return out


def pool_cases():
  x = np.arange(32, dtype=np.float32).reshape(2, 4, 4, 1) - 10.0
  x[0, 0, 0, 0] = NAN
  x[0, 2, 3, 0] = INF
  x[1, 1, 1, 0] = -INF
  x[1, 3, 2, 0] = INF
  x[1, 3, 3, 0] = -INF
  return [case("max_pool", lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), {"x": x}),
          case("avg_pool", lambda x: nn.avg_pool(x, (2, 2), strides=(2, 2)), {"x": x}),
          case("min_pool", lambda x: nn.pooling.min_pool(x, (2, 2), strides=(2, 2)), {"x": x})]


def product_cases():
  """Products that must not skip a zero: an infinite or NaN operand times 0 is NaN."""
  a = np.array([[1.0, INF, 2.0, 0.0], [NAN, 1.0, 0.0, 2.0], [1.0, 2.0, 3.0, 4.0]], np.float32)
  b = np.array([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0], [2.0, 0.5]], np.float32)
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) / 4.0
  x[0, 1, 2, 0] = INF
  x[0, 3, 0, 0] = NAN
  k = np.zeros((3, 3, 1, 2), np.float32)
  k[1, 1, 0, 1] = 1.0
  k[0, 0, 0, 1] = -1.0
  conv = lambda input, kernel: jax.lax.conv_general_dilated(
      input, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  # attention with a query row whose keys are all masked: Flax fills its logits with
  # finfo.min, so its weights are uniform (not NaN); batch 1, 3 queries, 4 keys, 2 heads of 4
  rs = np.random.RandomState(7)
  q, kk, v = (rs.uniform(-1, 1, (1, n, 2, 4)).astype(np.float32) for n in (3, 4, 4))
  mask = np.ones((1, 2, 3, 4), bool)
  mask[0, :, 1, :] = False
  mask[0, 0, 2, 3] = False
  att = case("dot_product_attention",
             lambda k, q, v: nn.dot_product_attention(q, k, v, mask=jnp.asarray(mask)),
             {"k": kk, "q": q, "v": v})
  att["labels"] = arr(mask)
  return [case("matmul", jnp.matmul, {"a": a, "b": b}),
          case("conv", conv, {"input": x, "kernel": k}), att]


def kink_cases():
  """Where a derivative jumps, the side JAX takes: activations at their kinks, ties in max and
  min (reductions split the gradient between tied entries, pooling gives it to the first),
  clip at its bounds and the Huber loss at delta."""
  k = np.array([0.0, -0.0, 6.0, 1.0, -1.0, 3.0, NAN], np.float32)
  ties = np.array([[1.0, 3.0, 3.0, 2.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 0.0, -0.0, -1.0]], np.float32)
  window = np.array([1.0, 1.0, 0.0, 2.0, 1.0, 0.0, 2.0, 2.0], np.float32).reshape(1, 2, 4, 1)
  d = np.array([-2.0, -1.0, 0.0, 1.0, 2.0], np.float32)
  return [case("kink_relu", jax.nn.relu, {"x": k}),
          case("kink_relu6", jax.nn.relu6, {"x": k}),
          case("kink_leaky_relu", jax.nn.leaky_relu, {"x": k}),
          case("kink_elu", jax.nn.elu, {"x": k}),
          case("kink_abs", jnp.abs, {"x": k}),
          case("kink_clip", lambda x: jnp.clip(x, -1.0, 3.0), {"x": k}),
          case("kink_clip_point", lambda x: jnp.clip(x, 1.0, 1.0), {"x": k}),
          case("kink_max", lambda x: jnp.max(x, axis=-1), {"x": ties}),
          case("kink_min", lambda x: jnp.min(x, axis=-1), {"x": ties}),
          case("kink_max_pool", lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), {"x": window}),
          case("kink_huber_loss", lambda x: optax.huber_loss(x, None, delta=1.0), {"x": d})]


def optimizer_cases():
  """One step of each optimizer from gradients with NaN and infinities: which params go NaN or
  infinite (clip_by_global_norm's infinite norm, Adam's inf / sqrt(inf), LAMB's trust ratio)."""
  params = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
  grads = {"nan": np.array([INF, NAN, 1.0, -INF, 0.0], np.float32),
           "inf": np.array([INF, 1.0, 1.0, -INF, 0.0], np.float32)}
  txs = {"sgd": optax.sgd(0.1), "momentum": optax.sgd(0.1, momentum=0.9), "adam": optax.adam(0.1),
         "adamw": optax.adamw(0.1, weight_decay=0.1),
         "clip_sgd": optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1)),
         "rmsprop": optax.rmsprop(0.1), "lamb": optax.lamb(0.1)}
  out = []
  for name, tx in txs.items():
    for kind, g in grads.items():
      def step(grads, params, tx=tx):
        updates, _ = tx.update(grads, tx.init(params), params)
        return optax.apply_updates(params, updates)
      out.append(case(f"optimizer_{name}_{kind}", step, {"grads": g, "params": params},
                      differentiable=False))
  return out


def main():
  versions = {"jax": jax.__version__, "jaxlib": jax.lib.__version__, "flax": flax.__version__,
              "optax": optax.__version__, "numpy": np.__version__}
  if versions != PINNED:
    raise SystemExit(f"gen_nonfinite.py is pinned to {PINNED}, running {versions}")
  cases = (unary_cases() + binary_cases() + row_cases() + pool_cases() + product_cases() +
           kink_cases() + optimizer_cases())
  with open(OUT, "w") as f:
    json.dump({"versions": versions, "cases": cases}, f, separators=(",", ":"))
    f.write("\n")
  print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
  main()
